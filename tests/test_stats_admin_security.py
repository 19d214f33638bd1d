"""Who may read the admin listener (the hardening issue's admin-listener item): over TCP only
requests whose `Host` names the address they reached, `localhost` or a `--stats-hosts` name
(DNS rebinding), `--stats-token` on everything but the probes, and `--stats-bind :PORT` on
loopback.

Every test that can runs over TCP and a Unix socket (over a Unix socket any Host is fine: no
browser connects to one); the rest are about TCP addresses.
"""

from __future__ import annotations

import socket

import pytest
from helpers import free_port, run_ferrule
from stats_helpers import Admin

TOKEN = "s3cret-t0ken-0123456789abcdef"


def raw(admin: Admin, request: bytes, connect_to: str | None = None) -> tuple[int, dict, bytes]:
    """Send `request` as it is (its own Host, or none) and read the response to the end."""
    if admin.bind.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(admin.bind[len("unix:") :])
    else:
        host, port = (connect_to or admin.bind).rsplit(":", 1)
        s = socket.create_connection((host or "127.0.0.1", int(port)), timeout=30)
    with s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(lines[0].split()[1]), headers, body


def get(path: str, host: str | None, headers: tuple = (), version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {path} {version}", "Connection: close"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- Host ---------------------------------------------------------------------------------------


def test_a_foreign_host_is_misdirected_over_tcp_only(statsapp, transport):
    # A DNS-rebinding page's request names the page's host.
    server, admin = statsapp()
    status, _, body = raw(admin, get("/stats.json", "rebind.evil.example"))
    if transport == "unix":
        assert status == 200, body[:300]
        return
    assert status == 421, body
    assert b"--stats-hosts" in body, body
    # The probes too: the Host check comes before anything else.
    assert raw(admin, get("/healthz", "rebind.evil.example"))[0] == 421
    # No Host on HTTP/1.1 is misdirected; HTTP/1.0 health checks may send none.
    assert raw(admin, get("/metrics", None))[0] == 421
    assert raw(admin, get("/healthz", None, version="HTTP/1.0"))[0] == 200


def test_the_address_and_localhost_are_answered_with_or_without_a_port(statsapp, transport):
    if transport == "unix":
        pytest.skip("a Host is checked over TCP only")
    server, admin = statsapp()
    port = admin.bind.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST"):
        status, _, body = raw(admin, get("/stats.json", host))
        assert status == 200, (host, body[:300])
    assert raw(admin, get("/stats.json", "127.0.0.2"))[0] == 421


def test_stats_hosts_names_more_hosts(statsapp, transport):
    if transport == "unix":
        pytest.skip("a Host is checked over TCP only")
    server, admin = statsapp("--stats-hosts", "stats.internal,Metrics.Example")
    for host in ("stats.internal", "STATS.internal:9100", "metrics.example"):
        assert raw(admin, get("/metrics", host))[0] == 200, host
    assert raw(admin, get("/metrics", "stats.internal.evil.example"))[0] == 421
    server, admin = statsapp("--stats-hosts", "*")
    assert raw(admin, get("/metrics", "anything.example"))[0] == 200
    server.wait_for_output(r"--stats-hosts '\*' answers any Host", timeout=30)


def test_a_wildcard_bind_answers_probes_by_ip_and_warns(statsapp, transport):
    # Kubernetes' httpGet probes send Host: POD_IP:PORT, the address the connection reached.
    if transport == "unix":
        pytest.skip("a TCP address")
    port = free_port()
    server, admin = statsapp(bind=f"0.0.0.0:{port}")
    server.wait_for_output(
        rf"statistics at 0\.0\.0\.0:{port} are readable by anyone who can reach", timeout=30
    )
    connect = f"127.0.0.1:{port}"
    status, _, body = raw(admin, get("/healthz", f"127.0.0.1:{port}"), connect_to=connect)
    assert (status, body) == (200, b"ok\n")
    status, _, body = raw(admin, get("/readyz", "127.0.0.1"), connect_to=connect)
    assert (status, body) == (200, b"ready\n")
    assert raw(admin, get("/readyz", "10.0.0.1"), connect_to=connect)[0] == 421


def test_the_help_says_a_bare_port_is_loopback():
    code, out, err = run_ferrule("--help")
    assert code == 0, err
    assert "`:PORT` for 127.0.0.1:PORT" in " ".join(out.split()), out


def test_a_bare_port_serves_on_127_0_0_1(statsapp, transport):
    if transport == "unix":
        pytest.skip("a TCP address")
    port = free_port()
    server, _ = statsapp(bind=f":{port}")
    server.wait_for_output(rf"Statistics at: http://127\.0\.0\.1:{port}", timeout=30)
    admin = Admin(f"127.0.0.1:{port}")
    assert admin.get("/healthz")[0] == 200
    assert "readable by anyone" not in server.output()


# -- the token ----------------------------------------------------------------------------------


def test_the_token_is_required_except_by_the_probes(statsapp, transport):
    server, admin = statsapp("--stats-token", TOKEN)
    host = "localhost"
    for path in ("/metrics", "/stats.json", "/"):
        status, headers, body = raw(admin, get(path, host))
        assert status == 401, (path, body)
        assert headers["www-authenticate"][0].startswith("Bearer"), headers
        assert b"Authorization: Bearer" in body, body
    status, _, body = raw(admin, get("/metrics", host, [("Authorization", "Bearer nope")]))
    assert status == 401
    bearer = [("Authorization", f"Bearer {TOKEN}")]
    for path in ("/metrics", "/stats.json", "/"):
        status, _, body = raw(admin, get(path, host, bearer))
        assert status == 200, (path, body[:300])
    assert raw(admin, get("/healthz", host))[0] == 200
    status, _, body = raw(admin, get("/readyz", host))
    assert (status, body) == (200, b"ready\n")
    # The token does not end the Host check.
    if transport == "tcp":
        assert raw(admin, get("/metrics", "evil.example", bearer))[0] == 421


def test_a_browser_opens_the_dashboard_with_the_token_once(statsapp, transport):
    server, admin = statsapp(env={"FERRULE_STATS_TOKEN": TOKEN})
    status, headers, _ = raw(admin, get(f"/?token={TOKEN}", "localhost"))
    assert status == 303, headers
    assert headers["location"] == ["/"], headers
    (cookie,) = headers["set-cookie"]
    attributes = [a.strip() for a in cookie.split(";")]
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes), cookie
    name_value = attributes[0]
    assert TOKEN not in name_value, "the token itself is not stored in the browser"
    session = [("Cookie", name_value)]
    for path in ("/", "/stats.json", "/metrics"):
        status, _, body = raw(admin, get(path, "localhost", session))
        assert status == 200, (path, body[:300])
    forged = [("Cookie", name_value[:-4] + "0000")]
    assert raw(admin, get("/stats.json", "localhost", forged))[0] == 401


