//! The PEP 3333 environ, built in Rust with interned keys.
//!
//! CGI keys from the request line and the connection, `HTTP_*` keys from the headers
//! (duplicates joined with `,`, cookies with `; `, names containing `_` dropped so that
//! `Content_Length` can never pose as `CONTENT_LENGTH`), and the `wsgi.*` keys. Strings are
//! "native strings" in PEP 3333's sense: each byte becomes the code point of the same value
//! (latin-1). The objects behind `wsgi.input`, `wsgi.errors`, `ferrule.request` and
//! `start_response` live in their own files; `ferrule.disconnected` is the request object's
//! `disconnected` method.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST};
use http::request::Parts;
use http::{HeaderName, Method, Version};
use percent_encoding::percent_decode_str;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::http::admission::request_target_of;
use crate::job::{ConnInfo, Origin, TlsInfo};
use crate::listen::target::RawTarget;
use crate::listen::Peer;

/// Objects that are the same for every request, made once.
pub struct Constants {
    /// The environ's entries that never change, which each request's environ starts as a
    /// copy of: copying a dict's table is cheaper than inserting its entries one by one.
    template: Py<PyDict>,
}

impl Constants {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let template = PyDict::new(py);
        template.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
        template.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            PyString::new(py, concat!("ferrule/", env!("CARGO_PKG_VERSION"))),
        )?;
        template.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        template.set_item(intern!(py, "wsgi.multithread"), true)?;
        template.set_item(intern!(py, "wsgi.multiprocess"), false)?;
        template.set_item(intern!(py, "wsgi.run_once"), false)?;
        template.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        template.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<super::file_wrapper::FileWrapper>(),
        )?;
        Ok(Self {
            template: template.unbind(),
        })
    }
}

/// Decode bytes as latin-1, the WSGI "native string" rule.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => PyString::new(py, s),
        _ => PyString::new(
            py,
            &bytes.iter().map(|&b| char::from(b)).collect::<String>(),
        ),
    }
}

fn method<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    match *m {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        Method::PUT => intern!(py, "PUT").clone(),
        Method::DELETE => intern!(py, "DELETE").clone(),
        Method::PATCH => intern!(py, "PATCH").clone(),
        Method::OPTIONS => intern!(py, "OPTIONS").clone(),
        _ => PyString::new(py, m.as_str()),
    }
}

/// `HTTP_*` key for a header name, interned. The names browsers, proxies and ferrule itself
/// send are matched to keys made once; any other is built and interned per request (a
/// string made, hashed and looked up: about 0.5 µs).
fn header_key<'py>(py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
    macro_rules! known {
        ($($header:literal => $key:literal),* $(,)?) => {
            match name.as_str() {
                $($header => return intern!(py, $key).clone(),)*
                _ => {}
            }
        };
    }
    known! {
        "host" => "HTTP_HOST",
        "user-agent" => "HTTP_USER_AGENT",
        "accept" => "HTTP_ACCEPT",
        "accept-encoding" => "HTTP_ACCEPT_ENCODING",
        "accept-language" => "HTTP_ACCEPT_LANGUAGE",
        "connection" => "HTTP_CONNECTION",
        "cookie" => "HTTP_COOKIE",
        "referer" => "HTTP_REFERER",
        "origin" => "HTTP_ORIGIN",
        "cache-control" => "HTTP_CACHE_CONTROL",
        "x-forwarded-for" => "HTTP_X_FORWARDED_FOR",
        "x-forwarded-proto" => "HTTP_X_FORWARDED_PROTO",
        "x-requested-with" => "HTTP_X_REQUESTED_WITH",
        "x-csrftoken" => "HTTP_X_CSRFTOKEN",
        // ferrule puts it on every request (`http/request_id.rs`).
        "x-request-id" => "HTTP_X_REQUEST_ID",
        "x-forwarded-host" => "HTTP_X_FORWARDED_HOST",
        "x-forwarded-port" => "HTTP_X_FORWARDED_PORT",
        "x-real-ip" => "HTTP_X_REAL_IP",
        "forwarded" => "HTTP_FORWARDED",
        "authorization" => "HTTP_AUTHORIZATION",
        "if-none-match" => "HTTP_IF_NONE_MATCH",
        "if-modified-since" => "HTTP_IF_MODIFIED_SINCE",
        "pragma" => "HTTP_PRAGMA",
        "priority" => "HTTP_PRIORITY",
        "dnt" => "HTTP_DNT",
        "upgrade-insecure-requests" => "HTTP_UPGRADE_INSECURE_REQUESTS",
        "sec-fetch-dest" => "HTTP_SEC_FETCH_DEST",
        "sec-fetch-mode" => "HTTP_SEC_FETCH_MODE",
        "sec-fetch-site" => "HTTP_SEC_FETCH_SITE",
        "sec-fetch-user" => "HTTP_SEC_FETCH_USER",
        "sec-ch-ua" => "HTTP_SEC_CH_UA",
        "sec-ch-ua-mobile" => "HTTP_SEC_CH_UA_MOBILE",
        "sec-ch-ua-platform" => "HTTP_SEC_CH_UA_PLATFORM",
    }
    let mut key = String::with_capacity(5 + name.as_str().len());
    key.push_str("HTTP_");
    key.extend(name.as_str().chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    PyString::intern(py, &key)
}

