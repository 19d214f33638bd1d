//! Static files, answered entirely on tokio: no Python thread is involved.
//!
//! Owns the mounts (`--static URL=DIR`, Django's `STATIC_URL`/`MEDIA_URL`) and the way a
//! request under one is answered. Deciding that a request is for a static URL before it goes
//! to the application is `http/service.rs`'s call; a path under a mount never reaches the
//! application, whether the file exists or not.
//!
//! A request answered from the cache is answered right here on the tokio thread; looking
//! files up on disk (a cache miss, or the revalidation due once a second) is handed to the
//! look-up threads (`lookups.rs`), so a slow disk, a storm of 404s or a cache too small for
//! the files in use cannot stall the connections the tokio thread serves.
//!
//! - `resolve.rs`: request path → file inside a root, and the safety rules;
//! - `resource.rs`: a file, its precompressed siblings, validators, small files' bytes;
//! - `cache.rs`: the bounded in-memory cache of resources, revalidated once a second;
//! - `lookups.rs`: the threads that look files up on disk;
//! - `encoding.rs`: `Accept-Encoding` negotiation;
//! - `conditional.rs`: `ETag`, `Last-Modified`, `If-*` preconditions;
//! - `range.rs`: `Range` and `multipart/byteranges`;
//! - `response.rs`: the response for a decision;
//! - `mime.rs`: content types and content-hashed names;
//! - `django.rs`: the mounts a Django project's settings describe.

mod cache;
mod conditional;
pub mod django;
mod encoding;
mod lookups;
mod mime;
pub(crate) mod range;
pub(crate) mod resolve;
mod resource;
mod response;

use std::borrow::Cow;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use http::header::{
    ACCEPT_ENCODING, ALLOW, CONTENT_SECURITY_POLICY, LOCATION, X_CONTENT_TYPE_OPTIONS,
};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::config::{StaticPlan, DEFAULT_MAX_AGE};
use crate::error::Error;
use crate::response::{respond, OutBody};
use crate::{log_debug, log_info, log_warn};
use cache::Cache;
use lookups::Lookups;
use resolve::{RelPath, Root};
use resource::{Loaded, Policy, Resource};

/// A URL path prefix served from one or more directories, searched in order.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Starts and ends with `/`; matched against the whole request path.
    pub url: String,
    pub dirs: Vec<MountDir>,
    /// `Cache-Control: max-age` for names without a content hash.
    pub max_age: u64,
    /// User uploads (`--media`): names with a content hash get no special caching (a user
    /// picked the name), and responses carry `Content-Security-Policy: sandbox`.
    pub media: bool,
}

/// One directory of a mount.
#[derive(Debug, Clone)]
pub struct MountDir {
    pub dir: PathBuf,
    /// The sub-path of the mount this directory answers for (`""`, or e.g. `vendor`).
    pub prefix: String,
    /// Where it was configured, for the start-up log: `--static`, `STATIC_ROOT`, ….
    pub source: String,
}

/// A mount ready to serve: canonical roots and its response policy.
struct Served {
    url: String,
    /// Shared with the look-ups running on the look-up threads.
    roots: Arc<[Root]>,
    policy: Policy,
    /// `dir (source)` per root, for the start-up log.
    described: Vec<String>,
}

/// Every static mount of this server.
pub struct StaticFiles {
    /// Longest URL first, so the most specific mount wins.
    mounts: Vec<Served>,
    cache: Cache,
    /// `None` without mounts.
    lookups: Option<Lookups>,
}

