//! WebSockets of ASGI applications (RFC 6455, asgiref's `specs/www.rst` websocket part).
//!
//! The handshake is checked before the application is called (a malformed one gets 400 and
//! never reaches it), then the application decides: `websocket.accept` (with a subprotocol
//! and headers) answers 101 and a tokio task takes the connection over; `websocket.close`
//! before accepting answers 403, and `websocket.http.response.*` (the denial-response
//! extension) any response the application builds. Framing, masking, fragment assembly,
//! UTF-8 checks, permessage-deflate (RFC 7692) and the close codes of protocol errors
//! (1002, 1007, 1009) are `yawc`'s; what is here is the bridge to the loop.
//!
//! Messages from the client go through a short queue, as request bodies do: the socket task
//! stops reading while it is full, so a slow application backs up into TCP, not memory.
//! Messages to the client go through a bounded channel whose fullness makes `send()` wait,
//! and a client that does not read for `--send-timeout` is dropped. The task pings a quiet
//! client every `--ws-ping-interval` and closes with 1011 if no pong comes within
//! `--ws-ping-timeout`; at shutdown it closes with 1001, or with 1012 when the process is
//! being replaced (a reload).
//!
//! A WebSocket holds no pool thread: its sync code (a Channels `WebsocketConsumer`) runs on
//! whichever pool thread is free, one call at a time (`executor.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::sync::{mpsc, oneshot, Notify};
use yawc::frame::OpCode;
use yawc::{close::CloseCode, Frame, HttpWebSocket, WebSocket, WebSocketError};

use super::call::Ready;
use super::endpoint::{Endpoint, Waiting};
use super::inbox::{Event, Inbox};
use crate::cancel::{DisconnectGuard, Flight};
use crate::config::WsPlan;
use crate::http::dispatch::Admitted;
use crate::http::{App, Exchange};
use crate::job::Reply;
use crate::response::{respond, OutBody};
use crate::stats::websocket::WsRoute;
use crate::stats::{Trace, WorkerHold};
use crate::{log_debug, log_error};

