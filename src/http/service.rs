//! The hyper service: one request from head to response.
//!
//! Every request gets an id and an [`Exchange`] (its statistics and access line), then
//! admission (`admission.rs`, and `host.rs` for the Host syntax), the trusted proxy headers
//! (`proxy.rs`), static files (`static_files/`) and the URL prefix. What is left is an
//! application request, handed to the [`Dispatch`] the server runs with (`dispatch.rs`; the
//! thread pool's is `queued.rs`). Connection handling — accepting, timeouts, shutdown — is
//! `server.rs`'s.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Response};
use hyper::body::Incoming;

use super::access::Format;
use super::admission;
use super::dispatch::{Admitted, Dispatch};
use super::exchange::Exchange;
use super::host;
use super::proxy::Proxy;
use super::request_id;
use crate::cancel::Reason;
use crate::config::Plan;
use crate::job::ConnInfo;
use crate::log_debug;
use crate::response::respond;
use crate::response::OutBody;
use crate::static_files::StaticFiles;
use crate::stats::Stats;

/// What every request on every connection shares.
pub struct App {
    pub plan: Arc<Plan>,
    /// What runs application requests (the thread pool, for WSGI).
    pub dispatch: Arc<dyn Dispatch>,
    pub statics: StaticFiles,
    pub proxy: Proxy,
    pub stats: Arc<Stats>,
    pub access_format: Arc<Format>,
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
    if let Err(refusal) = admission::admit(&parts, limits).and_then(|()| host::check(&parts)) {
        log_debug!(
            "refused {} {}: {}",
            parts.method,
            parts.uri,
            refusal.reason()
        );
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
            return respond::text(refusal.status(), refusal.reason(), true);
        }
    };
    // The access line names the client, not the proxy in front of it.
    if let Some(client) = origin.client.as_deref() {
        exchange.forwarded_for(client);
    }
    if let Some(resp) = app.statics.serve(&parts).await {
        exchange.is_static();
        return resp;
    }
    if let Some(resp) = app.proxy.route(&parts, &mut origin) {
        return resp;
    }
    let request = Admitted {
        parts,
        body: incoming,
        conn,
        origin,
    };
    app.dispatch.dispatch(request, app, exchange).await
}
