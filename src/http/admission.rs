//! Admission: the checks a request head must pass before anything else looks at it.
//!
//! hyper has parsed the head already and refused what it cannot parse (400), an over-long
//! head (431) and a too-long target (414). What is left to us: the configured request-line
//! and header limits, `Host` rules and the transfer codings we do not implement. A refused
//! request gets its status here and never reaches Python. Turning a refusal into a response
//! is `http/respond.rs`'s job.

use http::header::{HOST, TRANSFER_ENCODING};
use http::request::Parts;
use std::borrow::Cow;

use http::{StatusCode, Version};

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
    let target = request_target_of(parts).len();
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
    for (name, value) in &parts.headers {
        // "Name: value" without the CRLF, as gunicorn counts it.
        if name.as_str().len() + 2 + value.len() > limits.field_size {
            return Err(Refusal::HeadersTooLarge(
                "a header field is larger than --limit-request-field-size",
            ));
        }
    }
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
    check_transfer_encoding(parts)
}

/// hyper accepts any coding list that ends in `chunked` and decodes only the chunking; a body
/// in any other coding would reach the application still encoded.
fn check_transfer_encoding(parts: &Parts) -> Result<(), Refusal> {
    let mut chunked = 0;
    for value in parts.headers.get_all(TRANSFER_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(Refusal::BadRequest(
                "the Transfer-Encoding header is not ASCII",
            ));
        };
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else {
                return Err(Refusal::NotImplemented(
                    "the request uses a transfer coding other than chunked",
                ));
            }
        }
    }
    if chunked > 1 {
        return Err(Refusal::BadRequest(
            "chunked is listed more than once in Transfer-Encoding",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            request_line: 4094,
            fields: 100,
            field_size: 8190,
            max_body: 1 << 20,
            body_buffer: 1024,
        }
    }

    fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().method("GET").uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn admission_table() {
        let long = format!("/{}", "a".repeat(4100));
        let big = "b".repeat(8190);
        let many: Vec<(String, &str)> = (0..101).map(|i| (format!("x-h{i}"), "v")).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let cases: Vec<(&str, Parts, Result<(), Refusal>)> = vec![
            ("plain", parts("/a?b=c", &[("host", "x")]), Ok(())),
            (
                "no host",
                parts("/", &[]),
                Err(Refusal::BadRequest(
                    "an HTTP/1.1 request must have a Host header",
                )),
            ),
            (
                "two hosts",
                parts("/", &[("host", "a"), ("host", "b")]),
                Err(Refusal::BadRequest(
                    "the request has more than one Host header",
                )),
            ),
            (
                "long line",
                parts(&long, &[("host", "x")]),
                Err(Refusal::UriTooLong),
            ),
            (
                "big field",
                parts("/", &[("host", "x"), ("x-big", &big)]),
                Err(Refusal::HeadersTooLarge(
                    "a header field is larger than --limit-request-field-size",
                )),
            ),
            (
                "chunked",
                parts("/", &[("host", "x"), ("transfer-encoding", "chunked")]),
                Ok(()),
            ),
            (
                "gzip",
                parts(
                    "/",
                    &[("host", "x"), ("transfer-encoding", "gzip, chunked")],
                ),
                Err(Refusal::NotImplemented(
                    "the request uses a transfer coding other than chunked",
                )),
            ),
            (
                "chunked twice",
                parts(
                    "/",
                    &[
                        ("host", "x"),
                        ("transfer-encoding", "chunked"),
                        ("transfer-encoding", "chunked"),
                    ],
                ),
                Err(Refusal::BadRequest(
                    "chunked is listed more than once in Transfer-Encoding",
                )),
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(admit(&p, &limits()), want, "{name}");
        }
        let mut h2 = parts("https://example.com:8443/a?b", &[]);
        h2.version = Version::HTTP_2;
        assert_eq!(admit(&h2, &limits()), Ok(()), "HTTP/2 needs no Host");
        assert_eq!(request_target_of(&h2), "/a?b");
        h2.version = Version::HTTP_11;
        assert_eq!(request_target_of(&h2), "https://example.com:8443/a?b");
        let mut p = parts("/", &many);
        p.headers.insert("host", "x".parse().unwrap());
        assert_eq!(
            admit(&p, &limits()).unwrap_err().status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
