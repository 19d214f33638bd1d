//! The URL prefix at run time: splitting a path at it, and the answer to a request outside.
//!
//! A prefix (`--prefix`, Django's `FORCE_SCRIPT_NAME`, a trusted `X-Forwarded-Prefix`) is
//! kept in the normal form `config/prefix.rs` checks. Which prefix applies to a request is
//! `proxy.rs`'s call.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use crate::html::escape as html_escape;
use crate::response::respond;
use crate::response::OutBody;

/// What follows `prefix` in the decoded `path`, if the path is the prefix itself or lies under
/// it: `/app` → `""`, `/app/x` → `/x`, `/application` → no match.
pub fn split<'p>(path: &'p [u8], prefix: &str) -> Option<&'p [u8]> {
    let rest = path.strip_prefix(prefix.as_bytes())?;
    (rest.is_empty() || rest.first() == Some(&b'/')).then_some(rest)
}

/// The answer to a request outside `prefix`: a 404 page linking to the same URL under it, or
/// with `redirect` a 308 to it. `mounted` is the part of the prefix that comes from the proxy
/// (`X-Forwarded-Prefix`), which the client's URL needs too.
pub fn outside(parts: &Parts, mounted: &str, prefix: &str, redirect: bool) -> Response<OutBody> {
    let path = parts.uri.path();
    let path = if path.starts_with('/') { path } else { "/" };
    let mut target = String::with_capacity(mounted.len() + prefix.len() + path.len() + 1);
    target.push_str(mounted);
    target.push_str(prefix);
    target.push_str(path);
    if let Some(query) = parts.uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let site = format!("{mounted}{prefix}");
    let location = HeaderValue::from_str(&target).ok();
    let (status, body) = match location {
        Some(_) if redirect => (StatusCode::PERMANENT_REDIRECT, page(&site, &target, true)),
        _ => (StatusCode::NOT_FOUND, page(&site, &target, false)),
    };
    let mut resp = Response::new(OutBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The prefix can change with the configuration; don't let a cache remember the answer.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let (Some(location), true) = (location, redirect) {
        headers.insert(LOCATION, location);
    }
    if respond::has_body(parts) {
        // The body was never read; the connection cannot carry another request.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn page(site: &str, target: &str, moved: bool) -> String {
    let (title, lead) = if moved {
        ("308 Permanent Redirect", "This page has moved")
    } else {
        ("404 Not Found", "Not found")
    };
    let mut html = String::with_capacity(512 + 2 * target.len());
    // `write!` to a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body>\n<h1>{lead}</h1>\n<p>This site lives under <code>{site}</code>. \
         The page you asked for is probably at <a href=\"{href}\">{text}</a>.</p>\n</body>\n</html>\n",
        site = html_escape(site),
        href = html_escape(target),
        text = html_escape(target),
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn splitting() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"/app", Some(b"")),
            (b"/app/", Some(b"/")),
            (b"/app/x/y", Some(b"/x/y")),
            (b"/application", None),
            (b"/app.css", None),
            (b"/ap", None),
            (b"/", None),
            (b"/other/app", None),
            (b"/APP/x", None),
            // Already decoded by the caller: `/app%2Fx` and `/%61pp/x` arrive as `/app/x`.
            (b"/app/caf\xc3\xa9", Some(b"/caf\xc3\xa9")),
        ];
        for (path, want) in cases {
            assert_eq!(
                split(path, "/app"),
                *want,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
        assert_eq!(split(b"/a/b/c", "/a/b"), Some(&b"/c"[..]));
        assert_eq!(split(b"/a/bc", "/a/b"), None);
    }

    fn parts(target: &str) -> Parts {
        http::Request::builder()
            .uri(target)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    async fn text(resp: Response<OutBody>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn outside_gives_a_page_or_a_redirect() {
        let resp = outside(&parts("/x/y?a=1&b=%3C"), "", "/app", false);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(resp.headers().get(LOCATION).is_none());
        let body = text(resp).await;
        assert!(body.contains("<code>/app</code>"), "{body}");
        assert!(
            body.contains("<a href=\"/app/x/y?a=1&amp;b=%3C\">/app/x/y?a=1&amp;b=%3C</a>"),
            "{body}"
        );

        let resp = outside(&parts("/x?q=1"), "/outer", "/app", true);
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(resp.headers()[LOCATION], "/outer/app/x?q=1");
        assert!(text(resp).await.contains("<code>/outer/app</code>"));

        // Whatever the request carried is escaped (http's Uri already refuses `<` and `>`).
        let resp = outside(&parts("/\"onclick='x'?a=1&b=2"), "", "/app", false);
        let body = text(resp).await;
        assert!(
            body.contains("href=\"/app/&quot;onclick=&#39;x&#39;?a=1&amp;b=2\""),
            "{body}"
        );
    }
}
