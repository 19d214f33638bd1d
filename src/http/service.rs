//! The hyper service: one request from head to response.
//!
//! Every request gets an id and an [`Exchange`] (its statistics and access line), then
//! admission (`admission.rs`, and `host.rs` for the Host syntax), the trusted proxy headers
//! (`proxy.rs`), static files (`static_files/`) and the URL prefix. What is left is an
//! application request, handed to the [`Dispatch`] the server runs with (`dispatch.rs`; the
//! thread pool's is `queued.rs`). Connection handling — accepting, timeouts, shutdown — is
//! `server.rs`'s.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;

use super::access::Format;
use super::admission;
use super::dispatch::{Admitted, Dispatch};
use super::exchange::Exchange;
use super::host;
use super::proxy::Proxy;
use super::request_id;
use crate::body::{Pace, Spool};
use crate::cancel::Reason;
use crate::config::Plan;
use crate::job::{ConnInfo, InApp};
use crate::listen::per_ip::PerIp;
use crate::logging::throttle::{self, Throttle};
use crate::response::respond;
use crate::response::OutBody;
use crate::static_files::StaticFiles;
use crate::stats::Stats;
use crate::{log_debug, log_warn};

/// What every request on every connection shares.
pub struct App {
    pub plan: Arc<Plan>,
    /// What runs application requests (the thread pool, for WSGI).
    pub dispatch: Arc<dyn Dispatch>,
    pub statics: StaticFiles,
    pub proxy: Proxy,
    pub stats: Arc<Stats>,
    pub access_format: Arc<Format>,
    /// Where large request bodies are spooled, and the room left there.
    pub spool: Spool,
    /// `--max-connections-per-ip` behind a trusted proxy: requests in flight by forwarded
    /// client.
    pub forwarded_clients: Option<Arc<PerIp>>,
}

impl App {
    /// `--min-rate` for a request body starting now, if it is on.
    pub fn pace(&self) -> Option<Pace> {
        let rate = self.plan.clients.min_rate?;
        Some(Pace::new(rate, self.plan.body_timeout))
    }
}

/// The exchange is opened before the returned future is first polled: hyper may drop a
/// request's future unpolled (an HTTP/1 client that sent its head and closed at once, the
/// EOF read in the same pass as the head), and that request must still be logged as 499.
pub fn handle(
    req: http::Request<Incoming>,
    app: Arc<App>,
    conn: Arc<ConnInfo>,
) -> impl std::future::Future<Output = Result<Response<OutBody>, Infallible>> {
    let (parts, incoming) = req.into_parts();
    let id = request_id::choose(&parts, app.proxy.trusts(&conn));
    let exchange = Exchange::open(
        &parts,
        conn.peer,
        id,
        Arc::clone(&app.stats),
        Arc::clone(&app.access_format),
    );
    let mut pending = Unanswered(Some(exchange));
    async move {
        let mut resp = respond(parts, incoming, &app, conn, pending.exchange()).await;
        let exchange = pending.answered();
        if !resp.headers().contains_key(&request_id::X_REQUEST_ID) {
            if let Ok(value) = HeaderValue::from_str(exchange.id()) {
                resp.headers_mut()
                    .insert(request_id::X_REQUEST_ID.clone(), value);
            }
        }
        let status = resp.status().as_u16();
        let (head, body) = resp.into_parts();
        let finish =
            move |sent, cancelled: Option<Reason>| exchange.finish(status, sent, cancelled);
        Ok(Response::from_parts(head, body.on_finish(Box::new(finish))))
    }
}

/// A request with no response yet: if hyper drops the service future, the client left
/// before the response, and it is finished as 499.
struct Unanswered(Option<Exchange>);

impl Unanswered {
    fn exchange(&mut self) -> &mut Exchange {
        self.0
            .as_mut()
            .expect("the exchange is there until answered() takes it")
    }

    /// The response is made: from here the response body finishes the exchange.
    fn answered(mut self) -> Exchange {
        self.0
            .take()
            .expect("answered() is called once, consuming the wrapper")
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(exchange) = self.0.take() {
            exchange.finish(0, 0, Some(Reason::Disconnected));
        }
    }
}

