"""The supervisor (issue 6): a master process running `--workers N` worker processes on the
listeners it bound, over TCP and a Unix socket.

Workers that die are replaced and the others are untouched; SIGHUP replaces every worker
without failing a request under load (wrk); SIGTERM stops gracefully; SIGTTIN/SIGTTOU change
the count; `--max-requests` (with jitter), `--max-rss` and `--worker-timeout` replace workers;
workers that cannot start make the master give up with exit code 3; the statistics of all
workers are merged on the master's admin listener, with `/healthz` and `/readyz`.

The fixture app (`tests/apps/procapp.py`) answers with its pid. Process ids come from the
master's log lines. No timing assertions beyond generous liveness bounds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import UnixHTTPConnection, start
from helpers import Conn, Unmet, wait_until

LIVENESS = 30
READY = re.compile(r"Worker process (\d+) is ready")


def pids_ready(server) -> list[int]:
    """Worker pids the master has announced ready, in order."""
    server.output()
    return [int(m.group(1)) for line in server.lines if (m := READY.search(line))]


def wait_ready_count(server, count: int) -> list[int]:
    def ready():
        p = pids_ready(server)
        if len(p) >= count:
            return p
        return Unmet({"ready": p, "last worker lines": worker_lines(server)[-3:]})

    return wait_until(ready, LIVENESS, what=f"{count} workers ready")


def worker_lines(server) -> list[str]:
    """The master's lines about its workers so far."""
    server.output()
    return [line.rstrip() for line in server.lines if "worker process" in line.lower()]


def answer(server, path: str = "/") -> tuple[int, str]:
    resp, body = server.request("GET", path)
    return resp.status, body.decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (the master reaps it shortly).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def gone(pid: int):
    """For wait_until: process `pid` has exited (or is a zombie)."""
    if not alive(pid):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        state = "?"
    return Unmet(f"process {pid} alive, state {state}")


@pytest.fixture
def workers(serve):
    """workers(*args, env=None) -> a master with 2 workers of procapp (or --workers N)."""

    def _start(*args: str, env: dict | None = None):
        argv = list(args)
        if not any(a.startswith("--workers") for a in argv):
            argv = ["--workers", "2", *argv]
        server = serve("procapp:application", *argv, env=env)
        return server

    return _start


class Load:
    """Requests on fresh connections from a thread until stopped; counts what failed."""

    def __init__(self, server, path: str = "/"):
        self.server, self.path = server, path
        self.ok, self.failed, self.pids = 0, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                status, body = answer(self.server, self.path)
                if status == 200:
                    self.ok += 1
                    self.pids.add(int(body.split()[1]))
                else:
                    self.failed.append(status)
            except OSError as e:
                self.failed.append(repr(e))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(LIVENESS)


# -- workers share the listeners --------------------------------------------------------------


def test_workers_serve_the_listener_the_master_bound(workers):
    server = workers()
    pids = wait_ready_count(server, 2)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert server.proc.pid not in pids, "the master does not serve"
    for _ in range(20):
        status, body = answer(server)
        assert status == 200 and int(body.split()[1]) in pids
    # The master never imported the application.
    assert "procapp" not in Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert server.wait_for_output(r"Ready to accept requests: 2 worker processes serving")


def test_a_burst_of_keep_alive_connections_is_shared_between_the_workers(workers):
    # A load balancer's keep-alive pool (or wrk) opens its connections at once. Every worker
    # is woken for each, and without the board the first to run took most of the burst (63
    # of 64 was common), and with keep-alive its load for good.
    server = workers()
    pids = wait_ready_count(server, 2)
    conns = [Conn(server) for _ in range(64)]
    try:
        served = Counter()
        for c in conns:
            r = c.request("GET", "/")
            assert r.status == 200
            served[int(r.body.split()[1])] += 1
    finally:
        for c in conns:
            c.close()
    assert set(served) == set(pids), served
    # Even is 32/32; a worker may take one over its share when the other is slow to accept.
    assert min(served.values()) >= 24, served


