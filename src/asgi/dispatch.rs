//! The event loop's side of the [`Dispatch`] seam: an admitted request becomes a [`Call`]
//! posted to the loop, its body is read by a tokio task into the call's short queue as the
//! application asks for it, and the response comes back as a [`Reply`] like a WSGI worker's.
//! Cancellation is the same as for the thread pool: the client leaving, `--timeout` (504 if
//! nothing was sent) or a forced shutdown fire the request's [`Flight`]; a waiting
//! `receive()` then returns `http.disconnect` at once, and after `--cancel-grace` the
//! application's task is cancelled.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use pyo3::prelude::*;

use super::call::Call;
use super::endpoint::Endpoint;
use super::inbox::{Event, Inbox};
use crate::body::{self, BodyError, Pace};
use crate::cancel::{DisconnectGuard, Flight};
use crate::http::dispatch::{Admitted, Answer, Dispatch};
use crate::http::queued::{answer, content_length, deadline, refused, too_large};
use crate::http::{admission, App, Exchange};
use crate::job::Reply;
use crate::log_debug;

/// Application requests run as tasks on the event loop.
pub struct Asgi {
    pub(super) inbox: Arc<Inbox>,
    /// `--cancel-grace`.
    pub(super) grace: Option<Duration>,
    /// Begun when the server starts to stop: open WebSockets then close.
    pub(super) closing: super::GoingAway,
    /// The WebSockets' tasks, waited for at shutdown.
    pub(super) sockets: TaskTracker,
    /// For a Django project: requests served on a pool thread without the loop.
    pub(super) direct: Option<Arc<Direct>>,
}

/// Django without the loop: for an application that is Django's `ASGIHandler` (or a
/// Channels router whose `http` is one), a request without a body goes straight to a pool
/// thread, which builds its scope and runs it as `ferrule/_django_asgi.py`'s sync path does —
/// no task, no trip to the loop and back.
pub(super) struct Direct {
    pool: crate::pool::Pool,
    handler: Py<PyAny>,
    /// `ferrule._django_asgi.direct`.
    serve: Py<PyAny>,
    scopes: Arc<super::Scopes>,
}

impl Direct {
    pub(super) fn new(
        py: Python<'_>,
        app: &Py<PyAny>,
        pool: crate::pool::Pool,
        scopes: Arc<super::Scopes>,
    ) -> PyResult<Option<Arc<Self>>> {
        let Ok(module) = py.import("ferrule._django_asgi") else {
            return Ok(None);
        };
        let handler = module.call_method1("direct_handler", (app.bind(py),))?;
        if handler.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            pool,
            handler: handler.unbind(),
            serve: module.getattr("direct")?.unbind(),
            scopes,
        })))
    }

    /// Queue `call` on the pool.
    fn queue(self: &Arc<Self>, call: &Arc<Call>) -> Result<(), crate::pool::Rejected> {
        let (me, call) = (Arc::clone(self), Arc::clone(call));
        let flight = Arc::clone(&call.flight);
        self.pool
            .call(flight, Box::new(move |py| me.run(py, &call)))
    }

    /// On a pool thread.
    fn run(&self, py: Python<'_>, call: &Arc<Call>) {
        let Some(admitted) = super::take(&call.admitted) else {
            return;
        };
        if call.flight.is_cancelled() {
            return; // gone before it started: the answer is the cancellation's
        }
        let _entered = crate::cancel::enter(&call.flight);
        crate::bridge::enter_request(py, &call.flight);
        call.trace.start();
        let served = self
            .scopes
            .build(py, super::scope::http, &admitted, &call.trace)
            .and_then(|scope| {
                let send = Arc::clone(call) as Arc<dyn super::endpoint::Endpoint>;
                let send = Py::new(py, super::endpoint::Send(send))?;
                let rest = self
                    .serve
                    .bind(py)
                    .call1((self.handler.bind(py), &scope, send))?;
                Ok((rest, scope))
            });
        match served {
            // A response to stream from the loop: `rest` sends it there.
            Ok((rest, scope)) if !rest.is_none() => {
                call.resume_on_loop(rest.unbind(), scope.unbind());
            }
            Ok(_) => call.done_direct(py, None),
            Err(e) => call.done_direct(py, Some(&e)),
        }
    }
}

impl Dispatch for Asgi {
    fn dispatch<'a>(
        &'a self,
        request: Admitted,
        app: &'a App,
        exchange: &'a mut Exchange,
    ) -> Answer<'a> {
        Box::pin(self.run(request, app, exchange))
    }

    fn websockets(&self) -> bool {
        true
    }
}

