//! One ASGI request between the network core and the event loop: the [`Call`] both sides
//! share, and the `receive` and `send` callables the application awaits.
//!
//! The request body comes in from a tokio task (`dispatch.rs`) into a short queue, a few
//! chunks deep: the task waits while it is full, so a slow application never makes the server
//! buffer a fast client's upload, and a slow client never holds anything but its task. The
//! response goes out through the same [`Reply`] a WSGI worker sends: the head (with the whole
//! body when the first `http.response.body` is the last) through a oneshot, a longer body
//! through a bounded channel whose fullness makes `send` wait; trailers, when the head
//! announced them, end that stream. Every method here that touches
//! Python runs on the loop thread, holding the GIL; the tokio side only posts [`Event`]s.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tokio::sync::{mpsc, oneshot, Notify};

use super::endpoint::{Endpoint, Waiting};
use super::inbox::{Event, Inbox};
use crate::cancel::Flight;
use crate::job::{Chunk, Reply, ReplyBody, Trailers};
use crate::stats::{Trace, WorkerHold};
use crate::{log_error, log_warn};

/// Body chunks queued between the client and `receive()`. Small: what matters is that the
/// reader waits for the application, not how much it buffers. 4 was chosen arbitrarily.
pub const BODY_DEPTH: usize = 4;
/// Response chunks in flight between `send()` and the socket, as for WSGI streams.
const STREAM_DEPTH: usize = 8;

/// What both sides know of one request.
pub struct Call {
    me: Weak<Call>,
    pub flight: Arc<Flight>,
    pub trace: Arc<Trace>,
    pub inbox: Arc<Inbox>,
    runtime: tokio::runtime::Handle,
    /// The request, until the loop builds its scope.
    pub admitted: Mutex<Option<crate::http::dispatch::Admitted<()>>>,
    body: Mutex<BodyIn>,
    /// The body reader waits on this while the queue is full.
    pub body_space: Notify,
    out: Mutex<Out>,
    waiting: Waiting,
    /// The statistics' hold, let go when the application's task ends.
    hold: Mutex<Option<WorkerHold>>,
    /// The application's task, to cancel it after `--cancel-grace`.
    task: Mutex<Option<Py<PyAny>>>,
    /// The pool thread its sync code runs on, given back when the task ends.
    lease: Mutex<Option<Arc<super::executor::Lease>>>,
    /// Served by the direct path, a response left for the loop to send: the coroutine
    /// function that sends it, and the request's scope.
    pub resume: Mutex<Option<(Py<PyAny>, Py<PyDict>)>>,
}

#[derive(Default)]
struct BodyIn {
    chunks: VecDeque<Bytes>,
    /// No more chunks will come.
    done: bool,
    /// The last `http.request` was handed out.
    finished: bool,
}

