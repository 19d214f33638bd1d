//! `Range: bytes=…` (RFC 9110 §14.1–14.2) and the `multipart/byteranges` body (§14.6).
//!
//! Parsing decides between "ignore the header" (send the whole file), "nothing satisfiable"
//! (416) and a list of byte ranges. Whether the header applies at all (GET only, `If-Range`)
//! is `conditional.rs`'s; sending the parts is `response/body.rs`'s.

use bytes::Bytes;

use crate::response::Part;

/// More ranges than this in one request and the header is ignored (the whole file is sent,
/// which RFC 9110 allows). Real clients ask for one, or a handful (PDF viewers); 64 is
/// arbitrary, well above those and well below what makes a response mostly part headers.
const MAX_RANGES: usize = 64;

/// What a `Range` header asks of a representation `len` bytes long.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    /// Not a byte range request we honour: send the whole representation.
    Ignore,
    /// No range overlaps the representation: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// One or more `(first, last)` byte positions, inclusive, in the order to send them.
    Satisfiable(Vec<(u64, u64)>),
}

/// Parse a `Range` field value for a representation of `len` bytes.
pub fn parse(value: &[u8], len: u64) -> Ranges {
    let Some(unit_end) = value.iter().position(|&b| b == b'=') else {
        return Ranges::Ignore;
    };
    if !value[..unit_end].eq_ignore_ascii_case(b"bytes") {
        return Ranges::Ignore;
    }
    let mut wanted = Vec::new();
    let mut listed = 0usize;
    for spec in value[unit_end + 1..].split(|&b| b == b',') {
        let spec = spec.trim_ascii();
        if spec.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 §5.6.1)
        }
        listed += 1;
        if listed > MAX_RANGES {
            return Ranges::Ignore;
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else {
            return Ranges::Ignore;
        };
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        let range = match (number(first), number(last)) {
            // `-N`: the last N bytes.
            (None, Some(n)) if first.is_empty() => {
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            // `A-`: from A to the end.
            (Some(a), None) if last.is_empty() => (a < len).then(|| (a, len - 1)),
            (Some(a), Some(b)) if a <= b => (a < len).then(|| (a, b.min(len - 1))),
            _ => return Ranges::Ignore,
        };
        wanted.extend(range);
    }
    if listed == 0 {
        return Ranges::Ignore;
    }
    if wanted.is_empty() {
        return Ranges::Unsatisfiable;
    }
    Ranges::Satisfiable(coalesce(wanted))
}

/// Ranges that overlap or touch are merged (sorted) so no byte is sent twice; ranges that
/// are apart keep the client's order. RFC 9110 §14.2 allows both.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    let overlapping = sorted
        .windows(2)
        .any(|w| w[1].0 <= w[0].1.saturating_add(1));
    if !overlapping {
        return ranges;
    }
    ranges.clear();
    for (a, b) in sorted {
        match ranges.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => ranges.push((a, b)),
        }
    }
    ranges
}

/// Digits as a number; saturating, so an absurd first position is simply past the end and an
/// absurd last one is clamped. `None` for an empty or non-digit field.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The `Content-Range` value of one range.
pub fn content_range((first, last): (u64, u64), len: u64) -> String {
    format!("bytes {first}-{last}/{len}")
}

/// A `multipart/byteranges` body: each range as a part with its own `Content-Type` and
/// `Content-Range`, file bytes as [`Part::File`] (to be read, or sliced from memory by the
/// caller). Returns the parts and their total length.
pub fn multipart(
    ranges: &[(u64, u64)],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> (Vec<Part>, u64) {
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut total = 0u64;
    for (i, &r) in ranges.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            content_range(r, len)
        );
        total += head.len() as u64 + (r.1 - r.0 + 1);
        parts.push(Part::Bytes(Bytes::from(head)));
        parts.push(Part::File {
            offset: r.0,
            len: r.1 - r.0 + 1,
        });
    }
    let end = format!("\r\n--{boundary}--\r\n");
    total += end.len() as u64;
    parts.push(Part::Bytes(Bytes::from(end)));
    (parts, total)
}