def test_a_worker_killed_under_load_is_replaced_and_the_rest_unaffected(workers):
    server = workers()
    first, second = wait_ready_count(server, 2)
    with Load(server) as load:
        wait_until(
            lambda: load.ok > 20 or Unmet(f"{load.ok} ok, failed {load.failed[-3:]}"),
            LIVENESS,
            what="load running",
        )
        os.kill(first, signal.SIGKILL)
        server.wait_for_output(rf"Worker process {first} died \(killed by signal 9\)", LIVENESS)
        replacement = wait_ready_count(server, 3)[2]
        served_before = load.ok
        wait_until(
            lambda: (
                load.ok > served_before + 20
                or Unmet(f"{load.ok} ok ({served_before} before), failed {load.failed[-3:]}")
            ),
            LIVENESS,
            what="load goes on",
        )
    assert alive(second) and server.proc.poll() is None
    assert replacement not in (first, second)
    # Only requests the killed worker had in hand can fail.
    assert len(load.failed) <= 4, load.failed
    after = {int(answer(server)[1].split()[1]) for _ in range(10)}
    assert after <= {second, replacement}


def test_sigterm_lets_a_request_in_progress_finish(workers):
    server = workers()
    wait_ready_count(server, 2)
    result = {}

    def slow():
        result["answer"] = answer(server, "/slow?secs=1.5&tag=inflight")

    t = threading.Thread(target=slow)
    t.start()
    # SIGTERM comes while the view runs: it has started, and has 1.5 s to go.
    server.wait_for_output(r"procapp slow started tag=inflight", LIVENESS)
    assert server.stop(signal.SIGTERM, LIVENESS) == 0
    t.join(LIVENESS)
    assert result["answer"][0] == 200
    assert "Shutdown complete" in server.output()


