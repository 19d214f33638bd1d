//! The response for a chosen representation: 200, 206 (one range or
//! `multipart/byteranges`), 304, 412 or 416, with or without a body (HEAD).
//!
//! [`decide`] is pure (validators and headers in, decision out); [`build`] turns the decision
//! into headers and a body, from memory when the file is there, else from the opened file.
//! Finding the file and choosing the representation is `mod.rs`'s.

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, LAST_MODIFIED, RANGE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::conditional::{self, Precondition};
use super::range::{self, Ranges};
use super::resource::{Rep, Resource};
use crate::response::{respond, OutBody, Part};

/// What to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    Whole,
    /// One `(first, last)` range, inclusive.
    Single(u64, u64),
    Multi(Vec<(u64, u64)>),
}

impl Decision {
    /// The response carries file bytes (so a file not in memory must be opened).
    pub fn sends_bytes(&self, method: &Method) -> bool {
        matches!(
            self,
            Decision::Whole | Decision::Single(..) | Decision::Multi(_)
        ) && method != Method::HEAD
    }
}

/// Decide from the request's conditional and range headers (RFC 9110 §13.2.2).
pub fn decide(parts: &Parts, rep: &Rep) -> Decision {
    let ranges_apply =
        match conditional::evaluate(&parts.headers, rep.etag.as_bytes(), rep.modified) {
            Precondition::NotModified => return Decision::NotModified,
            Precondition::Failed => return Decision::PreconditionFailed,
            Precondition::Proceed { ranges } => ranges,
        };
    // Range is defined for GET only (§14.2); HEAD gets the whole representation's headers.
    let range = match parts.headers.get(RANGE) {
        Some(r) if ranges_apply && parts.method == Method::GET => r,
        _ => return Decision::Whole,
    };
    match range::parse(range.as_bytes(), rep.len) {
        Ranges::Ignore => Decision::Whole,
        Ranges::Unsatisfiable => Decision::Unsatisfiable,
        Ranges::Satisfiable(mut v) if v.len() == 1 => {
            let (a, b) = v.pop().expect("one range");
            Decision::Single(a, b)
        }
        // The parts of a multipart body would each need the Content-Encoding; rather than a
        // body no client expects, send the whole compressed file (ignoring Range is allowed).
        Ranges::Satisfiable(_) if rep.coding.is_some() => Decision::Whole,
        Ranges::Satisfiable(v) => Decision::Multi(v),
    }
}

const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const ACCEPT_ENCODING: HeaderValue = HeaderValue::from_static("Accept-Encoding");

/// The response for `decision`. `file` is the opened file when the bytes are not in memory
/// and [`Decision::sends_bytes`].
pub fn build(
    decision: Decision,
    method: &Method,
    res: &Resource,
    rep: &Rep,
    file: Option<std::fs::File>,
) -> std::io::Result<Response<OutBody>> {
    let head = method == Method::HEAD;
    let (status, body) = match decision {
        Decision::PreconditionFailed => {
            let mut out = respond::text(
                StatusCode::PRECONDITION_FAILED,
                "A precondition of this request (If-Match or If-Unmodified-Since) does not hold.",
                false,
            );
            selected(out.headers_mut(), res, rep);
            return Ok(out);
        }
        Decision::Unsatisfiable => {
            let mut out = respond::text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "No requested range overlaps the file.",
                false,
            );
            let h = out.headers_mut();
            h.insert(
                CONTENT_RANGE,
                format!("bytes */{}", rep.len).try_into().expect("ASCII"),
            );
            h.insert(ACCEPT_RANGES, BYTES);
            selected(h, res, rep);
            return Ok(out);
        }
        Decision::NotModified => {
            let mut out = Response::new(OutBody::full(Bytes::new()));
            *out.status_mut() = StatusCode::NOT_MODIFIED;
            validators(out.headers_mut(), res, rep);
            return Ok(out);
        }
        Decision::Whole => {
            let body = match (head, &rep.content, file) {
                (true, ..) => OutBody::full(Bytes::new()),
                (false, Some(content), _) => OutBody::full(content.clone()),
                (false, None, Some(f)) => OutBody::file_range(f, 0, rep.len),
                (false, None, None) => return Err(no_file()),
            };
            (StatusCode::OK, body)
        }
        Decision::Single(a, b) => {
            let n = b - a + 1;
            let body = match (&rep.content, file) {
                (Some(content), _) => OutBody::full(content.slice(a as usize..=b as usize)),
                (None, Some(f)) => OutBody::file_range(f, a, n),
                (None, None) => return Err(no_file()),
            };
            let mut out = partial(body, n, res, rep);
            out.headers_mut().insert(
                CONTENT_RANGE,
                range::content_range((a, b), rep.len)
                    .try_into()
                    .expect("ASCII"),
            );
            return Ok(out);
        }
        Decision::Multi(ranges) => {
            let boundary = range::boundary();
            let (parts, total) = range::multipart(&ranges, rep.len, res.content_type, &boundary);
            let body = match (&rep.content, file) {
                (Some(content), _) => {
                    let parts = parts
                        .into_iter()
                        .map(|p| match p {
                            Part::File { offset, len } => {
                                Part::Bytes(content.slice(offset as usize..(offset + len) as usize))
                            }
                            bytes @ Part::Bytes(_) => bytes,
                        })
                        .collect();
                    OutBody::parts(parts, None, total)
                }
                (None, Some(f)) => OutBody::parts(parts, Some(f), total),
                (None, None) => return Err(no_file()),
            };
            let mut out = partial(body, total, res, rep);
            out.headers_mut().insert(
                CONTENT_TYPE,
                format!("multipart/byteranges; boundary={boundary}")
                    .try_into()
                    .expect("ASCII"),
            );
            return Ok(out);
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    let h = out.headers_mut();
    // Room for these and `mod.rs`'s security headers.
    h.reserve(12);
    h.insert(CONTENT_TYPE, HeaderValue::from_static(res.content_type));
    h.insert(CONTENT_LENGTH, rep.content_length.clone());
    if let Some(c) = rep.coding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c.token()));
    }
    validators(h, res, rep);
    Ok(out)
}

/// A 206 with the representation's headers; the caller adds `Content-Range` or replaces
/// `Content-Type` for a multipart body.
fn partial(body: OutBody, len: u64, res: &Resource, rep: &Rep) -> Response<OutBody> {
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = out.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(res.content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(c) = rep.coding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c.token()));
    }
    validators(h, res, rep);
    out
}

/// The headers a 200 shares with a 304 (RFC 9110 §15.4.5): validators, caching, `Vary`.
fn validators(h: &mut HeaderMap, res: &Resource, rep: &Rep) {
    h.insert(LAST_MODIFIED, rep.last_modified.clone());
    h.insert(CACHE_CONTROL, res.cache_control.clone());
    h.insert(ACCEPT_RANGES, BYTES);
    selected(h, res, rep);
}

/// What every answer about a representation says, a 412 or 416 included: its `ETag` (RFC 9110
/// §8.8.3: sent for the selected representation) and, when there are siblings, `Vary` (§12.5.5:
/// which representation was judged depends on `Accept-Encoding`).
fn selected(h: &mut HeaderMap, res: &Resource, rep: &Rep) {
    h.insert(ETAG, rep.etag.clone());
    if res.varies() {
        h.insert(VARY, ACCEPT_ENCODING);
    }
}

fn no_file() -> std::io::Error {
    std::io::Error::other("a static file body was asked for without the file being opened")
}
