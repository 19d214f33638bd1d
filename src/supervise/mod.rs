//! The supervisor: the master process (`master/`, whose next step is decided by a pure
//! function in `master/decide.rs`) and its worker processes (`process.rs` on the master's
//! side, `worker.rs` on the worker's), the control channel between them (`control.rs`),
//! signals, the reload watcher and systemd notification.
//!
//! `--workers N` (N > 1) or `--reload` makes `ferrule` a master: it binds every listener once,
//! then runs N copies of its own command line as workers that inherit the listeners, and
//! never imports the application itself.

pub mod admin;
pub mod control;
pub mod master;
pub mod notify;
pub mod process;
pub mod watch;
pub mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::config::Plan;
use crate::error::Error;
use crate::hooks::{Hooks, Point};
use crate::listen::{self, tls::Tls};

/// Run as the master process until stopped; returns the exit code. Binds the listeners
/// (reporting a bad address or TLS file before any worker starts), then supervises workers
/// that run `worker_command` (`manage.py server`'s, see `ferrule._manage`), else this
/// process's own command line again.
pub fn master(
    py: Python<'_>,
    plan: &Arc<Plan>,
    described: &str,
    worker_command: Option<Vec<OsString>>,
) -> Result<i32, Error> {
    crate::process::log_to_file(plan)?;
    let log_thread = crate::process::log_to_python(py, plan, false)?;
    let result = supervise(py, plan, described, worker_command);
    if let Some(t) = log_thread {
        py.detach(|| t.stop());
    }
    result
}

fn supervise(
    py: Python<'_>,
    plan: &Arc<Plan>,
    described: &str,
    worker_command: Option<Vec<OsString>>,
) -> Result<i32, Error> {
    let (program, args) = match worker_command {
        Some(mut argv) if !argv.is_empty() => {
            let program = PathBuf::from(argv.remove(0));
            (program, argv)
        }
        _ => command_line(py)?,
    };
    // Imported first, so that a broken module stops ferrule before anything binds.
    let user_hooks = Hooks::load(py, plan, true)?;
    crate::hooks::run(py, user_hooks.as_ref(), Point::OnStarting);
    // Read here so that a bad file is reported once, before any worker starts.
    let tls = Tls::load(&plan.tls)?;
    // systemd's sockets instead of --bind when socket-activated; the admin listener is the
    // master's (merged statistics, health).
    let (listeners, admin_listener) =
        listen::systemd::listeners(&plan.binds, plan.stats.bind.as_ref(), plan.unix_socket_mode)?;
    // Removed when this function returns: the master is exiting.
    let _pid_file = crate::pidfile::PidFile::for_plan(plan)?;
    if let Some(id) = &plan.supervise.identity {
        become_identity(plan, id, listeners.iter().chain(&admin_listener))?;
    }
    let notifier = Arc::new(notify::Notifier::from_env());
    crate::process::forget_variables(py, &[&listen::systemd::VARIABLES, &notify::VARIABLES]);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let urls = listeners.iter().map(|l| l.url(scheme)).collect();
    let spawner = process::Spawner {
        program,
        args,
        listeners: listeners.iter().map(listen::Bound::as_raw_fd).collect(),
        max_requests: plan.supervise.max_requests,
        jitter: plan.supervise.max_requests_jitter,
        board: listen::share::Board::create()
            .inspect_err(|e| {
                crate::log_warn!("cannot share a connection board with the workers ({e}); each accepts without looking at the others' load");
            })
            .ok(),
    };
    crate::process::leave_signals_to_the_runtime(py)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the master's runtime: {e}")))?;
    let watcher = if plan.supervise.reload {
        Some(watch::Watcher::new(
            std::path::Path::new("."),
            plan.supervise.reload_filter.clone(),
        )?)
    } else {
        None
    };
    let master = master::Master::new(
        Arc::clone(plan),
        spawner,
        described.to_owned(),
        urls,
        hooks(&notifier, user_hooks.as_ref()),
        watcher,
    );
    let roster = master.roster();
    let stale = master.staleness();
    let cluster = master.cluster();
    let (draining, announced) = master.flags();
    let code = py.detach(|| {
        runtime.block_on(async {
            notifier.spawn_heartbeat(status(Arc::clone(&roster)));
            let stop = tokio_util::sync::CancellationToken::new();
            if let Some(bound) = admin_listener {
                crate::log_info!("Statistics at: {}", bound.url("http"));
                let stopped = stop.clone();
                tokio::spawn(crate::stats::admin::serve(
                    bound,
                    admin::snapshots(
                        Arc::clone(&roster),
                        Arc::clone(&cluster),
                        Arc::clone(&stale),
                    ),
                    admin::health(Arc::clone(&roster), draining, announced, stale),
                    crate::stats::admin::Access::new(&plan.stats),
                    async move { stopped.cancelled().await },
                ));
                // Between scrapes too: a worker that dies takes little of its counts along.
                let (roster, cluster, stopped) = (Arc::clone(&roster), cluster, stop.clone());
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(admin::COLLECT_EVERY);
                    loop {
                        tokio::select! {
                            () = stopped.cancelled() => return,
                            _ = every.tick() => admin::collect(&roster, &cluster).await,
                        }
                    }
                });
            }
            let code = master.run().await;
            stop.cancel();
            code
        })
    });
    crate::process::restore_default_signals();
    drop(listeners);
    if let Some(user) = &user_hooks {
        user.wait_apart(py);
    }
    code
}