/// Messages from the client queued for `receive()`.
const IN_DEPTH: usize = 16;
/// Messages from `send()` queued for the client.
const OUT_DEPTH: usize = 16;
/// How long a closing handshake may take before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Whether `parts` asks for a WebSocket: an HTTP/1.1 `GET` with `Upgrade: websocket` and
/// `Connection: upgrade`, or an HTTP/2 extended CONNECT with `:protocol websocket`.
pub fn is_upgrade(parts: &http::request::Parts) -> bool {
    if parts.method == Method::CONNECT {
        return parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    let has_token = |name: http::header::HeaderName, token: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    parts.method == Method::GET
        && has_token(http::header::UPGRADE, "websocket")
        && has_token(http::header::CONNECTION, "upgrade")
}

/// What the application answered the handshake with.
enum Handshake {
    Accept {
        subprotocol: Option<String>,
        headers: Vec<(http::HeaderName, HeaderValue)>,
    },
    Deny(Reply),
}

/// A message from the client.
enum In {
    Text(String),
    Bytes(Bytes),
}

impl In {
    fn len(&self) -> usize {
        match self {
            In::Text(t) => t.len(),
            In::Bytes(b) => b.len(),
        }
    }
}

/// A message to the client.
enum Out {
    Text(String),
    Bytes(Bytes),
    Close(u16, String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the application's answer to the handshake.
    Connecting,
    /// Building a denial response (`websocket.http.response.start` sent).
    Denying,
    Accepted,
    /// The application sent `websocket.close`, or the handshake was answered otherwise.
    Closed,
}

struct Incoming {
    /// `websocket.connect` was handed out.
    connected: bool,
    queue: VecDeque<In>,
    /// The connection is over: `receive()` returns the disconnect from here on.
    ended: Option<(u16, String)>,
}

struct Deny {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// One WebSocket between the network core and the event loop.
pub struct WsCall {
    me: Weak<WsCall>,
    /// The handshake's: it fires if the client leaves before the application answers.
    pub flight: Arc<Flight>,
    pub trace: Arc<Trace>,
    pub inbox: Arc<Inbox>,
    runtime: tokio::runtime::Handle,
    /// The request, until the loop builds its scope.
    pub admitted: Mutex<Option<Admitted<()>>>,
    handshake: Mutex<Option<oneshot::Sender<Handshake>>>,
    phase: Mutex<Phase>,
    deny: Mutex<Option<Deny>>,
    incoming: Mutex<Incoming>,
    /// The socket task waits on this while the incoming queue is full.
    space: Notify,
    out: mpsc::Sender<Out>,
    out_rx: Mutex<Option<mpsc::Receiver<Out>>>,
    /// The application's task ended: the close code the socket task sends.
    app_ended: Notify,
    end_code: AtomicU16,
    /// The client is gone (or the connection closed): `send()` raises.
    gone: AtomicBool,
    waiting: Waiting,
    hold: Mutex<Option<WorkerHold>>,
    task: Mutex<Option<Py<PyAny>>>,
    lease: Mutex<Option<Arc<super::executor::Lease>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WsCall {
    fn new(
        admitted: Admitted<()>,
        flight: Arc<Flight>,
        trace: Arc<Trace>,
        hold: WorkerHold,
        handshake: oneshot::Sender<Handshake>,
        inbox: Arc<Inbox>,
    ) -> Arc<Self> {
        let (out, out_rx) = mpsc::channel(OUT_DEPTH);
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            flight,
            trace,
            inbox,
            runtime: tokio::runtime::Handle::current(),
            admitted: Mutex::new(Some(admitted)),
            handshake: Mutex::new(Some(handshake)),
            phase: Mutex::new(Phase::Connecting),
            deny: Mutex::new(None),
            incoming: Mutex::new(Incoming {
                connected: false,
                queue: VecDeque::new(),
                ended: None,
            }),
            space: Notify::new(),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            app_ended: Notify::new(),
            end_code: AtomicU16::new(1000),
            gone: AtomicBool::new(false),
            waiting: Waiting::default(),
            hold: Mutex::new(Some(hold)),
            task: Mutex::new(None),
            lease: Mutex::new(None),
        })
    }

    fn wake(&self) {
        if let Some(me) = self.me.upgrade() {
            self.inbox.post(Event::Ready(me));
        }
    }

    // -- the tokio side -------------------------------------------------------------------

    /// Queue a message from the client; false while the queue is full.
    fn push(&self, message: In) -> Result<(), In> {
        let mut incoming = lock(&self.incoming);
        if incoming.queue.len() >= IN_DEPTH {
            return Err(message);
        }
        incoming.queue.push_back(message);
        drop(incoming);
        self.wake();
        Ok(())
    }

    /// The connection is over with `code`: a pending and every later `receive()` returns the
    /// disconnect, `send()` raises.
    fn end(&self, code: u16, reason: String) {
        self.gone.store(true, Ordering::Release);
        {
            let mut incoming = lock(&self.incoming);
            if incoming.ended.is_none() {
                incoming.ended = Some((code, reason));
            }
        }
        self.wake();
    }

    // -- the loop side --------------------------------------------------------------------

    pub fn set_lease(&self, lease: Arc<super::executor::Lease>) {
        *lock(&self.lease) = Some(lease);
    }

    pub fn set_task(&self, task: Py<PyAny>) {
        *lock(&self.task) = Some(task);
    }

    fn accept(&self, py: Python<'_>, message: &Bound<'_, PyDict>, phase: Phase) -> PyResult<()> {
        if phase != Phase::Connecting {
            return Err(PyRuntimeError::new_err(
                "websocket.accept after the handshake was answered",
            ));
        }
        let subprotocol: Option<String> = item(message, "subprotocol")?
            .map(|v| v.extract::<String>())
            .transpose()?;
        let headers = headers(py, message)?;
        self.answer(Handshake::Accept {
            subprotocol,
            headers,
        });
        *lock(&self.phase) = Phase::Accepted;
        Ok(())
    }

    fn send_message(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyDict>,
        phase: Phase,
    ) -> PyResult<Py<PyAny>> {
        if phase != Phase::Accepted {
            return Err(PyRuntimeError::new_err(
                "websocket.send before websocket.accept, or after websocket.close",
            ));
        }
        if self.gone.load(Ordering::Acquire) {
            return Err(super::call::client_gone(py));
        }
        let bytes: Option<Vec<u8>> = item(message, "bytes")?
            .map(|v| v.extract::<Vec<u8>>())
            .transpose()?;
        let text: Option<String> = item(message, "text")?
            .map(|v| v.extract::<String>())
            .transpose()?;
        let out = match (bytes, text) {
            (Some(b), None) => Out::Bytes(Bytes::from(b)),
            (None, Some(t)) => Out::Text(t),
            _ => {
                return Err(PyValueError::new_err(
                    "websocket.send needs exactly one of 'bytes' and 'text'",
                ))
            }
        };
        self.queue_out(py, out)
    }

    /// `websocket.http.response.start`: the denial response's head.
    fn deny_start(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyDict>,
        phase: Phase,
    ) -> PyResult<()> {
        if phase != Phase::Connecting {
            return Err(PyRuntimeError::new_err(
                "websocket.http.response.start after the handshake was answered",
            ));
        }
        let status: u16 = message
            .get_item(intern!(py, "status"))?
            .ok_or_else(|| PyValueError::new_err("a response needs a 'status'"))?
            .extract()?;
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| !s.is_informational())
            .ok_or_else(|| PyValueError::new_err(format!("invalid status {status}")))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers(py, message)? {
            map.append(name, value);
        }
        *lock(&self.deny) = Some(Deny {
            status,
            headers: map,
            body: Vec::new(),
        });
        *lock(&self.phase) = Phase::Denying;
        Ok(())
    }

    /// `websocket.http.response.body`: the denial response's body, sent with the last part.
    fn deny_body(&self, py: Python<'_>, message: &Bound<'_, PyDict>, phase: Phase) -> PyResult<()> {
        if phase != Phase::Denying {
            return Err(PyRuntimeError::new_err(
                "websocket.http.response.body without websocket.http.response.start",
            ));
        }
        let body: Option<Vec<u8>> = item(message, "body")?
            .map(|v| v.extract::<Vec<u8>>())
            .transpose()?;
        let more = message
            .get_item(intern!(py, "more_body"))?
            .map_or(Ok(false), |m| m.is_truthy())?;
        let mut deny = lock(&self.deny);
        if let Some(d) = deny.as_mut() {
            d.body.extend_from_slice(&body.unwrap_or_default());
        }
        if !more {
            if let Some(d) = deny.take() {
                drop(deny);
                *lock(&self.phase) = Phase::Closed;
                let reply = Reply::full(d.status, d.headers, Bytes::from(d.body));
                self.answer(Handshake::Deny(reply));
            }
        }
        Ok(())
    }

    fn answer(&self, handshake: Handshake) {
        if let Some(tx) = lock(&self.handshake).take() {
            let _ = tx.send(handshake);
        }
    }

    /// Hand `out` to the socket task, waiting for room when the client is slower.
    fn queue_out(&self, py: Python<'_>, out: Out) -> PyResult<Py<PyAny>> {
        match self.out.try_send(out) {
            Ok(()) => Ready::now(py, py.None().into_bound(py)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(super::call::client_gone(py)),
            Err(mpsc::error::TrySendError::Full(out)) => {
                let me = self.me.clone();
                let wake = move || {
                    if let Some(call) = me.upgrade() {
                        call.wake();
                    }
                };
                self.waiting
                    .send_when_room(py, &self.runtime, self.out.clone(), out, wake)
            }
        }
    }

    pub fn failed_to_start(&self) {
        *lock(&self.phase) = Phase::Closed;
        self.answer(Handshake::Deny(super::call::internal_error()));
        drop(lock(&self.hold).take());
    }
}

impl Endpoint for WsCall {
    fn next_message<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let message = PyDict::new(py);
        let mut incoming = lock(&self.incoming);
        if !incoming.connected {
            incoming.connected = true;
            message.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Some(message));
        }
        if let Some(next) = incoming.queue.pop_front() {
            let was_full = incoming.queue.len() + 1 >= IN_DEPTH;
            drop(incoming);
            if was_full {
                self.space.notify_one();
            }
            match next {
                In::Text(text) => {
                    message.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
                    message.set_item(intern!(py, "text"), PyString::new(py, &text))?;
                    message.set_item(intern!(py, "bytes"), py.None())?;
                }
                In::Bytes(data) => {
                    message.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
                    message.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
                    message.set_item(intern!(py, "text"), py.None())?;
                }
            }
            return Ok(Some(message));
        }
        if let Some((code, reason)) = &incoming.ended {
            disconnect(py, &message, *code, reason)?;
            return Ok(Some(message));
        }
        Ok(None)
    }

    fn send(&self, py: Python<'_>, kind: &str, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let phase = *lock(&self.phase);
        match kind {
            "websocket.accept" => self.accept(py, message, phase)?,
            "websocket.send" => return self.send_message(py, message, phase),
            "websocket.close" => {
                let code: Option<u16> = item(message, "code")?
                    .map(|v| v.extract::<u16>())
                    .transpose()?;
                let reason: Option<String> = item(message, "reason")?
                    .map(|v| v.extract::<String>())
                    .transpose()?;
                match phase {
                    Phase::Connecting => {
                        *lock(&self.phase) = Phase::Closed;
                        self.answer(Handshake::Deny(forbidden()));
                    }
                    Phase::Accepted => {
                        *lock(&self.phase) = Phase::Closed;
                        if !self.gone.load(Ordering::Acquire) {
                            let close =
                                Out::Close(code.unwrap_or(1000), reason.unwrap_or_default());
                            return self.queue_out(py, close);
                        }
                    }
                    // Closing twice, or after the client left: nothing more to say.
                    Phase::Denying | Phase::Closed => {}
                }
            }
            "websocket.http.response.start" => self.deny_start(py, message, phase)?,
            "websocket.http.response.body" => self.deny_body(py, message, phase)?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown ASGI message type {other:?} for a WebSocket (see asgiref's www spec)"
                )))
            }
        }
        Ready::now(py, py.None().into_bound(py))
    }

    /// The application's task ended.
    fn ended(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>, _cancelled: bool) {
        if let Some(error) = error {
            if !self.gone.load(Ordering::Acquire) {
                let err = PyErr::from_value(error.clone());
                log_error!(
                    "Error in the ASGI application for WebSocket {}:\n{}",
                    self.trace.path,
                    crate::wsgi::traceback(py, &err)
                );
            }
        }
        let phase = std::mem::replace(&mut *lock(&self.phase), Phase::Closed);
        match phase {
            // Never answered: 500 if it raised, else 403 (as the spec says for a close).
            Phase::Connecting | Phase::Denying => {
                self.answer(Handshake::Deny(if error.is_some() {
                    super::call::internal_error()
                } else {
                    forbidden()
                }));
            }
            // Left open: close it, 1011 if the application failed.
            Phase::Accepted => {
                let code = if error.is_some() { 1011 } else { 1000 };
                self.end_code.store(code, Ordering::Release);
                self.app_ended.notify_one();
            }
            Phase::Closed => {}
        }
        if let Some(lease) = lock(&self.lease).take() {
            lease.release();
        }
        drop(lock(&self.hold).take());
        drop(lock(&self.task).take());
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    fn waiting(&self) -> &Waiting {
        &self.waiting
    }
}