impl StaticFiles {
    /// `django` holds the mounts found in the Django settings (`django::mounts`); `--static`
    /// mounts come first, and a URL given twice searches all its directories in order. A
    /// directory that cannot be served is left out with a warning; the error is the look-up
    /// threads failing to start.
    pub fn new(plan: &StaticPlan, django: Vec<Mount>) -> Result<Self, Error> {
        let mut merged: Vec<Mount> = Vec::new();
        let given = plan.mounts.iter().map(|m| Mount {
            url: m.url.clone(),
            dirs: vec![MountDir {
                dir: m.dir.clone(),
                prefix: String::new(),
                source: "--static".to_owned(),
            }],
            max_age: plan.max_age.unwrap_or(DEFAULT_MAX_AGE),
            media: false,
        });
        for mount in given.chain(django) {
            match merged.iter_mut().find(|m| m.url == mount.url) {
                Some(m) => m.dirs.extend(mount.dirs),
                None => merged.push(mount),
            }
        }
        let mut mounts: Vec<Served> = merged
            .into_iter()
            .filter_map(|m| Served::new(m, plan.index))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.url.len()));
        let lookups = if mounts.is_empty() {
            None
        } else {
            let started = Lookups::start(lookups::THREADS).map_err(|e| {
                Error::runtime(format!("cannot start the static file look-up threads: {e}"))
            })?;
            Some(started)
        };
        Ok(Self {
            cache: Cache::new(mounts.len()),
            lookups,
            mounts,
        })
    }

    /// Log where each mount's files come from (once logging is set up).
    pub fn log_mounts(&self) {
        for m in &self.mounts {
            log_info!(
                "Serving static files at {} from {}",
                m.url,
                m.described.join(", then ")
            );
        }
    }

    /// Answer `parts` if its path is under a mount; `None` sends it on to the application.
    pub async fn serve(&self, parts: &Parts) -> Option<Response<OutBody>> {
        if self.mounts.is_empty() {
            return None;
        }
        let raw = parts.uri.path();
        let (index, mount, rest) = self
            .mounts
            .iter()
            .enumerate()
            .find_map(|(i, m)| resolve::under(raw, &m.url).map(|rest| (i, m, rest)))?;
        let mut answer = if parts.method != Method::GET && parts.method != Method::HEAD {
            method_not_allowed(parts)
        } else {
            match resolve::relative(rest) {
                Ok(rel) => self.answer(parts, index, mount, &rel).await,
                Err(why) => {
                    log_debug!("refused static path {raw}: {why}");
                    not_found()
                }
            }
        };
        // On every answer, errors included: browsers must not guess a type other than the
        // one sent (a text file that looks like HTML), and an uploaded page or SVG must not
        // run script with the site's cookies.
        let h = answer.headers_mut();
        h.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        if mount.policy.sandbox {
            h.insert(CONTENT_SECURITY_POLICY, SANDBOX);
        }
        Some(answer)
    }

    async fn answer(
        &self,
        parts: &Parts,
        index: usize,
        mount: &Served,
        rel: &RelPath<'_>,
    ) -> Response<OutBody> {
        if rel.dir && !mount.policy.index {
            // No file can answer: not worth a look-up.
            return not_found();
        }
        let key: Cow<'_, [u8]> = if rel.dir {
            // `sub/` (its index.html) and `sub` (a redirect) are different answers.
            let mut k = rel.path.to_vec();
            k.push(b'/');
            Cow::Owned(k)
        } else {
            Cow::Borrowed(&rel.path)
        };
        // Two tries: a large file can change between its look-up and its opening.
        for _ in 0..2 {
            let res = match self.lookup(index, mount, rel, &key).await {
                Ok(Lookup::Found(res)) => res,
                Ok(Lookup::AddSlash) => return add_slash(parts),
                Ok(Lookup::Missing) => return not_found(),
                Err(e) => return unavailable(parts, &e),
            };
            let coding = encoding::choose(
                parts
                    .headers
                    .get_all(ACCEPT_ENCODING)
                    .iter()
                    .map(HeaderValue::as_bytes),
                res.codings(),
            );
            let rep = res.rep(coding);
            let decision = response::decide(parts, rep);
            // Opening a large file the cache describes stays on this thread: one `open` and
            // `fstat` of a path just resolved, whose metadata the kernel has cached.
            let file = if rep.content.is_none() && decision.sends_bytes(&parts.method) {
                match rep.open() {
                    Ok(Some(f)) => Some(f),
                    Ok(None) => {
                        self.cache.remove(index, &key);
                        continue;
                    }
                    Err(e) => return unavailable(parts, &e),
                }
            } else {
                None
            };
            return match response::build(decision, &parts.method, &res, rep, file) {
                Ok(response) => response,
                Err(e) => unavailable(parts, &e),
            };
        }
        respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The file is being replaced; retry shortly.",
            false,
        )
    }

    /// The resource for `key`: from the cache while fresh, else checked on disk (reading the
    /// files only if they changed) on a look-up thread, and cached. A missing file is
    /// remembered as missing for as long as a resource is trusted.
    async fn lookup(
        &self,
        index: usize,
        mount: &Served,
        rel: &RelPath<'_>,
        key: &[u8],
    ) -> io::Result<Lookup> {
        let now = self.cache.now();
        let cached = self.cache.get(index, key);
        if let Some(res) = &cached {
            let last = res.checked();
            if now.saturating_sub(last) < cache::REVALIDATE_MS || !res.claim_check(last, now) {
                res.touch(now);
                return Ok(Lookup::Found(Arc::clone(res)));
            }
        } else if self.cache.known_missing(index, key, now) {
            return Ok(Lookup::Missing);
        }
        let roots = Arc::clone(&mount.roots);
        let policy = mount.policy.clone();
        let owned = RelPath {
            path: Cow::Owned(rel.path.to_vec()),
            dir: rel.dir,
        };
        let previous = cached.clone();
        let lookups = self
            .lookups
            .as_ref()
            .expect("the look-up threads run whenever there are mounts");
        let loaded = lookups
            .run(move || resource::load(&roots, &owned, &policy, previous.as_deref(), now))
            .await
            .unwrap_or_else(|| Err(io::Error::other("the look-up panicked")))?;
        match loaded {
            Loaded::Unchanged => {
                let res = cached.expect("Unchanged is only returned for a previous resource");
                res.touch(now);
                Ok(Lookup::Found(res))
            }
            Loaded::Resource(res) => {
                let res = Arc::new(res);
                self.cache.put(index, key, Arc::clone(&res));
                Ok(Lookup::Found(res))
            }
            Loaded::AddSlash => {
                self.cache.remove(index, key);
                Ok(Lookup::AddSlash)
            }
            Loaded::Missing => {
                self.cache.put_missing(index, key, now);
                Ok(Lookup::Missing)
            }
        }
    }
}

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
/// The strictest sandbox: no script, no forms, no plugins, an opaque origin (so no cookies or
/// storage of the site).
const SANDBOX: HeaderValue = HeaderValue::from_static("sandbox");

