//! Calling the application for one job and delivering what it returns.
//!
//! A list or tuple (or Django's non-streaming `HttpResponse`) is joined and sent in one
//! message (the thread is free at once); a
//! `wsgi.file_wrapper` over a regular file is handed to tokio; anything else is iterated and
//! streamed, the GIL released while the channel is full. `close()` is always called, so
//! Django's `request_finished` fires. Errors become a 500 (or a cut-short stream) and a log
//! line with the traceback; nothing the application does escapes this function.
//!
//! A cancelled request: skipped if it is still queued; if it runs, iterating its body stops,
//! what it sends is discarded, and it ends with one log line saying why, not a traceback.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyBytesMethods, PyList, PyTuple};

use super::cost::Sample;
use super::environ::{self, Constants, Streams};
use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use super::input::Input;
use super::interrupt::{Interrupts, Running};
use super::lend::lend;
use super::request::Request;
use super::start_response::{SendError, Sending, StartResponse};
use crate::cancel::{self, Reason};
use crate::hooks::Hooks;
use crate::job::Job;
use crate::{log_error, log_info};

/// The application and what every request reuses.
pub struct Application {
    app: Py<PyAny>,
    consts: Constants,
    sending: Sending,
    interrupts: Interrupts,
    /// `--hooks`, when it has `pre_request` or `post_request`.
    hooks: Option<Arc<Hooks>>,
}

/// Why delivering a response stopped early.
enum Failure {
    /// The application raised.
    Raised(PyErr),
    /// The application broke a WSGI rule.
    Protocol(String),
    /// The client went away.
    ClientGone,
    /// The request was cancelled; what it sent was discarded.
    Cancelled(Reason),
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Protocol(msg) => Failure::Protocol(msg),
            SendError::ClientGone => Failure::ClientGone,
            SendError::Cancelled(reason) => Failure::Cancelled(reason),
        }
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Raised(e)
    }
}

impl Application {
    pub fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        sending: Sending,
        interrupts: Interrupts,
        hooks: Option<Arc<Hooks>>,
    ) -> PyResult<Self> {
        Ok(Self {
            app,
            consts: Constants::new(py)?,
            sending,
            interrupts,
            hooks: hooks.filter(|h| h.per_request()),
        })
    }

    /// Run one job to completion on the calling (attached) thread.
    pub fn run(&self, py: Python<'_>, job: Job) {
        let Job {
            head,
            body,
            conn,
            origin,
            trace,
            reply,
            pending: _pending,
        } = job;
        let flight = Arc::clone(&trace.trace().flight);
        if reply.is_closed() || flight.is_cancelled() {
            // The client went away while the request waited in the queue: nobody would read
            // the response, so the application is never called.
            crate::log_debug!(
                "dropped {} {}: the client went away while it was queued",
                head.method,
                head.uri
            );
            return;
        }
        trace.trace().start();
        let head_only = head.method == http::Method::HEAD;
        let body_len = body.len();
        let start_response = match Bound::new(
            py,
            StartResponse::new(reply, head_only, self.sending.clone(), Arc::clone(&flight)),
        ) {
            Ok(sr) => sr,
            Err(e) => return log_failure(py, &head, &Failure::Raised(e), None),
        };
        let input = match Bound::new(py, Input::new(body)) {
            Ok(input) => input,
            Err(e) => return log_failure(py, &head, &Failure::Raised(e), None),
        };
        // Only for a request that runs: a queued one whose client left is skipped above.
        crate::bridge::enter_request(py, &flight);
        let _current = cancel::enter(&flight);
        self.interrupts.arm(&flight, &head.method, &head.uri);
        // Kept for post_request, when there is one.
        let mut environ = None;
        // `FERRULE_COST_SAMPLE`: this request's CPU time in the application, if sampled.
        let mut sample = Sample::pick();
        let outcome = (|| -> Result<(), Failure> {
            let request = Request::new(Arc::clone(trace.trace()));
            let streams = Streams {
                input: input.clone().into_any(),
                errors: Bound::new(py, ErrorStream::default())?.into_any(),
                request: Bound::new(py, request)?.into_any(),
            };
            let env = environ::build(py, &head, &conn, &origin, &self.consts, streams, body_len)?;
            if let Some(hooks) = &self.hooks {
                hooks.pre_request(py, &env);
                environ = Some(env.clone());
            }
            // From the call to the end of the body the thread runs this request's code, and
            // a cancellation may be raised in it; not in close(), which must run.
            let running = Running::start(py, &flight);
            sample.enter();
            let result = self.app.bind(py).call1((env, &start_response))?;
            sample.leave();
            let delivered = deliver(py, start_response.get(), &result);
            drop(running);
            sample.enter();
            let closed = close(&result);
            sample.leave();
            delivered?;
            closed.map_err(Failure::Raised)
        })();
        sample.finish();
        if let Err(failure) = &outcome {
            start_response.get().fail();
            log_failure(py, &head, failure, flight.reason());
        }
        if let (Some(hooks), Some(env)) = (&self.hooks, environ) {
            // As the access log says it: a cancelled request's reason, even mid-stream.
            let status = flight.reason().map_or_else(
                || start_response.get().sent_status().unwrap_or(500),
                Reason::log_status,
            );
            let timings = trace.trace().timings(std::time::Instant::now());
            hooks.post_request(py, &env, status, timings);
        }
        // The application may keep the environ alive (a traceback in a cycle, a global); the
        // body, in memory or a spool file, is not kept with it.
        input.get().release();
        // The worker is done with the request: `trace` lets go of it here.
        drop(trace);
    }
}

fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    // One attribute lookup, not hasattr's and then the call's.
    if let Some(close) = result.getattr_opt(pyo3::intern!(result.py(), "close"))? {
        close.call0()?;
    }
    Ok(())
}

fn deliver(py: Python<'_>, sr: &StartResponse, result: &Bound<'_, PyAny>) -> Result<(), Failure> {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some(file) = wrapper.get().sendable(py) {
            let len = sr.lock().file_len(file.remaining);
            if let Some(len) = len {
                return Ok(sr.lock().send_file(file.file, file.offset, len)?);
            }
        }
    }
    if is_materialized(result) {
        let mut parts = Vec::new();
        for item in result.try_iter()? {
            let item = item?;
            parts.push(body_bytes(&item)?.clone());
        }
        let whole = match parts.as_slice() {
            [] => Bytes::new(),
            [one] => lend(one),
            many => Bytes::from(
                many.iter()
                    .map(PyBytesMethods::as_bytes)
                    .collect::<Vec<_>>()
                    .concat(),
            ),
        };
        let streaming_already = sr.lock().is_streaming();
        if streaming_already {
            sr.send_chunk(py, whole)?;
            return Ok(sr.finish()?);
        }
        return Ok(sr.lock().send_full(whole)?);
    }
    let iter = result.try_iter().map_err(|_| {
        Failure::Protocol(format!(
            "the application returned {}, which is not an iterable of bytes (see PEP 3333)",
            result.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        ))
    })?;
    for item in iter {
        let item = item?;
        let bytes = body_bytes(&item)?;
        if !bytes.as_bytes().is_empty() {
            sr.send_chunk(py, lend(bytes))?;
            if sr.lock().discards_body() {
                break;
            }
        }
    }
    Ok(sr.finish()?)
}

/// A body whose bytes all exist already, so iterating it cannot block: a list or tuple, or
/// an object saying `streaming = False` (Django's `HttpResponse` and its subclasses, whose
/// iterator walks a list). Such a body is sent as one message.
fn is_materialized(result: &Bound<'_, PyAny>) -> bool {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return true;
    }
    let py = result.py();
    result
        .getattr_opt(pyo3::intern!(py, "streaming"))
        .ok()
        .flatten()
        .is_some_and(|v| v.is(&*pyo3::types::PyBool::new(py, false)))
}

fn body_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> Result<&'a Bound<'py, PyBytes>, Failure> {
    item.cast::<PyBytes>().map_err(|_| {
        Failure::Protocol(format!(
            "the application's body contains {} ({}); WSGI bodies are bytes (see PEP 3333)",
            item.repr()
                .map_or_else(|_| "?".into(), |r| truncate(&r.to_string())),
            item.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_owned()
    }
}

fn log_failure(py: Python<'_>, head: &Parts, failure: &Failure, cancelled: Option<Reason>) {
    if let Some(reason) = cancelled {
        // The expected ends of a cancelled request get one line, no traceback; anything
        // else the application raised is still its error.
        let how = match failure {
            Failure::Raised(err) if is_cancellation(py, err) => {
                Some(format!("it stopped with {}", exception_name(py, err)))
            }
            Failure::ClientGone | Failure::Cancelled(_) => {
                Some("its response was discarded".to_owned())
            }
            Failure::Raised(_) | Failure::Protocol(_) => None,
        };
        if let Some(how) = how {
            return log_info!(
                "{} {} was cancelled ({}); {how}",
                head.method,
                head.uri,
                reason.describe()
            );
        }
    }
    match failure {
        Failure::Raised(err) => {
            log_error!(
                "Error handling request {} {}\n{}",
                head.method,
                head.uri,
                traceback(py, err)
            );
        }
        Failure::Protocol(msg) => {
            log_error!("Error handling request {} {}: {msg}", head.method, head.uri);
        }
        Failure::ClientGone => log_info!(
            "The client of {} {} went away before the response was complete",
            head.method,
            head.uri
        ),
        Failure::Cancelled(reason) => log_info!(
            "{} {} was cancelled ({}); its response was discarded",
            head.method,
            head.uri,
            reason.describe()
        ),
    }
}

/// Whether `err` is one of ferrule's cancellation exceptions (`ferrule.RequestCancelled`).
fn is_cancellation(py: Python<'_>, err: &PyErr) -> bool {
    py.import("ferrule._errors")
        .and_then(|m| m.getattr("RequestCancelled"))
        .is_ok_and(|class| err.value(py).is_instance(&class).unwrap_or(false))
}

fn exception_name(py: Python<'_>, err: &PyErr) -> String {
    err.get_type(py)
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// The formatted traceback of `err`, as `traceback.format_exception` prints it. The
/// traceback is passed on its own: before Python 3.12 a fetched exception's value does not
/// carry it, and the log line would show no frames.
pub fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|lines| pyo3::types::PyString::new(py, "").call_method1("join", (lines,)))
        .and_then(|s| s.extract::<String>());
    match formatted {
        Ok(text) => text.trim_end().to_owned(),
        Err(_) => err.to_string(),
    }
}
