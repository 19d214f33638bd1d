//! The admission layer on raw request heads: bytes → httparse (as hyper) → `admit`.
//!
//! Invariants: `admit` never panics; a refusal has a 4xx/501 status and a reason; limits are
//! monotone (a head admitted under tight limits is admitted under the defaults); an admitted
//! head has at most one `Host` (exactly one for HTTP/1.1) and no transfer coding but a single
//! `chunked`.
#![no_main]

use _ferrule::fuzzing::{admit, request_target_of, Limits};
use ferrule_fuzz::{default_limits, head};
use http::header::{HOST, TRANSFER_ENCODING};
use http::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((parts, _)) = head(data) else {
        return;
    };
    let _ = request_target_of(&parts);
    let wide = admit(&parts, &default_limits());
    let tight = admit(
        &parts,
        &Limits {
            request_line: 32,
            fields: 3,
            field_size: 24,
            max_body: 0,
            body_buffer: 0,
        },
    );
    for refusal in [wide, tight].into_iter().filter_map(Result::err) {
        let status = refusal.status().as_u16();
        assert!((400..500).contains(&status) || status == 501, "{refusal:?}");
        assert!(!refusal.reason().is_empty());
    }
    if tight.is_ok() {
        assert_eq!(
            wide,
            Ok(()),
            "admitted under tight limits but not the defaults"
        );
    }
    if wide.is_ok() {
        let hosts = parts.headers.get_all(HOST).iter().count();
        assert!(hosts <= 1, "admitted with {hosts} Host headers");
        if parts.version == Version::HTTP_11 {
            assert_eq!(hosts, 1, "admitted an HTTP/1.1 request without Host");
        }
        let codings: Vec<String> = parts
            .headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().expect("admitted, so ASCII").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            codings.is_empty() || codings == ["chunked"],
            "admitted Transfer-Encoding {codings:?}"
        );
    }
});
