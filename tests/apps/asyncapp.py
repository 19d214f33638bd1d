"""A WSGI app whose views wait on async work with `ferrule.wait`, `ferrule.gather` and
asgiref's `async_to_sync`; what happened is in the JSON response and, for what happens after
the client is gone, in `fixture: ...` lines (see _record.py).

Routes (query parameters in brackets):
  /wait [v]            wait on a coroutine returning v; where it ran
  /raise               a coroutine raises; the formatted traceback
  /timeout [t, tag]    wait with timeout t on a coroutine that would sleep 30 s
  /gather [exc]        three coroutines finishing in reverse order; exc=1: one raises, returned
  /gather-fail [tag]   one coroutine raises while another sleeps
  /sleep [s]           ferrule.wait(asyncio.sleep(s))
  /together [n, tag]   wait on a coroutine that returns once n requests with this tag wait at
                       the same time (false if they never do within 30 s)
  /loop                the loop and thread that ferrule.wait and async_to_sync run on
  /hang [via, tag]     wait (via=wait, gather or a2s) on a 30 s sleep, for a client to leave
  /cancelled           ferrule.cancelled() in a request nobody cancelled
  /sensitive           thread-sensitive sync_to_async calls inside ferrule.wait and gather
  /asleep [via, s]     sleep s seconds via wait, gather, a2s or none; the request's asleep time
  /background [tag]    leave a task sleeping 30 s on the loop, for shutdown to cancel
"""

import asyncio
import json
import threading
import traceback

import ferrule
from _record import param, record
from asgiref.sync import async_to_sync, sync_to_async

# Tasks left running on the loop by /background (asyncio keeps only weak references).
BACKGROUND: set = set()
# /together: requests waiting right now, per tag (touched only on the loop thread).
WAITING: dict = {}


async def together(n: int, tag: str) -> bool:
    """Wait until `n` requests tagged `tag` are waiting at once: true only if their waits
    overlap, which one thread waiting after another could never make happen."""
    WAITING[tag] = WAITING.get(tag, 0) + 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while WAITING[tag] < n and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return WAITING[tag] >= n


def where() -> dict:
    return {
        "loop": id(asyncio.get_running_loop()),
        "thread": threading.current_thread().name,
        "ident": threading.get_ident(),
    }


async def value(v):
    await asyncio.sleep(0)
    return {"value": v, **where()}


async def explode_in_coroutine():
    await asyncio.sleep(0)
    raise ValueError("raised inside the coroutine")


async def sleeper(seconds: float, tag: str, result=None):
    record(f"coroutine started tag={tag}")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(f"coroutine cancelled tag={tag}")
        raise
    return result


async def after(seconds: float, result):
    await asyncio.sleep(seconds)
    return result


async def fail_after(seconds: float):
    await asyncio.sleep(seconds)
    raise KeyError("the second one failed")


def after_cancel(tag: str) -> None:
    """What the rest of a cancelled request sees: cancelled() is true, and a new wait raises
    at once without starting its coroutine."""
    record(f"cancelled() is {ferrule.cancelled()} tag={tag}")
    try:
        ferrule.wait(sleeper(30, f"{tag}-again"))
    except ferrule.RequestCancelled as e:
        record(f"second wait raised {type(e).__name__} tag={tag}")


def view(environ) -> object:
    path = environ["PATH_INFO"]
    tag = param(environ, "tag", "-")
    if path == "/wait":
        return ferrule.wait(value(param(environ, "v")))
    if path == "/raise":
        try:
            ferrule.wait(explode_in_coroutine())
        except ValueError as e:
            return {"type": type(e).__name__, "traceback": traceback.format_exc()}
        return {"type": None}
    if path == "/timeout":
        try:
            ferrule.wait(sleeper(30, tag), timeout=float(param(environ, "t", "0.05")))
        except TimeoutError as e:
            record(f"view timed out tag={tag}")
            return {"type": type(e).__name__, "builtin": type(e) is TimeoutError}
        return {"type": None}
    if path == "/gather":
        if param(environ, "exc"):
            results = ferrule.gather(
                after(0.03, "a"), fail_after(0.01), after(0.0, "c"), return_exceptions=True
            )
            return [r if isinstance(r, str) else f"{type(r).__name__}: {r}" for r in results]
        return ferrule.gather(after(0.03, "a"), after(0.02, "b"), after(0.0, "c"))
    if path == "/gather-fail":
        try:
            ferrule.gather(sleeper(30, tag), fail_after(0.01))
        except KeyError as e:
            return {"type": type(e).__name__}
        return {"type": None}
    if path == "/together":
        n, tag = int(param(environ, "n", "2")), param(environ, "tag", "-")
        return {"together": ferrule.wait(together(n, tag))}
    if path == "/sleep":
        ferrule.wait(asyncio.sleep(float(param(environ, "s", "0.2"))))
        return {"slept": True}
    if path == "/loop":
        return {
            "wait": ferrule.wait(value(None)),
            "a2s": async_to_sync(value)(None),
            "worker": threading.get_ident(),
        }
    if path == "/hang":
        via = param(environ, "via", "wait")
        record(f"hang started via={via} tag={tag}")
        try:
            if via == "wait":
                ferrule.wait(sleeper(30, tag))
            elif via == "gather":
                ferrule.gather(sleeper(30, tag), sleeper(30, tag))
            else:
                async_to_sync(sleeper)(30, tag)
        except BaseException as e:
            record(f"view raised {type(e).__name__} via={via} tag={tag}")
            if isinstance(e, ferrule.RequestCancelled):
                after_cancel(tag)
            raise
        return {"finished": True}
    if path == "/sensitive":
        ident = sync_to_async(threading.get_ident, thread_sensitive=True)

        async def twice():
            return [await ident(), await ident()]

        return {
            "worker": threading.get_ident(),
            "wait": ferrule.wait(twice()),
            "gather": ferrule.gather(ident(), ident(), twice()),
            "unsensitive": ferrule.wait(
                sync_to_async(threading.get_ident, thread_sensitive=False)()
            ),
        }
    if path == "/asleep":
        via, seconds = param(environ, "via", "wait"), float(param(environ, "s", "0.1"))
        if via == "wait":
            ferrule.wait(asyncio.sleep(seconds))
        elif via == "gather":
            ferrule.gather(asyncio.sleep(seconds), asyncio.sleep(seconds / 2))
        elif via == "a2s":
            async_to_sync(asyncio.sleep)(seconds)
        return {"asleep": environ["ferrule.request"].asleep}
    if path == "/cancelled":
        return {"cancelled": ferrule.cancelled()}
    if path == "/background":

        async def spawn():
            task = asyncio.get_running_loop().create_task(sleeper(30, tag))
            BACKGROUND.add(task)
            task.add_done_callback(BACKGROUND.discard)
            await asyncio.sleep(0)  # let it start

        ferrule.wait(spawn())
        record(f"background started tag={tag}")
        return {"started": True}
    return None


def app(environ, start_response):
    result = view(environ)
    if result is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    body = json.dumps(result).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


application = app