struct Out {
    head: Option<oneshot::Sender<Reply>>,
    start: Option<(StatusCode, HeaderMap)>,
    stream: Option<mpsc::Sender<Chunk>>,
    aborted: Arc<AtomicBool>,
    /// `http.response.start` announced trailers: they fill this slot after the body, and the
    /// stream stays open until the last of them.
    trailers: Option<Trailers>,
    /// The last `http.response.body` was sent.
    body_ended: bool,
    /// The last byte (or trailer) was handed to the core.
    complete: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Call {
    #[allow(clippy::too_many_arguments)] // the parts of one request, named at the one call site
    pub fn new(
        admitted: crate::http::dispatch::Admitted<()>,
        flight: Arc<Flight>,
        trace: Arc<Trace>,
        hold: WorkerHold,
        head: oneshot::Sender<Reply>,
        has_body: bool,
        inbox: Arc<Inbox>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            flight,
            trace,
            inbox,
            runtime,
            admitted: Mutex::new(Some(admitted)),
            body: Mutex::new(BodyIn {
                done: !has_body,
                ..BodyIn::default()
            }),
            body_space: Notify::new(),
            out: Mutex::new(Out {
                head: Some(head),
                start: None,
                stream: None,
                aborted: Arc::new(AtomicBool::new(false)),
                trailers: None,
                body_ended: false,
                complete: false,
            }),
            waiting: Waiting::default(),
            hold: Mutex::new(Some(hold)),
            task: Mutex::new(None),
            lease: Mutex::new(None),
            resume: Mutex::new(None),
        })
    }

    // -- the tokio side -------------------------------------------------------------------

    /// Queue a body chunk; false while the queue is full (wait on `body_space`).
    pub fn push_body(&self, chunk: &Bytes) -> bool {
        let mut body = lock(&self.body);
        if body.chunks.len() >= BODY_DEPTH {
            return false;
        }
        body.chunks.push_back(chunk.clone());
        true
    }

    /// The body is complete (or cut short: the client left, or it was refused).
    pub fn end_body(&self) {
        lock(&self.body).done = true;
    }

    /// Answer the request from the server itself (a body refused mid-way) if the
    /// application has not started its response; true if it was answered.
    pub fn answer(&self, reply: Reply) -> bool {
        let head = lock(&self.out).head.take();
        head.is_some_and(|head| head.send(reply).is_ok())
    }

    // -- the loop side --------------------------------------------------------------------

    pub fn set_lease(&self, lease: Arc<super::executor::Lease>) {
        *lock(&self.lease) = Some(lease);
    }

    /// Remember the application's task, for [`Call::cancel`].
    pub fn set_task(&self, task: Py<PyAny>) {
        *lock(&self.task) = Some(task);
    }

    /// `--cancel-grace` after the request was cancelled: cancel the task if it still runs.
    pub fn cancel(&self, py: Python<'_>) {
        let task = lock(&self.task).as_ref().map(|t| t.clone_ref(py));
        if let Some(task) = task {
            if let Err(e) = task.bind(py).call_method0(intern!(py, "cancel")) {
                e.print(py);
            }
        }
    }

    fn start(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let mut out = lock(&self.out);
        if out.start.is_some() || out.head.is_none() {
            return Err(PyRuntimeError::new_err(
                "http.response.start was sent twice, or after the response (see asgiref's www spec)",
            ));
        }
        let status: u16 = message
            .get_item(intern!(py, "status"))?
            .ok_or_else(|| PyValueError::new_err("http.response.start needs a 'status'"))?
            .extract()?;
        let status = StatusCode::from_u16(status).map_err(|_| {
            PyValueError::new_err(format!("invalid status {status} in http.response.start"))
        })?;
        let mut headers = HeaderMap::new();
        fields(py, message, &mut headers)?;
        let trailers = flag(message, intern!(py, "trailers"))?;
        out.start = Some((status, headers));
        out.trailers = trailers.then(Trailers::default);
        Ok(())
    }

    fn body(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let data: Bytes = match message.get_item(intern!(py, "body"))? {
            Some(b) => Bytes::from(b.extract::<Vec<u8>>()?),
            None => Bytes::new(),
        };
        let more = flag(message, intern!(py, "more_body"))?;
        let mut out = lock(&self.out);
        if out.complete || out.body_ended {
            return Err(PyRuntimeError::new_err(
                "http.response.body after the last one (more_body was false)",
            ));
        }
        if let Some(head) = out.head.take() {
            let (status, headers) = out.start.take().ok_or_else(|| {
                PyRuntimeError::new_err("http.response.body before http.response.start")
            })?;
            if !more && out.trailers.is_none() {
                out.complete = true;
                drop(out);
                self.finished_response();
                head.send(Reply::full(status, headers, data))
                    .map_err(|_| client_gone(py))?;
                return Ready::now(py, py.None().into_bound(py));
            }
            let (tx, rx) = mpsc::channel(STREAM_DEPTH);
            let reply = Reply {
                status,
                headers,
                body: ReplyBody::Stream(rx, Arc::clone(&out.aborted), out.trailers.clone()),
                reason: None,
            };
            head.send(reply).map_err(|_| client_gone(py))?;
            out.stream = Some(tx);
        }
        let Some(stream) = out.stream.clone() else {
            return Err(PyRuntimeError::new_err(
                "http.response.body after http.response.pathsend",
            ));
        };
        // With trailers to come, the stream stays open for them (`trailers()`).
        let last = !more && out.trailers.is_none();
        out.body_ended = !more;
        if last {
            out.complete = true;
            out.stream = None;
        }
        drop(out);
        if last {
            self.finished_response();
        }
        if data.is_empty() {
            return Ready::now(py, py.None().into_bound(py));
        }
        match stream.try_send(Ok(data)) {
            Ok(()) => Ready::now(py, py.None().into_bound(py)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(client_gone(py)),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                // The client is slower than the application: wait for room.
                let (inbox, call) = (Arc::clone(&self.inbox), self.handle());
                let wake = move || {
                    if let Some(call) = call.upgrade() {
                        inbox.post(Event::Ready(call));
                    }
                };
                self.waiting
                    .send_when_room(py, &self.runtime, stream, chunk, wake)
            }
        }
    }

    fn pathsend(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let path: std::path::PathBuf = message
            .get_item(intern!(py, "path"))?
            .ok_or_else(|| PyValueError::new_err("http.response.pathsend needs a 'path'"))?
            .extract()?;
        let mut out = lock(&self.out);
        let (Some(head), Some((status, mut headers))) = (out.head.take(), out.start.take()) else {
            return Err(PyRuntimeError::new_err(
                "http.response.pathsend must follow http.response.start, once",
            ));
        };
        let file = std::fs::File::open(&path).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!(
                "cannot open {} for http.response.pathsend: {e}",
                path.display()
            ))
        })?;
        let len = file.metadata().map(|m| m.len())?;
        if !headers.contains_key(http::header::CONTENT_LENGTH) {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        out.complete = true;
        drop(out);
        self.finished_response();
        let reply = Reply {
            status,
            headers,
            body: ReplyBody::File {
                file,
                offset: 0,
                len,
            },
            reason: None,
        };
        head.send(reply).map_err(|_| client_gone(py))
    }

    /// `http.response.trailers`: fields gathered into the body's trailer slot; the last message
    /// (`more_trailers` false) ends the stream, and the body sends them after its last byte.
    fn trailers(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let more = flag(message, intern!(py, "more_trailers"))?;
        let mut gathered = HeaderMap::new();
        fields(py, message, &mut gathered)?;
        if crate::http::admission::check_trailers(&gathered).is_err() {
            return Err(PyValueError::new_err(
                "a trailer may not carry a field that belongs in the head (Content-Length, \
                 Transfer-Encoding, Trailer, Host, Connection, TE, Upgrade, Expect, \
                 Authorization, Proxy-Authorization, Cookie)",
            ));
        }
        let mut out = lock(&self.out);
        let slot = match &out.trailers {
            Some(slot) if out.body_ended => Arc::clone(slot),
            _ => {
                return Err(PyRuntimeError::new_err(
                    "http.response.trailers must follow the last http.response.body of a \
                     response whose http.response.start said trailers=True",
                ))
            }
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let fields = slot.get_or_insert_with(HeaderMap::new);
        for (name, value) in &gathered {
            fields.append(name, value.clone());
        }
        drop(slot);
        if !more {
            // The slot is full before the sender goes: the body finds the trailers once the
            // channel has ended.
            out.trailers = None;
            out.stream = None;
            out.complete = true;
            drop(out);
            self.finished_response();
        }
        Ok(())
    }

    /// The last of the response is out: a `receive()` waiting past the body now gets
    /// `http.disconnect`.
    fn finished_response(&self) {
        if let Some(call) = self.handle_strong() {
            self.inbox.post(Event::Ready(call));
        }
    }

    /// Served on a pool thread without the loop (`dispatch.rs`'s direct path): as [`done`]
    /// for a task that returned or raised `error`.
    ///
    /// [`done`]: Call::done
    pub fn done_direct(&self, py: Python<'_>, error: Option<&PyErr>) {
        let error = error.map(|e| e.value(py).clone().into_any());
        Endpoint::ended(self, py, error.as_ref(), false);
    }

    /// On the pool thread of the direct path: the response goes out from the loop, where
    /// `app(scope, receive, send)` sends it as the request's task (a Django response over an
    /// async iterator, which must not hold the thread while it streams).
    pub fn resume_on_loop(&self, app: Py<PyAny>, scope: Py<PyDict>) {
        *lock(&self.resume) = Some((app, scope));
        if let Some(call) = self.handle_strong() {
            self.inbox.post(Event::Start(call));
        }
    }

    /// The application could not even be called: answer 500 and let the statistics go.
    pub fn failed_to_start(&self) {
        let head = {
            let mut out = lock(&self.out);
            out.complete = true;
            out.head.take()
        };
        if let Some(head) = head {
            let _ = head.send(internal_error());
        }
        if let Some(lease) = lock(&self.lease).take() {
            lease.release();
        }
        drop(lock(&self.hold).take());
    }

    fn handle(&self) -> Weak<Call> {
        self.me.clone()
    }

    fn handle_strong(&self) -> Option<Arc<Call>> {
        self.me.upgrade()
    }
}