# -- reload --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize("transport", ["tcp"], indirect=True)
def test_sighup_under_wrk_load_fails_no_request(workers, tmp_path):
    version = tmp_path / "version"
    version.write_text("old")
    server = workers(env={"PROCAPP_VERSION_FILE": str(version)})
    old = wait_ready_count(server, 2)
    host, port = server.address
    # wrk's duration is only a bound: it is stopped (SIGINT, on which it prints its report as
    # at the end of a run) once the reload is over and the new workers have had load too.
    wrk = subprocess.Popen(
        ["wrk", "-t2", "-c16", f"-d{3 * LIVENESS}s", "--latency", f"http://{host}:{port}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.5)  # wrk is under way
        version.write_text("new")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(r"Reload complete", LIVENESS)
        # The whole reload happened under load (and the old workers' exits too).
        for pid in old:
            wait_until(lambda pid=pid: gone(pid), LIVENESS, what=f"old worker {pid} gone")
        time.sleep(1.5)  # wrk goes on against the new workers alone
        assert wrk.poll() is None, "wrk ended before the reload did: the test proves nothing"
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=LIVENESS)
    finally:
        if wrk.poll() is None:
            wrk.kill()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    assert requests > 100, out
    assert "Socket errors" not in out, out
    assert "Non-2xx" not in out, out
    status, body = answer(server)
    assert status == 200 and body.endswith(" new")


def test_a_reload_whose_workers_cannot_start_keeps_the_old_ones(workers, tmp_path):
    # Issue 12: the old workers go on serving, and the log, /readyz, the statistics and the
    # dashboard say that the code they run is not the code on disk, until a reload succeeds.
    flag = tmp_path / "fail"
    flag.write_text("ok")
    admin = tmp_path / "admin.sock"
    # procapp reads the file at import: once it is a directory, every new import fails.
    server = workers("--stats-bind", f"unix:{admin}", env={"PROCAPP_VERSION_FILE": str(flag)})
    old = wait_ready_count(server, 2)
    assert unix_get(admin, "/readyz") == (200, b"ready\n")
    flag.unlink()
    flag.mkdir()
    server.proc.send_signal(signal.SIGHUP)
    line = server.wait_for_output(r"Reload abandoned.*", 90).group(0)
    assert "IsADirectoryError" in line and "not the code on disk" in line, line
    assert all(alive(pid) for pid in old)
    status, body = answer(server)
    assert status == 200 and body.endswith(" ok"), (status, body)
    assert server.proc.poll() is None

    status, body = unix_get(admin, "/readyz")
    assert status == 200, "a failed deploy must not take the instance out of rotation"
    assert body.startswith(b"ready, but the workers run code older than the code on disk"), body
    assert b"IsADirectoryError" in body, body
    stale = json.loads(unix_get(admin, "/stats.json")[1])["stale"]
    assert stale and "IsADirectoryError" in stale["reason"], stale
    assert "ferrule_code_stale 1" in unix_get(admin, "/metrics")[1].decode().splitlines()
    page = unix_get(admin, "/")[1].decode()
    assert 'class="stale"' in page and "older than the code on disk" in page

    flag.rmdir()
    flag.write_text("fixed")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_output(r"The workers run the code on disk again", LIVENESS)
    assert unix_get(admin, "/readyz") == (200, b"ready\n")
    assert json.loads(unix_get(admin, "/stats.json")[1])["stale"] is None
    assert "ferrule_code_stale 0" in unix_get(admin, "/metrics")[1].decode().splitlines()
    # The old workers were told to stop; one may still take a connection on its way out.
    wait_until(
        lambda: (a := answer(server))[1].endswith(" fixed") or Unmet(a),
        LIVENESS,
        what="a new worker's answer",
    )


def test_ttin_and_ttou_add_and_remove_a_worker(workers):
    server = workers()
    wait_ready_count(server, 2)
    server.proc.send_signal(signal.SIGTTIN)
    server.wait_for_output(r"now 3 worker processes", LIVENESS)
    third = wait_ready_count(server, 3)[2]
    server.proc.send_signal(signal.SIGTTOU)
    server.wait_for_output(r"now 2 worker processes", LIVENESS)
    server.wait_for_output(rf"Worker process {third} exited", LIVENESS)
    assert answer(server)[0] == 200


# -- recycling -----------------------------------------------------------------------------


def test_max_requests_with_jitter_replaces_a_worker_without_failing_requests(workers):
    server = workers("--max-requests", "10", "--max-requests-jitter", "5")
    wait_ready_count(server, 2)
    for _ in range(80):
        assert answer(server)[0] == 200
    m = server.wait_for_output(r"has served (\d+) requests \(--max-requests\): replacing it")
    assert 10 <= int(m.group(1)) <= 15
    wait_ready_count(server, 3)


def test_max_rss_replaces_a_worker_that_grows(workers):
    server = workers("--max-rss", "150")
    wait_ready_count(server, 2)
    status, body = answer(server, "/leak?mb=200")
    assert status == 200
    leaky = int(body.split()[1])
    server.wait_for_output(
        rf"Worker process {leaky} uses \d+ MB, over --max-rss \(150 MB\)", LIVENESS
    )
    server.wait_for_output(rf"Worker process {leaky} exited", LIVENESS)
    wait_ready_count(server, 3)
    assert answer(server)[0] == 200


def test_worker_timeout_kills_a_worker_stuck_in_a_c_call(workers):
    server = workers("--timeout", "1", "--cancel-grace", "0.3", "--worker-timeout", "2")
    wait_ready_count(server, 2)
    status, body = answer(server, "/stuck")
    assert status == 504
    m = server.wait_for_output(
        r"Worker process (\d+) has kept a request running [\d.]+s after it was cancelled "
        r"\(--worker-timeout\): killing it\. Requests in flight: GET /stuck \(id \w+, cancelled",
        LIVENESS,
    )
    stuck = int(m.group(1))
    wait_until(lambda: gone(stuck), LIVENESS, what="the stuck worker killed")
    wait_ready_count(server, 3)
    assert answer(server)[0] == 200


# -- logs ----------------------------------------------------------------------------------


def test_sigusr1_reopens_the_log_file_in_the_master_and_the_workers(tmp_path):
    # As logrotate does: move the file away, then SIGUSR1; the master and the workers that
    # were already running write to a new file at the old path.
    log = tmp_path / "ferrule.log"
    sock = tmp_path / "s.sock"
    server = start(
        [
            "--workers",
            "2",
            "--bind",
            f"unix:{sock}",
            "--log-file",
            str(log),
            "--access-log",
            "procapp:application",
        ],
        expect_ready=False,
    )

    def logged(text: str):
        """For wait_until: the log file holds `text`."""
        if not log.exists():
            return Unmet(f"no {log}")
        held = log.read_text()
        return text in held or Unmet({"last lines": held.splitlines()[-3:]})

    try:
        wait_until(
            lambda: logged("Ready to accept requests"),
            LIVENESS,
            what="the ready line in the log file",
        )
        before = pids_in(log.read_text())
        log.rename(tmp_path / "ferrule.log.1")
        server.proc.send_signal(signal.SIGUSR1)
        wait_until(
            lambda: logged("reopened the log file"),
            LIVENESS,
            what="the master's line in the new file",
        )
        conn_ok = set()
        for _ in range(20):
            # The log goes to the file, so the server object never saw its address.
            status, body = unix_get(sock, "/")
            assert status == 200
            conn_ok.add(int(body.split()[1]))

        def access_lines():
            text = log.read_text()
            n = text.count('"GET / HTTP/1.1" 200')
            return n >= 20 or Unmet({"access lines": n, "last lines": text.splitlines()[-3:]})

        # Every access line of these requests, from workers started before the rotation, is
        # in the new file.
        wait_until(access_lines, LIVENESS, what="20 access lines in the new file")
        assert conn_ok <= before
        assert "GET / HTTP/1.1" not in (tmp_path / "ferrule.log.1").read_text()
    finally:
        server.stop(signal.SIGTERM, LIVENESS)


def pids_in(log_text: str) -> set[int]:
    return {int(p) for p in re.findall(r"Worker process (\d+) is ready", log_text)}


# -- the pid file --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"], ids=["single", "master"])
def test_the_pid_file_names_the_process_that_owns_the_listeners(serve, tmp_path, workers):
    # A stale file (its process gone) is replaced; the file names the single process or the
    # master, not a worker; it goes when the process exits.
    pid_file = tmp_path / "run" / "ferrule.pid"
    pid_file.parent.mkdir()
    pid_file.write_text("99999999\n")
    server = serve("procapp:application", "--workers", workers, "--pid", str(pid_file))
    if workers != "1":
        wait_ready_count(server, int(workers))
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(LIVENESS) == 0
    assert not pid_file.exists()
    assert os.listdir(pid_file.parent) == [], "nothing staged is left behind"


@pytest.mark.parametrize(
    ("workers", "mask", "mode"), [("1", "027", "0o640"), ("2", "077", "0o600")]
)
def test_umask_applies_to_the_files_the_application_creates(serve, tmp_path, workers, mask, mode):
    server = serve("procapp:application", "--workers", workers, "--umask", mask)
    if workers != "1":
        wait_ready_count(server, int(workers))
    created = tmp_path / f"created-{mask}"
    resp, body = server.request("GET", f"/touch?path={created}")
    assert (resp.status, body.decode()) == (200, mode)


def test_a_pid_file_naming_a_running_process_stops_the_start(tmp_path):
    pid_file = tmp_path / "ferrule.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: alive
    sock = tmp_path / "s.sock"
    server = start(
        ["--bind", f"unix:{sock}", "--pid", str(pid_file), "procapp:application"],
        expect_ready=False,
    )
    assert server.proc.wait(LIVENESS) == 2
    assert f"process {os.getpid()} is running" in server.output()
    assert pid_file.read_text() == f"{os.getpid()}\n", "another process's file is left alone"
    assert not sock.exists()


# -- start-up failures ---------------------------------------------------------------------


def test_workers_that_keep_failing_to_start_make_the_master_give_up(tmp_path):
    server = start(
        ["--workers", "2", "--bind", f"unix:{tmp_path / 's.sock'}", "procapp:application"],
        env={"PROCAPP_FAIL_IMPORT": "1"},
        expect_ready=False,
    )
    assert server.proc.wait(90) == 3
    out = server.output()
    assert "procapp was told to fail at import" in out
    assert "failed to start 5 times in a row" in out
    assert not (tmp_path / "s.sock").exists(), "the master removes its socket"


def test_giving_up_leaves_no_worker_behind(tmp_path):
    # One worker hangs in its import while the others fail: the master must not exit and
    # leave it holding the listener.
    sock = tmp_path / "s.sock"
    server = start(
        ["--workers", "2", "--bind", f"unix:{sock}", "procapp:application"],
        env={"PROCAPP_FIRST_HANGS": str(tmp_path / "first")},
        expect_ready=False,
    )
    assert server.proc.wait(90) == 3
    started = [int(p) for p in re.findall(r"Started worker process (\d+)", server.output())]
    assert len(started) >= 6
    for pid in started:
        wait_until(lambda pid=pid: gone(pid), LIVENESS, what=f"worker {pid} gone")


# -- statistics and health -----------------------------------------------------------------


def unix_get(sock: Path, path: str) -> tuple[int, bytes]:
    """GET `path` over the Unix socket `sock` (an admin listener, or a server's)."""
    conn = UnixHTTPConnection(str(sock))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def view_requests(snap: dict, label: str) -> int:
    """Requests finished under `label` in a /stats.json snapshot."""
    return sum(sum(m["status"]) for v in snap["views"] if v["label"] == label for m in v["methods"])


def test_statistics_are_merged_across_workers(workers, tmp_path):
    admin = tmp_path / "admin.sock"
    server = workers("--stats-bind", f"unix:{admin}")
    pids = wait_ready_count(server, 2)
    served = set()
    for _ in range(60):
        status, body = answer(server, "/merged")
        served.add(int(body.split()[1]))

    def merged():
        snap = json.loads(unix_get(admin, "/stats.json")[1])
        n = view_requests(snap, "/merged") if snap else None
        if n == 60:
            return snap
        by_worker = {w.get("pid"): w.get("requests") for w in snap.get("workers") or []}
        return Unmet({"/merged": n, "requests by worker": by_worker})

    snap = wait_until(merged, LIVENESS, what="60 requests in the merged statistics")
    rows = {w["pid"]: w for w in snap["workers"]}
    assert set(rows) == set(pids)
    assert sum(rows[p]["requests"] for p in rows) >= 60
    status, metrics = unix_get(admin, "/metrics")
    text = metrics.decode()
    for pid in pids:
        assert f'ferrule_worker_requests_total{{worker="{pid}"}}' in text
    # Counters survive a worker's replacement.
    os.kill(pids[0], signal.SIGKILL)
    wait_ready_count(server, 3)
    snap = json.loads(unix_get(admin, "/stats.json")[1])
    assert view_requests(snap, "/merged") == 60, "the killed worker's requests stay counted"
    assert served <= set(pids)


def test_healthz_and_readyz_during_start_run_and_drain(tmp_path):
    admin = tmp_path / "admin.sock"
    # The workers wait in their import until the test has seen the master starting.
    gate = tmp_path / "import-gate"
    server = start(
        [
            "--workers",
            "2",
            "--bind",
            f"unix:{tmp_path / 's.sock'}",
            "--stats-bind",
            f"unix:{admin}",
            "procapp:application",
        ],
        env={"PROCAPP_IMPORT_GATE": str(gate)},
        expect_ready=False,
    )
    try:
        wait_until(
            lambda: admin.exists() or Unmet({"last lines": server.output().splitlines()[-3:]}),
            LIVENESS,
            what="the admin socket",
        )

        def answers():
            try:
                return unix_get(admin, "/readyz")
            except OSError as e:
                return Unmet(e)

        status, body = wait_until(answers, LIVENESS, what="/readyz answers")
        assert status == 503 and body.startswith(b"not ready: starting"), body
        assert _try(admin, "/healthz")[0] == 200
        gate.touch()
        assert server.wait_ready(LIVENESS)
        assert unix_get(admin, "/readyz")[0] == 200
        server.proc.send_signal(signal.SIGTERM)
        wait_until(
            lambda: (r := _try(admin, "/readyz")) is None or r[0] == 503 or Unmet(r),
            LIVENESS,
            what="draining",
        )
    finally:
        gate.touch()
        server.stop(signal.SIGTERM, LIVENESS)


def _try(admin: Path, path: str):
    try:
        return unix_get(admin, path)
    except OSError:
        return None
