"""The statistics dashboard (issue 5) as a person sees it: the admin listener's `/` opened in
headless Chromium (tests/browser.py) after a few seconds of mixed traffic.

It must load without a console error, draw its charts as inline SVG with the traffic in them
(the request-rate line has points, and its colour is on the screenshot), list the views — one
of them labelled with a `<script>` element, which must show as text — ask for nothing outside
the admin listener (it works offline), run no script, and refresh itself.

Chromium is Debian's `chromium` package, which CI installs (.ci/run); on a machine without it
these tests are skipped, except under CI where that is a failure.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse

import pytest
from browser import Browser, chromium_path, count_pixels
from helpers import wait_until
from stats_helpers import Admin, free_port

if chromium_path() is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is not installed: .ci/run should have installed it")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

TRAFFIC_SECONDS = 6
# A label an application could take from its input: the page must show it as text, not run it.
HOSTILE = "<script>console.error('injected')</script>"
MIX = [
    "/work",
    "/wait",
    "/api/users",
    "/status/503",
    "/big",
    "/label/checkout",
    "/both",
    "/label/" + urllib.parse.quote(HOSTILE, safe=""),
]
LABELS = ["/work", "/wait", "/api", "/status", "/big", "checkout", "/both", HOSTILE]


def send_traffic(server, seconds: float, workers: int = 4) -> int:
    """The MIX round and round from `workers` threads for `seconds`; how many were sent.
    Bounded in time, so it stops by itself."""
    deadline = time.monotonic() + seconds
    sent = []

    def loop(offset: int) -> None:
        i = offset
        while time.monotonic() < deadline:
            resp, _ = server.request("GET", MIX[i % len(MIX)])
            assert resp.status in (200, 503)
            sent.append(1)
            i += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return len(sent)


@pytest.fixture(scope="module")
def dashboard():
    """(server, admin, page, screenshot) with the dashboard loaded after the traffic; one
    browser and one server for the module, stopped at the end."""
    from conftest import start

    admin = Admin(f"127.0.0.1:{free_port()}")
    server = start(["--bind", "127.0.0.1:0", "--stats-bind", admin.bind, "statsapp"])
    browser = None
    try:
        sent = send_traffic(server, TRAFFIC_SECONDS)
        assert sent > 20

        # Until the timeline holds every request, and a quiet second after them: then the
        # rate line ends with a drop to zero, a long vertical stroke of its colour.
        def timeline_done():
            seconds = admin.snapshot()["seconds"]
            done = sum(p["requests"] for p in seconds) == sent
            return done and seconds[-1]["requests"] == 0

        wait_until(timeline_done, 20, interval=0.2, what="the timeline to hold the traffic")
        browser = Browser(width=1400, height=2000)
        page = browser.page()
        page.open(admin.origin + "/")
        page.settle(1.0)
        yield server, admin, page, page.screenshot()
        page.close()
    finally:
        if browser is not None:
            browser.close()
        server.stop()


def test_the_page_loads_without_console_errors(dashboard):
    _, _, page, _ = dashboard
    assert page.errors == [], page.errors
    assert page.evaluate("document.readyState") == "complete"
    assert page.evaluate("document.title")


def test_the_page_asks_for_nothing_beyond_the_admin_listener(dashboard):
    _, admin, page, _ = dashboard
    assert page.requests, "no request was seen"
    strangers = [
        u for u in page.requests if not (u.startswith(admin.origin + "/") or u.startswith("data:"))
    ]
    assert strangers == [], strangers
    # No script at all: the charts are drawn by the server.
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.querySelectorAll('link[rel=stylesheet]').length") == 0


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


# The series colours, from the table in src/stats/svg.rs: each is used by one series only, and
# legend swatches are drawn at 60% opacity, so a colour's pixels on the screenshot are that
# series' line.
RATE = "#2563eb"
ERRORS = "#dc2626"
BAR = "#0d9488"
RATE_LINE = "#rate-15m svg .series.rate"


def test_the_charts_are_inline_svg_with_data(dashboard):
    _, _, page, _ = dashboard
    assert page.evaluate("document.querySelectorAll('svg').length") >= 5
    for chart in ("rate-15m", "latency-15m", "threads-15m", "rate-24h", "latency-24h"):
        assert page.evaluate(f"!!document.querySelector('#{chart} svg')"), chart
    for chart, series in (
        ("rate-15m", "rate"),
        ("rate-15m", "errors"),
        ("latency-15m", "p50"),
        ("latency-15m", "p90"),
        ("latency-15m", "p99"),
        ("threads-15m", "busy"),
        ("threads-15m", "threads"),
    ):
        found = page.evaluate(f"!!document.querySelector('#{chart} svg .series.{series}')")
        assert found, f"no series {series} in {chart}"
    # One point per second of the server's life: the traffic's seconds at least.
    coords = page.evaluate(
        f"document.querySelector('{RATE_LINE}').getAttribute('d')"
        ".match(/[ML]\\s*[-\\d.]+[ ,]+[-\\d.]+/g)"
    )
    assert coords and len(coords) >= TRAFFIC_SECONDS - 1, coords
    # A line with data is not flat at zero: some point is well above the x axis (the plot's
    # bottom is at y = 158 in the SVG's 180-pixel height).
    ys = [float(c[1:].replace(",", " ").split()[-1]) for c in coords]
    assert min(ys) < 140, coords
    assert page.evaluate("document.querySelectorAll('svg.histogram').length") >= 3
    assert page.evaluate("document.querySelectorAll('svg.histogram .bar').length") >= 3


def test_the_lines_and_bars_are_on_the_screenshot(dashboard, tmp_path):
    _, _, page, shot = dashboard
    stroke = page.evaluate(f"getComputedStyle(document.querySelector('{RATE_LINE}')).stroke")
    assert stroke == "rgb({}, {}, {})".format(*hex_rgb(RATE)), stroke
    (tmp_path / "dashboard.png").write_bytes(shot)
    # The charts are 15 minutes wide: a few seconds of traffic are a few pixels wide, and
    # what shows is the drop after them, a 2-pixel line as tall as the peak rate. The y axis
    # tops at a round number above the peak, so the peak is at least 40% of the 150-pixel
    # plot: 60 pixels tall. The drop is not quite vertical and anti-aliasing blends its edges
    # with the white; the tolerance takes pixels at least ~90% of the colour.
    for name, colour, least in (("rate", RATE, 60), ("5xx", ERRORS, 15), ("bars", BAR, 200)):
        pixels = count_pixels(shot, hex_rgb(colour), tolerance=24)
        assert pixels >= least, f"{pixels} pixels of the {name} colour {colour}; see {tmp_path}"


def test_the_page_lists_the_views(dashboard):
    _, _, page, _ = dashboard
    slowest = page.evaluate("document.querySelector('table#slowest').innerText")
    missing = [label for label in LABELS if label not in slowest.split()]
    assert missing == [], f"views not in the slowest-views table: {missing}\n{slowest}"
    assert page.evaluate("!!document.querySelector('#in-flight')")


def test_the_page_refreshes_itself(dashboard):
    _, admin, page, _ = dashboard
    content = page.evaluate(
        "(document.querySelector('meta[http-equiv=refresh i]') || {}).content || null"
    )
    assert content, "no <meta http-equiv=refresh>"
    seconds = float(re.match(r"\s*(\d+(?:\.\d+)?)", content).group(1))
    assert 1 <= seconds <= 60, content
    since = len(page.events)
    page.wait_event("Page.loadEventFired", timeout=seconds + 20, since=since)
    assert page.errors == [], page.errors
