//! `main()`: the whole life of a serving process, from argv to exit code.
//!
//! Parse (exit 2 on a bad option or config file), then either hand over to the master
//! (`supervise::master`, when there are worker processes to supervise) or serve: set up
//! logging, import the application (exit 2 if it cannot be imported, before anything binds;
//! a reloading worker serves the error instead), find the routes (`routes.rs`), then serve
//! (`serve.rs`: TLS files, listeners, the loop, the pool, the runtime; `signals.rs`: SIGTERM,
//! SIGINT, SIGHUP) until a signal or the master's stop, drain, exit 0. What any process sets
//! up about itself is `process.rs`'s.

mod routes;
mod serve;
mod signals;

use std::sync::Arc;

use pyo3::prelude::*;

use crate::config::{self, Interface, Loaded, Plan};
use crate::error::Error;
use crate::hooks::{self, Hooks, Point};
use crate::supervise::{self, worker::Spec};
use crate::{app, log_error, process};
use serve::Exit;

enum Target {
    /// `ferrule APP`.
    Spec(String),
    /// `manage.py server`: Django's `WSGI_APPLICATION`.
    Django,
    /// A `manage.py server` worker whose project failed before the server command ran
    /// (`ferrule._manage`): the exception to report or, reloading, to serve as a page.
    Failed(PyErr),
}

impl Target {
    /// What the ready line says is served.
    fn describe(&self) -> String {
        match self {
            Target::Spec(spec) => spec.clone(),
            Target::Django | Target::Failed(_) => "the Django project".to_owned(),
        }
    }
}

/// Run ferrule with `argv` (`argv[0]` is the program name) and return the exit code.
///
/// With `django=True` the positional argument is `[addr:]port` and the application is the
/// Django project's; Django must already be configured (`manage.py` does that).
/// `before_serve` is called with whether the server reloads on changes, once the options are
/// known to be valid and before the application is loaded (Django's system checks run
/// there); an exception it raises propagates. `config` is `settings.FERRULE` as JSON
/// (`manage.py server`). `worker_command` is the command line that starts a worker process
/// (instead of this process's own); `failure`, in such a worker, the exception that kept
/// the project from starting.
#[pyfunction]
#[pyo3(signature = (argv, django=false, before_serve=None, config=None, worker_command=None, failure=None))]
pub fn main(
    py: Python<'_>,
    argv: Vec<String>,
    django: bool,
    before_serve: Option<Bound<'_, PyAny>>,
    config: Option<String>,
    worker_command: Option<Vec<std::ffi::OsString>>,
    failure: Option<Bound<'_, pyo3::exceptions::PyBaseException>>,
) -> PyResult<i32> {
    let (plan, target) = match config::load(py, &argv, django, config.as_deref()) {
        Ok(Loaded::Serve { plan, app }) => (
            Arc::<Plan>::from(plan),
            match (failure, app) {
                (Some(e), _) => Target::Failed(PyErr::from_value(e.into_any())),
                (None, Some(spec)) => Target::Spec(spec),
                (None, None) => Target::Django,
            },
        ),
        Ok(Loaded::Exit(code)) => return Ok(code),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(e.exit_code());
        }
    };
    // A worker process of a master: the master ran the checks and bound the listeners.
    let worker = match Spec::take() {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(e.exit_code());
        }
    };
    if let Some(mask) = plan.supervise.umask {
        // SAFETY: umask only sets this process's mask; it cannot fail. Workers inherit it.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    if let (Some(callback), None) = (before_serve, &worker) {
        callback.call1((plan.supervise.reload,))?;
    }
    let result = if worker.is_none() && plan.supervise.master() {
        supervise::master(py, &plan, &target.describe(), worker_command)
    } else {
        run(py, &plan, &target, worker)
    };
    Ok(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    })
}

