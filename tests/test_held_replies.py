"""A saturated pool's held replies (src/pool/outbox.rs), seen through a live server.

While jobs queue behind a worker thread that keeps a core busy, the thread holds up to 16
finished replies and wakes the network core once for them. What a client must never see of
that: a reply given to someone else, or a finished reply kept back behind a long job the
thread took next (the monitor delivers what is held at each 2 ms tick).
"""

from __future__ import annotations

import threading
import time

from helpers import Conn, Unmet, wait_until

CLIENTS = 32


def test_held_replies_reach_their_own_clients_and_never_wait_for_a_long_view(serve, tmp_path):
    server = serve("heldapp:app")
    gate = tmp_path / "gate"
    stop = threading.Event()
    # (request number, body, monotonic time the response was read)
    seen: list[tuple[int, str, float]] = []
    errors: list[BaseException] = []

    def client(c: int) -> None:
        try:
            with Conn(server, timeout=60) as conn:
                n = 0
                while not stop.is_set():
                    i = c * 1_000_000 + n
                    resp = conn.request("GET", f"/cpu?i={i}")
                    seen.append((i, resp.body.decode(), time.monotonic()))
                    assert resp.status == 200, (resp.status, resp.body)
                    n += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    clients = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in clients:
        t.start()
    long_result: list = []
    try:
        # Saturated: every client's requests queue behind the busy thread.
        wait_until(lambda: len(seen) >= 500 or Unmet(len(seen)), 60, what="500 responses")

        def long_view() -> None:
            with Conn(server, timeout=120) as conn:
                long_result.append(conn.request("GET", f"/long?gate={gate}"))

        longer = threading.Thread(target=long_view)
        longer.start()

        started = server.wait_for_output(r"heldapp long started at ([\d.]+)", 60)
        long_started = float(started.group(1))
        # The long view holds its thread (and the GIL) for 3 s; replies finished before it
        # started must reach their clients meanwhile.
        time.sleep(3)
        gate_opened = time.monotonic()
        gate.write_text("open")
        longer.join(timeout=60)
    finally:
        gate.write_text("open")
        stop.set()
        for t in clients:
            t.join(timeout=60)
    assert not errors, errors[:3]
    assert long_result and long_result[0].body == b"long done", long_result
    before = []
    for i, body, received in seen:
        number, done = body.split()
        assert int(number) == i, f"request {i} got the reply to {number}"
        if float(done) < long_started:
            before.append((float(done), received))
    kept = [(done, received) for done, received in before if received >= gate_opened]
    assert not kept, (
        f"{len(kept)} replies finished before the long view started (at {long_started}) "
        f"reached their clients only after it ended: {kept[:5]}"
    )
    assert len(before) >= 500, len(before)
