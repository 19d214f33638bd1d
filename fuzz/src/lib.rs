//! What the fuzz targets share: turning raw request bytes into the head hyper would hand to
//! ferrule.
//!
//! hyper parses request heads with `httparse`; this does the same and builds the
//! `http::request::Parts` from the result the way hyper does (method, target, version, header
//! names checked by `http`; values as the bytes httparse accepted). Requests hyper would refuse
//! before ferrule sees them (a parse error, an unconvertible method or target) give `None`.
//! hyper's own further refusals (conflicting `Content-Length`, say) are not repeated: the
//! admission layer must cope with any head, so giving it more is the point.

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Uri, Version};

/// More header slots than any limit ferrule allows (`--limit-request-fields` is checked by
/// admission on what hyper parsed; hyper's own cap is 100 by default).
const MAX_HEADERS: usize = 256;

/// The first request head in `data`, as hyper would give it to ferrule, and the length of the
/// head in bytes.
pub fn head(data: &[u8]) -> Option<(Parts, usize)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(len) = req.parse(data).ok()? else {
        return None;
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri: Uri = req.path?.parse().ok()?;
    let version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(version);
    let headers = builder.headers_mut()?;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // hyper takes the value bytes unchecked; `from_bytes` refuses only what httparse
        // already refused (control characters other than tab).
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    Some((builder.body(()).ok()?.into_parts().0, len))
}

/// gunicorn's default limits, which ferrule's defaults match.
pub fn default_limits() -> _ferrule::fuzzing::Limits {
    _ferrule::fuzzing::Limits {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
        max_body: 1 << 30,
        body_buffer: 1 << 20,
    }
}
