"""Certificates made at test time, and TLS clients that work over TCP and Unix sockets.

`Pki` is a throw-away certificate authority (trustme) that writes server and client
certificates with their keys in any of the formats ferrule reads: PKCS#8, PKCS#1 RSA, SEC1 EC
and encrypted PKCS#8 (via `cryptography`). `TlsView` makes a `conftest.Server` speak TLS, so
the raw `helpers.Conn` client and `http.client` work over TLS on either transport.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

KEY_TYPES = {"ec": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


@dataclass
class Issued:
    """A certificate and key written to disk."""

    cert: Path
    key: Path
    leaf: trustme.LeafCert
    # The issuing CA's certificate, DER-encoded.
    issuer: bytes = b""

    @property
    def der(self) -> bytes:
        """The leaf certificate, DER-encoded (what `getpeercert(True)` returns)."""
        return ssl.PEM_cert_to_DER_cert(self.leaf.cert_chain_pems[0].bytes().decode())

    @property
    def sent(self) -> list[bytes]:
        """What an `ssl` client using it sends, DER-encoded: the leaf, then its CA, which
        OpenSSL adds from the client's trust store to complete the chain."""
        return [self.der, self.issuer]

    @property
    def x509(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.leaf.cert_chain_pems[0].bytes())


def key_bytes(leaf: trustme.LeafCert, fmt: str, password: str | None = None) -> bytes:
    """The leaf's private key as PEM: `pkcs8`, `traditional` (PKCS#1 for RSA, SEC1 for EC)
    or `encrypted` (PKCS#8 encrypted with `password`)."""
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    if fmt == "pkcs8":
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    if fmt == "traditional":
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    if fmt == "encrypted":
        assert password
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    raise ValueError(fmt)


class Pki:
    """A certificate authority whose files live in `root`."""

    def __init__(self, root: Path, name: str = "ferrule test CA"):
        self.root = root
        self.ca = trustme.CA(organization_name=name)
        self.ca_file = root / f"{name.replace(' ', '-')}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._n = 0

    def issue(
        self,
        *identities: str,
        common_name: str,
        key_type: str = "ec",
        key_format: str = "pkcs8",
        password: str | None = None,
    ) -> Issued:
        self._n += 1
        leaf = self.ca.issue_cert(
            *identities,
            common_name=common_name,
            organization_name="ferrule tests",
            key_type=KEY_TYPES[key_type],
        )
        stem = self.root / f"{common_name}-{self._n}"
        cert = stem.with_suffix(".crt")
        key = stem.with_suffix(".key")
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key.write_bytes(key_bytes(leaf, key_format, password))
        return Issued(cert, key, leaf, ssl.PEM_cert_to_DER_cert(self.ca.cert_pem.bytes().decode()))

    def server(self, **kw) -> Issued:
        """A server certificate for localhost and 127.0.0.1."""
        return self.issue("localhost", "127.0.0.1", common_name="localhost", **kw)

    def client(self, name: str = "alice", **kw) -> Issued:
        """A client certificate (trustme's leaves allow clientAuth)."""
        return self.issue(f"{name}.clients.example", common_name=name, **kw)

    @property
    def ca_dn(self) -> str:
        return x509.load_pem_x509_certificate(self.ca.cert_pem.bytes()).subject.rfc4514_string()

    def intermediate_client(self, tmp_path: Path) -> tuple[ssl.SSLContext, list[bytes]]:
        """A client context whose certificate an intermediate CA under this one issued, sent
        with the intermediate's; and those two certificates, DER-encoded, as sent."""
        carol = self.ca.create_child_ca().issue_cert("carol.clients.example", common_name="carol")
        chain, key = tmp_path / "carol.crt", tmp_path / "carol.key"
        chain.write_bytes(b"".join(pem.bytes() for pem in carol.cert_chain_pems))
        key.write_bytes(carol.private_key_pem.bytes())
        ctx = self.context()
        ctx.load_cert_chain(str(chain), str(key))
        sent = [ssl.PEM_cert_to_DER_cert(pem.bytes().decode()) for pem in carol.cert_chain_pems]
        return ctx, sent

    def context(
        self,
        client: Issued | None = None,
        alpn: list[str] | None = None,
        maximum: ssl.TLSVersion | None = None,
    ) -> ssl.SSLContext:
        """A client context that trusts this CA, optionally with a client certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if client:
            ctx.load_cert_chain(str(client.cert), str(client.key))
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if maximum:
            ctx.maximum_version = maximum
        return ctx


def tls_args(issued: Issued, *extra: str) -> list[str]:
    return ["--certfile", str(issued.cert), "--keyfile", str(issued.key), *extra]


class TlsView:
    """A conftest.Server seen through TLS: `connect()` returns a TLS socket (SNI localhost),
    so `helpers.Conn(TlsView(server, ctx))` speaks HTTP/1.1 over TLS on TCP or Unix."""

    def __init__(self, server, ctx: ssl.SSLContext, server_hostname: str = "localhost"):
        self.server = server
        self.ctx = ctx
        self.server_hostname = server_hostname

    @property
    def is_unix(self) -> bool:
        return self.server.is_unix

    @property
    def address(self):
        return self.server.address

    def connect(self, timeout: float = 30) -> ssl.SSLSocket:
        raw = self.server.connect(timeout)
        try:
            return self.ctx.wrap_socket(raw, server_hostname=self.server_hostname)
        except BaseException:
            raw.close()
            raise

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        view = self

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = view.connect(timeout)

        host = "localhost" if self.is_unix else f"localhost:{self.address[1]}"
        return Conn(host, timeout=timeout)

    def request(self, method="GET", path="/", body=None, headers=None):
        """One request on a fresh TLS connection; returns (response, body bytes)."""
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()

    def echo(self, path="/", **kw) -> dict:
        resp, data = self.request(path=path, **kw)
        assert resp.status == 200, (resp.status, data[:500])
        return json.loads(data)["environ"]


def handshake_refused(view: TlsView) -> bool:
    """True if the server refuses the TLS session: the handshake fails, or (TLS 1.3, where
    the client finishes first) the first read gets an alert or end of stream."""
    try:
        s = view.connect(timeout=10)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return s.recv(1024) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()
