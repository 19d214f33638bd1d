"""Django Channels under `manage.py server`, as a Django team uses it: the Channels tutorial's
chat (tests/channels_site) — `ProtocolTypeRouter` with Django's handler for HTTP and
`AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(...)))` for WebSockets, an async
consumer (`ws/chat/<room>/`) and a sync one (`ws/syncchat/<room>/`) that join the room's
group on connect, `group_send` what they receive and leave the group on disconnect.

Against a live server: clients of a room see each other's messages and those of another room
see none, over TCP and a Unix socket; the sync consumer's code runs on ferrule's pool threads,
not on threads of asgiref's; the session's user reaches the consumer; a page of another site
is refused; a client that vanishes leaves its group; at SIGTERM each consumer's `disconnect()`
runs to its end. With `--workers 2` and channels_redis against a real `redis-server` (CI
installs it; skipped where it is not installed), clients spread over both workers all see
every message. And the tutorial's chat page in headless Chromium (tests/browser.py), with one
process and with two workers and Redis.

Each consumer tells its client where it runs: a "hello" after accepting, then with every
message the pid and thread that received it from the sender and that delivered it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import test_django
from browser import browser_or_skip
from conftest import TESTS
from helpers import Unmet, free_port, wait_until
from test_django import ManagedServer
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect, unix_connect

for _module in ("channels", "channels_redis"):
    if importlib.util.find_spec(_module) is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"{_module} is not installed: see requirements-dev.txt")
        pytest.skip(
            f"{_module} is not installed (pip install -r requirements-dev.txt)",
            allow_module_level=True,
        )

SITE = TESTS / "channels_site"
# Generous bounds for what must happen (a message arriving, a server starting): the machine
# is shared and loaded; a broken server fails by exceeding them, not a slow one.
LIVENESS = 30
CONSUMERS = ["chat", "syncchat"]
# How each consumer names itself in its log lines.
KIND = {"chat": "async", "syncchat": "sync"}


# --- the project ------------------------------------------------------------------------------


def site_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CHANNELS_SITE_REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="channels_site.settings",
        CHANNELS_SITE_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage(args: list[str], env: dict[str, str]):
    return test_django.manage(args, env, timeout=120, site=SITE)


def start_site(args: list[str], env: dict[str, str]) -> ManagedServer:
    """`manage.py server ARGS --noreload` from the project's directory, as a developer
    starts it, once it says it is ready."""
    return test_django.start_server([*args, "--noreload"], env, timeout=LIVENESS * 2, site=SITE)


def errors_in(server: ManagedServer, since: int) -> list[str]:
    """Lines the server printed after offset `since` of its output that report an error."""
    new = server.output()[since:]
    return [line for line in new.splitlines() if "[ERROR]" in line or "Traceback" in line]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A migrated database with a user, alice, and the session cookie of her login."""
    path = tmp_path_factory.mktemp("channels_site")
    env = site_env(path)
    done = manage(["migrate", "--noinput", "-v0"], env)
    assert done.returncode == 0, done.stdout
    login = (
        "from django.contrib.auth.models import User\n"
        "from django.test import Client\n"
        "User.objects.create_user('alice', password='wonderland')\n"
        "c = Client()\n"
        "assert c.login(username='alice', password='wonderland')\n"
        "print('sessionid=' + c.cookies['sessionid'].value)\n"
    )
    done = manage(["shell", "-c", login], env)
    assert done.returncode == 0, done.stdout
    cookie = next(line for line in done.stdout.splitlines() if line.startswith("sessionid="))
    (path / "alice.cookie").write_text(cookie)
    return path


@pytest.fixture(scope="module")
def tcp_site(data_dir):
    server = start_site(["127.0.0.1:0"], site_env(data_dir))
    yield server
    assert server.finish() == 0, server.output()


@pytest.fixture(scope="module")
def unix_site(data_dir, tmp_path_factory):
    sock = tmp_path_factory.mktemp("sock") / "channels.sock"
    server = start_site(["--bind", f"unix:{sock}"], site_env(data_dir))
    yield server
    assert server.finish() == 0, server.output()