def test_the_token_can_come_from_a_file(statsapp, tmp_path):
    secret = tmp_path / "stats-token"
    secret.write_text(TOKEN + "\n")
    server, admin = statsapp("--stats-token-file", str(secret))
    assert raw(admin, get("/metrics", "localhost"))[0] == 401
    bearer = [("Authorization", f"Bearer {TOKEN}")]
    assert raw(admin, get("/metrics", "localhost", bearer))[0] == 200
    assert TOKEN not in server.output()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--stats-token", "short"], "too short"),
        (["--stats-token", "a token, with commas"], "a bearer token cannot hold"),
        (["--stats-token-file", "/nonexistent/stats-token"], "cannot read"),
    ],
)
def test_a_bad_token_exits_2_naming_the_option_and_not_the_token(args, says):
    code, out, err = run_ferrule("--bind", "127.0.0.1:0", *args, "statsapp")
    assert code == 2, out + err
    assert "--stats-token" in err and says in err, err
    assert "commas" not in err and "'short'" not in err, err


def test_check_config_does_not_print_the_token(tmp_path):
    path = tmp_path / "ferrule.toml"
    path.write_text('app = "statsapp:app"\nstats_bind = "127.0.0.1:9100"\n')
    code, out, err = run_ferrule("check-config", str(path), env={"FERRULE_STATS_TOKEN": TOKEN})
    assert code == 0, err
    assert TOKEN not in out + err
    assert "stats_token = " in out, out
