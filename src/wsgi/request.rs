//! `environ["ferrule.request"]`: what the server knows about a request while it runs — an
//! id, whether and why it was cancelled, the time spent asleep in async waits — and
//! `environ["ferrule.disconnected"]`, the bound method a view polls.
//!
//! The state is the request's [`Flight`] (`cancel.rs`); this is its Python face.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, Uri};
use pyo3::prelude::*;

use crate::cancel::Flight;

/// Request ids, unique within the process. Starts at 1.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The server's view of one request (`environ["ferrule.request"]`).
#[pyclass(module = "ferrule", name = "Request", frozen)]
pub struct Request {
    flight: Arc<Flight>,
    id: u64,
    method: Method,
    uri: Uri,
}

impl Request {
    pub fn new(flight: Arc<Flight>, method: Method, uri: Uri) -> Self {
        Self {
            flight,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            method,
            uri,
        }
    }
}

#[pymethods]
impl Request {
    /// A number unique to this request within the server process.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The request method, e.g. `"GET"`.
    #[getter]
    fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The request path as sent, percent-encoded, without the query string.
    #[getter]
    fn path(&self) -> &str {
        self.uri.path()
    }

    /// `None` while the request stands; `"disconnected"` (the client left), `"timeout"`
    /// (`--timeout`) or `"shutdown"` (a forced shutdown) once it is cancelled.
    #[getter]
    fn cancelled(&self) -> Option<&'static str> {
        self.flight.reason().map(crate::cancel::Reason::as_str)
    }

    /// Seconds this request's thread has spent blocked in `ferrule.wait`, `ferrule.gather`
    /// and `async_to_sync`.
    #[getter]
    fn asleep(&self) -> f64 {
        self.flight.asleep().as_secs_f64()
    }

    /// Whether the request was cancelled: its client left, it ran past `--timeout`, or the
    /// server is shutting down. Also `environ["ferrule.disconnected"]`.
    fn disconnected(&self) -> bool {
        self.flight.is_cancelled()
    }

    fn __repr__(&self) -> String {
        let state = self
            .flight
            .reason()
            .map_or(String::new(), |r| format!(" cancelled={}", r.as_str()));
        format!(
            "<ferrule.Request {} {} {}{state}>",
            self.id,
            self.method,
            self.uri.path()
        )
    }
}