/// A boundary unlikely to occur in any file: 20 hex digits from the process's random hash
/// keys and a counter (not secret; it only has to be unpredictable to file authors).
pub fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("ferrule{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sat(v: &[(u64, u64)]) -> Ranges {
        Ranges::Satisfiable(v.to_vec())
    }

    #[test]
    fn parse_table() {
        for (header, len, want) in [
            ("bytes=0-4", 10, sat(&[(0, 4)])),
            ("bytes=0-0", 10, sat(&[(0, 0)])),
            ("bytes=5-", 10, sat(&[(5, 9)])),
            ("bytes=-3", 10, sat(&[(7, 9)])),
            ("bytes=-30", 10, sat(&[(0, 9)])),
            ("bytes=2-100", 10, sat(&[(2, 9)])),
            ("bytes=9-9", 10, sat(&[(9, 9)])),
            ("BYTES=0-1", 10, sat(&[(0, 1)])),
            ("bytes= 0-1 , 4-5 ", 10, sat(&[(0, 1), (4, 5)])),
            ("bytes=4-5,0-1", 10, sat(&[(4, 5), (0, 1)])),
            // overlapping or adjacent ranges are merged, sorted
            ("bytes=0-4,2-6", 10, sat(&[(0, 6)])),
            ("bytes=5-6,0-4", 10, sat(&[(0, 6)])),
            ("bytes=0-1,-2,1-3", 10, sat(&[(0, 3), (8, 9)])),
            // unsatisfiable members are dropped; none left is 416
            ("bytes=10-", 10, Ranges::Unsatisfiable),
            ("bytes=10-20", 10, Ranges::Unsatisfiable),
            ("bytes=-0", 10, Ranges::Unsatisfiable),
            ("bytes=0-1,20-30", 10, sat(&[(0, 1)])),
            ("bytes=0-", 0, Ranges::Unsatisfiable),
            ("bytes=-5", 0, Ranges::Unsatisfiable),
            ("bytes=99999999999999999999999-", 10, Ranges::Unsatisfiable),
            ("bytes=0-99999999999999999999999", 10, sat(&[(0, 9)])),
            // not honoured: ignored, the whole file goes out
            ("bytes=5-4", 10, Ranges::Ignore),
            ("bytes=a-b", 10, Ranges::Ignore),
            ("bytes=-", 10, Ranges::Ignore),
            ("bytes=1", 10, Ranges::Ignore),
            ("bytes=", 10, Ranges::Ignore),
            ("bytes=,", 10, Ranges::Ignore),
            ("bytes=0-1;x", 10, Ranges::Ignore),
            ("bytes=+1-2", 10, Ranges::Ignore),
            ("items=0-1", 10, Ranges::Ignore),
            ("0-1", 10, Ranges::Ignore),
            ("bytes 0-1", 10, Ranges::Ignore),
        ] {
            assert_eq!(parse(header.as_bytes(), len), want, "{header} of {len}");
        }
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..65).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        let header = format!("bytes={}", many.join(","));
        assert_eq!(parse(header.as_bytes(), 1000), Ranges::Ignore);
        let header = format!("bytes={}", many[..64].join(","));
        assert!(matches!(parse(header.as_bytes(), 1000), Ranges::Satisfiable(v) if v.len() == 64));
    }

    #[test]
    fn multipart_layout_and_length() {
        let (parts, total) = multipart(&[(0, 1), (5, 7)], 10, "text/plain", "XYZ");
        let content = b"0123456789";
        let mut body = Vec::new();
        for p in &parts {
            match p {
                Part::Bytes(b) => body.extend_from_slice(b),
                Part::File { offset, len } => {
                    body.extend_from_slice(&content[*offset as usize..(*offset + *len) as usize]);
                }
            }
        }
        let want = "--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
                    \r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-7/10\r\n\r\n567\
                    \r\n--XYZ--\r\n";
        assert_eq!(String::from_utf8(body.clone()).unwrap(), want);
        assert_eq!(total, body.len() as u64);
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(boundary(), boundary());
        assert!(boundary().len() >= 20);
    }
}