/// systemd hears of readiness, reloads and stopping.
/// `--user`/`--group`, once everything that needs root is done: the master and the workers
/// it starts run as the identity from here on. The TLS files are read again as it, since
/// workers read them: a key only root can read stops the start here, not in every worker.
fn become_identity<'a>(
    plan: &Plan,
    id: &crate::config::identity::Identity,
    bound: impl Iterator<Item = &'a listen::Bound>,
) -> Result<(), Error> {
    let sockets: Vec<PathBuf> = bound
        .filter_map(|b| match b {
            listen::Bound::Unix(_, file) => Some(file.path().to_path_buf()),
            listen::Bound::Tcp(_) => None,
        })
        .collect();
    let owned: Vec<&std::path::Path> = sockets
        .iter()
        .map(PathBuf::as_path)
        .chain(plan.supervise.pid_file.as_deref())
        .chain(plan.log_file.as_deref())
        .collect();
    crate::process::become_identity(id, &owned)?;
    Tls::load(&plan.tls).map_err(|e| {
        Error::config(format!(
            "{e}\n(read as {}, which the workers run as: make the file readable by it)",
            id.described
        ))
    })?;
    crate::log_info!("Running as {}", id.described);
    Ok(())
}

/// The `--hooks` module's `when_ready` runs once, when the first workers are ready, and its
/// `on_reload` on each SIGHUP; on threads of their own, so that a slow hook never holds up
/// the master's loop (signals, health checks of the workers).
fn hooks(notifier: &Arc<notify::Notifier>, user: Option<&Arc<Hooks>>) -> master::Hooks {
    let (ready, reloading, stopping) = (
        Arc::clone(notifier),
        Arc::clone(notifier),
        Arc::clone(notifier),
    );
    let (when_ready, on_reload) = (user.cloned(), user.cloned());
    let first = std::sync::Once::new();
    master::Hooks {
        ready: Some(Box::new(move || {
            ready.ready();
            if let Some(user) = &when_ready {
                first.call_once(|| user.run_apart(Point::WhenReady));
            }
        })),
        reloading: Some(Box::new(move || {
            reloading.reloading();
            if let Some(user) = &on_reload {
                user.run_apart(Point::OnReload);
            }
        })),
        stopping: Some(Box::new(move || stopping.stopping())),
    }
}

/// systemd's status line: workers ready and requests per second since the last line.
fn status(roster: master::Roster) -> impl Fn() -> String + Send + 'static {
    let last = std::sync::Mutex::new((std::time::Instant::now(), None::<u64>));
    move || {
        let (ready, served) = {
            let roster = roster
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                roster
                    .values()
                    .filter(|w| w.state == master::State::Ready)
                    .count(),
                roster.values().map(|w| w.served).sum::<u64>(),
            )
        };
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        let rate = match last.1 {
            Some(before) => {
                served.saturating_sub(before) as f64 / (now - last.0).as_secs_f64().max(0.001)
            }
            None => 0.0,
        };
        *last = (now, Some(served));
        format!("{ready} worker processes ready, {rate:.1} requests/s")
    }
}

/// The program and arguments that start this process again: the interpreter
/// (`sys.executable`) and the arguments it was given (`sys.orig_argv`, so `-m ferrule`,
/// a console script or `manage.py server` all work).
fn command_line(py: Python<'_>) -> Result<(PathBuf, Vec<OsString>), Error> {
    let read = || -> PyResult<(PathBuf, Vec<OsString>)> {
        let sys = py.import("sys")?;
        let executable: PathBuf = sys.getattr("executable")?.extract()?;
        let argv: Vec<OsString> = sys.getattr("orig_argv")?.extract()?;
        Ok((executable, argv.into_iter().skip(1).collect()))
    };
    let (program, args) = read()
        .map_err(|e| Error::runtime(format!("cannot tell how to start worker processes: {e}")))?;
    if program.as_os_str().is_empty() {
        return Err(Error::runtime(
            "cannot start worker processes: sys.executable is empty (an embedded interpreter?)",
        ));
    }
    Ok((program, args))
}
