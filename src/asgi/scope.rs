//! The `http` scope of an ASGI request (asgiref's `specs/www.rst`, spec version 2.5), built
//! in Rust from the admitted request as `wsgi/environ.rs` builds the environ: the trusted
//! proxy headers and the URL prefix already applied (`Origin`), so `client`, `scheme`,
//! `root_path` and the `host` header say what the application should believe.

use http::header::HOST;
use http::request::Parts;
use http::Version;
use percent_encoding::percent_decode_str;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::http::dispatch::Admitted;
use crate::job::{ConnInfo, Origin};
use crate::listen::target::RawTarget;
use crate::listen::Peer;
use crate::wsgi::environ::host_override;

/// What every scope shares, made once.
pub struct Constants {
    /// `{"version": "3.0", "spec_version": "2.5"}`.
    asgi: Py<PyDict>,
}

impl Constants {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.5")?;
        Ok(Self {
            asgi: asgi.unbind(),
        })
    }
}

fn http_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The decoded `path`: the prefix (`root_path`) followed by the rest of the path, as the
/// spec has it since asgiref 3.7 (Django strips `root_path` from it again).
pub fn path(parts: &Parts, origin: &Origin) -> String {
    let rest = match &origin.path_info {
        Some(rest) => String::from_utf8_lossy(rest).into_owned(),
        None => percent_decode_str(parts.uri.path())
            .decode_utf8_lossy()
            .into_owned(),
    };
    if origin.script_name.is_empty() {
        rest
    } else {
        format!("{}{rest}", origin.script_name)
    }
}

/// A scope builder: [`http`] or [`websocket`].
pub type Kind = for<'py> fn(
    Python<'py>,
    &Constants,
    &Admitted<()>,
    Option<&Bound<'py, PyDict>>,
    Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>>;

/// The scope of one HTTP request; `state` is a copy of the lifespan state, if there is one,
/// and `request` the server's `ferrule.request` object.
pub fn http<'py>(
    py: Python<'py>,
    consts: &Constants,
    admitted: &Admitted<()>,
    state: Option<&Bound<'py, PyDict>>,
    request: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let scheme = admitted.origin.scheme.unwrap_or(admitted.conn.scheme);
    let scope = common(
        py,
        consts,
        admitted,
        intern!(py, "http"),
        scheme,
        state,
        request,
    )?;
    scope.set_item(intern!(py, "method"), admitted.parts.method.as_str())?;
    let extensions = PyDict::new(py);
    extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
    extensions.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
    if let Some(tls) = tls(py, &admitted.conn)? {
        extensions.set_item(intern!(py, "tls"), tls)?;
    }
    scope.set_item(intern!(py, "extensions"), extensions)?;
    Ok(scope)
}

/// The scope of a WebSocket: the `http` scope's fields less `method`, with `ws`/`wss`, the
/// subprotocols the client offered, and the denial-response extension.
pub fn websocket<'py>(
    py: Python<'py>,
    consts: &Constants,
    admitted: &Admitted<()>,
    state: Option<&Bound<'py, PyDict>>,
    request: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let scheme = match admitted.origin.scheme.unwrap_or(admitted.conn.scheme) {
        "https" => "wss",
        _ => "ws",
    };
    let kind = intern!(py, "websocket");
    let scope = common(py, consts, admitted, kind, scheme, state, request)?;
    let subprotocols = PyList::empty(py);
    let offered = admitted
        .parts
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL);
    for value in offered {
        for protocol in value.to_str().unwrap_or("").split(',') {
            let protocol = protocol.trim();
            if !protocol.is_empty() {
                subprotocols.append(protocol)?;
            }
        }
    }
    scope.set_item(intern!(py, "subprotocols"), subprotocols)?;
    let extensions = PyDict::new(py);
    extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
    if let Some(tls) = tls(py, &admitted.conn)? {
        extensions.set_item(intern!(py, "tls"), tls)?;
    }
    scope.set_item(intern!(py, "extensions"), extensions)?;
    Ok(scope)
}

