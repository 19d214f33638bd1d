//! ASGI 3: applications that run as tasks on the process's event loop (`bridge/`), with their
//! requests from the same network core as WSGI's.
//!
//! - `dispatch.rs`: the loop's side of the `Dispatch` seam (`http/dispatch.rs`): a request
//!   becomes a [`call::Call`], its body read by a tokio task as the application asks for it;
//! - `inbox.rs`: how tokio threads reach the loop without the GIL: a queue and a doorbell fd
//!   (`eventfd`, or a pipe off Linux) the loop reads (`loop.add_reader`), drained in batches;
//! - `call.rs`: one request between the two sides: its messages, the response;
//! - `endpoint.rs`: what a request and a WebSocket share: the `receive`, `send` and
//!   done-callback objects, the futures the application awaits;
//! - `executor.rs`: asgiref's executor for a request's sync code, a leased pool thread;
//! - `websocket.rs`: WebSockets: the handshake the application answers, then a socket task;
//! - `scope.rs`: the `http` and `websocket` scopes;
//! - `ferrule/_asgi.py`: what runs on the loop in Python: starting the task, lifespan.
//!
//! Which interface an application speaks is decided when it is loaded (`run/`).

mod call;
mod dispatch;
mod endpoint;
mod executor;
mod inbox;
mod scope;
mod websocket;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::error::Error;
use crate::{log_error, log_info, log_warn};
use call::Call;
pub use call::Ready;
pub use dispatch::Asgi;
use endpoint::{Done, Endpoint, Receive, Send};
pub use executor::Executor;
use inbox::{Event, Inbox};

/// Application tasks (requests and WebSockets) running on the loop, for the shutdown to wait
/// for: a WebSocket's application still has its disconnect to handle (a Channels consumer
/// leaving its groups) when the socket closes.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static SETTLED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn task_started() {
    RUNNING.fetch_add(1, Ordering::AcqRel);
}

fn task_ended() {
    if RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
        SETTLED.notify_waiters();
    }
}

/// `ferrule._asgi`, the Python half.
fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || py.import("ferrule._asgi").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// The running loop's `create_future`, for what `receive()` and `send()` must wait for.
static CREATE_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn new_future(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let create = CREATE_FUTURE
        .get(py)
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("the ASGI loop is not set up"))?;
    create.call0(py)
}

/// Whether `app` is an ASGI 3 application: a coroutine function, or an object whose
/// `__call__` is one.
pub fn is_asgi(py: Python<'_>, app: &Bound<'_, PyAny>) -> PyResult<bool> {
    helpers(py)?.call_method1("is_asgi", (app,))?.is_truthy()
}

/// Why the open WebSockets close when this process begins to stop: 1001 (going away) when the
/// service stops, 1012 (service restart) when the process is being replaced by another — a
/// reload, `--max-requests`, `--max-rss` — so a client knows a server is there to reconnect to.
#[derive(Clone, Default)]
pub struct GoingAway {
    begun: tokio_util::sync::CancellationToken,
    restart: Arc<AtomicBool>,
}

impl GoingAway {
    /// Close every open WebSocket (once; a later call changes nothing).
    pub fn begin(&self, restart: bool) {
        if !self.begun.is_cancelled() && restart {
            self.restart.store(true, Ordering::Release);
        }
        self.begun.cancel();
    }

    /// When the sockets are to close: the close code and reason to send.
    pub(crate) async fn begun(&self) -> (u16, &'static str) {
        self.begun.cancelled().await;
        if self.restart.load(Ordering::Acquire) {
            (1012, "server restarting")
        } else {
            (1001, "server shutting down")
        }
    }
}

/// An ASGI application set up on the loop: the lifespan it ran (if it speaks the protocol)
/// and the dispatcher for its requests.
pub struct Server {
    lifespan: Py<PyAny>,
    pub dispatch: Arc<Asgi>,
}