/// A client's address as text, written without `core::fmt` (a tenth of its time): a client's
/// address and port are written for every request.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                push_decimal(&mut text, u16::from(octet));
            }
            text
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// A port as text, as [`ip_text`] writes an address.
fn port_text(port: u16) -> String {
    let mut text = String::with_capacity(5);
    push_decimal(&mut text, port);
    text
}

fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// `(SERVER_NAME, SERVER_PORT)` from the (forwarded) host, else from the listener.
fn server_name_port(parts: &Parts, conn: &ConnInfo, origin: &Origin) -> (String, String) {
    let (name, port) = host_name_port(parts, conn, origin);
    match &origin.port {
        Some(forwarded) => (name, forwarded.clone()),
        None => (name, port),
    }
}

fn host_name_port(parts: &Parts, conn: &ConnInfo, origin: &Origin) -> (String, String) {
    let default_port = if origin.scheme.unwrap_or(conn.scheme) == "https" {
        "443"
    } else {
        "80"
    };
    let host = origin.host.as_deref().or_else(|| {
        parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
    });
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            if let Some((addr, after)) = rest.split_once(']') {
                // Digits only, as below: `[::1]:80:` is no port (found by fuzzing).
                let port = after
                    .strip_prefix(':')
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or(default_port);
                return (addr.to_owned(), port.to_owned());
            }
        }
        return match host.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (name.to_owned(), port.to_owned())
            }
            _ => (host.to_owned(), default_port.to_owned()),
        };
    }
    match conn.local {
        Some(addr) => (addr.ip().to_string(), addr.port().to_string()),
        None => ("localhost".to_owned(), default_port.to_owned()),
    }
}

/// `HTTP_HOST` when the `Host` header does not give it: a trusted forwarded host, or the
/// `:authority` of an HTTP/2 request (applications such as Django's `get_host` read
/// `HTTP_HOST`).
pub(crate) fn host_override<'a>(parts: &'a Parts, origin: &'a Origin) -> Option<&'a str> {
    origin.host.as_deref().or_else(|| {
        if parts.headers.contains_key(HOST) {
            None
        } else {
            parts.uri.authority().map(http::uri::Authority::as_str)
        }
    })
}

fn protocol(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_09 => intern!(py, "HTTP/0.9"),
        Version::HTTP_10 => intern!(py, "HTTP/1.0"),
        Version::HTTP_2 => intern!(py, "HTTP/2"),
        Version::HTTP_3 => intern!(py, "HTTP/3"),
        _ => intern!(py, "HTTP/1.1"),
    }
}

