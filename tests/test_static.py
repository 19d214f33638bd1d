"""Static files served by the core with `--static URL_PATH=DIR` (issue 3), over TCP and Unix.

Real clients where users have them (curl, httpx, requests) and the raw `Conn` where the exact
bytes matter (traversal attempts, HEAD, keep-alive after a 304). The application behind the
mounts (`tests/apps/staticprobe.py`) prints every call, so the tests can show that static
requests never reach Python. Tests that only read the files share one tree and its servers
(`shared_tree`, `shared`); those that change files or count calls exactly have their own.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
import requests
from conftest import ferrule_env
from helpers import Conn, Unmet, wait_until

APP = "staticprobe:app"
NOT_FOUND_TEXT = b"There is no file at this URL."


# --- the files ----------------------------------------------------------------------------------


@dataclass
class Tree:
    root: Path
    outside: Path
    files: dict[str, bytes]

    def __getitem__(self, name: str) -> bytes:
        return self.files[name]


def make_tree(tmp_path: Path) -> Tree:
    """A static root with text, binary, precompressed, hashed, hidden and symlinked files, and
    a secret next to it that no URL may reach."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / ".well-known").mkdir()
    outside.mkdir()
    css = b"body { color: #c00; }\n" * 200
    files = {
        "hello.txt": b"hello, static world\n",
        "app.css": css,
        "app.css.gz": gzip.compress(css, mtime=0),
        # Not real brotli/zstd (the tests only compare bytes); real clients are only offered
        # gzip.
        "app.css.br": b"BR-BYTES:" + os.urandom(64),
        "app.css.zst": b"ZSTD-BYTES:" + os.urandom(64),
        "app.js": b"console.log('ferrule');\n" * 50,
        "data.json": b'{"ok": true}\n',
        "logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>\n',
        "feed.xml": b"<?xml version='1.0'?><feed/>\n",
        "page.html": b"<!doctype html><title>page</title>\n",
        "img.png": b"\x89PNG\r\n\x1a\n" + os.urandom(500),
        "blob": os.urandom(300),
        "big.bin": os.urandom(3 * 1024 * 1024 + 11),
        "app.0123456789ab.css": css,
        "app.0123456789ab.css.gz": gzip.compress(css, mtime=0),
        "sub/index.html": b"<!doctype html><title>sub index</title>\n",
        "sub/page.txt": b"a page in sub\n",
        ".env": b"SECRET_KEY=dotfile\n",
        ".well-known/security.txt": b"Contact: mailto:security@example.com\n",
        "café ü.txt": b"non-ASCII name\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (outside / "secret.txt").write_bytes(b"TOP SECRET outside the root\n")
    (root / "escape").symlink_to(outside / "secret.txt")
    (root / "escapedir").symlink_to(outside)
    (root / "escape-relative").symlink_to(Path("..") / "outside" / "secret.txt")
    (root / "inside").symlink_to("hello.txt")
    (root / "inside-absolute").symlink_to(root / "sub" / "page.txt")
    return Tree(root, outside, files)


@pytest.fixture
def tree(tmp_path) -> Tree:
    """The tree for one test, which may change it or count its server's application calls."""
    return make_tree(tmp_path)


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory) -> Tree:
    """The tree made once for the tests that only read it and what their own requests did:
    they share its servers too (`shared`, one per options and transport)."""
    return make_tree(tmp_path_factory.mktemp("shared-tree"))


def start_static(serve, tree: Tree, *args: str):
    return serve(APP, "--static", f"/static/={tree.root}", *args)


# --- clients ------------------------------------------------------------------------------------


def get(server, path: str, headers: dict | None = None, method: str = "GET"):
    """(status, headers as a case-insensitive dict, body) over a fresh connection."""
    resp, body = server.request(method, path, headers=headers)
    return resp.status, resp.headers, body


def unmet(answer) -> Unmet:
    """For wait_until: a `get` answer that is not the one awaited, in short."""
    status, headers, body = answer
    return Unmet(f"{status}, Content-Encoding {headers.get('Content-Encoding')}, {body[:80]!r}")


def curl(server, path: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """curl to `path` on the server: (status, last response's headers lowercased, body)."""
    if server.is_unix:
        target = ["--unix-socket", server.address, f"http://localhost{path}"]
    else:
        host, port = server.address
        target = [f"http://{host}:{port}{path}"]
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-D", "/dev/stderr", "-o", "-", *args, *target],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    blocks = done.stderr.decode("latin-1").strip().split("\r\n\r\n")
    lines = blocks[-1].split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, done.stdout


def httpx_client(server) -> httpx.Client:
    if server.is_unix:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=server.address), base_url="http://localhost"
        )
    host, port = server.address
    return httpx.Client(base_url=f"http://{host}:{port}")


def app_calls(server) -> list[str]:
    """Every path the application was called for so far. A last request to the application
    first, so every earlier call's line has been printed."""
    tag = f"/sync-{os.urandom(4).hex()}"
    assert get(server, tag)[0] == 200
    server.wait_for_output(re.escape(f"called GET {tag}"))
    return re.findall(r"fixture: staticprobe called \S+ (\S+)", server.output())


