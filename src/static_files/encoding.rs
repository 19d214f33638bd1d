//! Precompressed siblings and `Accept-Encoding` negotiation (RFC 9110 §12.5.3).
//!
//! A file `app.js` may have siblings `app.js.br`, `app.js.zst` and `app.js.gz` made ahead of
//! time (`brotli`, `zstd`, `gzip -k`, `WhiteNoise`'s `CompressedStaticFilesStorage`). This file
//! names them and picks the one a request prefers; finding them on disk is `resource.rs`'s.
//! ferrule never compresses on the fly.

/// A content coding ferrule serves from a precompressed sibling file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    /// Every coding, in the server's order of preference when a client accepts several
    /// equally: smallest output first.
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// The sibling file's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Weights in thousandths, as `q=0.123` allows.
type Weight = u16;

/// The coding to send among `available` (identity is always available), for the
/// `Accept-Encoding` field lines `values`. `None` is identity.
///
/// The highest weight wins; among equal weights a sibling beats identity and siblings go in
/// [`Encoding::ALL`] order. Identity without a weight of its own (named, or through `*`)
/// loses to any acceptable sibling. No field means identity. When nothing is acceptable (`identity;q=0`
/// with no acceptable sibling) identity is sent anyway rather than a 406, as nginx does.
pub fn choose<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    available: &[Encoding],
) -> Option<Encoding> {
    let mut seen_field = false;
    let mut explicit: [Option<Weight>; 3] = [None; 3];
    let mut identity: Option<Weight> = None;
    let mut star: Option<Weight> = None;
    for value in values {
        seen_field = true;
        for member in value.split(|&b| b == b',') {
            let mut params = member.split(|&b| b == b';');
            let coding = params.next().unwrap_or_default().trim_ascii();
            if coding.is_empty() {
                continue;
            }
            let Some(q) = weight(params) else { continue };
            let slot = if coding.eq_ignore_ascii_case(b"br") {
                &mut explicit[Encoding::Br.index()]
            } else if coding.eq_ignore_ascii_case(b"zstd") {
                &mut explicit[Encoding::Zstd.index()]
            } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
            {
                &mut explicit[Encoding::Gzip.index()]
            } else if coding.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if coding == b"*" {
                &mut star
            } else {
                continue;
            };
            // A coding listed twice keeps its best weight.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    if !seen_field || available.is_empty() {
        return None;
    }
    let mut best: Option<(Weight, Option<Encoding>)> = None;
    for &enc in Encoding::ALL.iter().filter(|e| available.contains(e)) {
        let q = explicit[enc.index()].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, Some(enc)));
        }
    }
    // Identity is always acceptable (unless excluded), but its weight is only known when it
    // is named, directly or by `*`; otherwise any acceptable coding is preferred to it, as
    // nginx and WhiteNoise do.
    match (best, identity.or(star)) {
        (Some((q, enc)), Some(identity_q)) if q >= identity_q => enc,
        (Some((_, enc)), None) => enc,
        _ => None,
    }
}

/// The `q` parameter among `params` (1 when absent); `None` for a malformed one, which makes
/// the whole member ignored.
fn weight<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Weight> {
    for p in params {
        let p = p.trim_ascii();
        let Some(value) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) else {
            continue;
        };
        return parse_qvalue(value);
    }
    Some(1000)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<Weight> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: Weight = 0;
    for (i, d) in frac.iter().enumerate() {
        thousandths += Weight::from(d - b'0') * [100, 10, 1][i];
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Encoding::{Br, Gzip, Zstd};
    use super::*;

    fn pick(header: Option<&str>, available: &[Encoding]) -> Option<Encoding> {
        choose(header.into_iter().map(str::as_bytes), available)
    }

    #[test]
    fn negotiation_table() {
        let all = &[Br, Zstd, Gzip][..];
        for (header, available, want) in [
            (None, all, None),
            (Some(""), all, None),
            (Some("gzip"), all, Some(Gzip)),
            (Some("gzip, deflate, br"), all, Some(Br)),
            (Some("gzip, deflate, br, zstd"), all, Some(Br)),
            (Some("gzip, zstd"), all, Some(Zstd)),
            (Some("br;q=0.5, gzip"), all, Some(Gzip)),
            (Some("br;q=0.5, gzip;q=0.8"), all, Some(Gzip)),
            (Some("gzip;q=0.1"), all, Some(Gzip)),
            (Some("*;q=0.5, gzip;q=0.4"), all, Some(Br)),
            (Some("br;q=0, *;q=0.5, gzip;q=0.4"), all, Some(Zstd)),
            (Some("identity;q=0.5, gzip;q=0.4"), all, None),
            (Some("BR"), all, Some(Br)),
            (Some("x-gzip"), all, Some(Gzip)),
            (Some("gzip"), &[Br][..], None),
            (Some("gzip"), &[][..], None),
            (Some("*"), all, Some(Br)),
            (Some("*"), &[Gzip][..], Some(Gzip)),
            (Some("*;q=0"), all, None),
            (Some("br;q=0, *"), all, Some(Zstd)),
            (Some("br;q=0"), all, None),
            (Some("gzip;q=0.5, identity"), all, None),
            (Some("gzip;q=0.5, identity;q=0.5"), all, Some(Gzip)),
            (Some("gzip;q=0.5, identity;q=0"), all, Some(Gzip)),
            (Some("identity;q=0"), all, None),
            (Some("br;q=1.0, gzip;q=0.999"), all, Some(Br)),
            (Some("br;q=1.5, gzip"), all, Some(Gzip)), // bad qvalue: member ignored
            (Some("br;q=abc"), all, None),
            (Some("br ; q=0.9 , gzip ; q=0.1"), all, Some(Br)),
            (Some(",, gzip ,"), all, Some(Gzip)),
            (Some("deflate, compress"), all, None),
            (Some("gzip;q=0, gzip;q=1"), all, Some(Gzip)),
        ] {
            assert_eq!(
                pick(header, available),
                want,
                "{header:?} with {available:?}"
            );
        }
    }

    #[test]
    fn several_field_lines_combine() {
        let got = choose(
            [&b"gzip;q=0.2"[..], &b"br;q=0.9"[..]].into_iter(),
            &[Br, Gzip],
        );
        assert_eq!(got, Some(Br));
    }

    #[test]
    fn qvalues() {
        for (v, want) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            ("", None),
            ("-1", None),
        ] {
            assert_eq!(parse_qvalue(v.as_bytes()), want, "{v}");
        }
    }
}
