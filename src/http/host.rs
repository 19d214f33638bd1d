//! Host syntax: whether a request's `Host` header, and the authority of its target (an
//! absolute-form HTTP/1 target, an HTTP/2 `:authority`), is `uri-host [ ":" port ]`
//! (RFC 9110 §7.2, RFC 3986 §3.2.2).
//!
//! hyper passes any field value through, so a `Host` with a space, a path, user information
//! or an unclosed IPv6 literal would reach the application, which builds URLs from it (a
//! redirect, a password-reset link) and may cache them. This file only says what a
//! well-formed host is; whether a well-formed host is *allowed* is the application's business
//! (Django's `ALLOWED_HOSTS`). The check runs with admission (`admission.rs`), before Python.
//!
//! Looser than `forwarded::valid_host` on purpose: that one vets a host a proxy hands over
//! to stand in for the client's, this one only refuses what RFC 3986 does not allow. Clients
//! of a Unix socket send what is not a DNS name but is a `reg-name`: requests-unixsocket
//! sends the socket's path percent-encoded (`Host: %2Frun%2Fapp.sock`).

use http::header::HOST;
use http::request::Parts;
use http::{HeaderValue, Version};

use super::admission::Refusal;

/// Refuse a request whose `Host` header or target authority is not a host.
pub fn check(parts: &Parts) -> Result<(), Refusal> {
    for value in parts.headers.get_all(HOST) {
        if malformed(value.as_bytes()).is_some() {
            return Err(Refusal::BadRequest(
                "the Host header is not a host name or address with an optional port",
            ));
        }
    }
    if let Some(authority) = parts.uri.authority() {
        let authority = authority.as_str();
        // An absolute-form HTTP/1 target may carry user information (`http://u:p@host/`,
        // valid in gunicorn's corpus); an HTTP/2 `:authority` must not (RFC 9113 §8.3.1).
        let host = match parts.version {
            Version::HTTP_2 => authority,
            _ => authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        };
        if malformed(host.as_bytes()).is_some() {
            return Err(Refusal::BadRequest(
                "the authority of the request target is not a host name or address with an optional port",
            ));
        }
    }
    Ok(())
}

/// One authority per request (call after [`check`]): an absolute-form HTTP/1 target's
/// replaces the `Host` header (RFC 9112 §3.2.2: the server must ignore the received one), so
/// the application checks the host the request is really for; an HTTP/2 request whose
/// `host` disagrees with its `:authority` is refused (RFC 9113 §8.3.1 requires them to be
/// the same).
pub fn one_authority(parts: &mut Parts) -> Result<(), Refusal> {
    let Some(authority) = parts.uri.authority() else {
        return Ok(());
    };
    if parts.version == Version::HTTP_2 {
        let scheme = parts.uri.scheme_str();
        let authority = normal(authority.as_str().as_bytes(), scheme);
        let agrees = parts
            .headers
            .get_all(HOST)
            .iter()
            .all(|host| normal(host.as_bytes(), scheme).eq_ignore_ascii_case(&authority));
        return if agrees {
            Ok(())
        } else {
            Err(Refusal::BadRequest(
                "the host header disagrees with the :authority of the request",
            ))
        };
    }
    let host = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, host)| host);
    // `check` passed it as a host, and a host is a valid field value.
    let value = HeaderValue::from_str(host)
        .map_err(|_| Refusal::BadRequest("the authority of the request target is not a host"))?;
    parts.headers.insert(HOST, value);
    Ok(())
}

/// A host as RFC 9110 §4.2.3 normalizes it for comparison: without the scheme's default
/// port or a trailing dot (case is left to the comparison).
fn normal(host: &[u8], scheme: Option<&str>) -> Vec<u8> {
    let default = match scheme {
        Some("https") => &b":443"[..],
        _ => &b":80"[..],
    };
    let host = host.strip_suffix(default).unwrap_or(host);
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.ends_with(b"]") => host.split_at(i),
        _ => (host, &b""[..]),
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    [name, port].concat()
}