def multipart_parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(Content-Range, data) of each part of a multipart/byteranges body."""
    m = re.match(r"multipart/byteranges; boundary=(\S+)$", content_type)
    assert m, content_type
    delimiter = b"--" + m.group(1).encode()
    pieces = body.split(delimiter)
    assert pieces[0] == b"" and pieces[-1] == b"--\r\n", body[:200]
    parts = []
    for piece in pieces[1:-1]:
        head, sep, data = piece.partition(b"\r\n\r\n")
        assert sep and data.endswith(b"\r\n"), piece[:200]
        fields = dict(
            line.split(": ", 1) for line in head.decode().strip("\r\n").split("\r\n") if line
        )
        parts.append((fields["Content-Range"], data[:-2]))
    return parts


# --- a plain GET ----------------------------------------------------------------------------


def test_get_has_length_type_validators_and_caching(shared, shared_tree):
    server = start_static(shared, shared_tree)
    status, h, body = get(server, "/static/hello.txt")
    assert status == 200
    assert body == shared_tree["hello.txt"]
    assert h["Content-Length"] == str(len(body))
    assert h["Content-Type"] == "text/plain; charset=utf-8"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', h["ETag"]), h["ETag"]  # strong
    modified = (shared_tree.root / "hello.txt").stat().st_mtime
    assert int(parsedate_to_datetime(h["Last-Modified"]).timestamp()) == int(modified)
    assert h["Cache-Control"] == "public, max-age=3600"
    assert h["Accept-Ranges"] == "bytes"
    assert "Vary" not in h  # no precompressed sibling
    assert "Content-Encoding" not in h


CONTENT_TYPES = [
    ("app.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("feed.xml", "application/xml; charset=utf-8"),
    ("page.html", "text/html; charset=utf-8"),
    ("img.png", "image/png"),
    ("blob", "application/octet-stream"),
    ("big.bin", "application/octet-stream"),
]


def test_content_types_have_a_charset_for_text(shared, shared_tree):
    server = start_static(shared, shared_tree)
    for name, content_type in CONTENT_TYPES:
        status, h, body = get(server, f"/static/{name}")
        assert (status, h["Content-Type"]) == (200, content_type), name
        assert body == shared_tree[name]


def test_a_large_file_is_streamed_whole_to_real_clients(shared, shared_tree):
    server = start_static(shared, shared_tree)
    status, h, body = curl(server, "/static/big.bin")
    assert status == 200 and h["content-length"] == str(len(shared_tree["big.bin"]))
    assert hashlib.sha256(body).digest() == hashlib.sha256(shared_tree["big.bin"]).digest()
    with httpx_client(server) as client:
        r = client.get("/static/big.bin")
        assert r.status_code == 200 and r.content == shared_tree["big.bin"]


def test_http2_clients_get_the_same_answers(shared, shared_tree):
    server = start_static(shared, shared_tree)
    if server.is_unix:
        transport = httpx.HTTPTransport(http1=False, http2=True, uds=server.address)
        base = "http://localhost"
    else:
        transport = httpx.HTTPTransport(http1=False, http2=True)
        base = "http://{}:{}".format(*server.address)
    with httpx.Client(transport=transport, base_url=base) as client:
        r = client.get("/static/big.bin")
        assert r.http_version == "HTTP/2" and r.content == shared_tree["big.bin"]
        r = client.head("/static/app.css", headers={"Accept-Encoding": "identity"})
        assert r.headers["content-length"] == str(len(shared_tree["app.css"])) and r.content == b""
        inm = {"If-None-Match": r.headers["etag"], "Accept-Encoding": "identity"}
        assert client.get("/static/app.css", headers=inm).status_code == 304
        r = client.get(
            "/static/big.bin", headers={"Range": "bytes=0-9,20-29", "Accept-Encoding": "identity"}
        )
        assert r.status_code == 206
        parts = multipart_parts(r.content, r.headers["content-type"])
        assert [p[1] for p in parts] == [shared_tree["big.bin"][:10], shared_tree["big.bin"][20:30]]
        assert client.post("/static/app.css").status_code == 405


def test_percent_encoded_names_are_decoded(shared, shared_tree):
    server = start_static(shared, shared_tree)
    status, _, body = get(server, "/static/caf%C3%A9%20%C3%BC.txt")
    assert (status, body) == (200, shared_tree["café ü.txt"])
    status, _, body = get(server, "/static/%68ello.txt")
    assert (status, body) == (200, shared_tree["hello.txt"])


def test_head_has_the_get_headers_and_no_body(shared, shared_tree):
    server = start_static(shared, shared_tree)
    for name in ["hello.txt", "big.bin"]:
        with Conn(server) as c:
            g = c.request("GET", f"/static/{name}")
            h = c.request("HEAD", f"/static/{name}")
            assert h.status == 200 and h.body == b""
            for field in ["Content-Length", "Content-Type", "ETag", "Last-Modified"]:
                assert h.header(field) == g.header(field), field
            assert h.header("Content-Length") == str(len(shared_tree[name]))
            # The connection is still in step: no stray body bytes after the HEAD.
            again = c.request("GET", "/static/hello.txt")
            assert again.status == 200 and again.body == shared_tree["hello.txt"]
    status, h, _ = curl(server, "/static/big.bin", "-I")
    assert status == 200 and h["content-length"] == str(len(shared_tree["big.bin"]))


# --- conditional requests -----------------------------------------------------------------


def test_if_none_match_gives_304_with_validators_and_no_body(shared, shared_tree):
    server = start_static(shared, shared_tree)
    _, h, _ = get(server, "/static/app.css")
    etag = h["ETag"]
    with Conn(server) as c:
        for inm in [etag, f"W/{etag}", f'"nope", {etag}', "*", f'"a",W/{etag} ,"b"']:
            r = c.request("GET", "/static/app.css", headers=[("If-None-Match", inm)])
            assert r.status == 304, inm
            assert r.header("ETag") == etag
            assert r.header("Cache-Control") == "public, max-age=3600"
            assert r.header("Vary") == "Accept-Encoding"
            assert r.header("Content-Length") in (None, "0")
        r = c.request("HEAD", "/static/app.css", headers=[("If-None-Match", etag)])
        assert r.status == 304
        for inm in ['"nope"', etag[:-2] + '"', etag.strip('"')]:
            r = c.request("GET", "/static/app.css", headers=[("If-None-Match", inm)])
            assert r.status == 200 and r.body == shared_tree["app.css"], inm
        # A 304 leaves the connection usable.
        assert c.request("GET", "/static/hello.txt").body == shared_tree["hello.txt"]


def test_if_modified_since_gives_304_unless_if_none_match_differs(shared, shared_tree):
    server = start_static(shared, shared_tree)
    _, h, _ = get(server, "/static/hello.txt")
    last_modified = h["Last-Modified"]
    earlier = format_datetime(parsedate_to_datetime(last_modified).replace(year=2000), usegmt=True)
    for headers, want in [
        ({"If-Modified-Since": last_modified}, 304),
        ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 304),
        ({"If-Modified-Since": earlier}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        # If-None-Match wins over If-Modified-Since.
        ({"If-Modified-Since": last_modified, "If-None-Match": '"other"'}, 200),
    ]:
        assert get(server, "/static/hello.txt", headers)[0] == want, headers
    # curl's own conditional GET: -z DATE sends If-Modified-Since.
    status, _, body = curl(server, "/static/hello.txt", "-z", last_modified)
    assert (status, body) == (304, b"")
    status, _, body = curl(server, "/static/hello.txt", "-z", earlier)
    assert (status, body) == (200, shared_tree["hello.txt"])


def test_curl_etag_save_and_compare(shared, shared_tree, tmp_path):
    server = start_static(shared, shared_tree)
    etags = tmp_path / "etags"
    status, _, _ = curl(server, "/static/app.js", "--etag-save", str(etags))
    assert status == 200 and etags.read_text().strip().startswith('"')
    status, _, body = curl(server, "/static/app.js", "--etag-compare", str(etags))
    assert (status, body) == (304, b"")


def test_if_match_and_if_unmodified_since_give_412(shared, shared_tree):
    server = start_static(shared, shared_tree)
    _, h, _ = get(server, "/static/hello.txt")
    assert get(server, "/static/hello.txt", {"If-Match": h["ETag"]})[0] == 200
    assert get(server, "/static/hello.txt", {"If-Match": '"other"'})[0] == 412
    assert get(server, "/static/hello.txt", {"If-Unmodified-Since": h["Last-Modified"]})[0] == 200
    old = {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
    assert get(server, "/static/hello.txt", old)[0] == 412


def test_412_and_416_name_the_representation_they_judged(shared, shared_tree):
    server = start_static(shared, shared_tree)
    with Conn(server) as c:
        for accept in ["identity", "gzip"]:
            tag = c.request("GET", "/static/app.css", headers=[("Accept-Encoding", accept)])
            tag = tag.header("ETag")
            for headers, status in [
                ([("If-Match", '"other"')], 412),
                ([("Range", "bytes=999999-")], 416),
            ]:
                r = c.request(
                    "GET", "/static/app.css", headers=[("Accept-Encoding", accept), *headers]
                )
                assert r.status == status, (accept, headers)
                # The judged representation depends on Accept-Encoding: caches must know.
                assert r.header("ETag") == tag, (accept, headers)
                assert r.header("Vary") == "Accept-Encoding", (accept, headers)
        # Without siblings nothing varies.
        tag = c.request("GET", "/static/hello.txt").header("ETag")
        for headers in [[("If-Match", '"other"')], [("Range", "bytes=999999-")]]:
            r = c.request("GET", "/static/hello.txt", headers=headers)
            assert r.status in (412, 416) and r.header("ETag") == tag
            assert r.header("Vary") is None


# --- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["app.css", "big.bin"])  # from memory, and from disk
def test_single_ranges(shared, shared_tree, name):
    server = start_static(shared, shared_tree)
    data, n = shared_tree[name], len(shared_tree[name])
    for spec, first, last in [
        ("0-9", 0, 9),
        ("10-", 10, n - 1),
        ("-7", n - 7, n - 1),
        (f"{n - 3}-{n + 100}", n - 3, n - 1),
        ("0-0", 0, 0),
    ]:
        status, h, body = get(server, f"/static/{name}", {"Range": f"bytes={spec}"})
        assert status == 206, spec
        assert h["Content-Range"] == f"bytes {first}-{last}/{n}"
        assert h["Content-Length"] == str(last - first + 1)
        assert body == data[first : last + 1]
        assert h["ETag"] and h["Accept-Ranges"] == "bytes"
    status, h, body = curl(server, f"/static/{name}", "-r", "100-199")
    assert (status, body) == (206, data[100:200])
    with httpx_client(server) as client:
        # Ranges are of the representation sent; ask for the file itself.
        headers = {"Range": "bytes=-100", "Accept-Encoding": "identity"}
        r = client.get(f"/static/{name}", headers=headers)
        assert r.status_code == 206 and r.content == data[-100:]


@pytest.mark.parametrize("name", ["app.css", "big.bin"])
def test_multiple_ranges_are_multipart_byteranges(shared, shared_tree, name):
    server = start_static(shared, shared_tree)
    data, n = shared_tree[name], len(shared_tree[name])
    status, h, body = get(server, f"/static/{name}", {"Range": "bytes=0-9, 100-149, -5"})
    assert status == 206
    assert h["Content-Length"] == str(len(body))
    parts = multipart_parts(body, h["Content-Type"])
    assert parts == [
        (f"bytes 0-9/{n}", data[0:10]),
        (f"bytes 100-149/{n}", data[100:150]),
        (f"bytes {n - 5}-{n - 1}/{n}", data[n - 5 :]),
    ]
    # curl asks for the same with -r; overlapping ranges are merged into one.
    status, h, body = curl(server, f"/static/{name}", "-r", "0-99,50-149")
    assert status == 206 and h["content-range"] == f"bytes 0-149/{n}" and body == data[:150]
    status, h, body = curl(server, f"/static/{name}", "-r", "0-1,4-5")
    assert status == 206 and h["content-type"].startswith("multipart/byteranges; boundary=")
    parts = multipart_parts(body, h["content-type"])
    assert parts == [(f"bytes 0-1/{n}", data[0:2]), (f"bytes 4-5/{n}", data[4:6])]


def test_multipart_parts_carry_the_file_type(shared, shared_tree):
    server = start_static(shared, shared_tree)
    status, h, body = get(server, "/static/hello.txt", {"Range": "bytes=0-1,3-4"})
    assert status == 206
    assert body.count(b"Content-Type: text/plain; charset=utf-8\r\n") == 2


def test_unsatisfiable_range_is_416_with_the_length(shared, shared_tree):
    server = start_static(shared, shared_tree)
    n = len(shared_tree["hello.txt"])
    for spec in [f"{n}-", f"{n + 10}-{n + 20}", "-0"]:
        status, h, _ = get(server, "/static/hello.txt", {"Range": f"bytes={spec}"})
        assert status == 416, spec
        assert h["Content-Range"] == f"bytes */{n}"
    status, h, _ = curl(server, "/static/hello.txt", "-r", f"{n + 5}-")
    assert status == 416 and h["content-range"] == f"bytes */{n}"


def test_malformed_or_foreign_ranges_are_ignored(shared, shared_tree):
    server = start_static(shared, shared_tree)
    for spec in ["bytes=5-2", "bytes=abc", "items=0-1", "bytes=", "0-1", "bytes=0-1;x"]:
        status, _, body = get(server, "/static/hello.txt", {"Range": spec})
        assert (status, body) == (200, shared_tree["hello.txt"]), spec


def test_head_ignores_range(shared, shared_tree):
    server = start_static(shared, shared_tree)
    with Conn(server) as c:
        r = c.request("HEAD", "/static/hello.txt", headers=[("Range", "bytes=0-1")])
        assert r.status == 200 and r.header("Content-Length") == str(len(shared_tree["hello.txt"]))


def test_if_range_with_etag_or_date(shared, shared_tree):
    server = start_static(shared, shared_tree)
    _, h, _ = get(server, "/static/big.bin")
    etag, last_modified = h["ETag"], h["Last-Modified"]
    data = shared_tree["big.bin"]
    for if_range, want in [
        (etag, 206),
        (last_modified, 206),
        ('"stale"', 200),
        (f"W/{etag}", 200),  # If-Range needs a strong match
        ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ]:
        headers = {"Range": "bytes=0-99", "If-Range": if_range}
        status, _, body = get(server, "/static/big.bin", headers)
        assert status == want, if_range
        assert body == (data[:100] if want == 206 else data)


# --- precompressed siblings ---------------------------------------------------------------


ACCEPT_ENCODINGS = [
    (None, None),
    ("gzip", "gz"),
    ("gzip, deflate, br", "br"),
    ("gzip, deflate, br, zstd", "br"),
    ("gzip, zstd", "zst"),
    ("br;q=0.5, gzip", "gz"),
    ("br;q=0.5, gzip;q=0.8, zstd;q=0.1", "gz"),
    ("*", "br"),
    ("br;q=0, *", "zst"),
    ("identity", None),
    ("gzip;q=0.5, identity", None),
    ("gzip;q=0.5, identity;q=0", "gz"),
    ("deflate", None),
    ("x-gzip", "gz"),
]


def test_accept_encoding_chooses_the_sibling(shared, shared_tree):
    server = start_static(shared, shared_tree)
    # http.client would add its own Accept-Encoding; the raw Conn sends only what we say.
    with Conn(server) as c:
        for accept, sibling in ACCEPT_ENCODINGS:
            headers = [("Accept-Encoding", accept)] if accept is not None else []
            r = c.request("GET", "/static/app.css", headers=headers)
            assert r.status == 200
            assert r.header("Vary") == "Accept-Encoding"
            assert r.header("Content-Type") == "text/css; charset=utf-8"
            if sibling is None:
                assert r.header("Content-Encoding") is None, accept
                assert r.body == shared_tree["app.css"]
            else:
                coding = {"gz": "gzip", "br": "br", "zst": "zstd"}[sibling]
                assert r.header("Content-Encoding") == coding, accept
                assert r.body == shared_tree[f"app.css.{sibling}"]
                assert r.header("Content-Length") == str(len(shared_tree[f"app.css.{sibling}"]))


def test_each_representation_has_its_own_etag_and_304(shared, shared_tree):
    server = start_static(shared, shared_tree)
    tags = {}
    with Conn(server) as c:
        for coding in ["identity", "gzip", "br", "zstd"]:
            r = c.request("GET", "/static/app.css", headers=[("Accept-Encoding", coding)])
            tags[coding] = r.header("ETag")
        assert len(set(tags.values())) == 4, tags
        r = c.request(
            "GET",
            "/static/app.css",
            headers=[("Accept-Encoding", "gzip"), ("If-None-Match", tags["gzip"])],
        )
        assert r.status == 304 and r.header("ETag") == tags["gzip"]
        # The identity tag does not validate the gzip representation.
        r = c.request(
            "GET",
            "/static/app.css",
            headers=[("Accept-Encoding", "gzip"), ("If-None-Match", tags["identity"])],
        )
        assert r.status == 200 and r.header("Content-Encoding") == "gzip"


def test_ranges_apply_to_the_chosen_representation(shared, shared_tree):
    server = start_static(shared, shared_tree)
    gz = shared_tree["app.css.gz"]
    with Conn(server) as c:
        r = c.request(
            "GET", "/static/app.css", headers=[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")]
        )
        assert r.status == 206 and r.header("Content-Encoding") == "gzip"
        assert r.header("Content-Range") == f"bytes 0-9/{len(gz)}"
        assert r.body == gz[:10]
        # Several ranges of a compressed representation: the whole of it instead.
        r = c.request(
            "GET",
            "/static/app.css",
            headers=[("Accept-Encoding", "gzip"), ("Range", "bytes=0-1,5-6")],
        )
        assert r.status == 200 and r.body == gz


def test_real_clients_decode_the_gzip_sibling(shared, shared_tree):
    server = start_static(shared, shared_tree)
    with httpx_client(server) as client:
        r = client.get("/static/app.css", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == shared_tree["app.css"]
    status, h, body = curl(server, "/static/app.css", "--compressed", "-H", "Accept-Encoding: gzip")
    assert status == 200 and h["content-encoding"] == "gzip" and body == shared_tree["app.css"]
    if not server.is_unix:
        host, port = server.address
        r = requests.get(
            f"http://{host}:{port}/static/app.css", headers={"Accept-Encoding": "gzip"}, timeout=30
        )
        assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
        assert r.content == shared_tree["app.css"]
        r = requests.get(f"http://{host}:{port}/static/app.js", timeout=30)
        assert r.status_code == 200 and r.content == shared_tree["app.js"]
        assert "Content-Encoding" not in r.headers  # no sibling for app.js
        assert "Vary" not in r.headers


def test_a_sibling_older_than_its_file_is_not_served(serve, tree):
    css = tree.root / "app.css"
    stale = tree.root / "app.css.gz"
    mtime = css.stat().st_mtime_ns
    os.utime(stale, ns=(mtime, mtime - 60 * 10**9))  # compressed a minute before the last edit
    server = start_static(serve, tree)
    with Conn(server) as c:
        r = c.request("GET", "/static/app.css", headers=[("Accept-Encoding", "gzip")])
        assert r.status == 200 and r.header("Content-Encoding") is None
        assert r.body == tree["app.css"]
        r = c.request("GET", "/static/app.css", headers=[("Accept-Encoding", "br")])
        assert r.header("Content-Encoding") == "br"  # the others are current
    warning = f"not serving '{stale}': it is older than '{css}'"
    server.wait_for_output(re.escape(warning))
    # The next look-ups still leave it out, without saying so again: wait for one that
    # notices a change to the file's .br sibling.
    (tree.root / "app.css.br").write_bytes(b"NEW-BR")

    def new_br():
        answer = get(server, "/static/app.css", {"Accept-Encoding": "br"})
        return answer[2] == b"NEW-BR" or unmet(answer)

    wait_until(new_br, timeout=10, what="the new .br sibling")
    assert server.output().count(warning) == 1
    # Given the file's time again, it is served.
    os.utime(stale, ns=(mtime, mtime))

    def gzip_served():
        answer = get(server, "/static/app.css", {"Accept-Encoding": "gzip"})
        return answer[1].get("Content-Encoding") == "gzip" or unmet(answer)

    wait_until(gzip_served, timeout=10, what="the .gz sibling to be served")


# --- caching ------------------------------------------------------------------------------


def test_hashed_names_are_immutable_for_a_year(serve, tree):
    server = start_static(serve, tree, "--static-max-age", "60")
    year = "public, max-age=31536000, immutable"
    _, h, _ = get(server, "/static/app.0123456789ab.css")
    assert h["Cache-Control"] == year
    with Conn(server) as c:
        r = c.request("GET", "/static/app.0123456789ab.css", headers=[("Accept-Encoding", "gzip")])
        assert r.header("Content-Encoding") == "gzip" and r.header("Cache-Control") == year
        r = c.request(
            "GET", "/static/app.0123456789ab.css", headers=[("If-None-Match", r.header("ETag"))]
        )
        assert r.status == 200  # the gzip tag does not match the identity representation
        r = c.request(
            "GET", "/static/app.0123456789ab.css", headers=[("If-None-Match", r.header("ETag"))]
        )
        assert r.status == 304 and r.header("Cache-Control") == year
    _, h, _ = get(server, "/static/app.0123456789ab.css.gz")  # asked for by name
    assert h["Cache-Control"] == year and h["Content-Type"] == "application/gzip"
    _, h, _ = get(server, "/static/app.css")
    assert h["Cache-Control"] == "public, max-age=60"


def test_a_changed_file_is_served_fresh_after_revalidation(serve, tree):
    server = start_static(serve, tree)
    path = tree.root / "hello.txt"
    _, h, _ = get(server, "/static/hello.txt")
    old_tag = h["ETag"]
    path.write_bytes(b"changed content\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    # The cache trusts an entry for up to a second; then the change shows.
    wait_until(
        lambda: (a := get(server, "/static/hello.txt"))[2] == b"changed content\n" or unmet(a),
        timeout=10,
        what="the new content",
    )
    _, h, _ = get(server, "/static/hello.txt")
    assert h["ETag"] != old_tag and h["Content-Length"] == "16"
    path.unlink()
    wait_until(
        lambda: (a := get(server, "/static/hello.txt"))[0] == 404 or unmet(a),
        timeout=10,
        what="a 404",
    )


def test_a_file_created_after_a_404_is_served_after_revalidation(serve, tree):
    server = start_static(serve, tree)
    assert get(server, "/static/later.txt")[0] == 404
    assert get(server, "/static/later.txt")[0] == 404  # remembered as missing for a second
    (tree.root / "later.txt").write_bytes(b"here now")
    wait_until(
        lambda: (a := get(server, "/static/later.txt"))[::2] == (200, b"here now") or unmet(a),
        timeout=10,
        what="the new file",
    )


# --- safety -------------------------------------------------------------------------------


def test_every_answer_tells_browsers_not_to_sniff(serve, tree):
    server = start_static(serve, tree, "--static-index")
    _, h, _ = get(server, "/static/hello.txt")
    etag = h["ETag"]
    n = len(tree["hello.txt"])
    with Conn(server) as c:
        for method, path, headers, status in [
            ("GET", "/static/hello.txt", [], 200),
            ("HEAD", "/static/big.bin", [], 200),
            ("GET", "/static/big.bin", [("Range", "bytes=0-9")], 206),
            ("GET", "/static/hello.txt", [("Range", "bytes=0-1,3-4")], 206),
            ("GET", "/static/hello.txt", [("If-None-Match", etag)], 304),
            ("GET", "/static/hello.txt", [("If-Match", '"other"')], 412),
            ("GET", "/static/hello.txt", [("Range", f"bytes={n}-")], 416),
            ("GET", "/static/app.css", [("Accept-Encoding", "gzip")], 200),
            ("GET", "/static/sub", [], 301),
            ("GET", "/static/nope.txt", [], 404),
            ("GET", "/static/../outside/secret.txt", [], 404),
            ("DELETE", "/static/hello.txt", [], 405),
        ]:
            r = c.request(method, path, headers=headers)
            assert r.status == status, (method, path, headers)
            assert r.header("X-Content-Type-Options") == "nosniff", (method, path, headers)
            # Only media mounts (user uploads) are sandboxed.
            assert r.header("Content-Security-Policy") is None
    # The application's own answers are left alone.
    assert "X-Content-Type-Options" not in get(server, "/elsewhere")[1]


TRAVERSALS = [
    "/static/../outside/secret.txt",
    "/static/sub/../../outside/secret.txt",
    "/static/%2e%2e/outside/secret.txt",
    "/static/%2E%2E/outside/secret.txt",
    "/static/%2E%2E%2Foutside%2Fsecret.txt",
    "/static/..%2foutside%2fsecret.txt",
    "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/.%2e/outside/secret.txt",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/%2fetc/passwd",
    "/static/sub%2fpage.txt",
    "/static/%5c..%5coutside%5csecret.txt",
    "/static/..%5coutside%5csecret.txt",
    "/static/hello.txt%00",
    "/static/hello.txt%00.png",
    "/static/%00",
    "/static/./hello.txt",
    "/static/sub/./page.txt",
    "/static/escape",
    "/static/escape-relative",
    "/static/escapedir/secret.txt",
    "/static/.env",
    "/static/%2eenv",
    "/static/sub/",
    "/static/sub",
    "/static/",
    "/static/nope.txt",
    "/static/hello.txt/",
    "/static/hello.txt/x",
]


def test_no_path_leaves_the_root(shared, shared_tree):
    server = start_static(shared, shared_tree)
    with Conn(server) as c:
        for target in TRAVERSALS:
            r = c.request("GET", target)
            assert r.status == 404, target
            assert b"SECRET" not in r.body and b"root:" not in r.body, target
            assert NOT_FOUND_TEXT in r.body, target
    # The raw backslash is refused by the request parser or by the mount; never served.
    for target in ["/static/..\\outside\\secret.txt", "/static/sub\\page.txt"]:
        data = server.raw(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert re.match(rb"HTTP/1.1 (400|404) ", data), data[:100]
        assert b"SECRET" not in data and b"a page in sub" not in data
    # curl normalizes dot segments unless told not to.
    status, _, body = curl(server, "/static/../outside/secret.txt", "--path-as-is")
    assert status == 404 and b"SECRET" not in body
    # None of it reached the application.
    assert not [p for p in app_calls(server) if p.startswith("/static")]


def test_symlinks_inside_the_root_are_followed(shared, shared_tree):
    server = start_static(shared, shared_tree)
    assert get(server, "/static/inside")[::2] == (200, shared_tree["hello.txt"])
    assert get(server, "/static/inside-absolute")[::2] == (200, shared_tree["sub/page.txt"])


def test_dotfiles_are_hidden_but_well_known_is_served(shared, shared_tree):
    server = start_static(shared, shared_tree)
    assert get(server, "/static/.env")[0] == 404
    status, _, body = get(server, "/static/.well-known/security.txt")
    assert (status, body) == (200, shared_tree[".well-known/security.txt"])


def test_static_index_serves_index_html_and_adds_the_slash(serve, tree):
    server = start_static(serve, tree, "--static-index")
    status, h, body = get(server, "/static/sub/")
    assert (status, body) == (200, tree["sub/index.html"])
    assert h["Content-Type"] == "text/html; charset=utf-8"
    status, h, _ = get(server, "/static/sub?x=1")
    assert status == 301 and h["Location"] == "/static/sub/?x=1"
    assert get(server, "/static/")[0] == 404  # the root has no index.html
    assert get(server, "/static/hello.txt/")[0] == 404
    (tree.root / "index.html").write_bytes(b"root index")
    # A 404 is remembered for a second, like any look-up.
    wait_until(
        lambda: (a := get(server, "/static/"))[::2] == (200, b"root index") or unmet(a),
        timeout=10,
        what="the new index.html",
    )


def test_missing_files_under_a_mount_are_404_from_the_core(serve, tree):
    server = start_static(serve, tree)
    for path in ["/static/nope.css", "/static/sub/nope", "/static/deep/er/nope.js"]:
        status, h, body = get(server, path)
        assert status == 404 and NOT_FOUND_TEXT in body, path
    # Paths beside the mount are the application's.
    for path in ["/static", "/staticfoo/x", "/other/static/hello.txt"]:
        status, _, body = get(server, path)
        assert (status, body) == (200, f"app: {path}".encode()), path
    assert app_calls(server)[:3] == ["/static", "/staticfoo/x", "/other/static/hello.txt"]


def test_only_get_and_head(shared, shared_tree):
    server = start_static(shared, shared_tree)
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]:
        for path in ["/static/hello.txt", "/static/nope.txt"]:
            with Conn(server) as c:
                r = c.request(method, path)
                assert r.status == 405, (method, path)
                assert r.header("Allow") == "GET, HEAD"
        status, h, _ = curl(server, "/static/hello.txt", "-X", method, "--data-binary", "body")
        assert status == 405 and h["allow"] == "GET, HEAD"
    assert not [p for p in app_calls(server) if p.startswith("/static")]


# --- mounts and options -------------------------------------------------------------------


def test_a_directory_with_a_comma_is_mounted_with_the_flag(serve, tmp_path):
    odd = tmp_path / "assets,v2"
    odd.mkdir()
    (odd / "a.txt").write_bytes(b"from a comma directory")
    server = serve(APP, "--static", f"/a/={odd}")
    assert get(server, "/a/a.txt")[::2] == (200, b"from a comma directory")


def test_ferrule_static_holds_several_mounts(serve, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_bytes(b"second mount")
    env = {"FERRULE_STATIC": f"/static/={tree.root},/other/={other}"}
    server = serve(APP, env=env)
    assert get(server, "/static/hello.txt")[::2] == (200, tree["hello.txt"])
    assert get(server, "/other/b.txt")[::2] == (200, b"second mount")
    # The flag replaces the variable.
    server.stop()
    server = serve(APP, "--static", f"/only/={other}", env=env)
    assert get(server, "/only/b.txt")[::2] == (200, b"second mount")
    assert get(server, "/other/b.txt")[::2] == (200, b"app: /other/b.txt")


def test_the_same_url_twice_searches_both_directories(serve, tree, tmp_path):
    second = tmp_path / "second"
    second.mkdir()
    (second / "only-here.txt").write_bytes(b"from the second directory")
    (second / "hello.txt").write_bytes(b"shadowed by the first directory")
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "hello.txt").write_bytes(b"the more specific mount")
    server = start_static(
        serve, tree, "--static", f"/static={second}", "--static", f"/static/deeper/={nested}"
    )
    assert get(server, "/static/only-here.txt")[::2] == (200, b"from the second directory")
    assert get(server, "/static/hello.txt")[::2] == (200, tree["hello.txt"])
    assert get(server, "/static/deeper/hello.txt")[::2] == (200, b"the more specific mount")
    out = server.output()
    assert f"Serving static files at /static/ from {tree.root} (--static)" in out, out
    assert f"Serving static files at /static/deeper/ from {nested}" in out, out


@pytest.mark.parametrize(
    "value, needle",
    [
        ("static/=DIR", "must start with '/'"),
        ("/static/", "expected URL_PATH=DIR"),
        ("/static/=DIR/missing", "cannot read directory"),
        ("/static/=DIR/hello.txt", "is not a directory"),
        ("/a/../b/=DIR", "'..'"),
    ],
)
def test_bad_static_values_exit_2_naming_the_option(tree, value, needle):
    value = value.replace("DIR", str(tree.root))
    done = subprocess.run(
        [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", "--static", value, APP],
        capture_output=True,
        text=True,
        env=ferrule_env(),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"invalid value '{value}' for '--static'" in done.stderr, done.stderr
    assert needle in done.stderr, done.stderr
    assert "Listening" not in done.stderr


# --- resources under load -----------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_file_descriptor_leaks_under_load(serve, tree):
    server = start_static(serve, tree)
    pid = server.proc.pid
    for path in ["/static/big.bin", "/static/hello.txt", "/static/app.css"]:
        assert get(server, path)[0] == 200
    baseline = fd_count(pid)
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            for j in range(4):
                kind = (i + j) % 4
                if kind == 0:  # a whole large file
                    with Conn(server, timeout=30) as c:
                        r = c.request("GET", "/static/big.bin")
                        assert r.status == 200 and len(r.body) == len(tree["big.bin"])
                elif kind == 3:  # small files, keep-alive
                    with Conn(server, timeout=30) as c:
                        for path in ["/static/hello.txt", "/static/app.css", "/static/nope"]:
                            c.request("GET", path)
                else:  # gone mid-body (with a reset), or mid-multipart
                    with server.connect(30) as s:
                        ranges = b"Range: bytes=0-999999,2000000-2999999\r\n" if kind == 2 else b""
                        s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n" + ranges + b"\r\n")
                        s.recv(1000)
                        if kind == 1:
                            linger = struct.pack("ii", 1, 0)
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    wait_until(
        lambda: (n := fd_count(pid)) <= baseline or Unmet(f"{n} descriptors open"),
        timeout=30,
        what=f"the server's descriptors to return to {baseline}",
    )
    assert get(server, "/static/big.bin")[0] == 200


# --- no Python thread ---------------------------------------------------------------------


def test_static_files_are_served_while_the_only_python_thread_is_blocked(serve, tree, tmp_path):
    server = start_static(serve, tree, "--threads", "1")
    release = tmp_path / "release"
    done: dict[str, bytes] = {}

    def block() -> None:
        done["body"] = get(server, f"/block?until={release}")[2]

    blocker = threading.Thread(target=block)
    blocker.start()
    try:
        server.wait_for_output("fixture: staticprobe blocking", timeout=30)
        # The application's only thread is held: everything below is answered by the core.
        assert get(server, "/static/hello.txt")[::2] == (200, tree["hello.txt"])
        _, h, _ = get(server, "/static/app.css", method="HEAD")
        assert h["Content-Length"] == str(len(tree["app.css"]))
        assert get(server, "/static/app.css", {"If-None-Match": h["ETag"]})[0] == 304
        assert get(server, "/static/big.bin", {"Range": "bytes=0-9"})[2] == tree["big.bin"][:10]
        assert get(server, "/static/nope.txt")[0] == 404
        assert get(server, "/static/hello.txt", method="POST")[0] == 405
        status, _, body = curl(server, "/static/big.bin")
        assert status == 200 and body == tree["big.bin"]
        assert "body" not in done  # still blocked
    finally:
        release.touch()
        blocker.join(60)
    assert done["body"] == b"released"
    assert app_calls(server)[0] == "/block"
    assert not [p for p in app_calls(server) if p.startswith("/static")]