/// The per-request objects the environ points to.
pub struct Streams<'py> {
    pub input: Bound<'py, PyAny>,
    pub errors: Bound<'py, PyAny>,
    /// `ferrule.request`.
    pub request: Bound<'py, PyAny>,
}

/// Build the environ for one request.
pub fn build<'py>(
    py: Python<'py>,
    parts: &Parts,
    conn: &ConnInfo,
    origin: &Origin,
    consts: &Constants,
    streams: Streams<'py>,
    body_len: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let env = consts.template.bind(py).copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), method(py, &parts.method))?;
    if !origin.script_name.is_empty() {
        env.set_item(
            intern!(py, "SCRIPT_NAME"),
            latin1(py, origin.script_name.as_bytes()),
        )?;
    }
    let path_info = match &origin.path_info {
        Some(rest) => latin1(py, rest),
        None => latin1(
            py,
            &percent_decode_str(parts.uri.path()).collect::<Vec<u8>>(),
        ),
    };
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    // The target as the client sent it, when its raw bytes had to be encoded for hyper.
    let sent = RawTarget::of(parts);
    let query = sent.map_or_else(|| parts.uri.query().unwrap_or("").as_bytes(), |(_, q)| q);
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
    let raw = match parts.extensions.get::<RawTarget>() {
        Some(RawTarget(bytes)) => latin1(py, bytes),
        None => latin1(py, request_target_of(parts).as_bytes()),
    };
    env.set_item(intern!(py, "RAW_URI"), &raw)?;
    env.set_item(intern!(py, "REQUEST_URI"), &raw)?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol(py, parts.version))?;
    let (name, port) = server_name_port(parts, conn, origin);
    env.set_item(intern!(py, "SERVER_NAME"), name)?;
    env.set_item(intern!(py, "SERVER_PORT"), port)?;
    match (&origin.client, conn.peer) {
        (Some(client), _) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), latin1(py, client.as_bytes()))?;
            if let Some(port) = &origin.client_port {
                env.set_item(intern!(py, "REMOTE_PORT"), latin1(py, port.as_bytes()))?;
            }
        }
        (None, Peer::Tcp(addr)) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), ip_text(addr.ip()))?;
            env.set_item(intern!(py, "REMOTE_PORT"), port_text(addr.port()))?;
        }
        // A Unix-socket peer is on this host; see docs/architecture.md.
        (None, Peer::Unix) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, "127.0.0.1"))?;
        }
    }
    for name in parts.headers.keys() {
        if name.as_str().contains('_') {
            continue;
        }
        let mut values = parts.headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let value = match values.next() {
            None => latin1(py, first.as_bytes()),
            Some(second) => {
                let sep: &[u8] = if name == COOKIE { b"; " } else { b"," };
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(values) {
                    joined.extend_from_slice(sep);
                    joined.extend_from_slice(v.as_bytes());
                }
                latin1(py, &joined)
            }
        };
        if name == CONTENT_TYPE {
            env.set_item(intern!(py, "CONTENT_TYPE"), value)?;
        } else if name == CONTENT_LENGTH {
            env.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
        } else {
            env.set_item(header_key(py, name), value)?;
        }
    }
    if let Some(host) = host_override(parts, origin) {
        env.set_item(intern!(py, "HTTP_HOST"), latin1(py, host.as_bytes()))?;
    }
    if body_len > 0 && !parts.headers.contains_key(CONTENT_LENGTH) {
        // A chunked body has been read whole, so its length is known; Django needs it.
        env.set_item(intern!(py, "CONTENT_LENGTH"), body_len.to_string())?;
    }
    let scheme = origin.scheme.unwrap_or(conn.scheme);
    server_keys(py, &env, streams, scheme)?;
    if scheme == "https" {
        env.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
    }
    if let Some(tls) = &conn.tls {
        tls_keys(py, &env, tls)?;
    }
    Ok(env)
}