impl Server {
    /// Register the inbox with the loop, and run the application's lifespan startup; an
    /// application that fails its startup stops ferrule with exit code 3.
    pub fn start(
        py: Python<'_>,
        app: Py<PyAny>,
        event_loop: &Bound<'_, PyAny>,
        pool: crate::pool::Pool,
        grace: Option<Duration>,
    ) -> Result<Server, Error> {
        let fail = |what: &str, e: PyErr| Error::runtime(format!("{what}: {e}"));
        let inbox = Inbox::new()
            .map_err(|e| Error::runtime(format!("cannot make the event loop's inbox: {e}")))?;
        let _ = CREATE_FUTURE.set(
            py,
            event_loop
                .getattr("create_future")
                .map_err(|e| fail("cannot use the event loop", e))?
                .unbind(),
        );
        let helpers = helpers(py).map_err(|e| fail("cannot import ferrule._asgi", e))?;
        let lifespan = helpers
            .getattr("Lifespan")
            .and_then(|l| l.call1((app.bind(py), event_loop)))
            .map_err(|e| fail("cannot set up the lifespan protocol", e))?;
        let (ok, message): (bool, Option<String>) = lifespan
            .call_method0("startup")
            .and_then(|r| r.extract())
            .map_err(|e| fail("the lifespan startup failed", e))?;
        if !ok {
            return Err(Error::startup(format!(
                "the application's lifespan startup failed: {}",
                message.unwrap_or_else(|| "(no message)".into())
            )));
        }
        let state: Option<Py<PyDict>> = lifespan
            .getattr("state")
            .ok()
            .and_then(|s| s.cast_into::<PyDict>().ok())
            .map(Bound::unbind);
        let scopes = Arc::new(Scopes {
            consts: scope::Constants::new(py)
                .map_err(|e| fail("cannot build the scope constants", e))?,
            state,
        });
        let direct = dispatch::Direct::new(py, &app, pool.clone(), Arc::clone(&scopes))
            .map_err(|e| fail("cannot look into the application", e))?;
        let drain = Drain {
            pool,
            inbox: Arc::clone(&inbox),
            app,
            scopes,
            run: helpers
                .getattr("run")
                .map_err(|e| fail("cannot find ferrule._asgi.run", e))?
                .unbind(),
        };
        helpers
            .call_method1(
                "install",
                (
                    event_loop,
                    inbox.fd(),
                    Py::new(py, drain).map_err(|e| fail("cannot install the inbox", e))?,
                ),
            )
            .map_err(|e| fail("cannot watch the inbox from the event loop", e))?;
        Ok(Server {
            lifespan: lifespan.unbind(),
            dispatch: Arc::new(Asgi {
                inbox,
                grace,
                closing: GoingAway::default(),
                sockets: tokio_util::task::TaskTracker::new(),
                direct,
            }),
        })
    }

    /// Begun when shutdown begins: open WebSockets then close (1001 or 1012).
    pub fn going_away(&self) -> GoingAway {
        self.dispatch.closing.clone()
    }

    /// At shutdown, once no new connection comes: close the WebSockets still open (1001),
    /// wait for their closing handshakes (at most `within`), then for the application tasks
    /// still running — their disconnect handlers — until `deadline`.
    pub async fn settle(&self, within: Duration, deadline: tokio::time::Instant) {
        let sockets = &self.dispatch.sockets;
        if !sockets.is_empty() {
            log_info!("Closing {} WebSocket(s)", sockets.len());
        }
        self.dispatch.closing.begin(false);
        sockets.close();
        let _ = tokio::time::timeout(within, sockets.wait()).await;
        let settled = tokio::time::timeout_at(deadline, async {
            loop {
                let notified = SETTLED.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if RUNNING.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        if settled.is_err() {
            log_warn!(
                "{} application task(s) still running at the graceful timeout",
                RUNNING.load(Ordering::Acquire)
            );
        }
    }

    /// Run the application's lifespan shutdown, waiting at most `within`.
    pub fn shutdown(&self, py: Python<'_>, within: Duration) {
        if let Err(e) = self
            .lifespan
            .call_method1(py, "shutdown", (within.as_secs_f64(),))
        {
            log_error!("the application's lifespan shutdown failed: {e}");
        }
    }
}

/// What every scope is built from: the constants, and the lifespan state copied into each.
pub(crate) struct Scopes {
    consts: scope::Constants,
    state: Option<Py<PyDict>>,
}

impl Scopes {
    /// The scope `kind` (`scope::http` or `scope::websocket`) builds for `admitted`, with
    /// its `ferrule.request` object.
    fn build<'py>(
        &self,
        py: Python<'py>,
        kind: scope::Kind,
        admitted: &crate::http::dispatch::Admitted<()>,
        trace: &Arc<crate::stats::Trace>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let request = Py::new(py, crate::wsgi::Request::new(Arc::clone(trace)))?;
        let state = self.state.as_ref().map(|s| s.bind(py));
        let request = request.into_bound(py).into_any();
        kind(py, &self.consts, admitted, state, request)
    }
}

/// Called by the loop when the inbox's fd is readable.
#[pyclass(module = "ferrule", name = "Drain", frozen)]
struct Drain {
    /// Where the requests' sync code runs (`executor.rs`).
    pool: crate::pool::Pool,
    inbox: Arc<Inbox>,
    app: Py<PyAny>,
    scopes: Arc<Scopes>,
    /// `ferrule._asgi.run`.
    run: Py<PyAny>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        for event in self.inbox.take() {
            match event {
                Event::Start(call) => self.start(py, &call),
                Event::Ready(call) => call.ready(py),
                Event::Cancel(call) => call.cancel(py),
                Event::StartWs(call) => self.start_ws(py, &call),
            }
        }
    }
}

impl Drain {
    /// Call the application for a new WebSocket. Its sync code runs on whichever pool
    /// thread is free, one call at a time: a lease released from the start.
    fn start_ws(&self, py: Python<'_>, call: &Arc<websocket::WsCall>) {
        let Some(admitted) = take(&call.admitted) else {
            return;
        };
        let started = (|| -> PyResult<()> {
            let scope = self
                .scopes
                .build(py, scope::websocket, &admitted, &call.trace)?;
            let callables = callables(py, &(Arc::clone(call) as Arc<dyn Endpoint>))?;
            let lease = executor::Lease::new(Arc::clone(&call.flight));
            lease.release();
            call.set_lease(Arc::clone(&lease));
            call.trace.start();
            call.set_task(self.launch(py, self.app.bind(py), scope, callables, lease)?);
            Ok(())
        })();
        if let Err(e) = started {
            log_error!(
                "cannot start the ASGI application for WebSocket {}:\n{}",
                call.trace.path,
                crate::wsgi::traceback(py, &e)
            );
            call.failed_to_start();
        }
    }