/// `message[key]`, unless it is missing or None.
fn item<'py>(message: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(message.get_item(key)?.filter(|v| !v.is_none()))
}

/// The `headers` of a message, checked as for HTTP responses.
fn headers(
    py: Python<'_>,
    message: &Bound<'_, PyDict>,
) -> PyResult<Vec<(http::HeaderName, HeaderValue)>> {
    let mut headers = Vec::new();
    if let Some(list) = message.get_item(intern!(py, "headers"))? {
        for item in list.try_iter()? {
            let (name, value): (Vec<u8>, Vec<u8>) = item?.extract()?;
            headers.push(super::call::header(&name, &value).map_err(PyValueError::new_err)?);
        }
    }
    Ok(headers)
}

fn disconnect(
    py: Python<'_>,
    message: &Bound<'_, PyDict>,
    code: u16,
    reason: &str,
) -> PyResult<()> {
    message.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
    message.set_item(intern!(py, "code"), code)?;
    message.set_item(intern!(py, "reason"), reason)?;
    Ok(())
}

/// The answer to a WebSocket the application closed before accepting (the spec's 403).
fn forbidden() -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Reply::full(
        StatusCode::FORBIDDEN,
        headers,
        Bytes::from_static(b"403 Forbidden\n\nThe application refused this WebSocket.\n"),
    )
}

