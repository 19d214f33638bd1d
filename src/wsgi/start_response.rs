//! `start_response`, the `write()` callable, and the state of one response.
//!
//! [`Responder`] owns the way back to the network core: the reply channel until the head is
//! sent, then the bounded chunk channel of a streamed body. It enforces PEP 3333's rules —
//! a valid status and headers, no hop-by-hop headers, `exc_info` semantics, no more bytes than
//! a declared Content-Length — with errors that name the offending value. Calling the
//! application and walking its result is `response.rs`.
//!
//! Once the request's flight has fired, nothing more is sent: `write()` drops its bytes, the
//! head is not sent, a stream already started is cut short, and a thread waiting for a slow
//! client wakes at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, StatusCode};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::{mpsc, oneshot};

use super::head::{parse_content_length, parse_header, parse_status, permits_body};
use crate::cancel::{Flight, Reason};
use crate::job::{Chunk, Reply, ReplyBody};

/// Chunks a streamed body may have in flight between the worker thread and the socket;
/// with the application's chunk size this bounds the memory a slow client can pin.
/// 8 was chosen to keep a fast client's socket busy while the thread produces the next one.
const STREAM_DEPTH: usize = 8;

/// The head given by the application's last `start_response` call.
pub struct Head {
    pub status: StatusCode,
    /// The status line's reason phrase when it is not the code's usual one.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub headers: HeaderMap,
    pub content_length: Option<u64>,
}

pub struct Responder {
    reply: Option<oneshot::Sender<Reply>>,
    head: Option<Head>,
    stream: Option<mpsc::Sender<Chunk>>,
    /// A HEAD request: the head is sent, body bytes are dropped.
    head_only: bool,
    /// Content-Length the application declared for the head that was sent.
    declared: Option<u64>,
    /// The status of the head that was sent.
    sent_status: Option<u16>,
    sent: u64,
    /// Set before the stream's sender is dropped when the body must not end cleanly.
    aborted: Arc<AtomicBool>,
    /// The request's cancellation state.
    flight: Arc<Flight>,
}

/// How streamed chunks wait for a slow client: on the network runtime, for at most `timeout`
/// (`--send-timeout`) per chunk.
#[derive(Clone)]
pub struct Sending {
    pub runtime: tokio::runtime::Handle,
    pub timeout: Duration,
}

/// What went wrong while sending.
pub enum SendError {
    /// The application broke a WSGI rule; the message names the value.
    Protocol(String),
    /// The client is gone; nothing more can be sent.
    ClientGone,
    /// The request was cancelled; nothing more is sent.
    Cancelled(Reason),
}

impl Responder {
    fn head_sent(&self) -> bool {
        self.reply.is_none()
    }

    /// Whether the head is out and body bytes are being dropped (HEAD, 204, 304): iterating
    /// further only costs time.
    pub fn discards_body(&self) -> bool {
        self.head_sent() && self.stream.is_none()
    }

    /// Whether body chunks have started flowing (through `write()` or an iterator).
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    pub fn set_head(&mut self, head: Head, has_exc_info: bool) -> Result<(), String> {
        if (self.head.is_some() || self.head_sent()) && !has_exc_info {
            return Err(
                "start_response was called a second time without exc_info (see PEP 3333)".into(),
            );
        }
        self.head = Some(head);
        Ok(())
    }

    fn take_head(&mut self) -> Result<(Head, oneshot::Sender<Reply>), SendError> {
        if let Some(reason) = self.flight.reason() {
            // Nobody waits for this head: the client left, or was answered 504 or 503.
            self.reply = None;
            return Err(SendError::Cancelled(reason));
        }
        let reply = self.reply.take().ok_or(SendError::ClientGone)?;
        let Some(head) = self.head.take() else {
            self.reply = Some(reply);
            return Err(SendError::Protocol(
                "the application sent a body before calling start_response (see PEP 3333)".into(),
            ));
        };
        self.declared = head.content_length;
        self.sent_status = Some(head.status.as_u16());
        Ok((head, reply))
    }

