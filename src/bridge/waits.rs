//! `ferrule.wait`, `ferrule.gather` and `ferrule.cancelled`.
//!
//! On a worker thread running a request, the awaitables go to the process's loop
//! (`_bridge.start`, run there with the caller's contextvars) and the thread sleeps on the
//! request's flight with the GIL released. The task's done-callback is a [`Waiter`], so when
//! the work is done the waiting side wakes without running any Python; when the request is
//! cancelled first, the thread wakes at once, asks the loop to cancel the task, and raises
//! `ferrule.ClientDisconnected` (or `RequestTimeout`, `RequestCancelled`). The time asleep
//! counts towards the request's (`Flight::block_until`). A thread-sensitive `sync_to_async`
//! call inside the work is the one thing that wakes the thread early: it runs there, as under
//! `async_to_sync`, and the thread goes back to sleep.
//!
//! Anywhere else — a shell, a test, a management command, a thread the view started — the
//! awaitables run on a private loop in the calling thread (`_bridge.run_private`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use super::event_loop::{shared, Shared};
use super::{cancelled_error, helpers};
use crate::cancel::{self, Flight, Wakeup};

/// Run `awaitable` and return its result, or raise its exception; `timeout` (seconds) cancels
/// it and raises `TimeoutError`. On a ferrule worker thread it runs on the shared event loop
/// while the thread sleeps; a cancelled request raises `ferrule.RequestCancelled`'s subclass
/// at once and cancels the awaitable.
#[pyfunction]
#[pyo3(signature = (awaitable, timeout=None))]
pub fn wait(
    py: Python<'_>,
    awaitable: Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let awaitables = PyTuple::new(py, [awaitable])?;
    run(py, &awaitables, false, false, timeout)
}

/// Run `awaitables` concurrently and return their results in order. If one raises, the
/// others are cancelled and the exception is raised, unless `return_exceptions` is true, in
/// which case exceptions are returned in the list like results.
#[pyfunction]
#[pyo3(signature = (*awaitables, return_exceptions=false, timeout=None))]
pub fn gather(
    py: Python<'_>,
    awaitables: Bound<'_, PyTuple>,
    return_exceptions: bool,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    run(py, &awaitables, true, return_exceptions, timeout)
}

/// Whether the request the calling thread is running has been cancelled (its client left,
/// its `--timeout` expired, or the server is shutting down). False outside a request.
#[pyfunction]
pub fn cancelled() -> bool {
    cancel::current().is_some_and(|f| f.is_cancelled())
}

fn run(
    py: Python<'_>,
    awaitables: &Bound<'_, PyTuple>,
    gathering: bool,
    return_exceptions: bool,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let flight = cancel::current();
    let on_loop = flight.as_ref().and_then(|_| shared());
    let (Some(flight), Some(shared)) = (flight, on_loop) else {
        return helpers(py)?
            .getattr(intern!(py, "run_private"))?
            .call1((awaitables, gathering, return_exceptions, timeout))
            .map(Bound::unbind);
    };
    if let Some(reason) = flight.reason() {
        close_all(py, awaitables);
        return Err(cancelled_error(py, reason));
    }
    let state = Arc::new(WaitState {
        done: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
        outcome: Mutex::new(None),
        task: Mutex::new(None),
        calls: Mutex::new(Calls::default()),
        flight: Arc::clone(&flight),
    });
    let waiter = Bound::new(py, Waiter(Arc::clone(&state)))?;
    schedule(
        py,
        &shared,
        (
            helpers(py)?.getattr(intern!(py, "start"))?,
            &waiter,
            awaitables,
            gathering,
            return_exceptions,
            timeout,
        ),
    )
    .inspect_err(|_| close_all(py, awaitables))?;
    loop {
        let mut woke =
            py.detach(|| flight.block_until(|| state.is_done() || state.has_calls(), None));
        if woke == Wakeup::Done && !state.is_done() {
            // Thread-sensitive calls the work made (see `_bridge.WorkerExecutor`): run them
            // here, then sleep again; time spent on them is not time asleep. Not for a request
            // cancelled meanwhile: the calls are cancelled with the work below.
            if let Some(reason) = flight.reason() {
                woke = Wakeup::Cancelled(reason);
            } else if let Err(e) = run_calls(py, &state) {
                // Something was raised into this thread (not by a call: those go to their
                // callers): leave the work behind, as for a cancelled request.
                finish(py, &shared, &waiter, &state, true);
                return Err(e);
            } else {
                continue;
            }
        }
        finish(py, &shared, &waiter, &state, woke != Wakeup::Done);
        return match woke {
            Wakeup::Done => state
                .lock_outcome()
                .take()
                .expect("the outcome is stored before `done` is set"),
            Wakeup::Cancelled(reason) => Err(cancelled_error(py, reason)),
            // No deadline was given: a timeout is the awaitable's own (asyncio.wait_for).
            Wakeup::TimedOut => unreachable!("block_until without a deadline does not time out"),
        };
    }
}

fn run_calls(py: Python<'_>, state: &WaitState) -> PyResult<()> {
    let run_call = helpers(py)?.getattr(intern!(py, "run_call"))?;
    for call in state.take_calls() {
        run_call.call1((call,))?;
    }
    Ok(())
}

