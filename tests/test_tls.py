"""HTTPS: --certfile/--keyfile in every key format, what the environ says about TLS, mutual
TLS, --tls-min, the bad-file errors (exit 2 before binding), and SIGHUP reloading the
certificate without dropping connections. Over TCP and a Unix socket, with certificates made
at test time (tls_helpers.Pki); the tests that only talk to a listener with the module's
certificate share its server (`shared`).
"""

import json
import signal
import ssl
import subprocess

import pytest
import requests
from conftest import start
from helpers import Conn
from tls_helpers import Pki, TlsView, handshake_refused, tls_args


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert(pki):
    return pki.server()


# -- serving HTTPS ------------------------------------------------------------------------


def test_https_with_requests_verifying_against_the_ca(pki, cert, launched):
    server = launched(["--bind", "127.0.0.1:0", *tls_args(cert), "echo:app"])
    assert server.url.startswith("https://127.0.0.1:"), server.url
    port = server.address[1]
    r = requests.get(f"https://localhost:{port}/hello?x=1", verify=str(pki.ca_file), timeout=10)
    assert r.status_code == 200
    env = r.json()["environ"]
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == str(port)
    assert env["RAW_URI"] == "/hello?x=1"
    r = requests.post(
        f"https://localhost:{port}/", data=b"x" * 100_000, verify=str(pki.ca_file), timeout=10
    )
    assert r.json()["body_len"] == 100_000


def test_environ_describes_the_tls_session(pki, cert, shared):
    view = TlsView(shared("echo:app", *tls_args(cert)), pki.context())
    env = view.echo("/")
    assert env["HTTPS"] == "on"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SSL_PROTOCOL"] == "TLSv1.3"
    assert env["SSL_CIPHER"].startswith("TLS13_")
    assert env["SSL_TLS_SNI"] == "localhost"
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env and "SSL_CLIENT_CERT" not in env


def test_keep_alive_over_tls(pki, cert, shared):
    view = TlsView(shared("echo:app", *tls_args(cert)), pki.context())
    with Conn(view) as c:
        for i in range(3):
            resp = c.request("GET", f"/{i}")
            assert resp.status == 200
            assert resp.json()["environ"]["PATH_INFO"] == f"/{i}"