/// What the scope of any connection carries.
fn common<'py>(
    py: Python<'py>,
    consts: &Constants,
    Admitted {
        parts,
        conn,
        origin,
        ..
    }: &Admitted<()>,
    kind: &Bound<'py, PyString>,
    scheme: &str,
    state: Option<&Bound<'py, PyDict>>,
    request: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    scope.set_item(intern!(py, "type"), kind)?;
    scope.set_item(intern!(py, "asgi"), consts.asgi.bind(py))?;
    scope.set_item(intern!(py, "http_version"), http_version(parts.version))?;
    scope.set_item(intern!(py, "scheme"), scheme)?;
    scope.set_item(intern!(py, "path"), path(parts, origin))?;
    // As the client sent them, when their raw bytes had to be encoded for hyper.
    let (raw_path, query) = RawTarget::of(parts).unwrap_or_else(|| {
        let query = parts.uri.query().unwrap_or("").as_bytes();
        (parts.uri.path().as_bytes(), query)
    });
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path))?;
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
    scope.set_item(intern!(py, "root_path"), origin.script_name.as_str())?;
    scope.set_item(intern!(py, "headers"), headers(py, parts, origin)?)?;
    scope.set_item(intern!(py, "client"), client(py, conn, origin)?)?;
    scope.set_item(intern!(py, "server"), server(py, conn)?)?;
    if let Some(state) = state {
        scope.set_item(intern!(py, "state"), state.copy()?)?;
    }
    scope.set_item(intern!(py, "ferrule.request"), request)?;
    Ok(scope)
}

/// The `tls` extension, on a TLS connection.
fn tls<'py>(py: Python<'py>, conn: &ConnInfo) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(tls) = &conn.tls else {
        return Ok(None);
    };
    let ext = PyDict::new(py);
    ext.set_item("client_cert_chain", &tls.client_chain_pem)?;
    ext.set_item("client_cert_name", tls.client_subject.as_deref())?;
    ext.set_item("client_cert_error", py.None())?;
    ext.set_item(
        "tls_version",
        match tls.protocol {
            "TLSv1.3" => 0x0304,
            _ => 0x0303,
        },
    )?;
    ext.set_item("cipher_suite", tls.cipher_id)?;
    ext.set_item("server_cert", py.None())?;
    Ok(Some(ext))
}

/// The headers as sent, names lowercased (hyper's), with `host` what the application should
/// believe: a trusted proxy's forwarded host, or an HTTP/2 request's `:authority`.
fn headers<'py>(py: Python<'py>, parts: &Parts, origin: &Origin) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let host = host_override(parts, origin);
    for (name, value) in &parts.headers {
        if name == HOST && host.is_some() {
            continue;
        }
        let pair = PyTuple::new(
            py,
            [
                PyBytes::new(py, name.as_str().as_bytes()),
                PyBytes::new(py, value.as_bytes()),
            ],
        )?;
        list.append(pair)?;
    }
    if let Some(host) = host {
        let pair = PyTuple::new(
            py,
            [PyBytes::new(py, b"host"), PyBytes::new(py, host.as_bytes())],
        )?;
        list.append(pair)?;
    }
    Ok(list)
}

fn client<'py>(py: Python<'py>, conn: &ConnInfo, origin: &Origin) -> PyResult<Bound<'py, PyAny>> {
    match (&origin.client, conn.peer) {
        (Some(client), _) => {
            let port: u16 = origin
                .client_port
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            Ok((client.as_str(), port).into_pyobject(py)?.into_any())
        }
        (None, Peer::Tcp(addr)) => Ok((addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any()),
        // A Unix-socket peer has no address.
        (None, Peer::Unix) => Ok(py.None().into_bound(py)),
    }
}

fn server<'py>(py: Python<'py>, conn: &ConnInfo) -> PyResult<Bound<'py, PyAny>> {
    match (&conn.local, &conn.unix_path) {
        (Some(addr), _) => Ok((addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any()),
        (None, Some(path)) => Ok((path.as_ref(), py.None()).into_pyobject(py)?.into_any()),
        (None, None) => Ok(py.None().into_bound(py)),
    }
}
