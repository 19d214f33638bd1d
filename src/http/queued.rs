//! The thread pool's dispatcher ([`Queued`]): the whole body is read first (into memory,
//! then a spool file: `body.rs`), so a slow client never holds a thread and hyper notices a
//! client that leaves; then the request becomes a [`Job`] on a queue of [`Jobs`] (the pool),
//! and the application's [`Reply`] becomes the response.
//!
//! An application request gets a [`Flight`] here. Its disconnect guard lives in this future
//! until the reply arrives, then in the response body until the last frame is handed out:
//! hyper drops one or the other when the client closes or resets the connection (HTTP/1: it
//! reads the socket while a request is in flight and sees the EOF or the reset) or resets the
//! stream (HTTP/2). `--timeout` starts when the request is queued; if it expires before the
//! reply, the client gets 504 at once.

use std::io::SeekFrom;
use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::AsyncSeekExt;
use tokio::sync::oneshot;

use super::dispatch::{Admitted, Answer, Dispatch};
use super::exchange::Exchange;
use super::App;
use crate::body::{self, BodyError};
use crate::cancel::{Deadline, DisconnectGuard, Flight, Reason};
use crate::job::{Job, Jobs, Rejected, Reply, ReplyBody};
use crate::response::{respond, OutBody};
use crate::{log_debug, log_error, log_warn};

/// Application requests run by threads taking jobs from `J`.
pub struct Queued<J: Jobs>(pub J);

impl<J: Jobs> Dispatch for Queued<J> {
    fn dispatch<'a>(
        &'a self,
        request: Admitted,
        app: &'a App,
        exchange: &'a mut Exchange,
    ) -> Answer<'a> {
        Box::pin(async move {
            let (request, incoming) = request.take_body();
            let body = match read_body(&request.parts, incoming, app).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            run(&self.0, request, body, app, exchange).await
        })
    }
}

/// Queue the request with its body on `jobs` and wait for the application's reply (or the
/// request's cancellation).
async fn run<J: Jobs>(
    jobs: &J,
    Admitted {
        parts,
        body: (),
        conn,
        origin,
    }: Admitted<()>,
    body: body::Body,
    app: &App,
    exchange: &mut Exchange,
) -> Response<OutBody> {
    let (reply_tx, reply_rx) = oneshot::channel();
    let flight = Flight::new();
    // Dropped with this future when hyper gives up on the request (the client left): the
    // flight fires, so a queued job is skipped and a running one sees it.
    let mut guard = DisconnectGuard::new(&flight);
    let deadline = deadline(&flight, &parts, app);
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
        pending: exchange.take_pending(),
    };
    if let Err((why, job)) = jobs.submit(job) {
        guard.disarm();
        exchange.not_queued();
        return refused(&why, &job.head.method, &job.head.uri, jobs.threads());
    }
    answer(reply_rx, flight, guard, deadline, app).await
}

/// `--timeout` for a request, if it is set.
pub(crate) fn deadline(
    flight: &Arc<Flight>,
    parts: &http::request::Parts,
    app: &App,
) -> Option<Deadline> {
    app.plan.timeout.map(|after| {
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        Deadline::start(flight, after, move || {
            log_warn!(
                "{method} {uri} ran longer than --timeout ({}s) and was cancelled",
                after.as_secs_f64()
            );
        })
    })
}

/// The answer to a request the pool would not take.
pub(crate) fn refused(
    why: &Rejected,
    method: &http::Method,
    target: &dyn std::fmt::Display,
    (threads, busy): (usize, usize),
) -> Response<OutBody> {
    match why {
        Rejected::Full { depth } => {
            log_warn!(
                "Task queue depth is {depth} ({busy} of {threads} threads busy); answered 503 to {method} {target}"
            );
            respond::queue_full()
        }
        Rejected::Closing => respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down.",
            true,
        ),
    }
}