/// Whether `app` is served as ASGI: `--interface`, or for `auto` what the application is.
fn speaks_asgi(
    py: Python<'_>,
    interface: Interface,
    app: &Py<PyAny>,
) -> Result<bool, app::Failure> {
    match interface {
        Interface::Wsgi => Ok(false),
        Interface::Asgi => Ok(true),
        Interface::Auto => crate::asgi::is_asgi(py, app.bind(py)).map_err(|e| {
            app::Failure::raised(py, "cannot tell the application's interface".to_owned(), e)
        }),
    }
}

fn run(
    py: Python<'_>,
    plan: &Arc<Plan>,
    target: &Target,
    worker: Option<Spec>,
) -> Result<i32, Error> {
    process::log_to_file(plan)?;
    app::extend_sys_path(py, &plan.pythonpath)
        .map_err(|e| Error::runtime(format!("cannot extend sys.path: {e}")))?;
    // The master's points run here when there is no master.
    let hooks = Hooks::load(py, plan, worker.is_none())?;
    if worker.is_none() {
        hooks::run(py, hooks.as_ref(), Point::OnStarting);
    }
    let mut worker = worker;
    let loaded = match target {
        Target::Spec(spec) => app::load(py, spec).and_then(|a| {
            let asgi = speaks_asgi(py, plan.interface, &a)?;
            Ok((a, asgi))
        }),
        Target::Django => app::load_django(py, plan.interface),
        Target::Failed(e) => Err(app::Failure::raised(
            py,
            "cannot start the Django project".to_owned(),
            e.clone_ref(py),
        )),
    }
    .and_then(|loaded| {
        app::import_urlconf(py)?;
        Ok(loaded)
    });
    let (application, asgi) = match (loaded, worker.as_mut()) {
        (Ok(loaded), Some(spec)) if plan.supervise.reload => {
            spec.files = app::module_files(py);
            loaded
        }
        (Ok(loaded), _) => loaded,
        // Development reload: serve the error until a change fixes it.
        (Err(failure), Some(spec)) if plan.supervise.reload => {
            log_error!("{}", failure.error);
            let (stand_in, files) = app::stand_in(py, &failure)
                .map_err(|e| Error::runtime(format!("cannot serve the import error: {e}")))?;
            spec.files = files;
            // The traceback is in this worker's log already; the master names the error.
            spec.broken = Some(failure.summary(py));
            // The stand-in is a WSGI application, whatever the broken one spoke.
            (stand_in, false)
        }
        (Err(failure), worker) => {
            if let Some(spec) = worker {
                spec.report_failure(&failure.summary(py));
            }
            return Err(failure.error);
        }
    };
    let loaded = serve::Loaded {
        app: application,
        asgi,
        described: target.describe(),
        hooks: hooks.clone(),
    };
    // After the import: the application's logging configuration (Django's LOGGING) is in
    // place, so our default handlers are added only where it configured none, and
    // `disable_existing_loggers` cannot silence loggers we made too early.
    let dev = plan.access_log_format == crate::http::AccessFormat::Dev;
    let log_thread = process::log_to_python(py, plan, dev)?;
    // Routes after logging, so what they report about the static mounts goes where the
    // application's logging configuration sends it.
    hooks::run(py, hooks.as_ref(), Point::PostWorkerInit);
    let result = routes::routes(py, plan, target)
        .and_then(|routes| serve::serve(py, plan, loaded, routes, worker));
    if let Ok(Exit::Clean(_)) = &result {
        // Not after a forced exit: requests still run, and a second signal means now.
        if let Some(hooks) = &hooks {
            hooks.wait_apart(py);
        }
        hooks::run(py, hooks.as_ref(), Point::WorkerExit);
    }
    if let Some(t) = log_thread {
        py.detach(|| t.stop());
    }
    match result? {
        Exit::Clean(code) => Ok(code),
        Exit::Immediate(code) => {
            let _ = py.import("sys").and_then(|sys| {
                sys.getattr("stdout")?.call_method0("flush")?;
                sys.getattr("stderr")?.call_method0("flush")
            });
            // SAFETY: _exit ends the process without running the interpreter's finalization,
            // which is the point: worker threads are still inside application code.
            unsafe { libc::_exit(code) }
        }
    }
}