    /// Send the whole response at once.
    pub fn send_full(&mut self, mut body: Bytes) -> Result<(), SendError> {
        let (mut head, reply) = self.take_head()?;
        if self.head_only || !permits_body(head.status) {
            body = Bytes::new();
        } else {
            match head.content_length {
                Some(cl) if (body.len() as u64) > cl => {
                    crate::log_warn!(
                        "the application declared Content-Length: {cl} but returned {} bytes; the excess was not sent",
                        body.len()
                    );
                    body.truncate(cl as usize);
                }
                Some(cl) if (body.len() as u64) < cl => {
                    crate::log_error!(
                        "the application declared Content-Length: {cl} but returned {} bytes; sent the bytes it returned with a corrected length",
                        body.len()
                    );
                    head.headers
                        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
                _ => {}
            }
        }
        self.sent = body.len() as u64;
        let reply_msg = Reply::full(head.status, head.headers, body).with_reason(head.reason);
        crate::pool::outbox::send(reply, reply_msg).map_err(|_| SendError::ClientGone)
    }

    /// Send the head with a file body that tokio reads by itself.
    pub fn send_file(
        &mut self,
        file: std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<(), SendError> {
        let (mut head, reply) = self.take_head()?;
        head.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        let reply_msg = Reply {
            status: head.status,
            headers: head.headers,
            body: ReplyBody::File { file, offset, len },
            reason: head.reason,
        };
        reply.send(reply_msg).map_err(|_| SendError::ClientGone)
    }

    /// Whether a file of `remaining` bytes satisfies the declared length (so it can be sent
    /// by tokio), and how many bytes to send.
    pub fn file_len(&self, remaining: u64) -> Option<u64> {
        let head = self.head.as_ref()?;
        if self.head_only || self.head_sent() || !permits_body(head.status) {
            return None;
        }
        match head.content_length {
            Some(cl) if cl <= remaining => Some(cl),
            Some(_) => None,
            None => Some(remaining),
        }
    }

    /// Start streaming if needed, and return the channel (None when bytes are dropped).
    fn stream_sender(&mut self) -> Result<Option<mpsc::Sender<Chunk>>, SendError> {
        if let Some(tx) = &self.stream {
            return Ok(Some(tx.clone()));
        }
        if self.head_sent() {
            return Ok(None); // HEAD, or a status without a body: the head is already out
        }
        let (head, reply) = self.take_head()?;
        if self.head_only || !permits_body(head.status) {
            let reply_msg =
                Reply::full(head.status, head.headers, Bytes::new()).with_reason(head.reason);
            return reply
                .send(reply_msg)
                .map(|()| None)
                .map_err(|_| SendError::ClientGone);
        }
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        let reply_msg = Reply {
            status: head.status,
            headers: head.headers,
            body: ReplyBody::Stream(rx, Arc::clone(&self.aborted), None),
            reason: head.reason,
        };
        reply.send(reply_msg).map_err(|_| SendError::ClientGone)?;
        self.stream = Some(tx.clone());
        Ok(Some(tx))
    }
}

/// The `start_response` callable of one request.
#[pyclass(module = "ferrule", name = "StartResponse", frozen)]
pub struct StartResponse {
    responder: Mutex<Responder>,
    sending: Sending,
}

impl StartResponse {
    pub fn new(
        reply: oneshot::Sender<Reply>,
        head_only: bool,
        sending: Sending,
        flight: Arc<Flight>,
    ) -> Self {
        Self {
            responder: Mutex::new(Responder {
                reply: Some(reply),
                head: None,
                stream: None,
                head_only,
                declared: None,
                sent_status: None,
                sent: 0,
                aborted: Arc::new(AtomicBool::new(false)),
                flight,
            }),
            sending,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Responder> {
        self.responder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send one body chunk, starting the stream on the first. Blocks (GIL released) while
    /// the channel is full, which is how a slow client slows the application down — for at
    /// most `--send-timeout`, after which the response is cut short and the thread freed —
    /// or until the request is cancelled.
    pub fn send_chunk(&self, py: Python<'_>, mut data: Bytes) -> Result<(), SendError> {
        let (tx, declared, already, flight) = {
            let mut r = self.lock();
            if let Some(reason) = r.flight.reason() {
                drop(r);
                self.abort_stream();
                return Err(SendError::Cancelled(reason));
            }
            let tx = r.stream_sender()?;
            (tx, r.declared, r.sent, Arc::clone(&r.flight))
        };
        let Some(tx) = tx else { return Ok(()) };
        if let Some(cl) = declared {
            let room = cl.saturating_sub(already) as usize;
            if data.len() > room {
                crate::log_warn!("the application sent more than its declared Content-Length: {cl}; the excess was not sent");
                data.truncate(room);
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.lock().sent += data.len() as u64;
        let data = match tx.try_send(Ok(data)) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SendError::ClientGone),
            Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
        };
        let Sending { runtime, timeout } = &self.sending;
        // The timer must be made inside the runtime: `timeout` registers with its driver.
        let wait = async {
            tokio::select! {
                sent = tokio::time::timeout(*timeout, tx.send(data)) => Ok(sent),
                reason = flight.fired() => Err(reason),
            }
        };
        match py.detach(|| runtime.block_on(wait)) {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) => Err(SendError::ClientGone),
            Err(reason) => {
                self.abort_stream();
                Err(SendError::Cancelled(reason))
            }
            Ok(Err(_)) => {
                crate::log_warn!(
                    "a client did not read its response for {}s (--send-timeout); the response was cut short",
                    timeout.as_secs_f64()
                );
                self.abort_stream();
                Err(SendError::ClientGone)
            }
        }
    }

    /// End the stream so the connection is aborted rather than the body ended cleanly.
    fn abort_stream(&self) {
        let mut r = self.lock();
        r.aborted.store(true, Ordering::Release);
        r.stream = None;
    }

    /// The body is complete: end the stream, or send a head with an empty body.
    pub fn finish(&self) -> Result<(), SendError> {
        let mut r = self.lock();
        if let Some(reason) = r.flight.reason() {
            // A cancelled response never ends cleanly.
            r.aborted.store(true, Ordering::Release);
            r.stream = None;
            r.reply = None;
            return Err(SendError::Cancelled(reason));
        }
        if let Some(tx) = r.stream.take() {
            if let Some(cl) = r.declared.filter(|cl| r.sent < *cl) {
                let msg = format!(
                    "the application declared Content-Length: {cl} but sent {} bytes",
                    r.sent
                );
                r.aborted.store(true, Ordering::Release);
                drop(tx);
                return Err(SendError::Protocol(msg));
            }
            return Ok(());
        }
        if r.head_sent() {
            return Ok(());
        }
        r.send_full(Bytes::new())
    }

    /// The status of the response head sent, if it was.
    pub fn sent_status(&self) -> Option<u16> {
        self.lock().sent_status
    }

    /// The request failed: answer 500 if nothing was sent yet, else cut the stream short so
    /// the client sees an incomplete response rather than a complete-looking wrong one.
    pub fn fail(&self) {
        let mut r = self.lock();
        if r.flight.is_cancelled() {
            // Nobody waits for a 500 (the client left, or was answered already); a stream
            // is cut short.
            r.reply = None;
        }
        if let Some(reply) = r.reply.take() {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            let body = Bytes::from_static(
                b"500 Internal Server Error\n\nThe server could not complete this request.\n",
            );
            let _ = reply.send(Reply::full(
                StatusCode::INTERNAL_SERVER_ERROR,
                headers,
                body,
            ));
        } else if r.stream.is_some() {
            // The flag first: the receiver must see it when the channel closes.
            r.aborted.store(true, Ordering::Release);
            r.stream = None;
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        response_headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let _ours = super::cost::Ours::start();
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(info) = exc_info {
            if slf.get().lock().head_sent() {
                // PEP 3333: after the head is out, re-raise the application's exception.
                let info = info.cast::<PyTuple>()?;
                let value = info.get_item(1)?;
                let tb = info.get_item(2)?;
                return Err(PyErr::from_value(
                    value.call_method1("with_traceback", (tb,))?,
                ));
            }
        }
        let head = parse_head(status, response_headers)?;
        slf.get()
            .lock()
            .set_head(head, exc_info.is_some())
            .map_err(PyRuntimeError::new_err)?;
        Ok(Write {
            start_response: slf.clone().unbind(),
        })
    }
}

/// The `write()` callable returned by `start_response` (PEP 3333's imperative API).
#[pyclass(module = "ferrule", name = "Write", frozen)]
pub struct Write {
    start_response: Py<StartResponse>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.extract::<&[u8]>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {} (see PEP 3333)",
                data.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        match self
            .start_response
            .get()
            .send_chunk(py, Bytes::copy_from_slice(bytes))
        {
            // After a cancellation the bytes are discarded: the view learns of it from
            // `ferrule.disconnected()`, its waits, or the exception raised after the grace.
            Ok(()) | Err(SendError::Cancelled(_)) => Ok(()),
            Err(SendError::Protocol(msg)) => Err(PyRuntimeError::new_err(msg)),
            Err(SendError::ClientGone) => {
                Err(PyOSError::new_err("the client closed the connection"))
            }
        }
    }
}

/// The reason phrase to send for a status line, when it is not the code's usual one: gunicorn
/// and uWSGI send the application's (`419 Page Expired`), and a code without a usual phrase
/// would otherwise get hyper's placeholder. Latin-1, as PEP 3333 has it; a phrase that is
/// not sends the usual one.
fn reason_phrase(status: StatusCode, given: &str) -> Option<hyper::ext::ReasonPhrase> {
    if status.canonical_reason() == Some(given) {
        return None; // the common case: nothing to carry
    }
    let latin1: Option<Vec<u8>> = given.chars().map(|c| u8::try_from(c).ok()).collect();
    latin1.and_then(|bytes| hyper::ext::ReasonPhrase::try_from(bytes).ok())
}

/// Validate `status` and `response_headers` as PEP 3333 requires.
fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let status_str = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the status must be a str such as '200 OK', not {} (see PEP 3333)",
            status.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ))
    })?;
    let status_line = status_str.to_cow()?;
    let status = parse_status(&status_line).map_err(PyValueError::new_err)?;
    let reason = reason_phrase(status, &status_line[4..]);
    let list = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "response_headers must be a list of (name, value) tuples, not {} (see PEP 3333)",
            headers
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let mut map = HeaderMap::with_capacity(list.len());
    let mut content_length = None;
    for item in list.iter() {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "response header {} is not a (name, value) tuple (see PEP 3333)",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "response header {} must have str name and value (see PEP 3333)",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            )));
        };
        let (name, value) = (name.to_cow()?, value.to_cow()?);
        let (header, value) = parse_header(&name, &value).map_err(PyValueError::new_err)?;
        if header == CONTENT_LENGTH {
            let len = parse_content_length(&value).map_err(PyValueError::new_err)?;
            match content_length {
                Some(prev) if prev != len => {
                    return Err(PyValueError::new_err(format!(
                        "conflicting Content-Length headers from the application: {prev} and {len}"
                    )));
                }
                Some(_) => continue, // an identical repeat: one is enough on the wire
                None => content_length = Some(len),
            }
            // Sent as parsed, so what goes on the wire is exactly what framing uses.
            map.append(header, HeaderValue::from(len));
            continue;
        }
        map.append(header, value);
    }
    Ok(Head {
        status,
        reason,
        headers: map,
        content_length,
    })
}
