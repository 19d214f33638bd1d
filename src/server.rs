//! Serving: accept loops, connections, and the one shutdown path.
//!
//! [`serve`] takes bound listeners, the plan, the pool, the TLS configuration (if any) and a
//! shutdown future (injected, so tests and the supervisor decide what "stop" means). Each
//! accepted connection runs in its own task, its socket under a write deadline
//! (`listen/deadline.rs`): with `--proxy-protocol`, the balancer's header, from trusted peers
//! only (`listen/proxy_protocol.rs`); the TLS handshake (both bounded by `--header-timeout`),
//! then HTTP/1.1 or
//! HTTP/2 as ALPN, `--http` or the connection preface decide; an HTTP/2 connection's streams
//! are watched by `server/streams.rs` (idle, and stalled by flow control), its PING and
//! SETTINGS frames counted by `server/floodgate.rs`. On shutdown it
//! stops accepting (removing Unix socket files), asks every connection to finish its current
//! requests and close (HTTP/2 gets GOAWAY), and races that against `--graceful-timeout` and a
//! second signal. What a connection does with a request is `http/`'s business.

mod builders;
mod floodgate;
mod streams;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::CONNECTION;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpMode;
use crate::http::{access, App};
use crate::job::{ConnInfo, Held};
use crate::listen::accept::{Accepted, Acceptor};
use crate::listen::deadline::Deadline;
use crate::listen::per_ip::{IpSlot, PerIp};
use crate::listen::proxy_protocol::{self, Client};
use crate::listen::share::Share;
use crate::listen::sniff::{self, Rewind};
use crate::listen::target::{Lenient, Originals};
use crate::listen::tls::{Alpn, Tls};
use crate::listen::{Bound, Peer};
use crate::logging::throttle::{self, Throttle};
use crate::{log_debug, log_info, log_warn};
use builders::{head_timeout, http1_builder, http2_builder};
use floodgate::Floodgate;
use streams::{Quiet, Streams, Tracked, Watch};

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every connection finished.
    Drained,
    /// `--graceful-timeout` passed with requests still running.
    TimedOut,
    /// A second signal asked to stop at once.
    Forced,
}

