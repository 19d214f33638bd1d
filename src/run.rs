//! `main()`: the whole life of a serving process, from argv to exit code.
//!
//! Parse (exit 2 on a bad option or config file), then either hand over to the master
//! (`supervise::master`, when there are worker processes to supervise) or serve: set up
//! logging, import the application (exit 2 if it cannot be imported, before anything binds;
//! a reloading worker serves the error instead), read the TLS files (exit 2 naming the file),
//! bind — or, in a worker, adopt the master's listeners — (exit 2 naming the address), start
//! the asyncio loop, the pool and the runtime, serve until a signal or the master's stop
//! (SIGHUP reloads the TLS files), drain, stop the loop, exit 0.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cancel::Reason;
use crate::config::{self, Loaded, Plan};
use crate::error::Error;
use crate::http::proxy::Proxy;
use crate::http::App;
use crate::job::Job;
use crate::listen::tls::Tls;
use crate::logging::LogThread;
use crate::pool::Pool;
use crate::server::{self, Outcome};
use crate::static_files::{self, StaticFiles};
use crate::stats::{self, Stats};
use crate::supervise::notify::{self, Notifier};
use crate::supervise::{self, worker::Serving, worker::Spec};
use crate::wsgi::{Application, Interrupts, Sending};
use crate::{app, bridge, listen, log_error, log_info, log_warn, logging};

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