/// Why `value` is not `uri-host [ ":" port ]`, or `None` when it is. Empty is a host: RFC
/// 9112 §3.2 allows an empty `Host` for a target without an authority.
fn malformed(value: &[u8]) -> Option<&'static str> {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|&b| b == b']') else {
            return Some("an IP literal without its closing bracket");
        };
        let inside = &literal[..end];
        if inside.is_empty() || !inside.iter().all(|&b| ip_literal(b)) {
            return Some("an IP literal with a character no address has");
        }
        (&[][..], &literal[end + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &[][..]),
        }
    };
    if !reg_name(host) {
        return Some("a host name with a character RFC 3986 does not allow");
    }
    match port.split_first() {
        None => None,
        Some((b':', digits)) if digits.iter().all(u8::is_ascii_digit) => None,
        Some((b':', _)) => Some("a port that is not a number"),
        Some(_) => Some("something after an IP literal other than a port"),
    }
}

/// RFC 3986 `reg-name` (which covers IPv4 addresses): unreserved characters, sub-delims and
/// percent-encodings.
fn reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if unreserved(b) || sub_delim(b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// What may stand between the brackets of an IP literal: an IPv6 address (with an RFC 6874
/// zone, `%25` and unreserved characters) or an RFC 3986 `IPvFuture`.
fn ip_literal(b: u8) -> bool {
    unreserved(b) || sub_delim(b) || b == b':' || b == b'%'
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in [
            "",
            "localhost",
            "example.com:8080",
            "example.com:",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "[fe80::1%25eth0]:8000",
            "[v1.fe]",
            "xn--bcher-kva.example",
            "under_score.example.",
            "caf%C3%A9.example",
            "%2Frun%2Fapp.sock",
        ] {
            assert_eq!(malformed(good.as_bytes()), None, "{good:?}");
        }
        for bad in [
            "a b",
            "[::1",
            "[::1]x",
            "[]",
            "[::1]:8o",
            "::1",
            "example.com/path",
            "example.com?q",
            "example.com#f",
            "user@example.com",
            "a\\b",
            "a:1:2",
            "a:b",
            "a\tb",
            "%zz.example",
            "caf\u{e9}.example",
        ] {
            assert!(malformed(bad.as_bytes()).is_some(), "{bad:?}");
        }
    }

    fn parts(target: &str, host: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri(target);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).expect("a valid test request").into_parts().0
    }

    #[test]
    fn check_looks_at_the_header_and_the_authority() {
        assert!(check(&parts("/", Some("example.com"))).is_ok());
        assert!(check(&parts("/", None)).is_ok());
        assert!(check(&parts("/", Some("a/b"))).is_err());
        assert!(check(&parts("http://example.com/", Some("example.com"))).is_ok());
        assert!(check(&parts("http://user@example.com/", Some("example.com"))).is_ok());
        let mut h2 = parts("http://user@example.com/", None);
        h2.version = Version::HTTP_2;
        assert!(check(&h2).is_err());
    }

    #[test]
    fn an_absolute_target_s_authority_replaces_host_and_h2_must_agree() {
        let mut h1 = parts("http://u:p@evil.example:81/echo", Some("x"));
        one_authority(&mut h1).unwrap();
        assert_eq!(h1.headers[HOST], "evil.example:81");
        let mut origin_form = parts("/echo", Some("x"));
        one_authority(&mut origin_form).unwrap();
        assert_eq!(origin_form.headers[HOST], "x");
        for (host, ok) in [
            (None, true),
            (Some("Example.com"), true),
            (Some("example.com:443"), true),
            (Some("example.com."), true),
            (Some("example.com:80"), false),
            (Some("x"), false),
        ] {
            let mut h2 = parts("https://example.com/", host);
            h2.version = Version::HTTP_2;
            assert_eq!(one_authority(&mut h2).is_ok(), ok, "{host:?}");
        }
    }
}