/// Serve until `shutdown` resolves, then drain until `force` resolves or the graceful
/// timeout passes.
pub async fn serve(
    listeners: Vec<Bound>,
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    share: Option<Arc<Share>>,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> Outcome {
    let ctx = Accepting {
        app: Arc::clone(&app),
        tls,
        share,
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        permits: Arc::new(Semaphore::new(app.plan.max_connections)),
        per_ip: PerIp::for_plan(&app.plan),
    };
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .filter_map(
            |bound| match Acceptor::new(bound, ctx.share.clone(), "--bind") {
                Ok(acceptor) => Some(tokio::spawn(ctx.clone().listen(acceptor))),
                Err(e) => {
                    log_warn!("cannot register a listener with the runtime: {e}");
                    None
                }
            },
        )
        .collect();

    shutdown.await;
    ctx.stop.cancel();
    for l in accept_loops {
        let _ = l.await;
    }
    if let Some(share) = &ctx.share {
        share.leave();
    }
    ctx.tracker.close();
    let open = ctx.tracker.len();
    if open > 0 {
        log_info!(
            "Waiting up to {}s for {open} connection(s) to finish. (CTRL+C to force quit)",
            app.plan.graceful_timeout.as_secs_f64()
        );
    }
    tokio::select! {
        () = ctx.tracker.wait() => Outcome::Drained,
        () = tokio::time::sleep(app.plan.graceful_timeout) => Outcome::TimedOut,
        () = force => Outcome::Forced,
    }
}

/// What every accept loop and connection shares: the connection permits, the stop signal,
/// and the tracker that shutdown waits on (it tracks HTTP/2 stream tasks too).
#[derive(Clone)]
struct Accepting {
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    /// A worker process's seat on the master's board (`listen/share.rs`).
    share: Option<Arc<Share>>,
    stop: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    /// `--max-connections-per-ip`: connections by client address.
    per_ip: Option<Arc<PerIp>>,
}

impl Accepting {
    /// Accept on one listener until stopped. A Unix socket file is removed when its loop ends
    /// (with the acceptor), so no new client can find the server.
    async fn listen(self, acceptor: Acceptor) {
        let local = acceptor.local_addr();
        let unix_path = acceptor.unix_path();
        loop {
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return,
                a = acceptor.next(&self.permits) => a,
            };
            let Some(Accepted {
                stream,
                peer,
                permit,
            }) = accepted
            else {
                return;
            };
            // Under everything else, TLS included: see listen/deadline.rs.
            let stream = Deadline::new(stream, peer, self.app.plan.send_timeout)
                .with_min_rate(self.app.plan.clients.min_rate);
            let ctx = self.clone();
            let unix_path = unix_path.clone();
            let counted = (
                self.app.stats.connection(),
                self.share.as_ref().map(Share::opened),
            );
            self.tracker.spawn(ctx.connection(
                stream,
                peer,
                (local, unix_path),
                Box::new((permit, counted)),
            ));
        }
    }

    /// One connection: the PROXY protocol header if there is one, the TLS handshake if there
    /// is one, then HTTP. `held` (its `--max-connections` permit and its place in the
    /// connection counts) goes to the [`ConnInfo`], with the client's
    /// `--max-connections-per-ip` slot: a WebSocket holds them for as long as it lives, past
    /// the end of hyper's connection future.
    async fn connection<S>(
        self,
        mut stream: S,
        peer: Peer,
        (local, unix_path): (Option<SocketAddr>, Option<Arc<str>>),
        held: Box<dyn std::any::Any + Send + Sync>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some((peer, relayed)) = self.relayed(&mut stream, peer).await else {
            return;
        };
        let Ok(slot) = self.count_client(peer, relayed) else {
            return;
        };
        let held: Held = Box::new((held, slot));
        let Some(tls) = self.tls.clone() else {
            let conn = ConnInfo {
                peer,
                local,
                unix_path,
                scheme: "http",
                tls: None,
                relayed,
                pending: std::sync::atomic::AtomicUsize::new(0),
                held: Some(held),
            };
            return self.http(stream, Arc::new(conn), None).await;
        };
        // The handshake is part of what a client must send promptly, like a request head.
        let handshake = tokio::time::timeout(self.app.plan.header_timeout, tls.accept(stream));
        let Some(accepted) = unless_stopped(&self.stop, handshake).await else {
            return;
        };
        match accepted {
            Ok(Ok((stream, info, alpn))) => {
                let conn = ConnInfo {
                    peer,
                    local,
                    unix_path,
                    scheme: "https",
                    tls: Some(info),
                    relayed,
                    pending: std::sync::atomic::AtomicUsize::new(0),
                    held: Some(held),
                };
                self.http(stream, Arc::new(conn), alpn).await;
            }
            Ok(Err(e)) => log_debug!("TLS handshake with {peer} failed: {e}"),
            Err(_) => log_debug!("TLS handshake with {peer} not done within --header-timeout"),
        }
    }

    /// With `--proxy-protocol`, the client the balancer's header names and `true` (or the
    /// peer itself and `false`, for a header that names none); `None` when the connection
    /// must end: a peer not allowed to send one, or no valid header in time.
    async fn relayed<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        peer: Peer,
    ) -> Option<(Peer, bool)> {
        let proxy = &self.app.plan.proxy;
        if !proxy.protocol {
            return Some((peer, false));
        }
        if let Peer::Tcp(addr) = peer {
            if !proxy.allow.contains(addr.ip()) {
                proxy_protocol::log_refused(&peer, "the peer is not in --forwarded-allow-ips");
                return None;
            }
        }
        let header =
            tokio::time::timeout(self.app.plan.header_timeout, proxy_protocol::read(stream));
        match unless_stopped(&self.stop, header).await? {
            Ok(Ok(Client::Relayed(client))) => Some((Peer::Tcp(client), true)),
            Ok(Ok(Client::Unchanged)) => Some((peer, false)),
            Ok(Err(why)) if why == proxy_protocol::NOTHING_SENT => {
                log_debug!("{peer}: {why} (--proxy-protocol)");
                None
            }
            Ok(Err(why)) => {
                proxy_protocol::log_refused(&peer, &why);
                None
            }
            Err(_) => {
                proxy_protocol::log_refused(&peer, "no header within --header-timeout");
                None
            }
        }
    }

    /// `--max-connections-per-ip`: the client's slot for this connection, `Ok(None)` for a
    /// peer not counted (a Unix peer; a trusted proxy, whose clients are counted by request
    /// in `http/service.rs`), `Err` for a client holding its limit already: the connection
    /// is closed at once, with a log line (at most one every 10 s).
    fn count_client(&self, peer: Peer, relayed: bool) -> Result<Option<IpSlot>, ()> {
        static LINES: Throttle = Throttle::new(Duration::from_secs(10));
        let (Some(per_ip), Peer::Tcp(addr)) = (&self.per_ip, peer) else {
            return Ok(None);
        };
        if !relayed && self.app.plan.proxy.allow.contains(addr.ip()) {
            return Ok(None);
        }
        if let Some(slot) = per_ip.enter(addr.ip()) {
            return Ok(Some(slot));
        }
        if let Some(n) = LINES.pass() {
            log_warn!(
                "Closed a connection from {}: it holds {} already (--max-connections-per-ip){}",
                addr.ip(),
                per_ip.limit(),
                throttle::more(n, "")
            );
        }
        Err(())
    }

    /// Serve HTTP/1.1 or HTTP/2 on an established (plain or TLS) connection.
    async fn http<S>(&self, stream: S, conn: Arc<ConnInfo>, alpn: Option<Alpn>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let plan = &self.app.plan;
        let (h2, io) = match (plan.tls.http, alpn) {
            (HttpMode::One, _) | (HttpMode::Auto, Some(Alpn::Http11)) => {
                (false, Rewind::new(stream))
            }
            (HttpMode::Two, _) | (HttpMode::Auto, Some(Alpn::H2)) => (true, Rewind::new(stream)),
            // Cleartext, or TLS without ALPN: HTTP/2 only with prior knowledge.
            (HttpMode::Auto, None) => {
                let sniff = tokio::time::timeout(head_timeout(plan), sniff::sniff(stream));
                let Some(sniffed) = unless_stopped(&self.stop, sniff).await else {
                    return;
                };
                match sniffed {
                    Ok(Ok(found)) => found,
                    Ok(Err(e)) => {
                        log_debug!("connection ended before its first request: {e}");
                        return;
                    }
                    // Nothing arrived in the time HTTP/1 gives a request head.
                    Err(_) => return,
                }
            }
        };
        let app = Arc::clone(&self.app);
        let peer = conn.peer;
        if h2 {
            let streams = Streams::new();
            let watch = streams.watch(head_timeout(plan), plan.send_timeout);
            let service = service_fn(move |req| {
                let open = streams.open();
                let handled = crate::http::handle(req, Arc::clone(&app), Arc::clone(&conn));
                async move {
                    let resp = handled.await?;
                    Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, open)))
                }
            });
            let websockets = self.app.dispatch.websockets();
            let connection = http2_builder(plan, self.tracker.clone(), websockets)
                .serve_connection(TokioIo::new(Floodgate::new(io, peer)), service);
            drive_h2(connection, &self.stop, watch, peer, plan.send_timeout).await;
        } else {
            let stop = self.stop.clone();
            let originals = Originals::default();
            let io = Lenient::new(io, originals.clone(), plan.limits.request_line);
            let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
                if let Some(seen) = originals.take(target) {
                    if let Some(raw) = seen.target {
                        req.extensions_mut().insert(raw);
                    }
                    if let Some(lengths) = seen.lengths {
                        req.extensions_mut().insert(lengths);
                    }
                }
                let handled = crate::http::handle(req, Arc::clone(&app), Arc::clone(&conn));
                let stop = stop.clone();
                async move {
                    let mut resp = handled.await?;
                    // Draining: this response is the connection's last (see `drive`).
                    if stop.is_cancelled() {
                        resp.headers_mut()
                            .insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            // With upgrades: an ASGI application's WebSocket takes the connection over
            // (`asgi/websocket.rs`); for a WSGI one no response is a 101, so none happens.
            let connection = http1_builder(plan)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let result = drive(
                connection,
                &self.stop,
                plan.keep_alive.min(LAST_REQUEST_GRACE),
            )
            .await;
            if let Some(status) = result.as_ref().err().and_then(refused_by_hyper) {
                let why = result.as_ref().err().map(ToString::to_string);
                access::refused_head(
                    &self.app.access_format,
                    peer,
                    status,
                    why.as_deref().unwrap_or_default(),
                );
            }
            ended(result);
        }
    }
}