fn run(
    py: Python<'_>,
    plan: &Arc<Plan>,
    target: &Target,
    worker: Option<Spec>,
) -> Result<i32, Error> {
    logging::set_access_log(plan.access_log);
    if let Some(path) = &plan.log_file {
        logging::init_file(path).map_err(Error::config)?;
    }
    app::extend_sys_path(py, &plan.pythonpath)
        .map_err(|e| Error::runtime(format!("cannot extend sys.path: {e}")))?;
    let mut worker = worker;
    let loaded = match target {
        Target::Spec(spec) => app::load(py, spec),
        Target::Django => app::load_django(py),
        Target::Failed(e) => Err(app::Failure::raised(
            py,
            "cannot start the Django project".to_owned(),
            e.clone_ref(py),
        )),
    }
    .and_then(|application| {
        app::import_urlconf(py)?;
        Ok(application)
    });
    let application = match (loaded, worker.as_mut()) {
        (Ok(application), Some(spec)) if plan.supervise.reload => {
            spec.files = module_files(py);
            application
        }
        (Ok(application), _) => application,
        // Development reload: serve the error until a change fixes it.
        (Err(failure), Some(spec)) if plan.supervise.reload => {
            log_error!("{}", failure.error);
            let (stand_in, files) = app::stand_in(py, &failure)
                .map_err(|e| Error::runtime(format!("cannot serve the import error: {e}")))?;
            spec.files = files;
            // The traceback is in this worker's log already; the master names the error.
            spec.broken = Some(failure.summary(py));
            stand_in
        }
        (Err(failure), worker) => {
            if let Some(spec) = worker {
                spec.report_failure(&failure.summary(py));
            }
            return Err(failure.error);
        }
    };
    let loaded = (application, target.describe());
    // After the import: the application's logging configuration (Django's LOGGING) is in
    // place, so our default handlers are added only where it configured none, and
    // `disable_existing_loggers` cannot silence loggers we made too early.
    let log_thread: Option<LogThread> = match &plan.log_file {
        Some(_) => None,
        None => Some(
            logging::init_python(py, plan.access_log_format == crate::http::AccessFormat::Dev)
                .map_err(|e| Error::runtime(format!("cannot set up logging: {e}")))?,
        ),
    };
    // Routes after logging, so what they report about the static mounts goes where the
    // application's logging configuration sends it.
    let result =
        routes(py, plan, target).and_then(|routes| serve(py, plan, loaded, routes, worker));
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

/// Static mounts and the proxy/prefix rules, which for a Django project come partly from its
/// settings (read after the import, before anything binds).
fn routes(py: Python<'_>, plan: &Plan, target: &Target) -> Result<Routes, Error> {
    let django = matches!(target, Target::Django) || app::django_configured(py);
    if django {
        // Labels requests with their Django view for the statistics.
        let hooked = py
            .import("ferrule._django")
            .and_then(|m| m.call_method0("install"))
            .and_then(|r| r.is_truthy());
        match hooked {
            Ok(true) => {}
            Ok(false) => log_warn!(
                "this Django version has no BaseHandler.resolve_request: statistics label its requests 'unresolved'"
            ),
            Err(e) => log_warn!(
                "cannot label Django requests with their views for the statistics: {e}"
            ),
        }
    }
    let force_script_name = if django {
        static_files::django::setting(py, "FORCE_SCRIPT_NAME")
            .map_err(|e| Error::app(format!("cannot read FORCE_SCRIPT_NAME: {e}")))?
    } else {
        None
    };
    let proxy = Proxy::new(&plan.proxy, force_script_name)?;
    let mounts = if django {
        static_files::django::mounts(py, &plan.statics, proxy.prefix())
            .map_err(|e| Error::app(format!("cannot find the static files settings: {e}")))?
    } else {
        Vec::new()
    };
    let statics = StaticFiles::new(&plan.statics, mounts)?;
    Ok(Routes {
        statics,
        proxy,
        django,
    })
}

/// What `routes` finds out about serving the application.
struct Routes {
    statics: StaticFiles,
    proxy: Proxy,
    /// A Django project: its hook labels requests with views.
    django: bool,
}

/// Signals are the runtime's: with Python's handlers left in place, SIGINT would also raise
/// `KeyboardInterrupt` in the main thread once serving returns.
pub(crate) fn leave_signals_to_the_runtime(py: Python<'_>) -> Result<(), Error> {
    let signal_mod = py
        .import("signal")
        .map_err(|e| Error::runtime(e.to_string()))?;
    for name in ["SIGINT", "SIGTERM"] {
        let sig = signal_mod
            .getattr(name)
            .map_err(|e| Error::runtime(e.to_string()))?;
        let dfl = signal_mod
            .getattr("SIG_DFL")
            .map_err(|e| Error::runtime(e.to_string()))?;
        signal_mod
            .call_method1("signal", (sig, dfl))
            .map_err(|e| Error::runtime(e.to_string()))?;
    }
    Ok(())
}

/// Serve the statistics on the admin listener, if there is one, until the token is
/// cancelled: ready (`/readyz`) from now until a signal starts the drain. Call within the
/// runtime.
fn start_admin(
    admin: Option<listen::Bound>,
    stats: &Arc<Stats>,
    stopping: &Arc<OnceLock<Instant>>,
) -> (CancellationToken, Option<tokio::task::JoinHandle<()>>) {
    let stop = CancellationToken::new();
    let task = admin.map(|bound| {
        log_info!("Statistics at: {}", bound.url("http"));
        let stopping = Arc::clone(stopping);
        let health: stats::HealthFn = Arc::new(move || match stopping.get() {
            None => stats::Health::Ready,
            Some(_) => stats::Health::NotReady("draining: the server is shutting down".into()),
        });
        let stopped = stop.clone();
        tokio::spawn(stats::admin::serve(
            bound,
            stats::admin::local(Arc::clone(stats)),
            health,
            async move { stopped.cancelled().await },
        ))
    });
    (stop, task)
}

/// Say the server is ready: in the log, or (a worker) to the master, then answer the master
/// from a task. Call within the runtime, once the signal handlers are in place: a test or a
/// supervisor may signal as soon as it reads this.
fn announce(
    plan: &Plan,
    described: &str,
    urls: &[String],
    control: Option<std::os::unix::net::UnixStream>,
    serving: Serving,
    notifier: &Arc<Notifier>,
) {
    if let Some(socket) = control {
        log_info!(
            "Worker ready: serving {described} with up to {} threads (pid {})",
            plan.pool.max_threads,
            std::process::id()
        );
        tokio::spawn(supervise::worker::control_loop(socket, serving));
    } else {
        for url in urls {
            log_info!("Listening at: {url}");
        }
        log_info!(
            "Ready to accept requests: serving {described} with up to {} threads (pid {})",
            plan.pool.max_threads,
            std::process::id()
        );
        notifier.ready();
        let stats = Arc::clone(&serving.stats);
        notifier.spawn_heartbeat(move || stats.pulse().to_string());
    }
}

/// The source files of the modules imported so far, for the master's reload watcher.
fn module_files(py: Python<'_>) -> Vec<String> {
    py.import("ferrule._reload")
        .and_then(|m| m.call_method0("module_files"))
        .and_then(|files| files.extract())
        .unwrap_or_else(|e| {
            log_warn!("cannot list the imported modules for the reload watcher: {e}");
            Vec::new()
        })
}

/// The listeners, the admin listener and (a worker) the control socket.
type Sockets = (
    Vec<listen::Bound>,
    Option<listen::Bound>,
    Option<std::os::unix::net::UnixStream>,
);

/// The listeners, the admin listener and (a worker) the control socket. A worker serves the
/// listeners its master bound, and leaves the admin listener to it.
fn sockets(plan: &Plan, worker: Option<&Spec>) -> Result<Sockets, Error> {
    if let Some(spec) = worker {
        let listeners = spec
            .listeners
            .iter()
            .map(|fd| listen::adopt::adopt(*fd))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((listeners, None, Some(spec.control_socket()?)));
    }
    // systemd's sockets instead of --bind when socket-activated.
    let (listeners, admin) =
        listen::systemd::listeners(&plan.binds, plan.stats.bind.as_ref(), plan.unix_socket_mode)?;
    Ok((listeners, admin, None))
}

/// The size from which glibc serves an allocation with its own `mmap`, unmapped on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fix glibc's mmap threshold at its initial 128 KiB. By default glibc raises it to the size
/// of each large block freed (up to 32 MiB), after which request-sized buffers — bodies,
/// Django's in-memory uploads, big responses — come from the per-thread arenas and stay
/// there when freed: with many threads the serving process's RSS crept up by ~25 MiB over a
/// 30-minute soak of 3 MB uploads, and stayed ~80 MiB lower with the threshold fixed
/// (bench/RESULTS.md, issue 7). A user's `MALLOC_MMAP_THRESHOLD_` wins.
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes the allocator's tuning; any value is accepted or
        // refused with 0.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } == 0 {
            log_warn!("cannot set glibc's mmap threshold; large buffers stay in the arenas");
        }
    }
}