impl Endpoint for Call {
    /// The next message for `receive()`, if there is one now.
    fn next_message<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut body = lock(&self.body);
        if let Some(chunk) = body.chunks.pop_front() {
            let was_full = body.chunks.len() + 1 >= BODY_DEPTH;
            let last = body.done && body.chunks.is_empty();
            body.finished = last;
            drop(body);
            if was_full {
                self.body_space.notify_one();
            }
            return request_message(py, &chunk, !last).map(Some);
        }
        if body.done && !body.finished {
            body.finished = true;
            return request_message(py, b"", false).map(Some);
        }
        drop(body);
        // After the body: nothing until the client leaves or the response is over.
        if self.flight.is_cancelled() || lock(&self.out).complete {
            let message = PyDict::new(py);
            message.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
            return Ok(Some(message));
        }
        Ok(None)
    }

    /// `send(message)`.
    fn send(&self, py: Python<'_>, kind: &str, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        if self.flight.is_cancelled() {
            return Err(client_gone(py));
        }
        match kind {
            "http.response.start" => {
                self.start(py, message)?;
                Ready::now(py, py.None().into_bound(py))
            }
            "http.response.body" => self.body(py, message),
            "http.response.pathsend" => {
                self.pathsend(py, message)?;
                Ready::now(py, py.None().into_bound(py))
            }
            "http.response.trailers" => {
                self.trailers(py, message)?;
                Ready::now(py, py.None().into_bound(py))
            }
            other => Err(PyValueError::new_err(format!(
                "unknown ASGI message type {other:?} for an HTTP request (see asgiref's www spec)"
            ))),
        }
    }

    /// The application's task ended: log its error, answer 500 if it never responded, cut a
    /// stream it left open, and let the statistics go.
    fn ended(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>, cancelled: bool) {
        let mut out = lock(&self.out);
        let responded = out.head.is_none();
        let open_stream = out.stream.take();
        if open_stream.is_some() && !out.body_ended {
            // Not `complete`: the stream ended without its last chunk. Marked before the
            // channel closes, or the body could end as if complete.
            out.aborted.store(true, Ordering::Release);
        }
        drop(open_stream);
        let trailers_missing = out.trailers.take().is_some() && out.body_ended;
        let head = out.head.take();
        out.complete = true;
        drop(out);
        let busy = !responded && error.is_some_and(|e| is_queue_full(py, e));
        if busy {
            log_warn!(
                "The thread pool's queue is full; answered 503 to {} {}",
                self.trace.method,
                self.trace.path
            );
        } else if let Some(error) = error {
            let quiet = self.flight.is_cancelled();
            if !quiet {
                let err = PyErr::from_value(error.clone());
                log_error!(
                    "Error in the ASGI application for {} {}:\n{}",
                    self.trace.method,
                    self.trace.path,
                    crate::wsgi::traceback(py, &err)
                );
            }
        } else if !responded && !cancelled && !self.flight.is_cancelled() {
            log_error!(
                "The ASGI application returned without a response to {} {}",
                self.trace.method,
                self.trace.path
            );
        } else if trailers_missing {
            // The body is whole: it ends without them rather than being cut.
            log_error!(
                "The ASGI application returned without the trailers its response announced \
                 (http.response.trailers) for {} {}",
                self.trace.method,
                self.trace.path
            );
        }
        if let Some(head) = head {
            let _ = head.send(if busy { queue_full() } else { internal_error() });
        }
        if let Some(lease) = lock(&self.lease).take() {
            lease.release();
        }
        drop(lock(&self.hold).take());
        drop(lock(&self.task).take());
    }

    fn gone(&self) -> bool {
        self.flight.is_cancelled()
    }

    fn waiting(&self) -> &Waiting {
        &self.waiting
    }
}

