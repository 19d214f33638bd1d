//! asgiref on the shared loop: `async_to_sync` — and with it Django's async views, async
//! middleware and adapters under WSGI — runs on the process's event loop, accounted and
//! cancelled with its request.
//!
//! Before each request its worker thread sets asgiref's `SyncToAsync.threadlocal`:
//! `main_event_loop` (and its pid), which `AsyncToSync` schedules on instead of starting a
//! thread and a loop per call, and `task_context`, a [`TaskContext`] of the thread's own.
//! asgiref's `main_wrap` appends the task running the awaitable to it and removes it when
//! done, on the loop thread; the interval counts as the request's time asleep. A thread-sensitive
//! `sync_to_async` inside comes back to the worker thread (asgiref's `CurrentThreadExecutor`
//! does that when the loop is the "main" one) and replaces both attributes with its own for
//! the rest of the request, which is why they are set again before every request.
//!
//! Cancelling: the first `append` for a request registers a hook on its flight (nothing is
//! registered for requests that never call `async_to_sync`). The hook runs on a tokio thread,
//! which must neither block nor take the GIL, so it only hands the request to the
//! "ferrule-cancel" thread, which asks the loop to run [`CancelTasks`]: each of the request's
//! tasks gets `ferrule.ClientDisconnected` (or its siblings) set on the future its worker
//! thread waits on — `call_result`, read from `main_wrap`'s frame when it appends — and is
//! then cancelled. The worker thread wakes at once and `async_to_sync` raises that exception;
//! where `call_result` cannot be found (an asgiref that renamed it), the task is only
//! cancelled and `async_to_sync` raises `asyncio.CancelledError`.

use std::cell::RefCell;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use super::event_loop::{shared, Shared};
use super::{cancelled_error, helpers};
use crate::cancel::{Flight, Reason};
use crate::{log_debug, log_warn};

/// A request whose flight fired while it had `async_to_sync` tasks, on its way to the loop.
struct Cancel {
    // Weak: the flight holds the hook that holds this, and the thread's list holds the flight.
    tasks: Weak<Tasks>,
    flight: Weak<Flight>,
    reason: Reason,
}

/// What a worker thread keeps between requests.
struct ThreadState {
    shared: Arc<Shared>,
    local: Py<PyAny>,
    tasks: Arc<Tasks>,
    context: Py<TaskContext>,
}

enum Setup {
    /// Before the thread's first request.
    NotYet,
    /// No loop, or asgiref is not installed.
    Nothing,
    Ready(ThreadState),
}

thread_local! {
    static THREAD: RefCell<Setup> = const { RefCell::new(Setup::NotYet) };
}

/// Called by a worker thread before each request: point asgiref at the shared loop and at
/// this thread's task list, and tell the list which request it now serves.
pub fn enter_request(py: Python<'_>, flight: &Arc<Flight>) {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        if matches!(*t, Setup::NotYet) {
            *t = match thread_state(py) {
                Ok(Some(state)) => Setup::Ready(state),
                Ok(None) => Setup::Nothing,
                Err(e) => {
                    log_debug!("cannot point asgiref at the event loop: {e}");
                    Setup::Nothing
                }
            };
        }
        let Setup::Ready(state) = &*t else { return };
        state.tasks.lock().flight = Some(Arc::clone(flight));
        let local = state.local.bind(py);
        let set = local
            .setattr(
                intern!(py, "main_event_loop"),
                state.shared.event_loop.bind(py),
            )
            .and_then(|()| local.setattr(intern!(py, "task_context"), state.context.bind(py)));
        if let Err(e) = set {
            log_debug!("cannot point asgiref at the event loop: {e}");
        }
    });
}

fn thread_state(py: Python<'_>) -> PyResult<Option<ThreadState>> {
    let Some(shared) = shared() else {
        return Ok(None);
    };
    let Some(local) = shared.asgiref_local.as_ref().map(|l| l.clone_ref(py)) else {
        return Ok(None);
    };
    local
        .bind(py)
        .setattr(intern!(py, "main_event_loop_pid"), std::process::id())?;
    let tasks = Arc::new(Tasks::default());
    let context = Py::new(py, TaskContext(Arc::clone(&tasks)))?;
    Ok(Some(ThreadState {
        shared,
        local,
        tasks,
        context,
    }))
}