/// How the process should end.
enum Exit {
    /// Return the code to Python, which finalizes normally.
    Clean(i32),
    /// Leave at once: some worker threads are still running application code.
    Immediate(i32),
}

fn serve(
    py: Python<'_>,
    plan: &Arc<Plan>,
    loaded: (Py<PyAny>, String),
    Routes {
        statics,
        proxy,
        django,
    }: Routes,
    worker: Option<Spec>,
) -> Result<Exit, Error> {
    let (application, described) = loaded;
    // Certificate and key are read before anything binds: a bad file ends start-up with
    // exit code 2 and the port still free.
    let tls = Tls::load(&plan.tls)?;
    let (listeners, admin, control) = sockets(plan, worker.as_ref())?;
    let share = worker.as_ref().and_then(|w| w.board).and_then(|(fd, seat)| {
        listen::share::Share::join(fd, seat)
            .inspect_err(|e| log_warn!("cannot use the master's connection board ({e}); accepting without looking at the other workers"))
            .ok()
    });
    // systemd's notification socket (a worker's master has taken it).
    let notifier = Arc::new(Notifier::from_env());
    forget_handed_over(py);
    leave_signals_to_the_runtime(py)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.io_threads)
        .thread_name("ferrule-io")
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the network runtime: {e}")))?;
    let sending = Sending {
        runtime: runtime.handle().clone(),
        timeout: plan.send_timeout,
    };
    let interrupts = Interrupts {
        runtime: runtime.handle().clone(),
        grace: plan.cancel_grace,
    };
    let wsgi = Application::new(py, application, sending, interrupts)
        .map_err(|e| Error::runtime(e.to_string()))?;
    let (event_loop, pool) = start_workers(py, plan, wsgi)?;
    statics.log_mounts();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let urls: Vec<String> = listeners.iter().map(|l| l.url(scheme)).collect();
    let stats = Arc::new(Stats::new(&plan.stats, django));
    let gauges = pool.clone();
    stats.set_pool(Box::new(move || gauges.gauges()));
    let app_state = Arc::new(App {
        plan: Arc::clone(plan),
        dispatch: Arc::new(crate::http::Queued(pool.clone())),
        statics,
        proxy,
        stats: Arc::clone(&stats),
        access_format: Arc::new(plan.access_log_format.clone()),
    });
    let stopping: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let served = py.detach(|| {
        runtime.block_on(async {
            let (first, second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            watch_signals(
                Arc::clone(&first),
                Arc::clone(&second),
                Arc::clone(&stopping),
                tls.clone(),
                Arc::clone(&notifier),
            )?;
            if let Err(e) = stats.start_ticker() {
                log_warn!("cannot start the statistics thread; the timeline stays empty: {e}");
            }
            let (admin_stop, admin_task) = start_admin(admin, &stats, &stopping);
            // Only now, with the signal handlers in place: a test or a supervisor may signal
            // as soon as it reads this.
            let serving = Serving {
                pool: pool.clone(),
                stats: Arc::clone(&stats),
                first: Arc::clone(&first),
                second: Arc::clone(&second),
                stopping: Arc::clone(&stopping),
                max_requests: worker.as_ref().and_then(|w| w.max_requests),
                files: worker.as_ref().map(|w| w.files.clone()).unwrap_or_default(),
                broken: worker.as_ref().and_then(|w| w.broken.clone()),
            };
            announce(plan, &described, &urls, control, serving, &notifier);
            let (f, s) = (Arc::clone(&first), Arc::clone(&second));
            let outcome = server::serve(
                listeners,
                app_state,
                tls,
                share,
                async move { f.notified().await },
                async move { s.notified().await },
            )
            .await;
            let since = stopping.get().copied().unwrap_or_else(Instant::now);
            let drained = drain(&pool, outcome, since + plan.graceful_timeout, &second).await;
            // Statistics stay up while the server drains, and go last.
            admin_stop.cancel();
            if let Some(task) = admin_task {
                let _ = task.await;
            }
            Ok(drained)
        })
    });
    let (outcome, drained) = served.inspect_err(|_: &Error| event_loop.stop(py))?;
    py.detach(|| runtime.shutdown_timeout(Duration::from_millis(100)));
    // The runtime's signal handlers outlive it; without resetting, a Ctrl-C while the
    // interpreter finalizes (joining the application's own threads, say) would do nothing.
    restore_default_signals();
    if !drained {
        let (threads, busy) = pool.threads();
        if busy > 0 {
            log_warn!("Exiting with {busy} of {threads} worker threads still running a request");
        }
        return Ok(Exit::Immediate(i32::from(outcome == Outcome::Forced)));
    }
    // The pool has drained: no request waits on the loop any more.
    event_loop.stop(py);
    log_info!("Shutdown complete");
    Ok(Exit::Clean(0))
}

