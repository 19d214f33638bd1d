//! The process's asyncio event loop: its thread ("ferrule-loop", run by `_bridge.EventLoop`),
//! its start and stop, and the handle that waits and asgiref read while it runs.
//!
//! Started after the application is imported (its settings and logging are in place) and
//! before the pool, so the first request finds it; stopped after the pool has drained, so no
//! request is left waiting on it. Stopping cancels the tasks still on the loop, gives them
//! [`STOP_GRACE`] to finish, and closes the loop. Between two servers in one process (tests)
//! there is no loop, and waits fall back to a private one.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use pyo3::exceptions::PyImportError;
use pyo3::prelude::*;

use super::helpers;
use crate::{log_debug, log_warn};

/// How long tasks still on the loop at shutdown get to finish once cancelled, and then the
/// loop's default executor its threads. Arbitrary: enough for cleanup code that awaits a
/// `close()`, short enough not to hold up a restart.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What worker threads need of the running loop.
pub(crate) struct Shared {
    pub event_loop: Py<PyAny>,
    pub call_soon_threadsafe: Py<PyAny>,
    /// asgiref's `SyncToAsync.threadlocal`, when asgiref is installed.
    pub asgiref_local: Option<Py<PyAny>>,
}

// A RwLock rather than a Mutex: every wait reads it, and only start and stop write.
static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);

/// The running loop, if there is one.
pub(crate) fn shared() -> Option<Arc<Shared>> {
    SHARED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The running loop thread; [`EventLoop::stop`] ends it.
pub struct EventLoop {
    handle: Py<PyAny>,
}

impl EventLoop {
    /// Start the loop thread with a loop of `kind` (`--loop`: asyncio, uvloop or auto) and
    /// wait until the loop runs.
    pub fn start(py: Python<'_>, kind: &str) -> PyResult<EventLoop> {
        let name_thread = wrap_pyfunction!(name_thread, py)?;
        let handle = helpers(py)?
            .getattr("EventLoop")?
            .call1((name_thread, kind))?;
        // Waits on a threading.Event, which releases the GIL.
        handle.call_method0("start")?;
        let event_loop = handle.getattr("loop")?;
        let asgiref_local = match py.import("asgiref.sync") {
            Ok(sync) => Some(
                sync.getattr("SyncToAsync")?
                    .getattr("threadlocal")?
                    .unbind(),
            ),
            Err(e) if e.is_instance_of::<PyImportError>(py) => None,
            Err(e) => return Err(e),
        };
        let shared = Shared {
            call_soon_threadsafe: event_loop.getattr("call_soon_threadsafe")?.unbind(),
            event_loop: event_loop.unbind(),
            asgiref_local,
        };
        *SHARED.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(shared));
        log_debug!("started the asyncio event loop thread (ferrule-loop)");
        Ok(EventLoop {
            handle: handle.unbind(),
        })
    }

    /// The asyncio loop itself.
    pub fn asyncio_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.handle.bind(py).getattr("loop")
    }

    /// Stop the loop: new waits take a private loop from now on, the tasks left are
    /// cancelled, and the loop is closed. Call once no worker thread runs a request; calling
    /// it again does nothing.
    pub fn stop(&self, py: Python<'_>) {
        drop(
            SHARED
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let stopped = self
            .handle
            .call_method1(py, "stop", (STOP_GRACE.as_secs_f64(),))
            .and_then(|r| r.extract::<(bool, Vec<String>)>(py));
        match stopped {
            Ok((true, left)) if left.is_empty() => {
                log_debug!("stopped the asyncio event loop");
            }
            Ok((ended, left)) => {
                if !left.is_empty() {
                    log_warn!(
                        "{} asyncio task(s) did not finish within {:?} of being cancelled at shutdown: {}",
                        left.len(),
                        STOP_GRACE,
                        left.join(", ")
                    );
                }
                if !ended {
                    log_warn!("the asyncio event loop thread (ferrule-loop) did not stop in time; exiting without it");
                }
            }
            Err(e) => log_warn!("cannot stop the asyncio event loop: {e}"),
        }
    }
}

/// Give the calling OS thread the name tools such as `top -H`, `ps -L` and py-spy show, as the
/// worker threads have theirs ("ferrule-worker-N"); Python's `threading` names stay Python's.
#[pyfunction]
fn name_thread(name: &str) {
    // Linux keeps 15 bytes and a NUL.
    let name: String = name.chars().filter(|c| *c != '\0').take(15).collect();
    if let Ok(name) = std::ffi::CString::new(name) {
        crate::platform::name_this_thread(&name);
    }
}