/// The way to the thread that turns fired flights into cancellations on the loop, started
/// by the first request that uses `async_to_sync`; `None` if it could not be started (then
/// such a request's tasks are not cancelled, and the log says so once).
fn canceller() -> Option<&'static Sender<Cancel>> {
    static CANCELLER: OnceLock<Option<Sender<Cancel>>> = OnceLock::new();
    CANCELLER
        .get_or_init(|| {
            spawn_canceller()
                .inspect_err(|e| {
                    log_warn!("cannot start the ferrule-cancel thread ({e}); a cancelled request's async_to_sync tasks run on");
                })
                .ok()
        })
        .as_ref()
}

fn spawn_canceller() -> std::io::Result<Sender<Cancel>> {
    let (tx, rx) = mpsc::channel::<Cancel>();
    std::thread::Builder::new()
        .name("ferrule-cancel".into())
        .spawn(move || {
            // Lives as long as the process; a cancel that finds no loop (stopped) is dropped.
            while let Ok(cancel) = rx.recv() {
                let Some(shared) = shared() else { continue };
                Python::attach(|py| {
                    let asked = Py::new(py, CancelTasks(cancel))
                        .and_then(|c| shared.call_soon_threadsafe.bind(py).call1((c,)));
                    if let Err(e) = asked {
                        log_debug!("cannot cancel the asyncio tasks of a cancelled request: {e}");
                    }
                });
            }
        })?;
    Ok(tx)
}

/// A worker thread's `async_to_sync` tasks in flight.
#[derive(Default)]
struct Tasks {
    state: Mutex<TasksState>,
}

#[derive(Default)]
struct TasksState {
    /// The request the thread runs now.
    flight: Option<Arc<Flight>>,
    /// The flight a cancel hook was last registered on: one hook per request.
    hooked: Weak<Flight>,
    running: Vec<Running>,
}

struct Running {
    task: Py<PyAny>,
    /// asgiref's future the worker thread waits on.
    call_result: Option<Py<PyAny>>,
    flight: Option<Arc<Flight>>,
}

impl Tasks {
    // Never held while calling into Python: the lock is only taken with the GIL held, and a
    // Python call could let another thread in that wants it.
    fn lock(&self) -> MutexGuard<'_, TasksState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// asgiref's `SyncToAsync.threadlocal.task_context` on a ferrule worker thread: the list
/// `main_wrap` appends its task to and removes it from, on the loop thread.
#[pyclass(module = "ferrule", name = "TaskContext", frozen)]
struct TaskContext(Arc<Tasks>);

#[pymethods]
impl TaskContext {
    fn append(slf: &Bound<'_, Self>, task: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let tasks = &slf.get().0;
        let call_result = call_result(py);
        let (flight, first) = {
            let mut st = tasks.lock();
            let flight = st.flight.clone();
            let first = flight
                .as_ref()
                .is_some_and(|f| !std::ptr::eq(st.hooked.as_ptr(), Arc::as_ptr(f)));
            if let (true, Some(f)) = (first, &flight) {
                st.hooked = Arc::downgrade(f);
            }
            if let Some(f) = &flight {
                f.sleep_began();
            }
            st.running.push(Running {
                task: task.clone().unbind(),
                call_result: call_result.as_ref().map(|c| c.clone_ref(py)),
                flight: flight.clone(),
            });
            (flight, first)
        };
        let Some(flight) = flight else { return Ok(()) };
        if let Some(reason) = flight.reason() {
            // Already cancelled: this is the loop thread, so cancel right here.
            return cancel_task(py, &task, call_result.as_ref(), reason);
        }
        if first {
            if let Some(cancels) = canceller() {
                let (cancels, tasks, weak) = (
                    cancels.clone(),
                    Arc::downgrade(tasks),
                    Arc::downgrade(&flight),
                );
                flight.on_fire(Box::new(move |reason| {
                    let _ = cancels.send(Cancel {
                        tasks,
                        flight: weak,
                        reason,
                    });
                }));
            }
        }
        Ok(())
    }