/// yawc's options from the plan.
fn options(plan: &WsPlan) -> yawc::Options {
    let options = yawc::Options::default()
        .with_utf8()
        // yawc refuses a frame, or the fragments of a message, of this size or more.
        .with_limits(
            plan.max_message.saturating_add(1),
            plan.max_message.saturating_add(1),
        )
        // What the buffers shrink back to after a larger message: an idle socket is small.
        .with_read_buffer_capacity(IDLE_BUFFER)
        .with_write_buffer_capacity(IDLE_BUFFER)
        .with_no_delay();
    if plan.compression {
        // No context takeover either way (RFC 7692 lets the server impose it): deflate
        // state is borrowed from one pool for a message at a time, so an idle connection
        // keeps none — about 370 KiB each otherwise. Small messages are not compressed.
        static POOL: std::sync::OnceLock<yawc::DeflatePool> = std::sync::OnceLock::new();
        let pool = POOL
            .get_or_init(|| yawc::DeflatePool::new(DEFLATE_POOL))
            .clone();
        options
            .with_low_latency_compression()
            .server_no_context_takeover()
            .client_no_context_takeover()
            .with_deflate_pool(pool)
            .with_compression_threshold(COMPRESSION_THRESHOLD)
    } else {
        options.without_compression()
    }
}

