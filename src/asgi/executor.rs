//! Where an ASGI request's sync code runs: the pool, not a thread of asgiref's.
//!
//! asgiref runs a thread-sensitive `sync_to_async` call (Django's sync views and middleware,
//! the ORM in `database_sync_to_async`) on `AsyncToSync.executors.current` when the calling
//! context has one, before anything else — before the one-thread executor Django's
//! `ThreadSensitiveContext` would start for every request. Each request's task runs in a
//! context where that is an [`Executor`] leasing one pool thread for the request: its first
//! call queues a pool job that keeps the thread, its calls run there one after the other, and
//! the thread goes back to the pool when the request ends. So a request's sync code sees one
//! thread (thread-locals and `CONN_MAX_AGE` connections behave as under WSGI), and the
//! pool's bound, hand-off policy, statistics and cancellation apply to it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::cancel::Flight;
use crate::pool::{Pool, Rejected};

/// One request's hold on a pool thread.
pub struct Lease {
    flight: Arc<Flight>,
    state: Mutex<LeaseState>,
    wake: Condvar,
}

#[derive(Default)]
struct LeaseState {
    /// Calls waiting for the thread (`ferrule._asgi.Call` objects).
    calls: VecDeque<Py<PyAny>>,
    /// A pool job serves the lease (queued, or running).
    served: bool,
    /// The request is over: the thread goes back to the pool once the calls are done.
    released: bool,
}

impl Lease {
    pub fn new(flight: Arc<Flight>) -> Arc<Self> {
        Arc::new(Self {
            flight,
            state: Mutex::new(LeaseState::default()),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request is over.
    pub fn release(&self) {
        self.lock().released = true;
        self.wake.notify_all();
    }

    /// On the leased pool thread: run the calls as they come until the lease is released.
    fn serve(&self, py: Python<'_>) {
        let _entered = crate::cancel::enter(&self.flight);
        crate::bridge::enter_request(py, &self.flight);
        loop {
            let next = py.detach(|| {
                let mut st = self.lock();
                loop {
                    if let Some(call) = st.calls.pop_front() {
                        return Some(call);
                    }
                    if st.released {
                        st.served = false;
                        return None;
                    }
                    st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            });
            let Some(call) = next else { return };
            // The call sets its future's result or exception itself.
            if let Err(e) = call.bind(py).call_method0(intern!(py, "run")) {
                e.print(py);
            }
        }
    }
}

/// `AsyncToSync.executors.current` for one ASGI request: `submit` runs the call on the
/// request's leased pool thread.
#[pyclass(module = "ferrule", name = "Executor", frozen)]
pub struct Executor {
    pool: Pool,
    lease: Arc<Lease>,
}

impl Executor {
    pub fn new(pool: Pool, lease: Arc<Lease>) -> Self {
        Self { pool, lease }
    }
}

/// `ferrule._asgi.Call` and `concurrent.futures.Future`, looked up once.
fn classes(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    static CLASSES: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    CLASSES.get_or_try_init(py, || {
        Ok((
            super::helpers(py)?.getattr("Call")?.unbind(),
            py.import("concurrent.futures")?.getattr("Future")?.unbind(),
        ))
    })
}

#[pymethods]
impl Executor {
    /// `concurrent.futures.Executor.submit`: a future for `fn(*args, **kwargs)` run on the
    /// request's pool thread.
    #[pyo3(signature = (r#fn, *args, **kwargs))]
    fn submit(
        &self,
        py: Python<'_>,
        r#fn: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let (call, future) = classes(py)?;
        let future = future.call0(py)?;
        let call = call.call1(py, (&future, r#fn, args, kwargs))?;
        let serve = {
            let mut st = self.lease.lock();
            st.calls.push_back(call);
            !std::mem::replace(&mut st.served, true)
        };
        self.lease.wake.notify_all();
        if serve {
            let lease = Arc::clone(&self.lease);
            let queued = self.pool.call(
                Arc::clone(&self.lease.flight),
                Box::new(move |py| lease.serve(py)),
            );
            if let Err(why) = queued {
                let reason = match why {
                    Rejected::Full { depth } => {
                        format!("the thread pool's queue is full ({depth} waiting, --max-queue)")
                    }
                    Rejected::Closing => "the server is shutting down".to_owned(),
                };
                let mut st = self.lease.lock();
                st.served = false;
                st.calls.clear();
                drop(st);
                let error = py
                    .import("ferrule._errors")?
                    .getattr("QueueFull")?
                    .call1((format!("cannot run sync code for this request: {reason}"),))?;
                future.call_method1(py, "set_exception", (error,))?;
            }
        }
        Ok(future)
    }

    /// Give the thread back to the pool once the calls queued so far are done, before the
    /// request ends: for a request whose sync code is over (Django's sync views, which
    /// ferrule runs in one call), the thread then serves the next request while this one
    /// finishes on the loop. A later call takes whichever pool thread is free.
    fn release(&self) {
        self.lease.release();
    }

    /// `concurrent.futures.Executor.shutdown`: the lease ends with its request, not here.
    #[pyo3(signature = (wait=true, cancel_futures=false))]
    #[allow(clippy::unused_self)] // the executor protocol's method
    fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let _ = (wait, cancel_futures);
    }
}
