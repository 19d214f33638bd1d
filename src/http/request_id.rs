//! Request ids: `X-Request-ID` from a trusted proxy, or one made here.
//!
//! The id goes into the request head (so the application sees it as `HTTP_X_REQUEST_ID`, and
//! Django as `request.headers["X-Request-ID"]`), into `environ["ferrule.request"].id`, the
//! access log, the statistics' in-flight list, and the response (`service.rs` adds it unless
//! the application set its own). An id from a peer outside `--forwarded-allow-ips`, or one
//! that is not a short run of printable ASCII without spaces, is replaced: clients must not be able to forge
//! log lines or inject into headers through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::header::HeaderName;
use http::request::Parts;
use http::HeaderValue;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a proxy. Arbitrary: longer than any UUID or trace id format in use.
const MAX_LEN: usize = 200;

/// The request's id: the one `parts` carries, if it is to be kept, else a new one.
pub fn choose(parts: &Parts, trusted: bool) -> Arc<str> {
    let given = parts
        .headers
        .get(&X_REQUEST_ID)
        .filter(|_| trusted)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .filter(|_| parts.headers.get_all(&X_REQUEST_ID).iter().count() == 1);
    match given {
        Some(id) => Arc::from(id),
        None => Arc::from(generate()),
    }
}

/// Make `headers` carry `id` (and no other `X-Request-ID`). Done after the admission checks,
/// so the header a client did not send is not counted against `--limit-request-fields`.
pub fn write(headers: &mut http::HeaderMap, id: &str) {
    if headers.get(&X_REQUEST_ID).is_some_and(|v| v == id) {
        return;
    }
    // `choose` returns a sane header value or hex digits.
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
}

#[cfg(test)]
fn assign(parts: &mut Parts, trusted: bool) -> Arc<str> {
    let id = choose(parts, trusted);
    write(&mut parts.headers, &id);
    id
}

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// 32 hex digits: 64 random bits fixed for the process, then a counter scrambled by a
/// bijection (`SplitMix64`'s finalizer), so ids never repeat within a process and differ
/// between processes.
fn generate() -> String {
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (high, low) = *SEED.get_or_init(random_seed);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{high:016x}{:016x}", mix(n ^ low))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 128 random bits (from the kernel, mixed with the time and pid if that fails).
pub(crate) fn random_seed() -> (u64, u64) {
    let mut buf = [0u8; 16];
    // A failed read leaves zeros, mixed below with the time and pid so two processes differ.
    let got = crate::platform::random_bytes(&mut buf);
    let (a, b) = buf.split_at(8);
    let mut high = u64::from_le_bytes(a.try_into().unwrap_or_default());
    let low = u64::from_le_bytes(b.try_into().unwrap_or_default());
    if !got {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        high ^= mix(nanos ^ u64::from(std::process::id()));
    }
    (high, low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ids: &[&str]) -> Parts {
        let mut req = http::Request::builder();
        for id in ids {
            req = req.header("x-request-id", *id);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_trusted_sane_id_is_kept() {
        let mut p = parts(&["abc-123"]);
        assert_eq!(&*assign(&mut p, true), "abc-123");
        assert_eq!(p.headers["x-request-id"], "abc-123");
    }

    #[test]
    fn untrusted_insane_or_repeated_ids_are_replaced() {
        let long = "a".repeat(MAX_LEN + 1);
        for (ids, trusted) in [
            (&["abc"][..], false),
            (&["has space"][..], true),
            (&[long.as_str()][..], true),
            (&["a", "b"][..], true),
            (&[][..], true),
        ] {
            let mut p = parts(ids);
            let id = assign(&mut p, trusted);
            assert_eq!(id.len(), 32, "{ids:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(p.headers.get_all("x-request-id").iter().count(), 1);
            assert_eq!(p.headers["x-request-id"], &*id);
        }
    }

    #[test]
    fn generated_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