    fn remove(&self, task: Bound<'_, PyAny>) -> PyResult<()> {
        let running = {
            let mut st = self.0.lock();
            let Some(i) = st.running.iter().position(|r| r.task.is(&task)) else {
                return Err(PyValueError::new_err(
                    "TaskContext.remove(x): x not in list",
                ));
            };
            st.running.remove(i)
        };
        if let Some(flight) = &running.flight {
            flight.sleep_ended();
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.0.lock().running.len()
    }

    fn __getitem__(&self, py: Python<'_>, index: isize) -> PyResult<Py<PyAny>> {
        let st = self.0.lock();
        let len = st.running.len() as isize;
        let i = if index < 0 { index + len } else { index };
        if !(0..len).contains(&i) {
            return Err(PyIndexError::new_err("TaskContext index out of range"));
        }
        Ok(st.running[i as usize].task.clone_ref(py))
    }
}

/// `call_result` of the `main_wrap` frame that is calling `append`, if that is what it is.
fn call_result(py: Python<'_>) -> Option<Py<PyAny>> {
    let frame = py
        .import(intern!(py, "sys"))
        .and_then(|sys| sys.call_method1(intern!(py, "_getframe"), (0,)))
        .ok()?;
    let code = frame.getattr(intern!(py, "f_code")).ok()?;
    let name: String = code.getattr(intern!(py, "co_name")).ok()?.extract().ok()?;
    if name != "main_wrap" {
        return None;
    }
    let future = frame
        .getattr(intern!(py, "f_locals"))
        .and_then(|locals| locals.get_item(intern!(py, "call_result")))
        .ok()?;
    future
        .hasattr(intern!(py, "set_exception"))
        .unwrap_or(false)
        .then(|| future.unbind())
}

/// Wake the worker thread with the request's exception, then cancel the task.
fn cancel_task(
    py: Python<'_>,
    task: &Bound<'_, PyAny>,
    call_result: Option<&Py<PyAny>>,
    reason: Reason,
) -> PyResult<()> {
    if let Some(future) = call_result.map(|f| f.bind(py)) {
        if !future.call_method0(intern!(py, "done"))?.is_truthy()? {
            let exc = cancelled_error(py, reason).into_value(py);
            future.call_method1(intern!(py, "set_exception"), (exc,))?;
        }
    }
    // main_wrap then fails to set its own outcome (InvalidStateError); read it so asyncio
    // does not log it.
    task.call_method1(
        intern!(py, "add_done_callback"),
        (helpers(py)?.getattr(intern!(py, "retrieve"))?,),
    )?;
    task.call_method0(intern!(py, "cancel"))?;
    Ok(())
}

/// Run on the loop: cancel the tasks of one cancelled request.
#[pyclass(module = "ferrule", name = "CancelTasks", frozen)]
struct CancelTasks(Cancel);

#[pymethods]
impl CancelTasks {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let Cancel {
            tasks,
            flight,
            reason,
        } = &self.0;
        let Some(tasks) = tasks.upgrade() else {
            return Ok(()); // the thread has exited, and its tasks are done
        };
        let mine: Vec<(Py<PyAny>, Option<Py<PyAny>>)> = tasks
            .lock()
            .running
            .iter()
            .filter(|r| {
                r.flight
                    .as_ref()
                    .is_some_and(|f| std::ptr::eq(flight.as_ptr(), Arc::as_ptr(f)))
            })
            .map(|r| {
                (
                    r.task.clone_ref(py),
                    r.call_result.as_ref().map(|c| c.clone_ref(py)),
                )
            })
            .collect();
        for (task, call_result) in mine {
            cancel_task(py, task.bind(py), call_result.as_ref(), *reason)?;
        }
        Ok(())
    }
}
