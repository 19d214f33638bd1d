//! The bridge between worker threads and asyncio: one event loop per process, `ferrule.wait`
//! and `ferrule.gather`, asgiref's `async_to_sync` on that loop, and the exceptions a cancelled
//! request raises.
//!
//! - `event_loop.rs`: the "ferrule-loop" thread, started after the application is imported and
//!   stopped after the pool has drained, and the handle worker threads read.
//! - `waits.rs`: `ferrule.wait`, `ferrule.gather`, `ferrule.cancelled`. A worker thread sleeps,
//!   GIL released, on its request's [`Flight`](crate::cancel::Flight) until the awaitable is
//!   done or the request is cancelled; no Python runs on the waiting side.
//! - `asgiref.rs`: worker threads point asgiref at the loop, so `async_to_sync` runs there;
//!   its tasks are counted as time asleep and cancelled with their request.
//!
//! Deciding *that* a request is cancelled is `cancel.rs`'s; this module turns it into Python.
//! What runs on the loop thread is in `ferrule/_bridge.py`.

mod asgiref;
mod event_loop;
mod waits;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use crate::cancel::Reason;

pub use asgiref::enter_request;
pub use event_loop::EventLoop;
pub use waits::{cancelled, gather, wait};

/// The exception a request cancelled for `reason` raises in application code:
/// `ferrule.ClientDisconnected`, `ferrule.RequestTimeout`, or `ferrule.RequestCancelled` for a
/// forced shutdown.
pub fn cancelled_error(py: Python<'_>, reason: Reason) -> PyErr {
    let (class, message) = match reason {
        Reason::Disconnected => ("ClientDisconnected", "the client disconnected"),
        Reason::Timeout => ("RequestTimeout", "the request ran longer than --timeout"),
        Reason::Shutdown => ("RequestCancelled", "the server is shutting down"),
    };
    match py
        .import("ferrule._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// `ferrule._bridge`, the Python half.
fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || py.import("ferrule._bridge").map(Bound::unbind))
        .map(|m| m.bind(py))
}
