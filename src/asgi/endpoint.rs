//! What an HTTP request (`call.rs`) and a WebSocket (`websocket.rs`) share on the loop's side:
//! the `receive`, `send` and done-callback objects the application gets, and the futures it
//! awaits until the network core has a message for it or room for what it sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::mpsc;

use super::call::{client_gone, Ready};

/// One conversation between the application and a client.
pub(super) trait Endpoint: std::marker::Send + Sync + 'static {
    /// The next message for `receive()`, if there is one now.
    fn next_message<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>>;

    /// `send(message)` of a message of type `kind`: an awaitable.
    fn send(&self, py: Python<'_>, kind: &str, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>>;

    /// The application's task ended, `cancelled` or with `error` (None if it returned).
    fn ended(&self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>, cancelled: bool);

    /// The client is gone: a `send()` waiting for room raises.
    fn gone(&self) -> bool;

    fn waiting(&self) -> &Waiting;

    /// `receive()`: a message at once, or a future [`Endpoint::ready`] resolves.
    fn receive(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(message) = self.next_message(py)? {
            return Ready::now(py, message.into_any());
        }
        let future = super::new_future(py)?;
        self.waiting().lock().receive = Some(future.clone_ref(py));
        Ok(future)
    }

    /// Something changed (a message came, the client left, a send went through): wake what
    /// waits.
    fn ready(&self, py: Python<'_>) {
        let receive = self.waiting().lock().receive.take();
        if let Some(future) = receive {
            match self.next_message(py) {
                Ok(Some(message)) => settle(py, &future, Ok(message.into_any())),
                Ok(None) => self.waiting().lock().receive = Some(future),
                Err(e) => settle(py, &future, Err(e)),
            }
        }
        let mut waiting = self.waiting().lock();
        if waiting.send.is_some() && waiting.sent.swap(false, Ordering::AcqRel) {
            let future = waiting.send.take();
            drop(waiting);
            if let Some(future) = future {
                let outcome = if self.gone() {
                    Err(client_gone(py))
                } else {
                    Ok(py.None().into_bound(py))
                };
                settle(py, &future, outcome);
            }
        }
    }
}

/// Set the result (or the exception) of an awaited future, unless it is done already (the
/// application cancelled its await).
fn settle(py: Python<'_>, future: &Py<PyAny>, outcome: PyResult<Bound<'_, PyAny>>) {
    let future = future.bind(py);
    let done = future
        .call_method0(intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if done {
        return;
    }
    let set = match outcome {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(e) => future.call_method1(intern!(py, "set_exception"), (e.value(py),)),
    };
    if let Err(e) = set {
        e.print(py);
    }
}

/// The `receive()` and the `send()` an application awaits, if any.
#[derive(Default)]
pub(super) struct Waiting(Mutex<Parked>);

#[derive(Default)]
pub(super) struct Parked {
    receive: Option<Py<PyAny>>,
    send: Option<Py<PyAny>>,
    /// The pending send went through (set by the tokio task that waited for room).
    sent: Arc<AtomicBool>,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `item` for `tx`, which is full: the future `send()` returns, resolved once a task on
    /// `runtime` got it into the channel and `wake` posted the endpoint's `Ready`.
    pub fn send_when_room<T: std::marker::Send + 'static>(
        &self,
        py: Python<'_>,
        runtime: &tokio::runtime::Handle,
        tx: mpsc::Sender<T>,
        item: T,
        wake: impl FnOnce() + std::marker::Send + 'static,
    ) -> PyResult<Py<PyAny>> {
        let future = super::new_future(py)?;
        let sent = {
            let mut parked = self.lock();
            parked.send = Some(future.clone_ref(py));
            Arc::clone(&parked.sent)
        };
        runtime.spawn(async move {
            let _ = tx.send(item).await;
            sent.store(true, Ordering::Release);
            wake();
        });
        Ok(future)
    }
}

/// `receive`, as the application calls it.
#[pyclass(module = "ferrule", name = "Receive", frozen)]
pub struct Receive(pub(super) Arc<dyn Endpoint>);

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.receive(py)
    }
}

/// `send`, as the application calls it.
#[pyclass(module = "ferrule", name = "Send", frozen)]
pub struct Send(pub(super) Arc<dyn Endpoint>);

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("an ASGI message must be a dict"))?;
        let kind: String = message
            .get_item(intern!(py, "type"))?
            .ok_or_else(|| PyValueError::new_err("an ASGI message needs a 'type'"))?
            .extract()?;
        self.0.send(py, &kind, message)
    }
}

/// Handed to the task's done-callback.
#[pyclass(module = "ferrule", name = "Done", frozen)]
pub struct Done(pub(super) Arc<dyn Endpoint>);

#[pymethods]
impl Done {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) {
        let cancelled = task
            .call_method0(intern!(py, "cancelled"))
            .and_then(|c| c.is_truthy())
            .unwrap_or(true);
        let error = if cancelled {
            None
        } else {
            task.call_method0(intern!(py, "exception"))
                .ok()
                .filter(|e| !e.is_none())
        };
        self.0.ended(py, error.as_ref(), cancelled);
        super::task_ended();
    }
}
