//! `environ["ferrule.request"]`: what the server knows about a request while it runs — its
//! id and statistics label, whether and why it was cancelled, the time spent asleep in async waits — and
//! `environ["ferrule.disconnected"]`, the bound method a view polls.
//!
//! The state is the request's [`Trace`] (`stats/record.rs`) and its flight (`cancel.rs`);
//! this is their Python face.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::stats::Trace;

/// The server's view of one request (`environ["ferrule.request"]`).
#[pyclass(module = "ferrule", name = "Request", frozen)]
pub struct Request {
    trace: Arc<Trace>,
}

impl Request {
    pub fn new(trace: Arc<Trace>) -> Self {
        Self { trace }
    }
}

#[pymethods]
impl Request {
    /// The request id: `X-Request-ID` from a trusted proxy, or 32 hex digits made by the
    /// server; also in the response's `X-Request-ID` and the access log.
    #[getter]
    fn id(&self) -> &str {
        &self.trace.id
    }

    /// The request method, e.g. `"GET"`.
    #[getter]
    fn method(&self) -> &str {
        self.trace.method.as_str()
    }

    /// The request path as sent, percent-encoded, without the query string.
    #[getter]
    fn path(&self) -> &str {
        &self.trace.path
    }

    /// The label the statistics count this request under: the Django view name (set by
    /// ferrule's Django hook), whatever the application set, or `None` for the default (the
    /// first path segment, or `--stats-label`'s match).
    #[getter]
    fn label(&self) -> Option<String> {
        self.trace.label().map(|l| l.to_string())
    }

    #[setter]
    fn set_label(&self, label: &str) {
        self.trace.set_label(label);
    }

    /// `None` while the request stands; `"disconnected"` (the client left), `"timeout"`
    /// (`--timeout`) or `"shutdown"` (a forced shutdown) once it is cancelled.
    #[getter]
    fn cancelled(&self) -> Option<&'static str> {
        self.trace
            .flight
            .reason()
            .map(crate::cancel::Reason::as_str)
    }

    /// Seconds this request's thread has spent blocked in `ferrule.wait`, `ferrule.gather`
    /// and `async_to_sync`.
    #[getter]
    fn asleep(&self) -> f64 {
        self.trace.flight.asleep().as_secs_f64()
    }

    /// Whether the request was cancelled: its client left, it ran past `--timeout`, or the
    /// server is shutting down. Also `environ["ferrule.disconnected"]`.
    fn disconnected(&self) -> bool {
        self.trace.flight.is_cancelled()
    }

    fn __repr__(&self) -> String {
        let state = self
            .trace
            .flight
            .reason()
            .map_or(String::new(), |r| format!(" cancelled={}", r.as_str()));
        format!(
            "<ferrule.Request {} {} {}{state}>",
            self.trace.id, self.trace.method, self.trace.path
        )
    }
}