enum Lookup {
    Found(Arc<Resource>),
    AddSlash,
    Missing,
}

impl Served {
    /// Canonicalize the directories; one that cannot be read is left out with a warning, and
    /// a mount left with none is not served.
    fn new(mount: Mount, index: bool) -> Option<Self> {
        let mut roots = Vec::new();
        let mut described = Vec::new();
        for d in mount.dirs {
            let dir = match std::fs::canonicalize(&d.dir) {
                Ok(dir) if dir.is_dir() => dir,
                Ok(_) => {
                    log_warn!(
                        "not serving {} '{}' at {}: it is not a directory",
                        d.source,
                        d.dir.display(),
                        mount.url
                    );
                    continue;
                }
                Err(e) => {
                    let hint = if d.source == "STATIC_ROOT" {
                        "; `manage.py collectstatic` creates and fills it"
                    } else {
                        ""
                    };
                    log_warn!(
                        "not serving {} '{}' at {}: {e}{hint}",
                        d.source,
                        d.dir.display(),
                        mount.url
                    );
                    continue;
                }
            };
            let prefix = d.prefix.trim_matches('/');
            described.push(if prefix.is_empty() {
                format!("{} ({})", dir.display(), d.source)
            } else {
                format!("{} ({}, as {prefix}/)", dir.display(), d.source)
            });
            roots.push(Root {
                dir,
                prefix: if prefix.is_empty() {
                    Vec::new()
                } else {
                    format!("{prefix}/").into_bytes()
                },
            });
        }
        if roots.is_empty() {
            return None;
        }
        Some(Self {
            url: mount.url,
            roots: roots.into(),
            policy: Policy {
                index,
                cache_control: format!("public, max-age={}", mount.max_age)
                    .try_into()
                    .expect("digits and ASCII"),
                hashed_immutable: !mount.media,
                sandbox: mount.media,
            },
            described,
        })
    }
}

fn not_found() -> Response<OutBody> {
    respond::text(
        StatusCode::NOT_FOUND,
        "There is no file at this URL.",
        false,
    )
}

fn method_not_allowed(parts: &Parts) -> Response<OutBody> {
    // The request body is not read; with one announced, the connection cannot be reused.
    let mut resp = respond::text(
        StatusCode::METHOD_NOT_ALLOWED,
        "Static files can only be read, with GET or HEAD.",
        respond::has_body(parts),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// 301 to the same path with a trailing slash (a directory, with `--static-index`), as nginx
/// does, so relative links in its `index.html` resolve.
fn add_slash(parts: &Parts) -> Response<OutBody> {
    let mut location = format!("{}/", parts.uri.path());
    if let Some(q) = parts.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = respond::text(
        StatusCode::MOVED_PERMANENTLY,
        "This is a directory; its index is at the same URL with a trailing slash.",
        false,
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn unavailable(parts: &Parts, e: &io::Error) -> Response<OutBody> {
    log_warn!("cannot serve static file {}: {e}", parts.uri.path());
    respond::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "The file cannot be read right now; retry shortly.",
        false,
    )
}
