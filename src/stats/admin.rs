//! The admin listener (`--stats-bind`): `/metrics`, `/stats.json`, the dashboard at `/`, and
//! the probes `/healthz` and `/readyz`.
//!
//! Owns its accept loop, its own connection limit and timeouts, the routing and the response
//! headers. It is apart from the application's listeners on purpose: its connections do not
//! count against `--max-connections`, a saturated application does not stop a scrape, and it
//! speaks plain HTTP/1.1 only (no TLS: keep it on localhost or a Unix socket). Which `Host`
//! and which token a request needs is `guard.rs`'s decision; the answers are here. What the pages
//! say is `prometheus.rs`'s, `json.rs`'s and `dashboard.rs`'s business; where the
//! [`Snapshot`] comes from, and whether the server is ready, are the caller's: one process's
//! [`super::Stats`] ([`local`]), or a master gathering its workers' (`cluster.rs`).
//!
//! Building a snapshot and rendering it take a few milliseconds with many labels, so both run
//! on tokio's blocking pool: the one or two runtime threads that move the application's bytes
//! are never held by a scrape.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use super::guard::Access;
use super::guard::{Arrival, Verdict};
use super::{dashboard, json, prometheus, Snapshot, Stats};
use crate::listen::accept::{Accepted, Acceptor, Stream};
use crate::listen::deadline::Deadline;
use crate::listen::Bound;
use crate::{log_debug, log_warn};

/// Builds a snapshot of the statistics; called once per page asked for (not for the probes).
/// A future: a master asks its workers first.
pub type SnapshotFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Snapshot> + Send>> + Send + Sync>;

/// Says whether the server is ready; called once per `/readyz`. Must not block.
pub type HealthFn = Arc<dyn Fn() -> Health + Send + Sync>;

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// 200 `ready`: send traffic here.
    Ready,
    /// 200 `ready, but REASON`: serving, with code older than the code on disk (a reload
    /// failed). Still ready: taking every instance out of a load balancer because a deploy
    /// failed would turn a failed deploy into an outage.
    Stale(String),
    /// 503 `not ready: REASON`: starting, draining, no worker ready…
    NotReady(String),
}