/// Read and write buffer size of an idle WebSocket. 4 KiB: a page, enough for the short
/// messages of chat-like traffic; a larger message grows the buffer for its time.
const IDLE_BUFFER: usize = 4096;
/// Idle compressors (and, apart, decompressors) the deflate pool keeps: about the messages
/// compressed at one moment, which the network threads bound. Arbitrary above that.
const DEFLATE_POOL: usize = 64;
/// Messages shorter than this go uncompressed: they rarely shrink. yawc's example value.
const COMPRESSION_THRESHOLD: usize = 64;

/// Serve a WebSocket request: check the handshake, let the application answer it, and on
/// `websocket.accept` hand the connection to a socket task.
pub(super) async fn serve(
    asgi: &super::Asgi,
    request: Admitted,
    app: &App,
    exchange: &mut Exchange,
) -> http::Response<OutBody> {
    let (admitted, _body) = request.take_body();
    let Admitted {
        parts,
        body: (),
        conn,
        origin,
    } = admitted;
    let mut req = http::Request::from_parts(parts, ());
    let (response, upgrade) =
        match WebSocket::upgrade_with_options(&mut req, options(&app.plan.websocket)) {
            Ok(answer) => answer,
            Err(e) => {
                log_debug!("refused a WebSocket handshake for {}: {e}", req.uri());
                return respond::text(
                    StatusCode::BAD_REQUEST,
                    &format!("This is not a valid WebSocket handshake: {e}."),
                    true,
                );
            }
        };
    let (parts, ()) = req.into_parts();
    let flight = Flight::new();
    // Dropped with this future when hyper gives up on the request: the client left.
    let mut guard = DisconnectGuard::new(&flight);
    let (trace, hold) = app.stats.admit(
        Arc::clone(exchange.id()),
        parts.method.clone(),
        parts.uri.path(),
        Arc::clone(&flight),
    );
    exchange.is_app(Arc::clone(&trace), 0);
    let (tx, rx) = oneshot::channel();
    let call = WsCall::new(
        Admitted {
            parts,
            body: (),
            conn,
            origin,
        },
        Arc::clone(&flight),
        trace,
        hold,
        tx,
        Arc::clone(&asgi.inbox),
    );
    asgi.inbox.post(Event::StartWs(Arc::clone(&call)));
    let answer = tokio::select! {
        biased;
        answer = rx => answer,
        _ = flight.fired() => {
            // Gone before the answer: the application sees the disconnect.
            guard.disarm();
            call.end(1006, String::new());
            return respond::text(StatusCode::BAD_REQUEST, "The client left.", true);
        }
    };
    guard.disarm();
    match answer {
        Ok(Handshake::Accept {
            subprotocol,
            headers,
        }) => accepted(asgi, app, call, response, upgrade, subprotocol, headers),
        Ok(Handshake::Deny(reply)) => {
            call.end(1006, String::new());
            crate::http::queued::into_response(reply).await
        }
        Err(_) => {
            call.end(1006, String::new());
            respond::internal_error()
        }
    }
}