@pytest.fixture(params=["tcp", "unix"])
def site(request):
    """The project with the in-memory channel layer, one process; over TCP, then Unix."""
    return request.getfixturevalue(f"{request.param}_site")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A `redis-server` of the module's own on a free port, nothing saved to disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            raise RuntimeError("redis-server is not installed: .ci/run should have installed it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = workdir / "redis.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def answers_ping():
        if proc.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError as e:
            return Unmet(repr(e))

    try:
        wait_until(answers_ping, LIVENESS, interval=0.05, what="redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def redis_site(data_dir, redis_url):
    """The project with channels_redis, served by two worker processes."""
    env = site_env(data_dir, CHANNELS_SITE_REDIS_URL=redis_url)
    server = start_site(["127.0.0.1:0", "--workers", "2"], env)
    yield server
    assert server.finish() == 0, server.output()


# --- a chat client ----------------------------------------------------------------------------


def room() -> str:
    """A room of the test's own (the layer's groups outlive a test)."""
    return "r" + uuid.uuid4().hex[:12]


def origin_of(server) -> str:
    if server.is_unix:
        return "http://localhost"
    host, port = server.address
    return f"http://{host}:{port}"


def ws(server, path: str, origin: str | None = None, headers: dict | None = None):
    """A `websockets` client of `path`, sending the Origin a page of the site would."""
    kw = dict(
        origin=origin or origin_of(server),
        additional_headers=headers,
        open_timeout=LIVENESS,
        close_timeout=10,
        proxy=None,
    )
    if server.is_unix:
        return unix_connect(server.address, f"ws://localhost{path}", **kw)
    host, port = server.address
    return connect(f"ws://{host}:{port}{path}", **kw)


class Chatter:
    """One client in a room; `hello` is what the consumer said after accepting."""

    def __init__(self, conn):
        self.conn = conn
        self.hello = self.next()
        assert self.hello["type"] == "hello", self.hello

    def say(self, text: str) -> None:
        self.conn.send(json.dumps({"message": text}))

    def next(self) -> dict:
        """The next message from the consumer; an error if none comes within LIVENESS."""
        try:
            return json.loads(self.conn.recv(timeout=LIVENESS))
        except TimeoutError:
            raise AssertionError(f"no message within {LIVENESS}s") from None

    def messages(self, n: int) -> list[dict]:
        return [self.next() for _ in range(n)]


def join(stack: contextlib.ExitStack, server, consumer: str, name: str, **kw) -> Chatter:
    return Chatter(stack.enter_context(ws(server, f"/ws/{consumer}/{name}/", **kw)))


def is_pool_thread(name: str) -> bool:
    """A thread of ferrule's pool ("ferrule-worker-N"); not asgiref's
    ("ThreadPoolExecutor-…", "sync_to_async…")."""
    return name.startswith("ferrule-worker-")


def where_code_ran(consumer: str, chatters: list[Chatter], got: list[dict]) -> None:
    """Every handler of the async consumer ran on the loop, every one of the sync consumer
    on a pool thread."""
    threads = [c.hello["thread"] for c in chatters]
    threads += [m["thread"] for m in got] + [m["sender_thread"] for m in got]
    if consumer == "chat":
        assert set(threads) == {"ferrule-loop"}, threads
    else:
        assert all(is_pool_thread(t) for t in threads), threads


def count_in_output(server, text: str, n: int):
    def seen():
        found = server.output().count(text)
        return found >= n or Unmet(f"{found} of {n} lines with {text!r}")

    return seen


# --- one process, in-memory layer, TCP and Unix -----------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_clients_of_a_room_see_its_messages_and_no_other_rooms(site, consumer):
    mark = len(site.output())
    room_a, room_b = room(), room()
    with contextlib.ExitStack() as stack:
        a1 = join(stack, site, consumer, room_a)
        a2 = join(stack, site, consumer, room_a)
        b = join(stack, site, consumer, room_b)
        assert [c.hello["room"] for c in (a1, a2, b)] == [room_a, room_a, room_b]
        assert {c.hello["user"] for c in (a1, a2, b)} == {"AnonymousUser"}

        a1.say("a1: hi")
        a2.say("a2: hello")
        got = {}
        for name, c in (("a1", a1), ("a2", a2)):
            got[name] = c.messages(2)
            # Each sees both, its own echo included.
            assert sorted(m["message"] for m in got[name]) == ["a1: hi", "a2: hello"], got
        # Room A's messages reached every channel of room A before the above returned: had
        # any gone to room B's channel, it would be queued there before B's own.
        b.say("b: anyone here?")
        assert b.next()["message"] == "b: anyone here?"
        a2.say("a2: bye")
        for c in (a1, a2):
            assert c.next()["message"] == "a2: bye", "room B's message reached room A"
        where_code_ran(consumer, [a1, a2, b], got["a1"] + got["a2"])

    # The clients closed (1000): each consumer's disconnect left its group.
    line = (
        f"disconnect consumer={'async' if consumer == 'chat' else 'sync'} room={room_a} code=1000"
    )
    wait_until(count_in_output(site, line, 2), LIVENESS, what="both room A disconnects")
    assert errors_in(site, mark) == []


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_a_client_that_vanishes_leaves_its_group(site, consumer):
    mark = len(site.output())
    name = room()
    with contextlib.ExitStack() as stack:
        stays = join(stack, site, consumer, name)
        with ws(site, f"/ws/{consumer}/{name}/") as goes:
            assert json.loads(goes.recv(timeout=LIVENESS))["type"] == "hello"
            # Gone without a close frame, as a phone that loses its network.
            goes.socket.shutdown(socket.SHUT_RDWR)
            line = f"disconnect consumer={KIND[consumer]} room={name} code=1006"
            wait_until(count_in_output(site, line, 1), LIVENESS, what="the abnormal close")
        stays.say("still here")
        assert stays.next()["message"] == "still here"
    assert errors_in(site, mark) == []


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_the_session_user_reaches_the_consumer(site, data_dir, consumer):
    cookie = (data_dir / "alice.cookie").read_text()
    with contextlib.ExitStack() as stack:
        alice = join(stack, site, consumer, room(), headers={"Cookie": cookie})
        anonymous = join(stack, site, consumer, room())
    assert alice.hello["user"] == "alice"
    assert anonymous.hello["user"] == "AnonymousUser"


def test_a_page_of_another_site_is_refused(site):
    with pytest.raises(InvalidStatus) as refused:
        with ws(site, f"/ws/chat/{room()}/", origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_at_shutdown_each_consumer_finishes_its_disconnect(data_dir, consumer):
    """SIGTERM closes the sockets with 1001 (going away), and each consumer's `disconnect()`
    runs to its end (it leaves the group, then logs) before the process exits: what a
    project does there (leave groups, mark a user offline) must not be lost at every
    deploy."""
    server = start_site(["127.0.0.1:0"], site_env(data_dir))
    name = room()
    try:
        with contextlib.ExitStack() as stack:
            chatters = [join(stack, server, consumer, name) for _ in range(3)]
            server.proc.send_signal(signal.SIGTERM)
            for c in chatters:
                with pytest.raises(ConnectionClosed) as closed:
                    c.conn.recv(timeout=LIVENESS)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # The process exits by itself once the disconnect handlers are done (finish() would
        # signal again, which means "now").
        code = server.proc.wait(LIVENESS)
    finally:
        server.finish()
    assert code == 0, server.output()
    line = f"disconnect consumer={KIND[consumer]} room={name} code=1001"
    assert server.output().count(line) == 3, server.output()


# --- two workers, Redis -----------------------------------------------------------------------


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_two_workers_with_redis_every_client_sees_every_message(redis_site, consumer):
    mark = len(redis_site.output())
    name = room()
    with contextlib.ExitStack() as stack:
        clients: list[Chatter] = []
        # Until both workers hold some: ten at least, more if they all landed on one.
        while len(clients) < 10 or len({c.hello["pid"] for c in clients}) < 2:
            assert len(clients) < 40, f"40 connections, all on {clients[0].hello['pid']}"
            clients.append(join(stack, redis_site, consumer, name))
        pids = {c.hello["pid"] for c in clients}
        assert len(pids) == 2 and redis_site.proc.pid not in pids, pids

        for i, c in enumerate(clients):
            c.say(f"message {i}")
        expected = sorted(f"message {i}" for i in range(len(clients)))
        everything = []
        for c in clients:
            got = c.messages(len(clients))
            assert sorted(m["message"] for m in got) == expected
            # Delivered by the worker that holds this client's socket.
            assert {m["pid"] for m in got} == {c.hello["pid"]}
            everything += got
        # Messages crossed from one worker to the other.
        assert {(m["sender_pid"], m["pid"]) for m in everything} >= {
            (p, q) for p in pids for q in pids
        }
        where_code_ran(consumer, clients, everything)
    assert errors_in(redis_site, mark) == []


# --- the chat page in Chromium ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with browser_or_skip(900, 700) as b:
        yield b


def chat_page(browser, server, name: str):
    """A tab showing the room's page, its socket open."""
    page = browser.page()

    def is_open():
        state = page.evaluate("document.body.dataset.state")
        if state == "closed":
            raise AssertionError(f"the chat socket of {name} closed: {page.errors}")
        return state == "open" or Unmet(state)

    try:
        page.open(f"{origin_of(server)}/chat/{name}/")
        wait_until(is_open, LIVENESS, interval=0.05, what=f"the chat socket of {name} to open")
    except BaseException:
        close_page(page)
        raise
    return page


def close_page(page) -> None:
    """Close the tab (its socket with it) and the connection to it."""
    with contextlib.suppress(Exception):
        page.call("Page.close")
    page.close()


def type_line(page, text: str) -> None:
    """Type `text` into the message box and press Enter, as a person does."""
    page.call("Page.bringToFront")
    page.evaluate("document.querySelector('#chat-message-input').focus()")
    page.call("Input.insertText", text=text)
    for kind in ("keyDown", "keyUp"):
        page.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            nativeVirtualKeyCode=13,
        )


def chat_log(page) -> list[str]:
    return page.evaluate("document.querySelector('#chat-log').value").splitlines()


def log_of(page, want):
    """A wait_until predicate: the page's chat log satisfies `want`."""

    def check():
        lines = chat_log(page)
        return want(lines) or Unmet(lines)

    return check


@pytest.mark.parametrize("deployment", ["tcp_site", "redis_site"])
def test_chat_pages_in_chromium(browser, request, deployment):
    """Two tabs in room A see each other's lines, a tab in room B none of them; with one
    process (in-memory layer) and with two workers (Redis)."""
    server = request.getfixturevalue(deployment)
    mark = len(server.output())
    room_a, room_b = room(), room()
    pages = []
    try:
        pages += [chat_page(browser, server, room_a) for _ in range(2)]
        pages.append(chat_page(browser, server, room_b))
        a1, a2, b = pages

        type_line(a1, "hi from the first tab")
        type_line(a2, "hello from the second")
        both = {"hi from the first tab", "hello from the second"}
        for page in (a1, a2):
            wait_until(log_of(page, lambda lines: set(lines) == both), LIVENESS, what="both lines")

        type_line(b, "anyone in B?")
        wait_until(log_of(b, lambda lines: lines), LIVENESS, what="room B's own line")
        assert chat_log(b) == ["anyone in B?"]

        type_line(a1, "bye")
        for page in (a1, a2):
            wait_until(log_of(page, lambda lines: lines[-1:] == ["bye"]), LIVENESS, what="bye")
            assert len(chat_log(page)) == 3, "room B's line reached room A"

        for page in pages:
            assert page.errors == [], page.errors
    finally:
        for page in pages:
            close_page(page)
    assert errors_in(server, mark) == []
