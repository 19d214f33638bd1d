#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets into fuzz/seeds/<target>/.

admission and environ: the raw bytes of the 137 gunicorn request cases
(shared/conformance/gunicorn-requests/cases.json, `raw_b64`), plus a few heads with the
forwarding headers the environ target's trusted peer reads. range, static_path and config:
hand-written inputs below. Inputs that once crashed a target are kept beside them as
`regression-*` (the script leaves those alone). Each seed is named after what it is; the
script is idempotent and the output is committed, so `make fuzz` needs neither the shared
folder nor Python.

    python3 fuzz/seeds.py [path/to/cases.json]
"""

import base64
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
CASES = HERE.parent.parent.parent / "shared/conformance/gunicorn-requests/cases.json"

FORWARDED = [
    b"GET /a/b%20c?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example:8443\r\nX-Forwarded-Port: 443\r\n"
    b"X-Forwarded-Prefix: /shop\r\n\r\n",
    b'GET /a HTTP/1.1\r\nHost: [::1]:8080\r\nForwarded: for="[2001:db8::1]:4711";proto=https;'
    b"host=example.org, for=10.0.0.2\r\n\r\n",
    b"POST /a/x HTTP/1.1\r\nHost: h\r\nContent_Length: 5\r\nContent-Length: 3\r\n"
    b"X_Forwarded_For: 1.2.3.4\r\nCookie: a=1\r\nCookie: b=2\r\n\r\nabc",
    b"GET http://example.com:81/a/p?q HTTP/1.1\r\nHost: example.com:81\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET /caf%C3%A9/%FF%00 HTTP/1.0\r\nUser-Agent: \xe9t\xe9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
]

RANGE = [
    b"bytes=0-4",
    b"bytes=5-",
    b"bytes=-3",
    b"10\nbytes=0-0,2-3,-1",
    b"0\nbytes=0-",
    b"1\nbytes=-1",
    b"bytes=0-1,20-30, ,4-5",
    b"9223372036854775807\nbytes=0-,9223372036854775806-",
    b"18446744073709551615\nbytes=-18446744073709551615",
    b"bytes=99999999999999999999999-",
    b"bytes=0-99999999999999999999999",
    b"BYTES=1-2",
    b"items=0-1",
    b"bytes=5-4",
    b"100\n" + b"bytes=" + b",".join(b"%d-%d" % (i * 2, i * 2) for i in range(65)),
]

STATIC_PATH = [
    "/static/a.txt",
    "/static/css/app.css",
    "/static/sub/",
    "/static/sub",
    "/static/vendor/js/lib.js",
    "/static/vendor/cross",
    "/static/.well-known/security.txt",
    "/static/a%20b.txt",
    "/st%61tic/a.txt",
    "/static/../outside/secret",
    "/static/%2e%2e/outside/secret",
    "/static/css/up/secret",
    "/static/escape",
    "/static/escapedir/secret",
    "/static/inside",
    "/static/.env",
    "/static/%2eenv",
    "/static/.git/config",
    "/static/a.txt%00.png",
    "/static/..%5c..%5coutside%5csecret",
    "/static//etc/passwd",
    "/static%2fa.txt",
    "/escape",
]

CONFIG = [
    "app = 'hello:app'\nkeep_alive = 2.5\nthreads = 4\nbind = ['127.0.0.1:0', 'unix:/tmp/x']\n"
    "access_log = true\nmax_body_size = '10M'\npython_path = ['a', 'b']\n[env]\nA = 'x'\nB = 2\n",
    'working_dir = "."\ndjango_settings = "mysite.settings"\n'
    'bind = ["0.0.0.0:8000", "unix:/run/mysite/ferrule.sock"]\nworkers = 4\nthreads = 16\n'
    'max_requests = 10000\nmax_requests_jitter = 500\ntimeout = 30\naccess_log_format = "json"\n'
    'forwarded_allow_ips = "127.0.0.1,::1"\n\n[env]\nDJANGO_DEBUG = "0"\n',
    "keep-alive = 5",
    "threads = 'many'",
    "http = 'h3'",
    "static = ['/static/=static', '/media/=media']\nstatic_index = true\n",
    "limit_request_line = 0\nmax_body_size = '1G'\nbody_buffer_size = '64K'\n",
    "[env]\nFERRULE_THREADS = '4'",
    "t = 1979-05-27T07:32:00Z\n",
    'é = 1\n"\u00e9\u00e9" = 2\n',
    '{"threads": "x", "keep_alive": 1.5, "bind": ["127.0.0.1:0"]}',
    '{"threads": null, "env": {"A": "1"}}',
    "[1]",
    "64K",
    "18446744073709551615G",
]


def write(target: str, seeds: dict[str, bytes]) -> None:
    folder = HERE / "seeds" / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if not old.name.startswith("regression-"):  # inputs that once crashed stay
            old.unlink()
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")


def main() -> None:
    cases_path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else CASES
    cases = json.loads(cases_path.read_text())["cases"]
    requests = {c["name"].replace("/", "-"): base64.b64decode(c["raw_b64"]) for c in cases}
    write("admission", requests)
    requests.update({f"forwarded-{i:02}": raw for i, raw in enumerate(FORWARDED)})
    write("environ", requests)
    write("range", {f"range-{i:02}": v for i, v in enumerate(RANGE)})
    write("static_path", {f"path-{i:02}": p.encode() for i, p in enumerate(STATIC_PATH)})
    write("config", {f"config-{i:02}": c.encode() for i, c in enumerate(CONFIG)})


if __name__ == "__main__":
    main()
