//! Admission: the checks a request head must pass before anything else looks at it.
//!
//! hyper has parsed the head already and refused what it cannot parse (400), an over-long
//! head (431) and a too-long target (414). What is left to us: the configured request-line
//! and header limits, the method and target-form rules, `Host`, `Content-Length` and
//! `Transfer-Encoding` rules, and the transfer codings we do not implement; then, once the
//! body is read, the fields a chunked body's trailer must not carry. A refused request gets
//! its status here and never reaches Python. Turning a refusal into a response is
//! `response/respond.rs`'s job.
//!
//! What hyper normalises away before we see the head is counted beneath it, on HTTP/1, by
//! `listen/target.rs`: a `Content-Length` dropped because `Transfer-Encoding` came too, and
//! identical duplicate lengths merged, arrive as [`HiddenLengths`]. Whitespace after a chunk
//! size is not seen (`tests/conformance/divergences.md`).

use crate::listen::target::HiddenLengths;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, EXPECT, HOST,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, StatusCode, Version};
use std::borrow::Cow;

use crate::config::Limits;

/// Why a request head was refused. Plain data: this runs on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(&'static str),
    UriTooLong,
    HeadersTooLarge(&'static str),
    NotImplemented(&'static str),
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest(why)
            | Refusal::HeadersTooLarge(why)
            | Refusal::NotImplemented(why) => why,
            Refusal::UriTooLong => "the request line is longer than --limit-request-line",
        }
    }
}

/// The request target as the client sent it: an origin-form target as is, any other form
/// (absolute, authority, `*`) as hyper rebuilt it. For HTTP/2, whose URI hyper builds from
/// `:scheme`, `:authority` and `:path`, the `:path` (origin form), as an HTTP/1 client would
/// have sent it.
pub fn request_target_of(parts: &Parts) -> Cow<'_, str> {
    match parts.uri.path_and_query() {
        Some(pq) if parts.version == Version::HTTP_2 || parts.uri.scheme().is_none() => {
            Cow::Borrowed(pq.as_str())
        }
        _ => Cow::Owned(parts.uri.to_string()),
    }
}

/// Length of the request line, `METHOD SP TARGET SP HTTP/1.1`.
fn request_line_len(parts: &Parts) -> usize {
    // As sent: the encoding hyper needed makes no line longer.
    let target = match parts.extensions.get::<crate::listen::target::RawTarget>() {
        Some(sent) => sent.0.len(),
        None => request_target_of(parts).len(),
    };
    parts.method.as_str().len() + 1 + target + 1 + "HTTP/1.1".len()
}

/// Check a parsed request head against the limits and the rules hyper leaves to us.
pub fn admit(parts: &Parts, limits: &Limits) -> Result<(), Refusal> {
    if request_line_len(parts) > limits.request_line {
        return Err(Refusal::UriTooLong);
    }
    if parts.headers.len() > limits.fields {
        return Err(Refusal::HeadersTooLarge(
            "the request has more header fields than --limit-request-fields",
        ));
    }
    for name in parts.headers.keys() {
        // "Name: value\r\n", as gunicorn counts it (its corpus refuses an 8189-byte line
        // under the default 8190). A repeated field counts as the one environ value it
        // becomes (values joined by a separator), so splitting a field over many lines does
        // not get around the limit.
        let values = parts.headers.get_all(name).iter();
        let size = values.fold(name.as_str().len() + 3, |n, v| n + 1 + v.len());
        if size > limits.field_size {
            return Err(Refusal::HeadersTooLarge(
                "a header field is larger than --limit-request-field-size (repeated fields count together)",
            ));
        }
    }
    check_method(parts)?;
    check_target(parts)?;
    let hosts = parts.headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::BadRequest(
            "the request has more than one Host header",
        ));
    }
    if hosts == 0 && parts.version == Version::HTTP_11 {
        return Err(Refusal::BadRequest(
            "an HTTP/1.1 request must have a Host header",
        ));
    }
    if parts.headers.get_all(CONTENT_TYPE).iter().count() > 1 {
        return Err(Refusal::BadRequest(
            "the request has more than one Content-Type header",
        ));
    }
    check_hidden_lengths(parts)?;
    check_content_length(&parts.headers)?;
    check_transfer_encoding(parts)
}

/// The `Content-Length` headers hyper merged or dropped before this sees the head, as
/// `listen/target.rs` counted them: the same rules as [`check_content_length`]'s.
fn check_hidden_lengths(parts: &Parts) -> Result<(), Refusal> {
    let Some(hidden) = parts.extensions.get::<HiddenLengths>() else {
        return Ok(());
    };
    if hidden.with_transfer_encoding {
        return Err(Refusal::BadRequest(
            "the request has both Content-Length and Transfer-Encoding",
        ));
    }
    if hidden.count > 1 {
        return Err(Refusal::BadRequest(
            "the request has more than one Content-Length header",
        ));
    }
    Ok(())
}