/// The snapshot source of one server process: its own statistics, built on the blocking
/// pool.
pub fn local(stats: Arc<Stats>) -> SnapshotFn {
    Arc::new(move || {
        let stats = Arc::clone(&stats);
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || stats.snapshot()).await {
                Ok(snapshot) => snapshot,
                // Building a snapshot does not panic; if it ever did, the task's panic is
                // the server's bug and the page shows it.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    })
}

/// Admin connections open at once; more wait in the listen backlog. Arbitrary: a Prometheus
/// server or two and a few browser tabs need a handful, and 64 bounds what a misbehaving
/// client on the admin address can hold.
const MAX_CONNECTIONS: usize = 64;
/// A request head must arrive within this, between keep-alive requests too (hyper's header
/// timer). Arbitrary; longer than Prometheus's default scrape interval would be pointless.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that makes no progress for this long drops the connection (`listen/deadline.rs`).
/// Arbitrary, as above.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, requests being answered get this long to finish. Arbitrary: a render takes
/// milliseconds, and shutdown should not wait on a scraper.
const DRAIN: Duration = Duration::from_secs(1);

/// Serve the statistics and probes on `listener` to the requests `access` allows until
/// `shutdown` resolves; then stop accepting (removing a Unix socket file), close idle
/// connections, and give requests being answered a second. Returns at once, after logging
/// why, if the listener cannot be registered with the runtime.
pub async fn serve(
    listener: Bound,
    snapshot: SnapshotFn,
    health: HealthFn,
    access: Access,
    shutdown: impl Future<Output = ()>,
) {
    let admin = Admin {
        sources: Sources {
            snapshot,
            health,
            access: Arc::new(access),
        },
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    tokio::select! {
        () = admin.listen(listener) => {}
        () = shutdown => {}
    }
    admin.stop.cancel();
    admin.tracker.close();
    let _ = tokio::time::timeout(DRAIN, admin.tracker.wait()).await;
}

#[derive(Clone)]
struct Sources {
    snapshot: SnapshotFn,
    health: HealthFn,
    access: Arc<Access>,
}

#[derive(Clone)]
struct Admin {
    sources: Sources,
    stop: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
}

impl Admin {
    /// Accept until the caller stops polling (on shutdown); the acceptor holds the Unix
    /// socket file until then, so it is removed when accepting ends. Returns early only if
    /// the listener cannot be registered with the runtime.
    async fn listen(&self, bound: Bound) {
        let acceptor = match Acceptor::new(bound, None, "--stats-bind") {
            Ok(acceptor) => acceptor,
            Err(e) => {
                log_warn!("cannot register the --stats-bind listener with the runtime: {e}");
                return;
            }
        };
        if let Some(addr) = acceptor.local_addr() {
            for warning in self.sources.access.warnings(addr) {
                log_warn!("{warning}");
            }
        }
        while let Some(Accepted {
            stream,
            peer,
            permit,
        }) = acceptor.next(&self.permits).await
        {
            let arrival = match &stream {
                Stream::Tcp(s) => match s.local_addr() {
                    Ok(local) => Arrival::Tcp(local),
                    Err(e) => {
                        log_debug!("admin connection from {peer} dropped: no local address: {e}");
                        continue;
                    }
                },
                Stream::Unix(_) => Arrival::Unix,
            };
            let stream = Deadline::new(stream, peer, SEND_TIMEOUT);
            let admin = self.clone();
            self.tracker.spawn(async move {
                admin.connection(stream, arrival).await;
                drop(permit);
            });
        }
    }

    async fn connection<S>(self, stream: S, arrival: Arrival)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let sources = self.sources;
        let service = service_fn(move |req| respond(req, sources.clone(), arrival));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let result = tokio::select! {
            r = connection.as_mut() => r,
            () = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            log_debug!("admin connection ended with an error: {e}");
        }
    }
}

/// The pages, by path.
#[derive(Clone, Copy)]
enum Page {
    Metrics,
    Json,
    Dashboard,
}

/// What a path asks for.
enum Route {
    Page(Page),
    Alive,
    Ready,
}

impl Route {
    fn for_path(path: &str) -> Option<Route> {
        match path {
            "/metrics" => Some(Route::Page(Page::Metrics)),
            "/stats.json" => Some(Route::Page(Page::Json)),
            "/" => Some(Route::Page(Page::Dashboard)),
            "/healthz" => Some(Route::Alive),
            "/readyz" => Some(Route::Ready),
            _ => None,
        }
    }
}

impl Page {
    fn content_type(self) -> &'static str {
        match self {
            Page::Metrics => "text/plain; version=0.0.4; charset=utf-8",
            Page::Json => "application/json",
            Page::Dashboard => "text/html; charset=utf-8",
        }
    }

    fn render(self, s: &Snapshot) -> String {
        match self {
            Page::Metrics => prometheus::render(s),
            Page::Json => json::render(s),
            Page::Dashboard => dashboard::render(s),
        }
    }
}

/// The dashboard has no script and loads nothing; say so to the browser, so that a label or
/// path the escaping somehow missed still could not run.
const DASHBOARD_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

async fn respond(
    req: Request<Incoming>,
    sources: Sources,
    arrival: Arrival,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = Route::for_path(req.uri().path());
    let probe = matches!(route, Some(Route::Alive | Route::Ready));
    let verdict = sources
        .access
        .check(arrival, req.version(), req.headers(), req.uri(), probe);
    let authenticated = match verdict {
        Verdict::Allow { authenticated } => authenticated,
        Verdict::Misdirected => return Ok(misdirected()),
        Verdict::Unauthorized => return Ok(unauthorized()),
        Verdict::StartSession { location } => {
            return Ok(start_session(&location, sources.access.session_cookie()))
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} not allowed: the statistics are read with GET or HEAD\n",
                req.method()
            ),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(resp);
    }
    let page = match route {
        Some(Route::Page(page)) => page,
        // The process answers: it is alive (a master answers for itself, whatever its
        // workers do).
        Some(Route::Alive) => return Ok(plain(StatusCode::OK, "ok\n".into())),
        Some(Route::Ready) => return Ok(readiness((sources.health)(), authenticated)),
        None => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                format!(
                    "not found: {}; the admin listener serves /metrics, /stats.json, the dashboard at /, /healthz and /readyz\n",
                    req.uri().path()
                ),
            ))
        }
    };
    let snapshot = (sources.snapshot)().await;
    // HEAD is rendered too, so its Content-Length is the GET's; hyper sends no body for it.
    let rendered = tokio::task::spawn_blocking(move || page.render(&snapshot)).await;
    let body = match rendered {
        Ok(body) => body,
        Err(e) => {
            log_warn!(
                "the statistics could not be rendered for {}: {e}",
                req.uri().path()
            );
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the statistics could not be rendered; the server log says why\n".into(),
            ));
        }
    };
    let mut resp = response(StatusCode::OK, page.content_type(), body);
    if matches!(page, Page::Dashboard) {
        resp.headers_mut().insert(
            "content-security-policy",
            HeaderValue::from_static(DASHBOARD_CSP),
        );
    }
    Ok(resp)
}

/// `/readyz`. Without the token (when one is set) the reason is left out: a reload's error
/// may name files and modules.
fn readiness(health: Health, authenticated: bool) -> Response<Full<Bytes>> {
    let why = |why: String| {
        if authenticated {
            format!(": {why}")
        } else {
            String::new()
        }
    };
    match health {
        Health::Stale(reason) if authenticated => {
            plain(StatusCode::OK, format!("ready, but {reason}\n"))
        }
        Health::Ready | Health::Stale(_) => plain(StatusCode::OK, "ready\n".into()),
        Health::NotReady(reason) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready{}\n", why(reason)),
        ),
    }
}

/// The `Host` names something other than this listener. 421 rather than 400: the request is
/// well formed but meant for another authority (RFC 9110, 15.5.20), which tells the one who
/// reads a probe's or a scraper's log what to fix; and the body says how.
fn misdirected() -> Response<Full<Bytes>> {
    plain(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected request: the admin listener answers a Host naming the address it was reached on or localhost; add the name you use to --stats-hosts\n".into(),
    )
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut resp = plain(
        StatusCode::UNAUTHORIZED,
        "the statistics need the --stats-token: send `Authorization: Bearer TOKEN`, or open /?token=TOKEN once in a browser\n".into(),
    );
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ferrule statistics\""),
    );
    resp
}

/// The dashboard opened with `?token=`: a session cookie, and the same page without the
/// token in the address bar (or in the history, from here on).
fn start_session(location: &str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut resp = plain(StatusCode::SEE_OTHER, format!("signed in: {location}\n"));
    let headers = resp.headers_mut();
    // The location is the request's own path and query, which hyper has checked are
    // visible ASCII; a cookie we made is hex.
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, location);
    }
    if let Some(Ok(cookie)) = cookie.map(|c| HeaderValue::from_str(&c)) {
        headers.insert(SET_COOKIE, cookie);
    }
    resp
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", text)
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests;
