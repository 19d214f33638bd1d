//! Validators and conditional requests (RFC 9110 §8.8, §13).
//!
//! Makes the strong `ETag` and the `Last-Modified` of a file, and evaluates `If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and `If-Range` in the order
//! §13.2.2 gives. Only GET and HEAD reach here (anything else is a 405 first). Building the
//! 304/412 responses is `response.rs`'s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, HeaderValue};

/// A strong entity tag from what changes when a file does: its modification time (to the
/// nanosecond) and length, plus the content coding of a precompressed sibling, so each
/// representation of a URL has its own tag. Made from metadata only, so every worker process
/// and every replica with the same files agrees (as nginx's tags do).
pub fn etag(mtime_ns: i128, len: u64, coding: Option<&str>) -> String {
    let t = mtime_ns as u128 & u128::from(u64::MAX);
    match coding {
        None => format!("\"{t:x}-{len:x}\""),
        Some(c) => format!("\"{t:x}-{len:x}-{c}\""),
    }
}

/// `Last-Modified` as whole seconds since the epoch (HTTP dates have no finer resolution).
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// What the preconditions of a GET or HEAD decide.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Send the representation; `ranges` is false when an `If-Range` did not match (the whole
    /// representation goes out even if a `Range` was asked for).
    Proceed { ranges: bool },
    /// 304.
    NotModified,
    /// 412.
    Failed,
}

