//! `--hooks MODULE`: the user's functions at gunicorn's points, with ferrule's arguments.
//!
//! `on_starting`, `when_ready` and `on_reload` run in the master (in the only process when
//! there is none); `post_worker_init` and `worker_exit` in each process that serves;
//! `pre_request(environ)` and `post_request(environ, status, timings)` in the worker thread
//! around each WSGI request. `ferrule._hooks` finds the functions and checks their
//! signatures. A hook that raises is logged with its traceback and changes nothing else:
//! the process goes on, the request is served.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::Plan;
use crate::error::Error;
use crate::wsgi::traceback;
use crate::{log_error, log_warn};

/// A point in a process's life where a hook may run.
#[derive(Debug, Clone, Copy)]
pub enum Point {
    OnStarting,
    WhenReady,
    OnReload,
    PostWorkerInit,
    WorkerExit,
}

impl Point {
    const ALL: [Point; 5] = [
        Point::OnStarting,
        Point::WhenReady,
        Point::OnReload,
        Point::PostWorkerInit,
        Point::WorkerExit,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::OnStarting => "on_starting",
            Point::WhenReady => "when_ready",
            Point::OnReload => "on_reload",
            Point::PostWorkerInit => "post_worker_init",
            Point::WorkerExit => "worker_exit",
        }
    }
}

/// The hook functions of the `--hooks` module.
pub struct Hooks {
    module: String,
    /// By [`Point`], in the order of `Point::ALL`.
    points: [Option<Py<PyAny>>; 5],
    pre_request: Option<Py<PyAny>>,
    post_request: Option<Py<PyAny>>,
    /// The threads [`Hooks::run_apart`] started, joined by [`Hooks::wait_apart`] before the
    /// interpreter finalizes: a thread that attaches to Python during finalization crashes.
    apart: Mutex<Vec<(Point, JoinHandle<()>)>>,
}

impl Hooks {
    /// Import the plan's hooks module, if it names one (after putting `--pythonpath` on
    /// `sys.path`). A module that cannot be imported, or a function that cannot take
    /// ferrule's arguments, is an error that stops start-up.
    /// `warn`: log the gunicorn hooks the module defines that ferrule never calls (once, in
    /// the first process, not again in each worker).
    pub fn load(py: Python<'_>, plan: &Plan, warn: bool) -> Result<Option<Arc<Hooks>>, Error> {
        let Some(module) = &plan.hooks else {
            return Ok(None);
        };
        crate::app::extend_sys_path(py, &plan.pythonpath)
            .map_err(|e| Error::runtime(format!("cannot extend sys.path: {e}")))?;
        let loaded = py
            .import("ferrule._hooks")
            .and_then(|m| m.call_method1("load", (module,)))
            .and_then(|r| r.extract::<(Bound<'_, PyDict>, Vec<String>)>())
            .map_err(|e| {
                let refused = py
                    .import("ferrule._hooks")
                    .and_then(|m| m.getattr("SignatureError"))
                    .is_ok_and(|class| e.value(py).is_instance(&class).unwrap_or(false));
                let message = if refused {
                    e.value(py).to_string()
                } else {
                    format!(
                        "cannot import the hooks module {module}:\n{}",
                        traceback(py, &e)
                    )
                };
                Error::app(message)
            })?;
        let (found, ignored) = loaded;
        let get = |name: &str| -> Option<Py<PyAny>> {
            found.get_item(name).ok().flatten().map(Bound::unbind)
        };
        for hook in ignored.iter().filter(|_| warn) {
            log_warn!("The hooks module {module} defines {hook}; ferrule never calls it");
        }
        let hooks = Hooks {
            module: module.clone(),
            points: Point::ALL.map(|p| get(p.name())),
            pre_request: get("pre_request"),
            post_request: get("post_request"),
            apart: Mutex::new(Vec::new()),
        };
        let names: Vec<&str> = Point::ALL
            .iter()
            .filter(|p| hooks.points[**p as usize].is_some())
            .map(|p| p.name())
            .chain(hooks.pre_request.as_ref().map(|_| "pre_request"))
            .chain(hooks.post_request.as_ref().map(|_| "post_request"))
            .collect();
        crate::log_debug!("Hooks from {module}: {}", names.join(", "));
        Ok(Some(Arc::new(hooks)))
    }

    /// Run the hook for `point` on a thread of its own, if the module has one: for a point
    /// reached inside a loop that must not wait for it.
    pub fn run_apart(self: &Arc<Self>, point: Point) {
        if self.points[point as usize].is_none() {
            return;
        }
        let hooks = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("ferrule-{}", point.name()))
            .spawn(move || Python::attach(|py| hooks.run(py, point)));
        match spawned {
            Ok(thread) => self.started().push((point, thread)),
            Err(e) => log_error!(
                "cannot start a thread for the hook {}.{}: {e}",
                self.module,
                point.name()
            ),
        }
    }

    /// Wait for the hooks [`Hooks::run_apart`] started to return: the process calls this
    /// before it leaves Rust for the interpreter's finalization. A hook still running is
    /// named in the log, so that a shutdown it holds up is explained.
    pub fn wait_apart(&self, py: Python<'_>) {
        let started = std::mem::take(&mut *self.started());
        for (point, thread) in started {
            if !thread.is_finished() {
                crate::log_info!(
                    "Waiting for the hook {}.{} to return",
                    self.module,
                    point.name()
                );
            }
            // The thread takes the GIL to run the hook: give it up while waiting.
            let _ = py.detach(|| thread.join());
        }
    }

    fn started(&self) -> std::sync::MutexGuard<'_, Vec<(Point, JoinHandle<()>)>> {
        self.apart.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run the hook for `point`, if the module has one.
    pub fn run(&self, py: Python<'_>, point: Point) {
        if let Some(func) = &self.points[point as usize] {
            self.report(py, point.name(), func.bind(py).call0().map(drop));
        }
    }

    /// Whether `pre_request` or `post_request` exists: the request path asks once.
    pub fn per_request(&self) -> bool {
        self.pre_request.is_some() || self.post_request.is_some()
    }

    pub fn pre_request(&self, py: Python<'_>, environ: &Bound<'_, PyAny>) {
        if let Some(func) = &self.pre_request {
            self.report(py, "pre_request", func.bind(py).call1((environ,)).map(drop));
        }
    }

    /// `timings`: seconds the request waited in the queue and spent in its worker thread.
    pub fn post_request(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyAny>,
        status: u16,
        (queue, processing): (Duration, Duration),
    ) {
        let Some(func) = &self.post_request else {
            return;
        };
        let called = (|| {
            let timings = PyDict::new(py);
            timings.set_item("queue", queue.as_secs_f64())?;
            timings.set_item("processing", processing.as_secs_f64())?;
            func.bind(py).call1((environ, status, timings)).map(drop)
        })();
        self.report(py, "post_request", called);
    }

    fn report(&self, py: Python<'_>, name: &str, result: PyResult<()>) {
        if let Err(e) = result {
            log_error!(
                "The hook {}.{name} raised an exception; ferrule carries on\n{}",
                self.module,
                traceback(py, &e)
            );
        }
    }
}

/// Run `point`'s hook of `hooks`, if any: for the call sites holding an `Option`.
pub fn run(py: Python<'_>, hooks: Option<&Arc<Hooks>>, point: Point) {
    if let Some(hooks) = hooks {
        hooks.run(py, point);
    }
}