def test_curl_over_https(pki, cert, shared):
    server = shared("echo:app", *tls_args(cert))
    if server.is_unix:
        args = ["--unix-socket", server.address, "https://localhost/curl"]
    else:
        args = [f"https://localhost:{server.address[1]}/curl"]
    out = subprocess.run(
        ["curl", "-sS", "--http1.1", "--cacert", str(pki.ca_file), *args],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    env = json.loads(out)["environ"]
    assert (env["PATH_INFO"], env["HTTPS"], env["SERVER_PROTOCOL"]) == ("/curl", "on", "HTTP/1.1")


@pytest.mark.parametrize(
    ("key_type", "key_format"),
    [
        ("ec", "pkcs8"),
        ("ec", "traditional"),
        ("rsa", "pkcs8"),
        ("rsa", "traditional"),
        ("ec", "encrypted"),
        ("rsa", "encrypted"),
    ],
    ids=["ec-pkcs8", "ec-sec1", "rsa-pkcs8", "rsa-pkcs1", "ec-encrypted", "rsa-encrypted"],
)
def test_every_key_format_serves(pki, serve, key_type, key_format):
    password = "s3cret pass" if key_format == "encrypted" else None
    issued = pki.server(key_type=key_type, key_format=key_format, password=password)
    head = issued.key.read_text().splitlines()[0]
    expected = {
        "pkcs8": "-----BEGIN PRIVATE KEY-----",
        "encrypted": "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "traditional": f"-----BEGIN {key_type.upper()} PRIVATE KEY-----",
    }[key_format]
    assert head == expected
    # The password comes from the environment, as the docs recommend.
    env = {"FERRULE_KEYFILE_PASSWORD": password} if password else None
    view = TlsView(serve("echo:app", *tls_args(issued), env=env), pki.context())
    with view.connect() as s:
        assert s.getpeercert(binary_form=True) == issued.der
    assert view.echo("/")["HTTPS"] == "on"


def test_keyfile_password_on_the_command_line(pki, serve):
    issued = pki.server(key_format="encrypted", password="pw")
    view = TlsView(serve("echo:app", *tls_args(issued, "--keyfile-password", "pw")), pki.context())
    assert view.echo("/")["HTTPS"] == "on"


# -- mutual TLS ---------------------------------------------------------------------------


def mutual(pki, when: str) -> list[str]:
    return ["--ca-certs", str(pki.ca_file), "--client-cert", when]


def test_optional_client_certificate(pki, cert, serve, tmp_path):
    server = serve(
        "echo:app", *tls_args(cert, "--ca-certs", str(pki.ca_file)), "--client-cert", "optional"
    )
    alice = pki.client("alice")
    env = TlsView(server, pki.context(client=alice)).echo("/")
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == alice.x509.subject.rfc4514_string()
    assert env["SSL_CLIENT_S_DN"].startswith("CN=alice,")
    assert env["SSL_CLIENT_I_DN"] == pki.ca_dn
    got = ssl.PEM_cert_to_DER_cert(env["SSL_CLIENT_CERT"])
    assert got == alice.der
    # The rest of what the client sent (trustme's CA), as mod_ssl names it.
    assert ssl.PEM_cert_to_DER_cert(env["SSL_CLIENT_CERT_CHAIN_0"]) == alice.sent[1]
    assert "SSL_CLIENT_CERT_CHAIN_1" not in env
    # A client certificate from an intermediate CA, sent with that CA's: the intermediate is
    # SSL_CLIENT_CERT_CHAIN_0, as under mod_ssl.
    ctx, sent = pki.intermediate_client(tmp_path)
    env = TlsView(server, ctx).echo("/")
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    got = [env["SSL_CLIENT_CERT"], env["SSL_CLIENT_CERT_CHAIN_0"]]
    assert [ssl.PEM_cert_to_DER_cert(pem) for pem in got] == sent
    # Without a certificate the request is served, and says so.
    env = TlsView(server, pki.context()).echo("/")
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env


def test_required_client_certificate(pki, cert, serve, tmp_path_factory):
    server = serve(
        "echo:app", *tls_args(cert, "--ca-certs", str(pki.ca_file)), "--client-cert", "required"
    )
    bob = pki.client("bob")
    env = TlsView(server, pki.context(client=bob)).echo("/")
    assert env["SSL_CLIENT_S_DN"].startswith("CN=bob,")
    assert handshake_refused(TlsView(server, pki.context()))
    # A certificate from another authority is refused too.
    stranger = Pki(tmp_path_factory.mktemp("other-ca"), name="another CA").client("mallory")
    assert handshake_refused(TlsView(server, pki.context(client=stranger)))
    assert TlsView(server, pki.context(client=bob)).echo("/")["SSL_CLIENT_VERIFY"] == "SUCCESS"


# -- versions -----------------------------------------------------------------------------


def test_tls_12_client_is_served_by_default(pki, cert, shared):
    view = TlsView(shared("echo:app", *tls_args(cert)), pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    env = view.echo("/")
    assert env["SSL_PROTOCOL"] == "TLSv1.2"
    assert env["SSL_CIPHER"].startswith("TLS_ECDHE_")


def test_tls_min_13_refuses_a_tls_12_client(pki, cert, serve):
    server = serve("echo:app", *tls_args(cert, "--tls-min", "1.3"))
    with pytest.raises(ssl.SSLError):
        TlsView(server, pki.context(maximum=ssl.TLSVersion.TLSv1_2)).connect(10).close()
    assert TlsView(server, pki.context()).echo("/")["SSL_PROTOCOL"] == "TLSv1.3"


def test_plain_http_on_a_tls_listener_is_not_served(cert, shared):
    server = shared("echo:app", *tls_args(cert))
    reply = server.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"HTTP/1.1 200" not in reply
    assert server.proc.poll() is None


def test_handshake_must_finish_within_header_timeout(cert, serve):
    server = serve("echo:app", *tls_args(cert), "--header-timeout", "1")
    with Conn(server) as c:
        c.send(b"\x16\x03\x01")  # the start of a ClientHello, and nothing more
        assert c.closed_by_server(timeout=20)
    assert server.proc.poll() is None


# -- bad files: exit 2 before binding -----------------------------------------------------


def bad_file_cases(pki, tmp_path):
    good = pki.server()
    other = pki.server()
    encrypted = pki.server(key_format="encrypted", password="right")
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not PEM\n")
    missing = tmp_path / "missing.pem"
    directory = tmp_path / "a-directory"
    directory.mkdir()
    cert, key = str(good.cert), str(good.key)
    return {
        "missing-cert": (["--certfile", str(missing), "--keyfile", key], "--certfile", missing),
        "missing-key": (["--certfile", cert, "--keyfile", str(missing)], "--keyfile", missing),
        "unreadable-key": (
            ["--certfile", cert, "--keyfile", str(directory)],
            "--keyfile",
            directory,
        ),
        "cert-not-pem": (["--certfile", str(junk), "--keyfile", key], "--certfile", junk),
        "key-not-pem": (["--certfile", cert, "--keyfile", str(junk)], "--keyfile", junk),
        "key-is-a-cert": (["--certfile", cert, "--keyfile", cert], "--keyfile", good.cert),
        "mismatched-key": (
            ["--certfile", cert, "--keyfile", str(other.key)],
            "--keyfile",
            other.key,
        ),
        "no-password": (
            ["--certfile", str(encrypted.cert), "--keyfile", str(encrypted.key)],
            "--keyfile-password",
            encrypted.key,
        ),
        "wrong-password": (
            [*tls_args(encrypted), "--keyfile-password", "wrong"],
            "--keyfile-password",
            encrypted.key,
        ),
        "ca-not-pem": (
            [*tls_args(good), "--ca-certs", str(junk), "--client-cert", "required"],
            "--ca-certs",
            junk,
        ),
        "missing-ca": (
            [*tls_args(good), "--ca-certs", str(missing), "--client-cert", "optional"],
            "--ca-certs",
            missing,
        ),
    }


BAD_CASES = [
    "missing-cert",
    "missing-key",
    "unreadable-key",
    "cert-not-pem",
    "key-not-pem",
    "key-is-a-cert",
    "mismatched-key",
    "no-password",
    "wrong-password",
    "ca-not-pem",
    "missing-ca",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_tls_file_exits_2_naming_it_before_binding(pki, tmp_path, transport, case):
    args, option, path = bad_file_cases(pki, tmp_path)[case]
    sock = tmp_path / "never.sock"
    bind = "127.0.0.1:0" if transport == "tcp" else f"unix:{sock}"
    server = start(["--bind", bind, *args, "echo:app"], expect_ready=False)
    code = server.proc.wait(30)
    out = server.output()
    assert code == 2, out
    assert option in out and str(path) in out, out
    assert "Listening at" not in out and "Traceback" not in out, out
    assert not sock.exists()


# -- SIGHUP reload ------------------------------------------------------------------------


def test_sighup_reloads_the_certificate_without_dropping_connections(pki, serve, tmp_path):
    first = pki.server()
    second = pki.server(key_type="rsa")
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    server = serve("echo:app", "--certfile", str(cert), "--keyfile", str(key), "--keep-alive", "60")
    view = TlsView(server, pki.context())
    old = Conn(view)
    try:
        assert old.sock.getpeercert(binary_form=True) == first.der
        assert old.request("GET", "/before").status == 200

        cert.write_bytes(second.cert.read_bytes())
        key.write_bytes(second.key.read_bytes())
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(r"reloaded .*live\.crt")
        with view.connect() as s:
            assert s.getpeercert(binary_form=True) == second.der
        assert view.echo("/new")["PATH_INFO"] == "/new"
        # The connection made before the reload is still served, with its old certificate.
        assert old.request("GET", "/after").json()["environ"]["PATH_INFO"] == "/after"
        assert old.sock.getpeercert(binary_form=True) == first.der

        # A reload that fails keeps the certificate in use and says which file is wrong.
        key.write_text("garbage\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(rf"ERROR.*{key}.*still serving the previous certificate")
        with view.connect() as s:
            assert s.getpeercert(binary_form=True) == second.der
        assert old.request("GET", "/still").status == 200
    finally:
        old.close()
    assert server.proc.poll() is None
    assert server.stop() == 0


def test_sighup_without_tls_keeps_serving(serve):
    server = serve("echo:app")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_output(r"SIGHUP: nothing to reload")
    assert server.request("GET", "/")[0].status == 200
