"""`--user` and `--group` (issue 15): ferrule started as root binds, then the master and its
workers run as another user, so the application never runs as root.

The tests run as root (CI does) and switch to `nobody`/`nogroup`, checking every process's ids
in /proc, what the application sees, the owner of what it creates and of the Unix socket, a
port below 1024, and the refusals: an unknown user, a bare uid without a group, and a TLS key
only root can read.
"""

from __future__ import annotations

import http.client
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import ferrule
import pytest
from conftest import UnixHTTPConnection, ferrule_env, start
from helpers import Unmet, wait_until
from tls_helpers import Pki, tls_args

LIVENESS = 30
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture(scope="module", autouse=True)
def reachable_interpreter():
    """`nobody` must be able to run this interpreter and import ferrule, as a real
    deployment's user can. Here Python may live under a home only root may enter (pyenv in
    /root): each directory on the way that others cannot enter is opened to them (o+x, no
    listing) for these tests and closed again after."""
    needed = {Path(sys.executable).resolve(), Path(sys.base_prefix), Path(ferrule.__file__)}
    opened = []
    for target in needed:
        for directory in reversed(target.parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(directory, mode | stat.S_IXOTH)
                opened.append((directory, mode))
    try:
        probe = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-c", "import ferrule"],
            capture_output=True,
            text=True,
            env=ferrule_env(),
            timeout=LIVENESS,
        )
        assert probe.returncode == 0, probe.stderr
        yield
    finally:
        for directory, mode in reversed(opened):
            os.chmod(directory, mode)


@pytest.fixture
def shared_dir():
    """A directory `nobody` can reach and write (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory(prefix="ferrule-identity-") as d:
        os.chmod(d, 0o777)
        yield Path(d)


def privileged_port() -> int:
    for port in range(980, 1024):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024")


def ids(path: str) -> tuple[int, int]:
    """(uid, gid) of a process, from /proc: the real ones, which must match the effective."""
    status = Path(path).read_text()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
    gids = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
    assert len(set(uids)) == 1 and len(set(gids)) == 1, (uids, gids)
    return int(uids[0]), int(gids[0])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def get(conn, path: str) -> str:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, (resp.status, body)
        return body
    finally:
        conn.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_master_and_workers_run_as_the_user(shared_dir, workers):
    sock = shared_dir / "ferrule.sock"
    port = privileged_port()
    server = start(
        [
            "--bind",
            f"127.0.0.1:{port}",
            "--bind",
            f"unix:{sock}",
            "--workers",
            workers,
            "--user",
            "nobody",
            "--pid",
            str(shared_dir / "ferrule.pid"),
            "procapp:application",
        ]
    )
    try:
        master = server.proc.pid
        assert "Running as nobody:" in server.output()

        def workers_up():
            kids = children(master)
            return kids if len(kids) == int(workers) else Unmet(kids)

        kids = wait_until(workers_up, LIVENESS, what=f"{workers} worker processes")
        for pid in [master, *kids]:
            assert ids(f"/proc/{pid}/status") == (NOBODY.pw_uid, NOBODY.pw_gid), pid
        # What the application sees, over the port below 1024 and the Unix socket alike.
        expected = f"{NOBODY.pw_uid} {NOBODY.pw_gid} {NOBODY.pw_gid}"
        assert (
            get(http.client.HTTPConnection("127.0.0.1", port, timeout=LIVENESS), "/ids") == expected
        )
        assert get(UnixHTTPConnection(str(sock), timeout=LIVENESS), "/ids") == expected
        created = shared_dir / "made-by-the-app"
        get(UnixHTTPConnection(str(sock), timeout=LIVENESS), f"/touch?path={created}")
        assert (created.stat().st_uid, created.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
        assert (sock.stat().st_uid, sock.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    finally:
        assert server.stop() == 0, server.output()


def test_group_alone_changes_only_the_group(shared_dir):
    sock = shared_dir / "ferrule.sock"
    server = start(["--bind", f"unix:{sock}", "--group", "nogroup", "procapp:application"])
    try:
        assert get(UnixHTTPConnection(str(sock), timeout=LIVENESS), "/ids") == (
            f"0 {NOBODY.pw_gid} {NOBODY.pw_gid}"
        )
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--user", "no-such-user-xyz"],
            "invalid value 'no-such-user-xyz' for '--user': no such user",
        ),
        (["--user", "3999999"], "'--user 3999999' has no entry in the user database"),
        (["--group", "no-such-group-xyz"], "for '--group': no such group"),
    ],
)
def test_unknown_identities_stop_the_start(tmp_path, args, message):
    server = start(["--bind", "127.0.0.1:0", *args, "procapp:application"], expect_ready=False)
    assert server.proc.wait(LIVENESS) == 2, server.output()
    assert message in server.output()


def test_a_key_only_root_can_read_stops_the_start(tmp_path):
    pki = Pki(tmp_path)
    cert = pki.server()
    os.chmod(cert.key, 0o600)  # root's alone
    server = start(
        ["--bind", "127.0.0.1:0", *tls_args(cert), "--user", "nobody", "procapp:application"],
        expect_ready=False,
    )
    assert server.proc.wait(LIVENESS) == 2, server.output()
    out = server.output()
    assert "read as nobody:" in out and "make the file readable by it" in out, out
    assert "Worker process" not in out, out