/// Methods as gunicorn takes them: 3 to 20 token characters, no lowercase letters (methods
/// are case-sensitive and every registered one is uppercase, so `get` is not `GET`: a front
/// end that folds case and an application that does not would disagree) and no `#`. CONNECT
/// asks for a tunnel, which no WSGI application can give; hyper would also take a 2xx answer
/// as the tunnel's start and drop its body. The one CONNECT taken is HTTP/2's extended
/// CONNECT for a WebSocket (RFC 8441), which hyper only passes on when the server offered it:
/// for an ASGI application.
fn check_method(parts: &Parts) -> Result<(), Refusal> {
    let method = &parts.method;
    let m = method.as_str();
    if !(3..=20).contains(&m.len()) {
        return Err(Refusal::BadRequest(
            "the request method must be 3 to 20 characters long",
        ));
    }
    if m.bytes().any(|b| b.is_ascii_lowercase() || b == b'#') {
        return Err(Refusal::BadRequest(
            "the request method has a lowercase letter or '#'; methods are uppercase (GET, POST, ...)",
        ));
    }
    let websocket = parts
        .extensions
        .get::<hyper::ext::Protocol>()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if *method == Method::CONNECT && !(websocket && parts.version == Version::HTTP_2) {
        return Err(Refusal::NotImplemented(
            "CONNECT is not supported: this server runs an application, it is not a forward proxy",
        ));
    }
    Ok(())
}

/// RFC 9112 §3.2: `*` (asterisk form) is for OPTIONS only, `host:port` (authority form) for
/// CONNECT only. HTTP/2 has no target forms: hyper builds the URI from the pseudo-headers.
fn check_target(parts: &Parts) -> Result<(), Refusal> {
    if parts.version == Version::HTTP_2 {
        return Ok(());
    }
    let uri = &parts.uri;
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(Refusal::BadRequest(
            "a host:port request target is only for CONNECT; send a path such as /",
        ));
    }
    if uri.scheme().is_none() && uri.path() == "*" && parts.method != Method::OPTIONS {
        return Err(Refusal::BadRequest(
            "the request target * is only for OPTIONS",
        ));
    }
    Ok(())
}

/// One `Content-Length`, all digits. hyper refuses differing values and anything but digits
/// on HTTP/1 already (and merges identical duplicates before we see them); this covers
/// HTTP/2 and keeps the rule in one place. With `Transfer-Encoding` too the length is
/// ambiguous: a request smuggling attempt.
fn check_content_length(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let Some(length) = lengths.next() else {
        return Ok(());
    };
    if lengths.next().is_some() {
        return Err(Refusal::BadRequest(
            "the request has more than one Content-Length header",
        ));
    }
    let digits = length.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::BadRequest(
            "the Content-Length header is not a number",
        ));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(Refusal::BadRequest(
            "the request has both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(())
}

/// hyper decodes only the chunking and accepts any coding list that ends in `chunked`; a body
/// in any other coding would reach the application still encoded (501). `identity` (no
/// coding; dropped from the registry but still sent) is ignored. `chunked` must be the last
/// coding and appear once (RFC 9112 §6.1), and HTTP/1.0 has no chunked coding (hyper refuses
/// that already).
fn check_transfer_encoding(parts: &Parts) -> Result<(), Refusal> {
    let mut codings = Vec::new();
    for value in parts.headers.get_all(TRANSFER_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(Refusal::BadRequest(
                "the Transfer-Encoding header is not ASCII",
            ));
        };
        codings.extend(value.split(',').map(str::trim).filter(|c| !c.is_empty()));
    }
    if codings.is_empty() {
        return Ok(());
    }
    if parts.version == Version::HTTP_10 {
        return Err(Refusal::BadRequest(
            "an HTTP/1.0 request cannot have a Transfer-Encoding",
        ));
    }
    let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
    if codings.iter().filter(|c| chunked(c)).count() > 1 {
        return Err(Refusal::BadRequest(
            "chunked is listed more than once in Transfer-Encoding",
        ));
    }
    if !codings.last().is_some_and(chunked) {
        return Err(Refusal::BadRequest(
            "chunked must be the last coding in Transfer-Encoding",
        ));
    }
    if codings
        .iter()
        .any(|c| !chunked(c) && !c.eq_ignore_ascii_case("identity"))
    {
        return Err(Refusal::NotImplemented(
            "the request uses a transfer coding other than chunked",
        ));
    }
    Ok(())
}

/// Fields a chunked body's trailer must not carry (RFC 9110 §6.5.1): framing, routing,
/// connection control and credentials. ferrule hands trailers to no one, but a request that
/// tries these is an attempt to make some other party in the chain read the message
/// differently.
const FORBIDDEN_TRAILERS: [HeaderName; 11] = [
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    TRAILER,
    HOST,
    CONNECTION,
    TE,
    UPGRADE,
    EXPECT,
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    COOKIE,
];

/// Check the trailer fields of a chunked request body.
pub fn check_trailers(trailers: &HeaderMap) -> Result<(), Refusal> {
    if FORBIDDEN_TRAILERS
        .iter()
        .any(|name| trailers.contains_key(name))
    {
        return Err(Refusal::BadRequest(
            "the chunked body's trailer has a field that belongs in the head (Content-Length, Host, Transfer-Encoding, ...)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