/// Whether `error` is `ferrule._errors.QueueFull` (the pool refused the request's sync code).
fn is_queue_full(py: Python<'_>, error: &Bound<'_, PyAny>) -> bool {
    py.import("ferrule._errors")
        .and_then(|m| m.getattr("QueueFull"))
        .is_ok_and(|t| error.is_instance(&t).unwrap_or(false))
}

/// The 503 of a request whose sync code the full pool refused, as WSGI's.
fn queue_full() -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    Reply::full(
        StatusCode::SERVICE_UNAVAILABLE,
        headers,
        Bytes::from_static(
            b"503 Service Unavailable\n\nThe server is busy; every worker thread is taken and the queue is full. Retry shortly.\n",
        ),
    )
}

/// The 500 of an application that raised, or returned, before responding.
pub(super) fn internal_error() -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Reply::full(
        StatusCode::INTERNAL_SERVER_ERROR,
        headers,
        Bytes::from_static(
            b"500 Internal Server Error\n\nThe server could not complete this request.\n",
        ),
    )
}

/// `http.request` with `body`.
fn request_message<'py>(py: Python<'py>, body: &[u8], more: bool) -> PyResult<Bound<'py, PyDict>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    message.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
    message.set_item(intern!(py, "more_body"), more)?;
    Ok(message)
}