/// Evaluate the request's preconditions against a representation with tag `etag` (with its
/// quotes) last modified at `modified` (seconds since the epoch).
pub fn evaluate(headers: &HeaderMap, etag: &[u8], modified: u64) -> Precondition {
    if headers.contains_key(IF_MATCH) {
        let values = headers.get_all(IF_MATCH).iter().map(HeaderValue::as_bytes);
        if !list_matches(values, etag, Comparison::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(since) = date(headers, IF_UNMODIFIED_SINCE) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    if headers.contains_key(IF_NONE_MATCH) {
        let values = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .map(HeaderValue::as_bytes);
        if list_matches(values, etag, Comparison::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = date(headers, IF_MODIFIED_SINCE) {
        if modified <= since {
            return Precondition::NotModified;
        }
    }
    let ranges = match headers.get(IF_RANGE) {
        None => true,
        Some(v) => if_range_holds(v.as_bytes(), etag, modified),
    };
    Precondition::Proceed { ranges }
}

/// `If-Range`: an entity tag must match strongly, a date must be exactly `Last-Modified`.
fn if_range_holds(value: &[u8], etag: &[u8], modified: u64) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return value == etag;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
        .is_some_and(|t| secs(t) == Some(modified))
}

/// A date header, ignored (None) when absent, repeated or not an HTTP-date.
fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<u64> {
    let mut all = headers.get_all(&name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let t = httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()?;
    secs(t)
}

fn secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal (If-Match).
    Strong,
    /// Equal opaque tags, weak or not (If-None-Match).
    Weak,
}

/// Does an `If-Match`/`If-None-Match` list (`*` or entity tags, possibly over several field
/// lines) match `etag` (always strong here)? A malformed list matches nothing from where it
/// goes wrong.
fn list_matches<'a>(values: impl Iterator<Item = &'a [u8]>, etag: &[u8], how: Comparison) -> bool {
    for value in values {
        let mut rest = value;
        loop {
            rest = skip_separators(rest);
            if rest.is_empty() {
                break;
            }
            if rest[0] == b'*' {
                return true;
            }
            let weak = rest.starts_with(b"W/");
            let tag_start = if weak { &rest[2..] } else { rest };
            if tag_start.first() != Some(&b'"') {
                break;
            }
            let Some(close) = tag_start[1..].iter().position(|&b| b == b'"') else {
                break;
            };
            let tag = &tag_start[..close + 2];
            if tag == etag && (how == Comparison::Weak || !weak) {
                return true;
            }
            rest = &tag_start[close + 2..];
        }
    }
    false
}

fn skip_separators(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b','))
        .count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &[u8] = b"\"abc-10\"";
    // Sun, 06 Nov 1994 08:49:37 GMT
    const MODIFIED: u64 = 784_111_777;

    fn eval(headers: &[(&str, &str)]) -> Precondition {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        evaluate(&map, TAG, MODIFIED)
    }

    const GO: Precondition = Precondition::Proceed { ranges: true };
    const NO_RANGES: Precondition = Precondition::Proceed { ranges: false };
    const NOT_MODIFIED: Precondition = Precondition::NotModified;
    const FAILED: Precondition = Precondition::Failed;

    #[test]
    fn conditional_table() {
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let later = "Sun, 06 Nov 1994 08:49:38 GMT";
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        for (headers, want) in [
            (vec![], GO),
            // If-None-Match: weak comparison, lists, *, several lines
            (vec![("if-none-match", "\"abc-10\"")], NOT_MODIFIED),
            (vec![("if-none-match", "W/\"abc-10\"")], NOT_MODIFIED),
            (vec![("if-none-match", "\"x\", \"abc-10\"")], NOT_MODIFIED),
            (vec![("if-none-match", "\"x\",W/\"abc-10\"")], NOT_MODIFIED),
            (
                vec![("if-none-match", "\"x\""), ("if-none-match", "\"abc-10\"")],
                NOT_MODIFIED,
            ),
            (vec![("if-none-match", "*")], NOT_MODIFIED),
            (vec![("if-none-match", "\"x\"")], GO),
            (vec![("if-none-match", "\"abc-1\"")], GO),
            (vec![("if-none-match", "abc-10")], GO), // unquoted: malformed
            (vec![("if-none-match", "\"abc-10")], GO), // unterminated
            // If-None-Match present: If-Modified-Since is ignored
            (
                vec![("if-none-match", "\"x\""), ("if-modified-since", same)],
                GO,
            ),
            // If-Modified-Since
            (vec![("if-modified-since", same)], NOT_MODIFIED),
            (vec![("if-modified-since", later)], NOT_MODIFIED),
            (vec![("if-modified-since", earlier)], GO),
            (vec![("if-modified-since", "yesterday")], GO),
            (
                vec![("if-modified-since", same), ("if-modified-since", same)],
                GO,
            ),
            (
                vec![("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
                NOT_MODIFIED,
            ),
            (
                vec![("if-modified-since", "Sun Nov  6 08:49:37 1994")],
                NOT_MODIFIED,
            ),
            // If-Match: strong comparison
            (vec![("if-match", "\"abc-10\"")], GO),
            (vec![("if-match", "*")], GO),
            (vec![("if-match", "W/\"abc-10\"")], FAILED),
            (vec![("if-match", "\"x\"")], FAILED),
            // If-Unmodified-Since, ignored when If-Match is present
            (vec![("if-unmodified-since", earlier)], FAILED),
            (vec![("if-unmodified-since", same)], GO),
            (
                vec![("if-match", "\"abc-10\""), ("if-unmodified-since", earlier)],
                GO,
            ),
            // If-Range: strong tag or exact date
            (vec![("if-range", "\"abc-10\"")], GO),
            (vec![("if-range", "W/\"abc-10\"")], NO_RANGES),
            (vec![("if-range", "\"other\"")], NO_RANGES),
            (vec![("if-range", same)], GO),
            (vec![("if-range", later)], NO_RANGES),
            (vec![("if-range", earlier)], NO_RANGES),
            (vec![("if-range", "garbage")], NO_RANGES),
            // 304 wins over If-Range
            (
                vec![("if-none-match", "\"abc-10\""), ("if-range", "\"x\"")],
                NOT_MODIFIED,
            ),
        ] {
            assert_eq!(eval(&headers), want, "{headers:?}");
        }
    }

    #[test]
    fn tags_differ_per_coding_and_change_with_the_file() {
        let id = etag(1_700_000_000_123_456_789, 10_240, None);
        assert!(id.starts_with('"') && id.ends_with('"'));
        let gz = etag(1_700_000_000_123_456_789, 10_240, Some("gzip"));
        let br = etag(1_700_000_000_123_456_789, 10_240, Some("br"));
        assert_ne!(id, gz);
        assert_ne!(gz, br);
        assert_ne!(id, etag(1_700_000_000_123_456_790, 10_240, None));
        assert_ne!(id, etag(1_700_000_000_123_456_789, 10_241, None));
    }

    #[test]
    fn dates_format_as_http_dates() {
        assert_eq!(http_date(MODIFIED), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
