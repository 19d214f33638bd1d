//! PEP 3333's rules for a response head, as pure functions: the status line, each header
//! (an HTTP token for a name, latin-1 without control characters for a value, no hop-by-hop
//! header), the application's `Content-Length`, and which statuses carry a body. Taking the
//! values out of Python objects and enforcing them on a response is `start_response.rs`'s.

use http::{HeaderName, HeaderValue, StatusCode};

/// Headers that describe the connection, not the response; PEP 3333 forbids them.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether a response with `status` may have a body (RFC 9110: not 1xx, 204 or 304).
pub fn permits_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// `status` (`'200 OK'`) as a status code, or why it is not one.
pub fn parse_status(s: &str) -> Result<StatusCode, String> {
    let bytes = s.as_bytes();
    let ok_shape =
        bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ';
    if !ok_shape {
        return Err(format!("invalid status {s:?}: expected a three-digit code, a space and a reason phrase such as '200 OK' (see PEP 3333)"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "invalid status {s:?}: it contains a control character (see PEP 3333)"
        ));
    }
    StatusCode::from_bytes(&bytes[..3])
        .map_err(|_| format!("invalid status {s:?}: the code must be between 100 and 999"))
}

/// A response header as the application gave it, checked, or why it cannot be sent.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!("invalid response header name {name:?}: it must be an HTTP token (see PEP 3333)")
    })?;
    if HOP_BY_HOP.contains(&header.as_str()) {
        return Err(format!("{name:?} is a hop-by-hop header; it cannot be used by a WSGI application (see PEP 3333)"));
    }
    // An ASCII value is its own latin-1 bytes: no copy to make them.
    let value_bytes: std::borrow::Cow<'_, [u8]> = if value.is_ascii() {
        value.as_bytes().into()
    } else {
        let latin1: Option<Vec<u8>> = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect();
        latin1.ok_or_else(|| {
            format!("invalid value {value:?} for response header {name:?}: it must be encodable as latin-1 (see PEP 3333)")
        })?.into()
    };
    let value = HeaderValue::from_bytes(&value_bytes).map_err(|_| {
        format!("invalid value {value:?} for response header {name:?}: it contains a control character (see PEP 3333)")
    })?;
    Ok((header, value))
}

/// The application's `Content-Length`: digits only, one number.
pub fn parse_content_length(value: &HeaderValue) -> Result<u64, String> {
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            format!("invalid Content-Length header value {value:?} from the application")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200 OK").unwrap(), StatusCode::OK);
        assert_eq!(parse_status("599 Custom thing").unwrap().as_u16(), 599);
        assert_eq!(parse_status("204 ").unwrap(), StatusCode::NO_CONTENT);
        for bad in [
            "200",
            "abc",
            "20 OK",
            "2000 OK",
            "200 OK\r\nX: y",
            "099 Low",
        ] {
            assert!(
                parse_status(bad).unwrap_err().contains("invalid status"),
                "{bad}"
            );
        }
    }

    #[test]
    fn headers() {
        assert!(parse_header("Content-Type", "text/html").is_ok());
        assert!(parse_header("X-Latin", "caf\u{e9}").is_ok());
        assert!(parse_header("Connection", "close")
            .unwrap_err()
            .contains("hop-by-hop"));
        assert!(parse_header("Bad Name", "x")
            .unwrap_err()
            .contains("HTTP token"));
        assert!(parse_header("X-Split", "a\r\nInjected: 1")
            .unwrap_err()
            .contains("control character"));
        assert!(parse_header("X-Wide", "\u{263a}")
            .unwrap_err()
            .contains("latin-1"));
    }

    #[test]
    fn content_lengths() {
        assert_eq!(
            parse_content_length(&HeaderValue::from_static("42")),
            Ok(42)
        );
        assert_eq!(
            parse_content_length(&HeaderValue::from_static(" 7 ")),
            Ok(7)
        );
        for bad in ["", "-1", "1e3", "0x10", "1, 2", "99999999999999999999999"] {
            assert!(
                parse_content_length(&HeaderValue::from_str(bad).unwrap()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bodies_follow_the_status() {
        assert!(permits_body(StatusCode::OK));
        assert!(permits_body(StatusCode::NOT_FOUND));
        for none in [
            StatusCode::CONTINUE,
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
        ] {
            assert!(!permits_body(none), "{none}");
        }
    }
}