/// Give SIGINT, SIGTERM and SIGHUP their default action back. The runtime's handlers outlive
/// it; without this a Ctrl-C while the interpreter finalizes would do nothing.
pub(crate) fn restore_default_signals() {
    // SAFETY: restoring the default disposition of signals has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
    }
}

/// After the server stopped with `outcome`: let the pool finish by `deadline` (the graceful
/// timeout counted from the signal, not from now: connections may have used most of it
/// already), cancelling what still runs when the time is up or a second signal comes.
/// Returns how the server stopped and whether every thread finished.
async fn drain(
    pool: &Pool,
    outcome: Outcome,
    deadline: Instant,
    second: &Notify,
) -> (Outcome, bool) {
    if outcome != Outcome::Drained {
        // Requests still running at the graceful timeout or a second signal are cancelled:
        // a view that polls `ferrule.disconnected()` or waits in `ferrule.wait` stops, and
        // its exception is raised in its thread shortly.
        cancel_all(pool);
    }
    if outcome == Outcome::Forced {
        return (outcome, false);
    }
    // Threads still running a job (their client gone, or a slow close()) get what is left,
    // and at least time to unwind; a second signal still cuts it short.
    let mut deadline = deadline.max(Instant::now() + UNWIND);
    loop {
        let draining = pool.clone();
        let drain = tokio::task::spawn_blocking(move || draining.close(deadline));
        let drained = tokio::select! {
            done = drain => done.unwrap_or(false),
            () = second.notified() => return (Outcome::Forced, false),
        };
        // Threads still running requests at the deadline are cancelled now and get a moment
        // to unwind and run close(); those cancelled already have had theirs. A flight fires
        // once and a closing pool takes no new jobs, so this goes round at most twice.
        if drained || !cancel_all(pool) {
            return (outcome, drained);
        }
        deadline = Instant::now() + UNWIND;
    }
}

/// How long requests cancelled by a forced shutdown get to unwind (their exception raised,
/// `close()` run) before the process exits anyway. Arbitrary: enough for Python to raise the
/// exception at the next bytecode and run Django's `request_finished` handlers, short next
/// to any `--graceful-timeout` worth setting.
const UNWIND: Duration = Duration::from_millis(500);