/// The wait is over: refuse further thread-sensitive calls and cancel those still queued
/// (their callers are gone or going); when the thread gives up on the work, cancel it too.
fn finish(
    py: Python<'_>,
    shared: &Shared,
    waiter: &Bound<'_, Waiter>,
    state: &WaitState,
    give_up: bool,
) {
    let calls = state.close_calls();
    if let Ok(cancel_call) = helpers(py).and_then(|h| h.getattr(intern!(py, "cancel_call"))) {
        for call in calls {
            let _ = cancel_call.call1((call,));
        }
    }
    if give_up {
        // Cancelling is the loop's to do; the thread need not see it happen.
        let _ = waiter
            .getattr(intern!(py, "cancel"))
            .and_then(|cancel| shared.call_soon_threadsafe.bind(py).call1((cancel,)));
    }
}

/// `loop.call_soon_threadsafe(*args)`, run in a copy of the calling thread's contextvars
/// context, as `asyncio.run` and asgiref would.
fn schedule<'py>(
    py: Python<'py>,
    shared: &Shared,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<()> {
    static COPY_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let context = COPY_CONTEXT
        .import(py, "contextvars", "copy_context")?
        .call0()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "context"), context)?;
    shared
        .call_soon_threadsafe
        .bind(py)
        .call(args, Some(&kwargs))?;
    Ok(())
}

/// Close the coroutines among `awaitables`, which will never run, so Python does not warn
/// that they were never awaited.
fn close_all(py: Python<'_>, awaitables: &Bound<'_, PyTuple>) {
    if let Ok(close) = helpers(py).and_then(|h| h.getattr(intern!(py, "close"))) {
        for aw in awaitables {
            let _ = close.call1((aw,));
        }
    }
}

struct WaitState {
    /// Set (after `outcome`) when the task is done, or could not be started.
    done: AtomicBool,
    /// Set on the loop thread when the waiting thread has given up on the task.
    abandoned: AtomicBool,
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
    /// The task, once started; only touched on the loop thread.
    task: Mutex<Option<Py<PyAny>>>,
    /// Thread-sensitive calls for the waiting thread to run.
    calls: Mutex<Calls>,
    flight: Arc<Flight>,
}

#[derive(Default)]
struct Calls {
    queued: Vec<Py<PyAny>>,
    /// The wait is over: no more calls are taken.
    closed: bool,
}

impl WaitState {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn lock_calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_calls(&self) -> bool {
        !self.lock_calls().queued.is_empty()
    }

    fn take_calls(&self) -> Vec<Py<PyAny>> {
        std::mem::take(&mut self.lock_calls().queued)
    }

    fn close_calls(&self) -> Vec<Py<PyAny>> {
        let mut calls = self.lock_calls();
        calls.closed = true;
        std::mem::take(&mut calls.queued)
    }

    fn lock_outcome(&self) -> MutexGuard<'_, Option<PyResult<Py<PyAny>>>> {
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, outcome: PyResult<Py<PyAny>>) {
        *self.lock_outcome() = Some(outcome);
        self.done.store(true, Ordering::Release);
        self.flight.wake();
    }
}

/// One wait, as the loop thread sees it: `_bridge.start` hands it the task, the task calls
/// it when done, and the waiting thread asks it to cancel the task.
#[pyclass(module = "ferrule", name = "Waiter", frozen)]
struct Waiter(Arc<WaitState>);

#[pymethods]
impl Waiter {
    /// Whether the waiting thread gave up before the work started.
    #[getter]
    fn abandoned(&self) -> bool {
        self.0.abandoned.load(Ordering::Acquire)
    }

    /// The work runs as `task`; this waiter is its done-callback.
    fn started(slf: &Bound<'_, Self>, task: Bound<'_, PyAny>) -> PyResult<()> {
        task.call_method1(intern!(slf.py(), "add_done_callback"), (slf,))?;
        *slf.get()
            .0
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.unbind());
        Ok(())
    }

    /// Queue a thread-sensitive call for the waiting thread; false once the wait is over.
    fn call(&self, call: Py<PyAny>) -> bool {
        {
            let mut calls = self.0.lock_calls();
            if calls.closed {
                return false;
            }
            calls.queued.push(call);
        }
        self.0.flight.wake();
        true
    }

    /// The work could not be started.
    fn fail(&self, exc: Bound<'_, PyAny>) {
        self.0.finish(Err(PyErr::from_value(exc)));
    }

    /// The done-callback: keep the result or the exception (with its traceback) for the
    /// waiting thread and wake it. Reading it here also marks an exception as retrieved, so
    /// asyncio never logs one the waiting thread gave up on.
    fn __call__(&self, task: Bound<'_, PyAny>) {
        let outcome = task
            .call_method0(intern!(task.py(), "result"))
            .map(Bound::unbind);
        self.0
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.0.finish(outcome);
    }

    /// On the loop, for a waiting thread whose request was cancelled.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        self.0.abandoned.store(true, Ordering::Release);
        let task = self
            .0
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.call_method0(py, intern!(py, "cancel"))?;
        }
        Ok(())
    }
}