/// An ASGI message's optional boolean `key` (`more_body`, `trailers`): false when absent.
fn flag(message: &Bound<'_, PyDict>, key: &Bound<'_, pyo3::types::PyString>) -> PyResult<bool> {
    message.get_item(key)?.map_or(Ok(false), |v| v.is_truthy())
}

/// The `headers` of an ASGI message, checked (`header`), appended to `into`.
fn fields(py: Python<'_>, message: &Bound<'_, PyDict>, into: &mut HeaderMap) -> PyResult<()> {
    let Some(list) = message.get_item(intern!(py, "headers"))? else {
        return Ok(());
    };
    for item in list.try_iter()? {
        let item = item?;
        let (name, value): (Vec<u8>, Vec<u8>) = item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "a response header must be a pair of bytes, not {}",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?;
        let (name, value) = header(&name, &value).map_err(PyValueError::new_err)?;
        into.append(name, value);
    }
    Ok(())
}

/// A response header as the application gave it, checked: an HTTP token for a name, no
/// control characters in a value.
pub(super) fn header(name: &[u8], value: &[u8]) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name).map_err(|_| {
        format!(
            "invalid response header name {:?}: it must be an HTTP token",
            String::from_utf8_lossy(name)
        )
    })?;
    let value = HeaderValue::from_bytes(value).map_err(|_| {
        format!("invalid value for response header {name:?}: it contains a control character")
    })?;
    Ok((name, value))
}

/// What `send()` raises once the client is gone: `ferrule.ClientDisconnected`, an `OSError`.
pub(super) fn client_gone(py: Python<'_>) -> PyErr {
    crate::bridge::cancelled_error(py, crate::cancel::Reason::Disconnected)
}

/// An awaitable that is done already: `await` returns `value` without a trip through the
/// loop (most `send()` and `receive()` calls).
#[pyclass(module = "ferrule", name = "Ready")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

impl Ready {
    pub(super) fn now(py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(
            py,
            Ready {
                value: Some(value.unbind()),
            },
        )?
        .into_any())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    fn send(&mut self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.__next__(py)
    }

    /// `yield from` (asyncio's wrapper for an awaitable that is not a coroutine, as in
    /// `asyncio.ensure_future(receive())` before Python 3.12) iterates it.
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The generator protocol's `throw`: nothing is pending, so the exception goes straight
    /// back to the caller.
    #[pyo3(signature = (error, value=None, traceback=None))]
    fn throw(
        &mut self,
        error: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = traceback;
        self.value = None;
        let error = match value {
            Some(v) if !v.is_none() => v.clone(),
            _ => error.clone(),
        };
        Err(PyErr::from_value(error))
    }

    fn close(&mut self) {
        self.value = None;
    }
}