    /// Call the application for a new request — or, for a request the direct path served
    /// (`dispatch.rs`), the coroutine that sends its response from the loop.
    fn start(&self, py: Python<'_>, call: &Arc<Call>) {
        let started = if let Some((app, scope)) = take(&call.resume) {
            // Its sync code is over: what remains (the response's close()) takes whichever
            // pool thread is free.
            let lease = executor::Lease::new(Arc::clone(&call.flight));
            lease.release();
            self.launch_call(py, call, app.bind(py), scope.into_bound(py), lease)
        } else {
            let Some(admitted) = take(&call.admitted) else {
                return;
            };
            if call.flight.is_cancelled() {
                return; // gone before it started: the answer is the cancellation's
            }
            call.trace.start();
            self.scopes
                .build(py, scope::http, &admitted, &call.trace)
                .and_then(|scope| {
                    let lease = executor::Lease::new(Arc::clone(&call.flight));
                    self.launch_call(py, call, self.app.bind(py), scope, lease)
                })
        };
        if let Err(e) = started {
            log_error!(
                "cannot start the ASGI application for {} {}:\n{}",
                call.trace.method,
                call.trace.path,
                crate::wsgi::traceback(py, &e)
            );
            call.failed_to_start();
        }
    }

    /// `app`'s task for request `call`, its sync code on `lease`'s thread.
    fn launch_call(
        &self,
        py: Python<'_>,
        call: &Arc<Call>,
        app: &Bound<'_, PyAny>,
        scope: Bound<'_, PyDict>,
        lease: Arc<executor::Lease>,
    ) -> PyResult<()> {
        let callables = callables(py, &(Arc::clone(call) as Arc<dyn Endpoint>))?;
        call.set_lease(Arc::clone(&lease));
        call.set_task(self.launch(py, app, scope, callables, lease)?);
        Ok(())
    }

    /// The application's task for `scope`, with `receive`, `send` and the done-callback, its
    /// sync code on `lease`'s thread.
    fn launch(
        &self,
        py: Python<'_>,
        app: &Bound<'_, PyAny>,
        scope: Bound<'_, PyDict>,
        callables: [Py<PyAny>; 3],
        lease: Arc<executor::Lease>,
    ) -> PyResult<Py<PyAny>> {
        let executor = Py::new(py, executor::Executor::new(self.pool.clone(), lease))?;
        let [receive, send, done] = callables;
        task_started();
        self.run
            .call1(py, (app, scope, receive, send, done, executor))
            .inspect_err(|_| task_ended())
    }
}

/// The `receive`, `send` and done-callback objects of a request or a WebSocket.
fn callables(py: Python<'_>, endpoint: &Arc<dyn Endpoint>) -> PyResult<[Py<PyAny>; 3]> {
    Ok([
        Py::new(py, Receive(Arc::clone(endpoint)))?.into_any(),
        Py::new(py, Send(Arc::clone(endpoint)))?.into_any(),
        Py::new(py, Done(Arc::clone(endpoint)))?.into_any(),
    ])
}

/// What a slot holds, taken out of it.
pub(crate) fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}
