"""Applications that break the WSGI rules, one per path. The server must answer 500 (or, once
the response has started, abort it), log why naming the offending value, call close() on
any iterable it got, and keep serving.

Each returned iterable records `fixture: errors body created path=PATH` when it is made
(only once start_response has returned: a server may reject a status or header right there)
and `fixture: errors close() called path=PATH` when closed.
"""

import sys

from _record import record

OK_HEADERS = [("Content-Type", "text/plain")]


class Body:
    """An iterable response that records close(); `fail_at` raises on that chunk index."""

    def __init__(self, path, chunks, fail_at=None, before_chunk=None):
        self.path = path
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.before_chunk = before_chunk
        self.i = 0
        record(f"errors body created path={path}")

    def __iter__(self):
        return self

    def __next__(self):
        i = self.i
        self.i += 1
        if self.before_chunk is not None:
            self.before_chunk(i)
        if i == self.fail_at:
            raise RuntimeError(f"errors-app: iterator failed at chunk {i}")
        if i >= len(self.chunks):
            raise StopIteration
        return self.chunks[i]

    def close(self):
        record(f"errors close() called path={self.path}")


def ok(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, ("Content-Length", "2")])
    return Body("/ok", [b"ok"])


def raise_before(environ, start_response):
    raise RuntimeError("errors-app: raised before start_response")


def raise_in_iter(environ, start_response):
    start_response("200 OK", OK_HEADERS)
    return Body("/raise-in-iter", [b"never sent"], fail_at=0)


def raise_late(environ, start_response):
    # The first chunk goes out (headers sent), then the iterator fails: the response can only
    # be cut short, never completed.
    start_response("200 OK", OK_HEADERS)
    return Body("/raise-late", [b"first chunk,", b"never sent"], fail_at=1)


def return_none(environ, start_response):
    start_response("200 OK", OK_HEADERS)
    return None


def return_int(environ, start_response):
    start_response("200 OK", OK_HEADERS)
    return 42


def return_str(environ, start_response):
    # A str is iterable but its items are not bytes.
    start_response("200 OK", OK_HEADERS)
    return "errors-app: a str body"


def yield_str(environ, start_response):
    start_response("200 OK", OK_HEADERS)
    return Body("/yield-str", ["errors-app: a str chunk"])


def start_twice(environ, start_response):
    start_response("200 OK", OK_HEADERS)
    start_response("201 Created", OK_HEADERS)
    return Body("/start-twice", [b"twice"])


def exc_info_before_body(environ, start_response):
    # Legal: the headers are not sent yet, so the app may replace them.
    start_response("200 OK", OK_HEADERS)
    try:
        raise ValueError("errors-app: handled error")
    except ValueError:
        headers = [("Content-Type", "text/plain"), ("Content-Length", "8")]
        start_response("503 Replaced", headers, sys.exc_info())
    return Body("/exc-info-before-body", [b"replaced"])


def exc_info_after_body(environ, start_response):
    # Illegal to replace: the first chunk was sent, so start_response must re-raise exc_info.
    start_response("200 OK", OK_HEADERS)

    def before_chunk(i):
        if i == 1:
            try:
                raise ValueError("errors-app: error after the headers were sent")
            except ValueError:
                start_response("500 Too Late", OK_HEADERS, sys.exc_info())

    return Body("/exc-info-after-body", [b"first chunk,", b"never sent"], before_chunk=before_chunk)


def bad_status(environ, start_response):
    start_response("abc", OK_HEADERS)
    return Body("/bad-status", [b"bad status"])


def status_no_reason(environ, start_response):
    start_response("200", OK_HEADERS)
    return Body("/status-no-reason", [b"no reason"])


def status_bytes(environ, start_response):
    start_response(b"200 OK", OK_HEADERS)
    return Body("/status-bytes", [b"bytes status"])


def header_newline(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, ("X-Split", "a\r\nX-Injected: yes")])
    return Body("/header-newline", [b"newline"])


def header_name_bytes(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, (b"X-Bytes-Name", "v")])
    return Body("/header-name-bytes", [b"bytes name"])


def header_value_int(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, ("X-Int-Value", 42)])
    return Body("/header-value-int", [b"int value"])


def header_name_space(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, ("X Bad Name", "v")])
    return Body("/header-name-space", [b"space"])


def header_value_non_latin1(environ, start_response):
    start_response("200 OK", [*OK_HEADERS, ("X-Wide", "smile \u263a")])
    return Body("/header-value-non-latin1", [b"wide"])


def two_content_lengths(environ, start_response):
    # Regression (review of issue 2): both headers reached the wire, framing used the last.
    start_response("200 OK", [*OK_HEADERS, ("Content-Length", "4"), ("Content-Length", "100")])
    return Body("/two-content-lengths", [b"x" * 100])


def hop_by_hop(name, value):
    def app(environ, start_response):
        start_response("200 OK", [*OK_HEADERS, (name, value)])
        return Body(environ["PATH_INFO"], [b"hop-by-hop"])

    return app


def write_callable(environ, start_response):
    # The legacy write() path: data written before the iterable, in order.
    write = start_response("200 OK", OK_HEADERS)
    write(b"written, ")
    write(b"")
    return Body("/write", [b"then ", b"returned"])


ROUTES = {
    "/ok": ok,
    "/raise-before": raise_before,
    "/raise-in-iter": raise_in_iter,
    "/raise-late": raise_late,
    "/return-none": return_none,
    "/return-int": return_int,
    "/return-str": return_str,
    "/yield-str": yield_str,
    "/start-twice": start_twice,
    "/exc-info-before-body": exc_info_before_body,
    "/exc-info-after-body": exc_info_after_body,
    "/bad-status": bad_status,
    "/status-no-reason": status_no_reason,
    "/status-bytes": status_bytes,
    "/header-newline": header_newline,
    "/header-name-bytes": header_name_bytes,
    "/header-value-int": header_value_int,
    "/header-name-space": header_name_space,
    "/header-value-non-latin1": header_value_non_latin1,
    "/hop-connection": hop_by_hop("Connection", "close"),
    "/hop-transfer-encoding": hop_by_hop("Transfer-Encoding", "chunked"),
    "/hop-keep-alive": hop_by_hop("Keep-Alive", "timeout=5"),
    "/hop-upgrade": hop_by_hop("Upgrade", "websocket"),
    "/write": write_callable,
    "/two-content-lengths": two_content_lengths,
}


def app(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", [*OK_HEADERS, ("Content-Length", "9")])
        return [b"not found"]
    return route(environ, start_response)


application = app