/// The response to one request; `exchange` learns what the request turned out to be.
async fn respond(
    mut parts: http::request::Parts,
    incoming: Incoming,
    app: &App,
    conn: Arc<ConnInfo>,
    exchange: &mut Exchange,
) -> Response<OutBody> {
    let limits = &app.plan.limits;
    let admitted = admission::admit(&parts, limits)
        .and_then(|()| host::check(&parts))
        .and_then(|()| host::one_authority(&mut parts));
    if let Err(refusal) = admitted {
        log_debug!(
            "refused {} {}: {}",
            parts.method,
            parts.uri,
            refusal.reason()
        );
        exchange.refused(refusal.reason());
        return respond::text(refusal.status(), refusal.reason(), true);
    }
    request_id::write(&mut parts.headers, exchange.id());
    let mut origin = match app.proxy.forwarded(&mut parts, &conn) {
        Ok(origin) => origin,
        Err(refusal) => {
            log_debug!(
                "refused {} {}: {}",
                parts.method,
                parts.uri,
                refusal.reason()
            );
            exchange.refused(refusal.reason());
            return respond::text(refusal.status(), refusal.reason(), true);
        }
    };
    // The access line names the client, not the proxy in front of it.
    if let Some(client) = origin.client.as_deref() {
        exchange.forwarded_for(client);
        let close = respond::has_body(&parts);
        if let Some(refused) = count_forwarded(app, client, close, exchange) {
            return refused;
        }
    }
    if let Some(resp) = app.statics.serve(&parts).await {
        exchange.is_static();
        return resp;
    }
    if let Some(resp) = app.proxy.route(&parts, &mut origin) {
        return resp;
    }
    // A trusted proxy multiplexes many clients over one connection: not limited here.
    let limit = if app.proxy.trusts(&conn) {
        usize::MAX
    } else {
        app.plan.clients.h2_max_pending
    };
    let Some(pending) = InApp::enter(&conn, limit) else {
        exchange.refused("the connection has --h2-max-pending requests in the application");
        return too_many_pending(&parts, app);
    };
    exchange.holds_pending(pending);
    let request = Admitted {
        parts,
        body: incoming,
        conn,
        origin,
    };
    let resp = app.dispatch.dispatch(request, app, exchange).await;
    // A WSGI job took the place, and keeps it until its worker is done; anything else gives
    // it back with the response head.
    drop(exchange.take_pending());
    resp
}

/// 503 for a request over `--h2-max-pending`: its connection has enough in the application.
fn too_many_pending(parts: &http::request::Parts, app: &App) -> Response<OutBody> {
    static LINES: Throttle = Throttle::new(Duration::from_secs(10));
    if let Some(n) = LINES.pass() {
        log_warn!(
            "an HTTP/2 connection has {} requests in the application already (--h2-max-pending); answered 503 to {} {}{}",
            app.plan.clients.h2_max_pending,
            parts.method,
            parts.uri,
            throttle::more(n, "")
        );
    }
    respond::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "This connection has too many requests waiting. Retry shortly.",
        false,
        "1",
    )
}

/// Behind a trusted proxy, `--max-connections-per-ip` counts each forwarded client's requests
/// in flight: this one's slot goes to the exchange, or, past the limit, the answer is 429.
/// `close`: the request's body is left unread.
fn count_forwarded(
    app: &App,
    client: &str,
    close: bool,
    exchange: &mut Exchange,
) -> Option<Response<OutBody>> {
    static LINES: Throttle = Throttle::new(Duration::from_secs(10));
    let per_ip = app.forwarded_clients.as_ref()?;
    let ip: IpAddr = client.parse().ok()?;
    if let Some(slot) = per_ip.enter(ip) {
        exchange.holds(slot);
        return None;
    }
    exchange.refused("the forwarded client has --max-connections-per-ip requests in flight");
    if let Some(n) = LINES.pass() {
        log_warn!(
            "{client} (forwarded by a trusted proxy) has {} requests in flight (--max-connections-per-ip); answered 429{}",
            per_ip.limit(),
            throttle::more(n, "")
        );
    }
    Some(respond::retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests from your address at once. Retry shortly.",
        close,
        "1",
    ))
}