/// How long, at most, a keep-alive connection gets after shutdown begins to send one more
/// request (answered with `Connection: close`) before it is closed. Closing an idle
/// connection at once races with a request the client is sending at that moment, which the
/// client then sees fail; a client that keeps its connection busy (a load balancer, a
/// benchmark) sends its next request well within this. Arbitrary: short next to
/// `--graceful-timeout`, long next to a client's turnaround.
const LAST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// `work` (a new connection's handshake or first bytes), given at most
/// [`LAST_REQUEST_GRACE`] more once shutdown begins: a client whose connection was accepted
/// just before must still get its request answered (reloading workers stop often).
async fn unless_stopped<F: Future>(stop: &CancellationToken, work: F) -> Option<F::Output> {
    tokio::pin!(work);
    tokio::select! {
        r = &mut work => return Some(r),
        () = stop.cancelled() => {}
    }
    tokio::time::timeout(LAST_REQUEST_GRACE, work).await.ok()
}

/// Run an HTTP/1 connection until it ends. On shutdown, its responses say `Connection:
/// close` (the client reconnects, to a server that is not stopping), and after `grace` it is
/// asked to finish gracefully: closed if idle, else after the response in progress.
async fn drive<C>(
    connection: C,
    stop: &CancellationToken,
    grace: Duration,
) -> Result<(), hyper::Error>
where
    C: Graceful,
{
    tokio::pin!(connection);
    tokio::select! {
        r = connection.as_mut() => r,
        () = stop.cancelled() => {
            if let Ok(r) = tokio::time::timeout(grace, connection.as_mut()).await {
                r
            } else {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    }
}

/// The status hyper answered a request head it could not parse with (`role.rs`'s
/// `on_error`), if it answered one: what the access log records for it. hyper's error says
/// which parse failed only in its message; an internal or unknown one got no answer.
fn refused_by_hyper(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() {
        return None;
    }
    match e.to_string().as_str() {
        "invalid HTTP method parsed"
        | "invalid HTTP version parsed"
        | "invalid URI"
        | "invalid HTTP header parsed" => Some(400),
        "message head is too large" => Some(431),
        "URI too long" => Some(414),
        _ => None,
    }
}

/// An HTTP/1 connection that can be asked to finish gracefully: hyper's upgradeable one
/// (hyper-util's `GracefulConnection` covers only the plain kind).
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Run an HTTP/2 connection until it ends. On shutdown, or once it is idle, ask it to finish
/// gracefully (GOAWAY). Drop it at once when a stream has stalled (`server/streams.rs`), and
/// when idle with its GOAWAY not letting it finish within `send_timeout`: only data hyper
/// already holds for a client that does not take it can keep it open then.
async fn drive_h2<C>(
    connection: C,
    stop: &CancellationToken,
    mut watch: Watch,
    peer: Peer,
    send_timeout: Duration,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let mut closing = false;
    let mut idle_until: Option<tokio::time::Instant> = None;
    let result = loop {
        tokio::select! {
            r = connection.as_mut() => break r,
            () = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            why = watch.next() => match why {
                Quiet::Idle if !closing => {
                    log_debug!("closing an idle HTTP/2 connection");
                    closing = true;
                    idle_until = Some(tokio::time::Instant::now() + send_timeout);
                    connection.as_mut().graceful_shutdown();
                }
                Quiet::Idle => {}
                Quiet::Stalled => {
                    log_debug!(
                        "closing the HTTP/2 connection to {peer}: a response has waited for the client's flow-control window for {}s (--send-timeout) while no other moved",
                        send_timeout.as_secs_f64()
                    );
                    return;
                }
            },
            () = sleep_until(idle_until), if idle_until.is_some() => {
                log_debug!(
                    "closing the idle HTTP/2 connection to {peer}: the client has not taken the rest of its responses {}s after GOAWAY (--send-timeout)",
                    send_timeout.as_secs_f64()
                );
                return;
            }
        }
    };
    ended(result);
}

fn ended<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(e) = result {
        log_debug!("connection ended with an error: {e}");
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
