//! What a file's name says: its `Content-Type`, and whether it carries a content hash.
//!
//! A fixed table of the types a web site serves, by extension (case-insensitive); anything
//! else is `application/octet-stream`. Text types, JavaScript, JSON, SVG and XML get
//! `charset=utf-8`, which is what Django's `collectstatic` inputs are in practice. The cache
//! policy built on [`is_hashed_name`] is `resource.rs`'s.

/// The `Content-Type` for a file called `name` (the name requested, not a precompressed
/// sibling's).
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i + 1 < name.len() => &name[i + 1..],
        _ => return OCTET_STREAM,
    };
    if ext.len() > 12 {
        return OCTET_STREAM;
    }
    let mut lower = [0u8; 12];
    for (d, s) in lower.iter_mut().zip(ext) {
        *d = s.to_ascii_lowercase();
    }
    let ext = &lower[..ext.len()];
    TYPES
        .iter()
        .find(|(e, _)| e.as_bytes() == ext)
        .map_or(OCTET_STREAM, |(_, t)| t)
}

const OCTET_STREAM: &str = "application/octet-stream";

// Ordered roughly by how often a site serves them; the list is short enough that a linear
// scan beats hashing.
const TYPES: &[(&str, &str)] = &[
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("png", "image/png"),
    ("svg", "image/svg+xml; charset=utf-8"),
    ("woff2", "font/woff2"),
    ("woff", "font/woff"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/vnd.microsoft.icon"),
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("json", "application/json; charset=utf-8"),
    ("map", "application/json; charset=utf-8"),
    ("webmanifest", "application/manifest+json; charset=utf-8"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("xml", "application/xml; charset=utf-8"),
    ("rss", "application/rss+xml; charset=utf-8"),
    ("atom", "application/atom+xml; charset=utf-8"),
    ("xsl", "application/xml; charset=utf-8"),
    ("ics", "text/calendar; charset=utf-8"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("br", "application/x-brotli"),
    ("zst", "application/zstd"),
    ("tar", "application/x-tar"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("apng", "image/apng"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("ogv", "video/ogg"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("wav", "audio/wav"),
    ("flac", "audio/flac"),
    ("m4a", "audio/mp4"),
    ("vtt", "text/vtt; charset=utf-8"),
];

/// True for names with a 12-hex-digit content hash before the extension, as Django's
/// `ManifestStaticFilesStorage` writes them (`app.3f2a1b9c8d7e.css`), also with a
/// compression suffix after (`app.3f2a1b9c8d7e.css.gz`). `WhiteNoise` uses the same rule.
pub fn is_hashed_name(name: &[u8]) -> bool {
    // A dot, 12 lowercase hex digits, a dot, at least one byte of extension; and at least
    // one byte of name before.
    name.windows(14).enumerate().any(|(i, w)| {
        i > 0
            && w[0] == b'.'
            && w[13] == b'.'
            && i + 14 < name.len()
            && w[1..13]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        for (name, want) in [
            ("app.css", "text/css; charset=utf-8"),
            ("APP.CSS", "text/css; charset=utf-8"),
            ("a.min.js", "text/javascript; charset=utf-8"),
            ("data.json", "application/json; charset=utf-8"),
            ("logo.svg", "image/svg+xml; charset=utf-8"),
            ("feed.xml", "application/xml; charset=utf-8"),
            ("index.html", "text/html; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("font.woff2", "font/woff2"),
            ("img.png", "image/png"),
            ("archive.css.gz", "application/gzip"),
            ("README", "application/octet-stream"),
            ("trailing.", "application/octet-stream"),
            ("weird.averyveryverylongext", "application/octet-stream"),
            ("x.unknown", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn hashed_names() {
        for (name, want) in [
            ("app.3f2a1b9c8d7e.css", true),
            ("jquery.min.0123456789ab.js", true),
            ("app.3f2a1b9c8d7e.css.gz", true),
            ("app.3f2a1b9c8d7e.css.br", true),
            ("app.css", false),
            ("app.3f2a1b9c8d7.css", false),   // 11 digits
            ("app.3f2a1b9c8d7ef.css", false), // 13 digits
            ("app.3F2A1B9C8D7E.css", false),  // Django writes lowercase
            ("app.3f2a1b9c8d7g.css", false),  // not hex
            (".3f2a1b9c8d7e.css", false),     // no name before
            ("app.3f2a1b9c8d7e.", false),     // no extension after
            ("app.3f2a1b9c8d7e", false),      // no extension at all
            ("a.b.3f2a1b9c8d7e.tar.gz", true),
        ] {
            assert_eq!(is_hashed_name(name.as_bytes()), want, "{name}");
        }
    }
}
