//! `Range` header parsing. Input: an optional first line with the representation's length in
//! decimal (default 10000), then the header value.
//!
//! Invariants: no panic or overflow; every satisfiable range is `first <= last < len`; at
//! most 64 of them, none overlapping or touching another; the multipart body's announced
//! length is the sum of its parts. Lengths are capped at `i64::MAX`, the largest file Linux
//! can hold (`off_t`).
#![no_main]

use _ferrule::fuzzing::{content_range, multipart, parse_range, Part, Ranges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (len, value) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) if data[..nl].iter().all(u8::is_ascii_digit) => {
            let len = data[..nl].iter().fold(0u64, |n, d| {
                n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            (len.min(i64::MAX as u64), &data[nl + 1..])
        }
        _ => (10_000, data),
    };
    let Ranges::Satisfiable(ranges) = parse_range(value, len) else {
        return;
    };
    assert!(!ranges.is_empty() && ranges.len() <= 64, "{ranges:?}");
    for &(first, last) in &ranges {
        assert!(first <= last && last < len, "({first}, {last}) of {len}");
        let _ = content_range((first, last), len);
    }
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        assert!(w[0].1 + 1 < w[1].0, "overlapping or touching: {ranges:?}");
    }
    let (parts, total) = multipart(&ranges, len, "text/plain", "BOUNDARY");
    let sum: u64 = parts
        .iter()
        .map(|p| match p {
            Part::Bytes(b) => b.len() as u64,
            Part::File { len, .. } => *len,
        })
        .sum();
    assert_eq!(sum, total);
});