/// Cancel what the pool still holds for a forced shutdown; returns whether there was any.
fn cancel_all(pool: &Pool) -> bool {
    let cancelled = pool.cancel_all(Reason::Shutdown);
    if cancelled > 0 {
        log_warn!("Cancelling {cancelled} request(s) still in progress at shutdown");
    }
    cancelled > 0
}

/// The asyncio event loop, then the worker pool. The loop starts after the import (the
/// application's settings and logging are in place) and before the pool, so the first
/// request finds it running.
fn start_workers(
    py: Python<'_>,
    plan: &Plan,
    wsgi: Application,
) -> Result<(bridge::EventLoop, Pool), Error> {
    return_large_buffers();
    let event_loop = bridge::EventLoop::start(py)
        .map_err(|e| Error::runtime(format!("cannot start the asyncio event loop: {e}")))?;
    let runner = move |py: Python<'_>, job: Job| wsgi.run(py, job);
    match Pool::start(plan.pool, Box::new(runner)) {
        Ok(pool) => Ok((event_loop, pool)),
        Err(e) => {
            event_loop.stop(py);
            Err(Error::runtime(format!("cannot start the worker pool: {e}")))
        }
    }
}

/// SIGTERM and SIGINT stop the server (twice: at once); SIGHUP reloads the TLS certificate
/// and key. Each is told to systemd (STOPPING=1; RELOADING=1 then READY=1).
fn watch_signals(
    first: Arc<Notify>,
    second: Arc<Notify>,
    stopping: Arc<OnceLock<Instant>>,
    tls: Option<Arc<Tls>>,
    notifier: Arc<Notifier>,
) -> Result<(), Error> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::runtime(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::runtime(format!("cannot watch SIGINT: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| Error::runtime(format!("cannot watch SIGHUP: {e}")))?;
    // `recv` answers `None` once the runtime is shutting down and never again a signal.
    let hup_notifier = Arc::clone(&notifier);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // systemd's Type=notify-reload waits for RELOADING=1, then READY=1.
            hup_notifier.reloading();
            reload_tls(tls.as_ref()).await;
            hup_notifier.ready();
        }
    });
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let name = tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = int.recv() => "SIGINT",
                else => return,
            };
            count += 1;
            if count == 1 {
                log_info!("Received {name}: finishing in-flight requests, then exiting");
                let _ = stopping.set(Instant::now());
                notifier.stopping();
                first.notify_one();
            } else {
                log_warn!("Received {name} again: exiting now");
                second.notify_one();
            }
        }
    });
    Ok(())
}

/// SIGHUP: read the certificate and key (and CA) again. Reading and decrypting a key is
/// blocking work, kept off the network threads.
async fn reload_tls(tls: Option<&Arc<Tls>>) {
    let Some(tls) = tls else {
        log_info!("Received SIGHUP: nothing to reload (no --certfile)");
        return;
    };
    let reloading = Arc::clone(tls);
    match tokio::task::spawn_blocking(move || reloading.reload()).await {
        Ok(Ok(())) => log_info!(
            "Received SIGHUP: reloaded {}; new connections use them",
            tls.describe()
        ),
        Ok(Err(e)) => log_error!("Received SIGHUP: {e}; still serving the previous certificate"),
        Err(e) => log_error!(
            "Received SIGHUP: the reload failed ({e}); still serving the previous certificate"
        ),
    }
}

/// Forget the variables that handed this process its sockets: systemd's, and the master's.
fn forget_handed_over(py: Python<'_>) {
    forget_variables(
        py,
        &[
            &listen::systemd::VARIABLES,
            &notify::VARIABLES,
            &[
                supervise::control::WORKER_ENV,
                supervise::control::DJANGO_DEBUG_ENV,
            ],
        ],
    );
}

/// Remove the variables addressed to this process (systemd's `LISTEN_*`, `NOTIFY_SOCKET`...)
/// from `os.environ` too, which copied the environment at start-up: an application that
/// starts a process with `env=os.environ` must not hand them on.
pub(crate) fn forget_variables(py: Python<'_>, lists: &[&[&str]]) {
    let Ok(environ) = py.import("os").and_then(|os| os.getattr("environ")) else {
        return;
    };
    for name in lists.iter().flat_map(|list| list.iter()) {
        let _ = environ.call_method1("pop", (*name, py.None()));
    }
}
