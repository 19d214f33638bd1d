//! The hyper service: one request from head to response.
//!
//! Admission (`admission.rs`, and `host.rs` for the Host syntax), the body read into memory or
//! a spool file (`body.rs`), the job handed to the pool (`pool.rs`), and the application's
//! reply turned into a hyper response.
//! Connection handling — accepting, timeouts, shutdown — is `server.rs`'s.
//!
//! An application request gets a [`Flight`] here. Its disconnect guard lives in this future
//! until the reply arrives, then in the response body until the last frame is handed out:
//! hyper drops one or the other when the client closes or resets the connection (HTTP/1: it
//! reads the socket while a request is in flight and sees the EOF or the reset) or resets the
//! stream (HTTP/2). `--timeout` starts when the request is queued; if it expires before the
//! reply, the client gets 504 at once.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::AsyncSeekExt;
use tokio::sync::oneshot;

use super::access::Format;
use super::admission;
use super::exchange::Exchange;
use super::host;
use super::out_body::OutBody;
use super::proxy::Proxy;
use super::request_id;
use super::respond;
use crate::body::{self, BodyError};
use crate::cancel::{Deadline, DisconnectGuard, Flight, Reason};
use crate::config::Plan;
use crate::job::{ConnInfo, Job, Origin, Reply, ReplyBody};
use crate::pool::{Pool, Rejected};
use crate::static_files::StaticFiles;
use crate::stats::Stats;
use crate::{log_debug, log_error, log_warn};

/// What every request on every connection shares.
pub struct App {
    pub plan: Arc<Plan>,
    pub pool: Pool,
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
    let id = request_id::choose(&parts, app.proxy.trusts(conn.peer));
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
    let body = match read_body(&parts, incoming, app).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    run(parts, body, conn, origin, app, exchange).await
}

/// Hand a request with its body to the pool and wait for the application's reply (or the
/// request's cancellation).
async fn run(
    parts: http::request::Parts,
    body: body::Body,
    conn: Arc<ConnInfo>,
    origin: Origin,
    app: &App,
    exchange: &mut Exchange,
) -> Response<OutBody> {
    let (reply_tx, reply_rx) = oneshot::channel();
    let flight = Flight::new();
    // Dropped with this future when hyper gives up on the request (the client left): the
    // flight fires, so a queued job is skipped and a running one sees it.
    let mut guard = DisconnectGuard::new(&flight);
    let deadline = app.plan.timeout.map(|after| {
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        Deadline::start(&flight, after, move || {
            log_warn!(
                "{method} {uri} ran longer than --timeout ({}s) and was cancelled",
                after.as_secs_f64()
            );
        })
    });
    let (trace, hold) = app.stats.admit(
        Arc::clone(exchange.id()),
        parts.method.clone(),
        parts.uri.path(),
        Arc::clone(&flight),
    );
    exchange.is_app(trace, body.len());
    let job = Job {
        head: parts,
        body,
        conn,
        origin,
        trace: hold,
        reply: reply_tx,
    };
    if let Err((why, job)) = app.pool.submit(job) {
        guard.disarm();
        exchange.not_queued();
        return match why {
            Rejected::Full { depth } => {
                let (threads, busy) = app.pool.threads();
                log_warn!(
                    "Task queue depth is {depth} ({busy} of {threads} threads busy); answered 503 to {} {}",
                    job.head.method,
                    job.head.uri
                );
                respond::queue_full()
            }
            Rejected::Closing => respond::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
                true,
            ),
        };
    }
    let reply = tokio::select! {
        biased;
        reply = reply_rx => reply,
        reason = flight.fired() => {
            // The worker's reply, if it ever comes, is discarded with the channel.
            guard.disarm();
            return cancelled(reason, app);
        }
    };
    let Ok(reply) = reply else {
        guard.disarm();
        // A worker that saw the flight fire first (a `ferrule.wait` wakes at once) drops its
        // reply: the answer is the cancellation's, as if the select had seen the flight first.
        if let Some(reason) = flight.reason() {
            return cancelled(reason, app);
        }
        // The worker dropped the job without replying; it logged why.
        return respond::internal_error();
    };
    // Only a body the worker is still producing can be cut by the timeout; a whole body or a
    // file is the application's finished work.
    let streamed = matches!(reply.body, ReplyBody::Stream(..));
    let deadline = deadline.filter(|_| streamed);
    into_response(reply)
        .await
        .map(|body| body.watched(flight, guard, deadline, streamed))
}

/// The answer to a request cancelled before the application replied.
fn cancelled(reason: Reason, app: &App) -> Response<OutBody> {
    match reason {
        Reason::Timeout => respond::text(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "The application did not answer within {}s (--timeout).",
                app.plan.timeout.unwrap_or_default().as_secs_f64()
            ),
            false,
        ),
        // A forced shutdown; a client that left reads nothing.
        Reason::Shutdown | Reason::Disconnected => respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down.",
            true,
        ),
    }
}

/// Read the whole request body before the application runs, or the response refusing it.
async fn read_body(
    parts: &http::request::Parts,
    incoming: Incoming,
    app: &App,
) -> Result<body::Body, Response<OutBody>> {
    let limits = &app.plan.limits;
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|len| len > limits.max_body) {
        return Err(too_large(limits.max_body));
    }
    match body::read(
        incoming,
        declared,
        limits.body_buffer,
        limits.max_body,
        app.plan.body_timeout,
    )
    .await
    {
        Ok(body) => Ok(body),
        Err(BodyError::TooLarge) => Err(too_large(limits.max_body)),
        Err(BodyError::Client(e)) => {
            log_debug!(
                "could not read the body of {} {}: {e}",
                parts.method,
                parts.uri
            );
            Err(respond::text(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
                true,
            ))
        }
        Err(BodyError::Trailer(refusal)) => {
            log_debug!(
                "refused {} {}: {}",
                parts.method,
                parts.uri,
                refusal.reason()
            );
            Err(respond::text(refusal.status(), refusal.reason(), true))
        }
        Err(BodyError::Timeout) => Err(respond::text(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time (--body-timeout).",
            true,
        )),
        Err(BodyError::Spool(e)) => {
            log_error!("cannot spool a request body to a temporary file (check TMPDIR): {e}");
            Err(respond::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The request body could not be stored.",
                true,
            ))
        }
    }
}

fn too_large(max: u64) -> Response<OutBody> {
    respond::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("The request body is larger than this server accepts ({max} bytes)."),
        true,
    )
}

/// A Content-Length header's value, when it is one number.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn into_response(reply: Reply) -> Response<OutBody> {
    let body = match reply.body {
        ReplyBody::Full(bytes) => OutBody::full(bytes),
        ReplyBody::Stream(rx, aborted) => {
            let body = OutBody::stream(rx, aborted);
            // The application's Content-Length (already checked by the WSGI layer): hyper
            // stops polling once that many bytes are out, and the body must know it is done.
            match content_length(&reply.headers) {
                Some(len) => body.with_length(len),
                None => body,
            }
        }
        ReplyBody::File { file, offset, len } => {
            let mut file = tokio::fs::File::from_std(file);
            if let Err(e) = file.seek(SeekFrom::Start(offset)).await {
                log_error!("cannot seek in the file given to wsgi.file_wrapper: {e}");
                return respond::internal_error();
            }
            OutBody::file(file, len)
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    resp
}
