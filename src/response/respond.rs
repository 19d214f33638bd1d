//! Responses the server makes itself: refusals, errors, and the 503 of a full queue.
//!
//! Bodies are short plain text that says what went wrong and, where the client can do
//! something about it, what. Statuses follow the contract in `docs/architecture.md`.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use super::OutBody;

/// A plain-text response from the server itself. `close` asks hyper to end the connection
/// afterwards, for requests whose body was not (or could not be) read.
pub fn text(status: StatusCode, message: &str, close: bool) -> Response<OutBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {reason}\n\n{message}\n", status.as_u16());
    let mut resp = Response::new(OutBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The request announces a body. A response the server makes without reading it must close
/// the connection (`text(…, true)`), since the unread bytes would be taken for the next request.
pub fn has_body(parts: &Parts) -> bool {
    parts.headers.contains_key(TRANSFER_ENCODING)
        || parts
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// 503 for a full queue, with the Retry-After clients and proxies understand.
pub fn queue_full() -> Response<OutBody> {
    // One second: long enough for a full queue of fast requests to drain.
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is busy; every worker thread is taken and the queue is full. Retry shortly.",
        false,
        "1",
    )
}

/// A response of the server's own ([`text`]) telling the client when to retry (`Retry-After`).
pub fn retry_later(
    status: StatusCode,
    message: &str,
    close: bool,
    seconds: &'static str,
) -> Response<OutBody> {
    let mut resp = text(status, message, close);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(seconds));
    resp
}

pub fn internal_error() -> Response<OutBody> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The server could not complete this request.",
        false,
    )
}