/// Wait for the application's reply to a request, or for its cancellation, and make the
/// response. `guard` and `deadline` move into the response body while it streams.
pub(crate) async fn answer(
    reply_rx: oneshot::Receiver<Reply>,
    flight: Arc<Flight>,
    mut guard: DisconnectGuard,
    deadline: Option<Deadline>,
    app: &App,
) -> Response<OutBody> {
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
pub(crate) fn cancelled(reason: Reason, app: &App) -> Response<OutBody> {
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
    // A body that will be spooled must fit before a byte of it is read (and before `100
    // Continue`); it takes its room as its bytes arrive, so a client that declares a
    // gigabyte and trickles holds only what it sent.
    if let Some(len) = declared.filter(|len| *len > limits.body_buffer as u64) {
        if len > app.spool.cap() {
            return Err(never_fits(parts, len, app));
        }
        if !app.spool.has_room(len) {
            return Err(spool_full(parts, len, app));
        }
    }
    let rules = body::Rules {
        buffer: limits.body_buffer,
        max: limits.max_body,
        idle: app.plan.body_timeout,
        pace: app.pace(),
        spool: &app.spool,
    };
    let read = body::read(incoming, declared, rules, super::admission::check_trailers);
    match read.await {
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
        Err(why @ (BodyError::Timeout | BodyError::TooSlow)) => Err(body_late(&why, parts, app)),
        Err(BodyError::SpoolFull(len)) => Err(spool_full(parts, len, app)),
        Err(BodyError::Spool(e)) => {
            log_error!(
                "cannot spool a request body to a temporary file in {} (check --spool-dir): {e}",
                app.spool.dir().display()
            );
            Err(respond::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The request body could not be stored.",
                true,
            ))
        }
    }
}

/// 408 for a body that paused too long or came too slowly.
pub(crate) fn body_late<R>(
    why: &BodyError<R>,
    parts: &http::request::Parts,
    app: &App,
) -> Response<OutBody> {
    let message = if matches!(why, BodyError::TooSlow) {
        log_debug!(
            "the body of {} {} arrived slower than --min-rate ({} bytes/s); answered 408",
            parts.method,
            parts.uri,
            app.plan.clients.min_rate.unwrap_or_default()
        );
        "The request body arrived too slowly (--min-rate)."
    } else {
        "The request body did not arrive in time (--body-timeout)."
    };
    respond::text(StatusCode::REQUEST_TIMEOUT, message, true)
}

/// 413 for a body larger than this process's whole share of the spool: it never fits.
fn never_fits(parts: &http::request::Parts, len: u64, app: &App) -> Response<OutBody> {
    log_warn!(
        "a request body of {len} bytes is larger than this process's share of --max-spool-size ({} bytes); answered 413 to {} {}",
        app.spool.cap(),
        parts.method,
        parts.uri
    );
    respond::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "The request body is larger than this server can store ({} bytes).",
            app.spool.cap()
        ),
        true,
    )
}

/// 503 for a body the spool has no room for; `len` is what it needed.
fn spool_full(parts: &http::request::Parts, len: u64, app: &App) -> Response<OutBody> {
    let spool = &app.spool;
    log_warn!(
        "no room to spool a request body of {len} bytes: {} of {} bytes in use in {} (--max-spool-size); answered 503 to {} {}",
        spool.used(),
        spool.cap(),
        spool.dir().display(),
        parts.method,
        parts.uri
    );
    // Room comes back as uploads finish, which takes longer than a queue draining.
    respond::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server has no room for this request body now. Retry shortly.",
        true,
        "5",
    )
}

pub(crate) fn too_large(max: u64) -> Response<OutBody> {
    respond::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("The request body is larger than this server accepts ({max} bytes)."),
        true,
    )
}

/// A Content-Length header's value, when it is one number.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pub(crate) async fn into_response(reply: Reply) -> Response<OutBody> {
    let body = match reply.body {
        ReplyBody::Full(bytes) => OutBody::full(bytes),
        ReplyBody::Stream(rx, aborted, trailers) => {
            // The application's Content-Length (already checked by the WSGI layer): hyper
            // stops polling once that many bytes are out, and the body must know it is done —
            // unless trailers are to follow the bytes.
            let declared = content_length(&reply.headers).filter(|_| trailers.is_none());
            let body = OutBody::stream(rx, aborted, trailers);
            match declared {
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
    match reply.reason {
        Some(reason) => {
            resp.extensions_mut().insert(reason);
        }
        // A code with no usual phrase (an ASGI application's 419): an empty one, which
        // RFC 9112 allows, rather than hyper's "<none>".
        None if reply.status.canonical_reason().is_none() => {
            resp.extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(b""));
        }
        None => {}
    }
    resp
}