/// The `wsgi.*` keys that vary (the template has the others), and `ferrule.request` with
/// `ferrule.disconnected` (its `disconnected` method, which views poll).
fn server_keys<'py>(
    py: Python<'py>,
    env: &Bound<'py, PyDict>,
    streams: Streams<'py>,
    scheme: &str,
) -> PyResult<()> {
    let scheme = if scheme == "https" {
        intern!(py, "https")
    } else {
        intern!(py, "http")
    };
    env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
    env.set_item(intern!(py, "wsgi.input"), streams.input)?;
    env.set_item(intern!(py, "wsgi.errors"), streams.errors)?;
    env.set_item(
        intern!(py, "ferrule.disconnected"),
        streams.request.getattr(intern!(py, "disconnected"))?,
    )?;
    env.set_item(intern!(py, "ferrule.request"), streams.request)
}

/// The `SSL_*` keys, named as Apache's `mod_ssl` names them so that code written for it works.
fn tls_keys(py: Python<'_>, env: &Bound<'_, PyDict>, tls: &TlsInfo) -> PyResult<()> {
    env.set_item(intern!(py, "SSL_PROTOCOL"), tls.protocol)?;
    env.set_item(intern!(py, "SSL_CIPHER"), &tls.cipher)?;
    if let Some(sni) = &tls.server_name {
        env.set_item(intern!(py, "SSL_TLS_SNI"), sni)?;
    }
    match tls.client_chain_pem.split_first() {
        Some((pem, chain)) => {
            env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), intern!(py, "SUCCESS"))?;
            env.set_item(intern!(py, "SSL_CLIENT_CERT"), pem)?;
            for (n, pem) in chain.iter().enumerate() {
                env.set_item(format!("SSL_CLIENT_CERT_CHAIN_{n}"), pem)?;
            }
            if let Some(dn) = &tls.client_subject {
                env.set_item(intern!(py, "SSL_CLIENT_S_DN"), dn)?;
            }
            if let Some(dn) = &tls.client_issuer {
                env.set_item(intern!(py, "SSL_CLIENT_I_DN"), dn)?;
            }
        }
        None => env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), intern!(py, "NONE"))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            unix_path: None,
            peer: Peer::Unix,
            local: Some("10.0.0.1:8000".parse().unwrap()),
            scheme: "http",
            tls: None,
            relayed: false,
            pending: std::sync::atomic::AtomicUsize::new(0),
            held: None,
        }
    }

    fn parts(host: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri("/x");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn server_name_and_port_come_from_host_then_listener() {
        let c = conn();
        let cases = [
            (Some("example.com"), ("example.com", "80")),
            (Some("example.com:8080"), ("example.com", "8080")),
            (Some("[::1]:9000"), ("::1", "9000")),
            (Some("[::1]"), ("::1", "80")),
            (None, ("10.0.0.1", "8000")),
            (Some("example.com:"), ("example.com:", "80")),
            (Some("[::1]junk"), ("::1", "80")),
        ];
        for (host, (name, port)) in cases {
            assert_eq!(
                server_name_port(&parts(host), &c, &Origin::default()),
                (name.to_owned(), port.to_owned()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn addresses_and_ports_are_written_as_display_writes_them() {
        for port in [0u16, 7, 10, 80, 443, 8000, 9999, 10000, 65535] {
            assert_eq!(port_text(port), port.to_string());
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "255.255.255.255",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// Inputs the `environ` fuzz target (`fuzz/fuzz_targets/environ.rs`) found, through the same
    /// function: each must give a `SERVER_PORT` of digits.
    #[test]
    fn fuzz_regressions() {
        // crash-a09f720a: `GET /a HTTP/1.1\r\nHost: [::1]:80: \r\n…` gave SERVER_PORT `80:`.
        for host in ["[::1]:80:", "[::1]:x", "[::1]:80:80"] {
            let (name, port) = server_name_port(&parts(Some(host)), &conn(), &Origin::default());
            assert_eq!((name.as_str(), port.as_str()), ("::1", "80"), "{host}");
        }
    }
}