impl Asgi {
    async fn run(
        &self,
        request: Admitted,
        app: &App,
        exchange: &mut Exchange,
    ) -> http::Response<crate::response::OutBody> {
        if super::websocket::is_upgrade(&request.parts) {
            return super::websocket::serve(self, request, app, exchange).await;
        }
        let (admitted, incoming) = request.take_body();
        let limits = &app.plan.limits;
        let declared = content_length(&admitted.parts.headers);
        if declared.is_some_and(|len| len > limits.max_body) {
            return too_large(limits.max_body);
        }
        let flight = Flight::new();
        // Dropped with this future when hyper gives up on the request: the client left.
        let mut guard = DisconnectGuard::new(&flight);
        let deadline = deadline(&flight, &admitted.parts, app);
        let (trace, hold) = app.stats.admit(
            Arc::clone(exchange.id()),
            admitted.parts.method.clone(),
            admitted.parts.uri.path(),
            Arc::clone(&flight),
        );
        exchange.is_app(Arc::clone(&trace), declared.unwrap_or(0));
        let (head_tx, head_rx) = oneshot::channel();
        let has_body = !hyper::body::Body::is_end_stream(&incoming);
        let call = Call::new(
            admitted,
            Arc::clone(&flight),
            trace,
            hold,
            head_tx,
            has_body,
            Arc::clone(&self.inbox),
            tokio::runtime::Handle::current(),
        );
        self.watch(&call);
        let direct = self.direct.as_ref().filter(|_| !has_body);
        if has_body {
            tokio::spawn(pump(
                incoming,
                Arc::clone(&call),
                limits.max_body,
                app.plan.body_timeout,
                app.pace(),
            ));
        }
        match direct {
            None => self.inbox.post(Event::Start(Arc::clone(&call))),
            Some(direct) => {
                // As for a WSGI request: 503 when the pool's queue is full.
                if let Err(why) = direct.queue(&call) {
                    guard.disarm();
                    exchange.not_queued();
                    call.failed_to_start();
                    let (method, path) = (&call.trace.method, &call.trace.path);
                    return refused(&why, method, path, direct.pool.threads());
                }
            }
        }
        drop(call);
        answer(head_rx, flight, guard, deadline, app).await
    }

    /// When the request is cancelled: wake a `receive()` that waits (it returns
    /// `http.disconnect`), and after `--cancel-grace` cancel the task.
    fn watch(&self, call: &Arc<Call>) {
        let (weak, inbox, grace) = (Arc::downgrade(call), Arc::clone(&self.inbox), self.grace);
        let runtime = tokio::runtime::Handle::current();
        call.flight.on_fire(Box::new(move |_| {
            let Some(call) = weak.upgrade() else { return };
            inbox.post(Event::Ready(Arc::clone(&call) as Arc<dyn Endpoint>));
            if let Some(grace) = grace {
                let weak = Arc::downgrade(&call);
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    if let Some(call) = weak.upgrade() {
                        inbox.post(Event::Cancel(call));
                    }
                });
            }
        }));
    }
}

/// Read the request body into the call's queue, waiting while it is full; refuse it (413,
/// 408, 400) if it breaks the limits, and then the application sees the client gone.
/// `--min-rate` counts only the client's time: a window restarts after waiting for room.
async fn pump(
    mut incoming: Incoming,
    call: Arc<Call>,
    max: u64,
    idle: Duration,
    mut pace: Option<Pace>,
) {
    let mut total: u64 = 0;
    let refused = loop {
        let frame = match body::next_frame::<()>(&mut incoming, idle, &mut pace).await {
            Err(BodyError::TooSlow) => {
                break Some((
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body arrived too slowly (--min-rate).",
                ))
            }
            Err(_) => {
                break Some((
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body did not arrive in time (--body-timeout).",
                ))
            }
            Ok(None) => break None,
            Ok(Some(Err(e))) => {
                log_debug!(
                    "could not read the body of {} {}: {e}",
                    call.trace.method,
                    call.trace.path
                );
                break Some((
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read.",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                total += data.len() as u64;
                if total > max {
                    break Some((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The request body is larger than this server accepts.",
                    ));
                }
                match queue(&call, data).await {
                    Queued::Cancelled => return,
                    Queued::AfterWaiting => {
                        if let Some(pace) = pace.as_mut() {
                            pace.restart();
                        }
                    }
                    Queued::AtOnce => {}
                }
            }
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Err(refusal) = admission::check_trailers(trailers) {
                        break Some((refusal.status(), refusal.reason()));
                    }
                }
            }
        }
    };
    call.end_body();
    if let Some((status, message)) = refused {
        if call.answer(text(status, message)) {
            log_debug!(
                "refused the body of {} {}: {message}",
                call.trace.method,
                call.trace.path
            );
        }
        // What the application would read next is gone: it sees the client leave.
        call.flight.fire(crate::cancel::Reason::Disconnected);
    }
    let inbox = Arc::clone(&call.inbox);
    inbox.post(Event::Ready(call));
}

/// How a piece of the body went into the call's queue.
enum Queued {
    AtOnce,
    /// There was room only after the application read some.
    AfterWaiting,
    /// The request was cancelled while waiting.
    Cancelled,
}

/// Put `data` in the call's queue once there is room.
async fn queue(call: &Arc<Call>, data: Bytes) -> Queued {
    let mut waited = Queued::AtOnce;
    loop {
        if call.push_body(&data) {
            call.inbox
                .post(Event::Ready(Arc::clone(call) as Arc<dyn Endpoint>));
            return waited;
        }
        tokio::select! {
            () = call.body_space.notified() => waited = Queued::AfterWaiting,
            _ = call.flight.fired() => return Queued::Cancelled,
        }
    }
}

fn text(status: StatusCode, message: &str) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    let reason = status.canonical_reason().unwrap_or("Error");
    Reply::full(
        status,
        headers,
        Bytes::from(format!("{} {reason}\n\n{message}\n", status.as_u16())),
    )
}
