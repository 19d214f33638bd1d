//! The bridge between worker threads and asyncio: one event loop per process, `ferrule.wait`
//! and `ferrule.gather`, asgiref's `async_to_sync` on that loop, and the exceptions a cancelled
//! request raises.
//!
//! Deciding *that* a request is cancelled is `cancel.rs`'s; this file turns it into Python.

use pyo3::prelude::*;

use crate::cancel::Reason;

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