/// The application accepted: the 101 (or 200) with its subprotocol and headers, and the
/// socket task that takes the connection over once hyper hands it on.
fn accepted(
    asgi: &super::Asgi,
    app: &App,
    call: Arc<WsCall>,
    response: http::Response<http_body_util::Empty<Bytes>>,
    upgrade: yawc::UpgradeFut,
    subprotocol: Option<String>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
) -> http::Response<OutBody> {
    let (mut head, _) = response.into_parts();
    if let Some(protocol) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        head.headers
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    for (name, value) in headers {
        head.headers.append(name, value);
    }
    // The handshake is over: a socket that lives for hours is no request in flight (it is
    // counted apart, `stats/websocket.rs`).
    drop(lock(&call.hold).take());
    let Some(out) = lock(&call.out_rx).take() else {
        return respond::internal_error();
    };
    let plan = app.plan.websocket.clone();
    let send_timeout = app.plan.send_timeout;
    let closing = asgi.closing.clone();
    let stats = Arc::clone(&app.stats);
    asgi.sockets.spawn(async move {
        match upgrade.await {
            Ok(ws) => {
                let counts = stats.websockets.opened(&stats.websocket_route(&call.trace));
                let code = run(ws, &call, out, &plan, send_timeout, &closing, &counts).await;
                counts.closed(code);
            }
            Err(e) => {
                log_debug!("a WebSocket upgrade failed: {e}");
                call.end(1006, String::new());
            }
        }
    });
    http::Response::from_parts(head, OutBody::full(Bytes::new()))
}

/// What a frame from the client means for the connection.
enum Read {
    /// A message for the application (`held` while its queue is full).
    Message(In),
    Pong,
    Nothing,
    /// The connection ends with this code and reason.
    End(u16, String),
}

async fn read(ws: &mut HttpWebSocket) -> Read {
    match ws.next_frame().await {
        Ok(frame) => match frame.opcode() {
            OpCode::Text => Read::Message(In::Text(
                String::from_utf8_lossy(frame.payload()).into_owned(),
            )),
            OpCode::Binary => Read::Message(In::Bytes(frame.into_payload())),
            OpCode::Close => {
                let code = frame.close_code().map_or(1005, u16::from);
                let reason = frame.close_reason().ok().flatten().unwrap_or("").to_owned();
                // yawc queued the answering close: the next read sends it and ends.
                let _ = tokio::time::timeout(CLOSE_WAIT, ws.next_frame()).await;
                Read::End(code, reason)
            }
            OpCode::Pong => Read::Pong,
            OpCode::Ping | OpCode::Continuation => Read::Nothing,
        },
        Err(e) => {
            match e {
                WebSocketError::ConnectionClosed => {}
                // yawc checks UTF-8 above its framing layer, which queues no close for it.
                WebSocketError::InvalidUTF8 => {
                    let close = Frame::close(CloseCode::Invalid, "invalid UTF-8");
                    let _ = tokio::time::timeout(CLOSE_WAIT, ws.send(close)).await;
                }
                // The framing layer queued the close of a protocol error: the next read
                // sends it.
                _ => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, ws.next_frame()).await;
                }
            }
            Read::End(error_code(&e), String::new())
        }
    }
}

/// Send one frame, giving up after `--send-timeout` (a client that does not read).
async fn write(
    ws: &mut HttpWebSocket,
    frame: Frame,
    send_timeout: Duration,
    counts: &WsRoute,
) -> bool {
    let (data, len) = (frame.opcode() != OpCode::Ping, frame.payload().len());
    match tokio::time::timeout(send_timeout, ws.send(frame)).await {
        Ok(Ok(())) => {
            if data {
                counts.sent(len);
            }
            true
        }
        Ok(Err(e)) => {
            log_debug!("a WebSocket send failed: {e}");
            false
        }
        Err(_) => {
            log_debug!(
                "closing a WebSocket whose client read nothing for {}s (--send-timeout)",
                send_timeout.as_secs_f64()
            );
            false
        }
    }
}

