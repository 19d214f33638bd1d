//! The admission layer on raw request heads: bytes → httparse (as hyper) → `admit`, and the
//! `Host` syntax check (`http/host.rs`) that runs with it.
//!
//! Invariants: `admit` never panics; a refusal has a 4xx/501 status and a reason; limits are
//! monotone (a head admitted under tight limits is admitted under the defaults); an admitted
//! head has at most one `Host` (exactly one for HTTP/1.1), at most one `Content-Type`, an
//! uppercase method of 3 or more characters other than CONNECT, no transfer coding but a single
//! `chunked` (and `identity`), and one all-digit `Content-Length` without `Transfer-Encoding`
//! if any. The same headers as a chunked body's trailer (`check_trailers`) pass only without
//! `Host`, `Content-Length`, `Transfer-Encoding` and `Cookie`.
#![no_main]

use _ferrule::fuzzing::{admit, check_host, check_trailers, request_target_of, Limits};
use ferrule_fuzz::{default_limits, head};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, TRANSFER_ENCODING};
use http::{Method, Version};
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
    // What http/service.rs runs after `admit`: the Host syntax (http/host.rs).
    if let Err(refusal) = check_host(&parts) {
        assert_eq!(refusal.status().as_u16(), 400, "{refusal:?}");
        assert!(!refusal.reason().is_empty());
    }
    let trailers = check_trailers(&parts.headers);
    if trailers.is_ok() {
        for name in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING, COOKIE] {
            assert!(!parts.headers.contains_key(&name), "trailer {name} passed");
        }
    }
    if wide.is_ok() {
        let count = |name| parts.headers.get_all(name).iter().count();
        let hosts = count(HOST);
        assert!(hosts <= 1, "admitted with {hosts} Host headers");
        if parts.version == Version::HTTP_11 {
            assert_eq!(hosts, 1, "admitted an HTTP/1.1 request without Host");
        }
        assert!(count(CONTENT_TYPE) <= 1, "admitted two Content-Types");
        let method = parts.method.as_str();
        assert!(
            method.len() >= 3 && !method.bytes().any(|b| b.is_ascii_lowercase()),
            "admitted method {method:?}"
        );
        assert_ne!(parts.method, Method::CONNECT);
        let codings: Vec<String> = parts
            .headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().expect("admitted, so ASCII").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .collect();
        assert!(
            codings.is_empty() || codings == ["chunked"],
            "admitted Transfer-Encoding {codings:?}"
        );
        if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
            assert_eq!(count(CONTENT_LENGTH), 1, "admitted two Content-Lengths");
            assert!(
                length.as_bytes().iter().all(u8::is_ascii_digit),
                "admitted Content-Length {length:?}"
            );
            assert!(
                !parts.headers.contains_key(TRANSFER_ENCODING),
                "admitted Content-Length with Transfer-Encoding"
            );
        }
    }
});
