"""What the platform paths of the build under test do, seen from a view.

- `/paths`: the paths this build uses (`ferrule._ferrule.PLATFORM_PATHS`);
- `/burn?ms=N`: N ms of pure-Python CPU work, then the name of the thread that did it;
- `/sleep?s=S`: S seconds asleep (recorded as `platformapp slept`), then the thread's name;
  with `lock=PATH` instead of `s`, asleep until the test lets go of its lock on the file PATH.
  That wait is one blocking call (`flock`), as `time.sleep` is: the thread is asleep all
  along, by its run state and by its CPU clock, where a gate file polled every few
  milliseconds would run now and then.
"""

import fcntl
import threading
import time

from _record import answer_text, param, record


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/paths":
        from ferrule import _ferrule

        body = _ferrule.PLATFORM_PATHS
    elif path == "/burn":
        end = time.thread_time() + float(param(environ, "ms", "100")) / 1000
        n = 0
        while time.thread_time() < end:
            n += 1
        body = threading.current_thread().name
    elif path == "/sleep":
        tag = param(environ, "tag", "-")
        record(f"platformapp sleeping tag={tag}")
        if lock := param(environ, "lock"):
            with open(lock) as f:
                fcntl.flock(f, fcntl.LOCK_SH)
        else:
            time.sleep(float(param(environ, "s", "1")))
        record(f"platformapp slept tag={tag}")
        body = threading.current_thread().name
    else:
        body = None
    return answer_text(start_response, body)


application = app