/// The connection after the handshake: frames both ways until either side closes.
async fn run(
    mut ws: HttpWebSocket,
    call: &Arc<WsCall>,
    mut out: mpsc::Receiver<Out>,
    plan: &WsPlan,
    send_timeout: Duration,
    closing: &super::GoingAway,
    counts: &WsRoute,
) -> u16 {
    let mut held: Option<In> = None;
    let mut ping = plan.ping_interval.map(|every| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    // When the client was last heard from, and by when it must answer the ping sent since.
    let mut heard = tokio::time::Instant::now();
    let mut pong_due: Option<tokio::time::Instant> = None;
    let (code, reason) = loop {
        if let Some(message) = held.take() {
            held = call.push(message).err();
        }
        tokio::select! {
            read = read(&mut ws), if held.is_none() => {
                (heard, pong_due) = (tokio::time::Instant::now(), None);
                match read {
                    Read::Message(message) => {
                        counts.received(message.len());
                        held = call.push(message).err();
                    }
                    Read::Pong | Read::Nothing => {}
                    Read::End(code, reason) => break (code, reason),
                }
            },
            () = call.space.notified(), if held.is_some() => {}
            message = out.recv() => {
                let frame = match message {
                    Some(Out::Text(text)) => Frame::text(text),
                    Some(Out::Bytes(data)) => Frame::binary(data),
                    Some(Out::Close(code, reason)) => {
                        close(&mut ws, code, &reason).await;
                        break (code, reason);
                    }
                    None => continue,
                };
                if !write(&mut ws, frame, send_timeout, counts).await {
                    break (1006, String::new());
                }
            }
            () = call.app_ended.notified() => {
                // Send what the application queued before it returned, then close.
                let (mut code, mut reason) = (call.end_code.load(Ordering::Acquire), String::new());
                while let Ok(message) = out.try_recv() {
                    let frame = match message {
                        Out::Text(text) => Frame::text(text),
                        Out::Bytes(data) => Frame::binary(data),
                        Out::Close(c, r) => {
                            (code, reason) = (c, r);
                            break;
                        }
                    };
                    if !write(&mut ws, frame, send_timeout, counts).await {
                        break;
                    }
                }
                close(&mut ws, code, &reason).await;
                break (code, reason);
            }
            () = tick(ping.as_mut()) => {
                // Only a client quiet for a whole interval is pinged.
                let now = tokio::time::Instant::now();
                let quiet = plan.ping_interval.is_some_and(|every| now - heard >= every);
                if quiet && pong_due.is_none() {
                    if !write(&mut ws, Frame::ping(Bytes::new()), send_timeout, counts).await {
                        break (1006, String::new());
                    }
                    pong_due = Some(now + plan.ping_timeout);
                }
            }
            () = sleep_until(pong_due) => {
                log_debug!("closing a WebSocket whose client did not answer a ping");
                close(&mut ws, 1011, "keepalive ping timeout").await;
                // The client did not close: for the application, the connection was lost.
                break (1006, String::new());
            }
            (code, reason) = closing.begun() => {
                close(&mut ws, code, reason).await;
                break (code, String::new());
            }
        }
    };
    call.end(code, reason);
    code
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Send a close frame and wait (a little) for the client's.
async fn close(ws: &mut HttpWebSocket, code: u16, reason: &str) {
    let sent = tokio::time::timeout(
        CLOSE_WAIT,
        ws.send(Frame::close(CloseCode::from(code), reason)),
    );
    if !matches!(sent.await, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Ok(frame) = ws.next_frame().await {
            if frame.opcode() == OpCode::Close {
                break;
            }
        }
    })
    .await;
}

/// The close code a read error ends the connection with, as the application hears it.
fn error_code(e: &WebSocketError) -> u16 {
    match e {
        WebSocketError::FrameTooLarge => 1009,
        WebSocketError::InvalidUTF8 => 1007,
        WebSocketError::InvalidOpCode(_) => 1003,
        WebSocketError::ReservedBitsNotZero
        | WebSocketError::ControlFrameFragmented
        | WebSocketError::PingFrameTooLarge
        | WebSocketError::InvalidFragment
        | WebSocketError::InvalidCloseFrame
        | WebSocketError::InvalidCloseCode
        | WebSocketError::FragmentTimeout
        | WebSocketError::InvalidContinuationFrame
        | WebSocketError::CompressionNotSupported => 1002,
        _ => 1006,
    }
}
