//! Raising a cancelled request's exception in the thread that runs it, `--cancel-grace` after
//! the cancellation.
//!
//! A worker thread marks the request's flight with its thread id for as long as it runs the
//! application's code for it ([`Running`]: from the call to the end of the body, not during
//! `close()`, which must run so Django's `request_finished` fires). When the flight fires, a
//! timer on the tokio runtime waits out the grace, then — only if a thread still runs that
//! same request — takes the GIL on the blocking pool and hands the exception class to the
//! thread with `PyThreadState_SetAsyncExc`. The runner mark is written and read only with the
//! GIL held, so the check and the injection cannot straddle the thread moving on to its next
//! request. Python raises the exception at the thread's next bytecode: a thread blocked in C
//! code (a socket read, `time.sleep`, a database driver) gets it when that call returns.
//!
//! What a fired flight means is `cancel.rs`'s; the exception classes are `bridge/`'s.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, Uri};
use pyo3::prelude::*;

use crate::bridge;
use crate::cancel::{Flight, Reason};
use crate::log_warn;

/// How long a request cancelled by a forced shutdown has before its exception is raised:
/// time for a view that polls `ferrule.disconnected()` to stop by itself, well within the
/// half second `run/serve.rs` gives cancelled requests to unwind. Arbitrary.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// How cancelled requests are interrupted: the runtime the timers run on, and
/// `--cancel-grace` (`None`: never).
#[derive(Clone)]
pub struct Interrupts {
    pub runtime: tokio::runtime::Handle,
    pub grace: Option<Duration>,
}

impl Interrupts {
    /// Arm the grace timer of a request whose application code is about to run on the calling
    /// thread. A forced shutdown does not wait out the whole grace: the process is about to
    /// exit.
    pub fn arm(&self, flight: &Arc<Flight>, method: &Method, uri: &Uri) {
        let Some(grace) = self.grace else { return };
        let weak = Arc::downgrade(flight);
        let runtime = self.runtime.clone();
        let (method, uri) = (method.clone(), uri.clone());
        flight.on_fire(Box::new(move |reason| {
            let wait = if reason == Reason::Shutdown {
                grace.min(SHUTDOWN_GRACE)
            } else {
                grace
            };
            runtime.spawn(after_grace(weak, reason, wait, method, uri));
        }));
    }
}

async fn after_grace(
    flight: Weak<Flight>,
    reason: Reason,
    wait: Duration,
    method: Method,
    uri: Uri,
) {
    tokio::time::sleep(wait).await;
    // Most cancelled requests have ended by now (a queued one never ran, a view saw
    // `ferrule.disconnected()`): only a request still running needs the GIL.
    let Some(flight) = flight.upgrade().filter(|f| f.runner().is_some()) else {
        return;
    };
    let injected =
        tokio::task::spawn_blocking(move || Python::attach(|py| inject(py, &flight, reason))).await;
    if let Ok(Some(class)) = injected {
        log_warn!(
            "{method} {uri} was still running {}s after it was cancelled ({}); raised {class} in its thread (--cancel-grace)",
            wait.as_secs_f64(),
            reason.describe()
        );
    }
}

/// Hand the exception for `reason` to the thread running `flight`, if one still is; returns
/// the exception's class name.
fn inject(py: Python<'_>, flight: &Flight, reason: Reason) -> Option<String> {
    // The class first: building it may run Python (an import, a collection), during which
    // the GIL can pass to the worker, which may then finish this request and start another.
    // From reading the runner to handing over the exception no Python runs, and with the GIL
    // held the runner cannot change (it is set and cleared holding it).
    let class = bridge::cancelled_error(py, reason).get_type(py);
    let ident = flight.runner()?;
    // The C API takes an `unsigned long` thread id; pyo3 declares it as `long`, same bits.
    #[allow(clippy::cast_possible_wrap)]
    let id = ident as std::ffi::c_long;
    // SAFETY: the GIL is held; `class` is a live exception class, which the call takes a
    // reference to.
    let changed = unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(id, class.as_ptr()) };
    if changed != 1 {
        if changed > 1 {
            // Documented as impossible for a valid id; the documented remedy is to undo it.
            // SAFETY: as above; a null exception clears what was set.
            unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(id, std::ptr::null_mut()) };
        }
        return None;
    }
    flight.mark_injected();
    Some(class.name().map_or_else(|_| "?".into(), |n| n.to_string()))
}

/// While alive, the calling worker thread runs application code for a flight: a cancelled
/// request's exception may be raised in it. Dropping it (with the GIL held) ends that and
/// clears an exception that was handed over but has not been raised yet, so it cannot land in
/// `close()` or in the next request.
pub struct Running<'a, 'py> {
    flight: &'a Flight,
    ident: u64,
    _attached: Python<'py>,
}

impl<'a, 'py> Running<'a, 'py> {
    pub fn start(py: Python<'py>, flight: &'a Flight) -> Self {
        // SAFETY: no preconditions; it is `threading.get_ident()` of the calling thread.
        #[allow(clippy::useless_conversion)] // `c_ulong` is u32 on 32-bit targets
        let ident = u64::from(unsafe { pyo3::ffi::PyThread_get_thread_ident() });
        flight.set_runner(ident);
        Self {
            flight,
            ident,
            _attached: py,
        }
    }
}

impl Drop for Running<'_, '_> {
    fn drop(&mut self) {
        if self.flight.clear_runner() {
            #[allow(clippy::cast_possible_wrap)]
            let id = self.ident as std::ffi::c_long;
            // SAFETY: this thread holds the GIL (the guard is tied to its `Python` token);
            // a null exception clears a pending one.
            unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(id, std::ptr::null_mut()) };
        }
    }
}
