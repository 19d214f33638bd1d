//! Serving, once the application is loaded and its routes known: the TLS files and the
//! listeners (bound here, or a worker's inherited from its master), the asyncio loop and the
//! pool, the runtime with the accept loops and the admin listener, the announcement, and on
//! the way out the drain: requests still running at `--graceful-timeout` are cancelled and
//! given a moment to unwind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::routes::Routes;
use super::signals::watch_signals;
use crate::body::Spool;
use crate::cancel::Reason;
use crate::config::Plan;
use crate::error::Error;
use crate::hooks::{Hooks, Point};
use crate::http::dispatch::Dispatch;
use crate::http::App;
use crate::job::Job;
use crate::listen::per_ip::PerIp;
use crate::listen::tls::Tls;
use crate::pool::Pool;
use crate::server::{self, Outcome};
use crate::stats::{self, Stats};
use crate::supervise::notify::{self, Notifier};
use crate::supervise::{self, worker::Serving, worker::Spec};
use crate::wsgi::{Application, Interrupts, Sending};
use crate::{asgi, bridge, listen, log_debug, log_info, log_warn, process};

/// How the process should end.
pub(super) enum Exit {
    /// Return the code to Python, which finalizes normally.
    Clean(i32),
    /// Leave at once: some worker threads are still running application code.
    Immediate(i32),
}

/// A loaded application and the interface it speaks.
pub(super) struct Loaded {
    pub app: Py<PyAny>,
    pub asgi: bool,
    /// What the ready line says is served.
    pub described: String,
    /// `--hooks`: `when_ready` (when no master runs it) and the per-request ones.
    pub hooks: Option<Arc<Hooks>>,
}

pub(super) fn serve(
    py: Python<'_>,
    plan: &Arc<Plan>,
    loaded: Loaded,
    Routes {
        statics,
        proxy,
        django,
    }: Routes,
    worker: Option<Spec>,
) -> Result<Exit, Error> {
    // Certificate and key are read before anything binds: a bad file ends start-up with
    // exit code 2 and the port still free.
    let tls = Tls::load(&plan.tls)?;
    // The pid file lives as long as this function: the process is exiting when it returns.
    let (listeners, admin, control, _pid_file) = sockets(plan, worker.as_ref())?;
    let share = worker.as_ref().and_then(join_board);
    // systemd's notification socket (a worker's master has taken it).
    let notifier = Arc::new(Notifier::from_env());
    forget_handed_over(py);
    process::leave_signals_to_the_runtime(py)?;
    let runtime = network_runtime(plan)?;
    let Running {
        event_loop,
        pool,
        dispatch,
        asgi,
    } = start_application(py, plan, &loaded, runtime.handle())?;
    statics.log_mounts();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let urls: Vec<String> = listeners.iter().map(|l| l.url(scheme)).collect();
    let stats = Arc::new(Stats::new(&plan.stats, django));
    let gauges = pool.clone();
    stats.set_pool(Box::new(move || gauges.gauges()));
    let app_state = Arc::new(App {
        plan: Arc::clone(plan),
        dispatch,
        statics,
        proxy,
        stats: Arc::clone(&stats),
        access_format: Arc::new(plan.access_log_format.clone()),
        spool: spool(plan),
        forwarded_clients: PerIp::for_plan(plan),
    });
    let stopping: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let served = py.detach(|| {
        runtime.block_on(async {
            let (first, second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let replaced = Arc::new(AtomicBool::new(false));
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
            let access = stats::admin::Access::new(&plan.stats);
            let (admin_stop, admin_task) = start_admin(admin, &stats, &stopping, access);
            // Only now, with the signal handlers in place: a test or a supervisor may signal
            // as soon as it reads this.
            let serving = Serving {
                pool: pool.clone(),
                stats: Arc::clone(&stats),
                first: Arc::clone(&first),
                second: Arc::clone(&second),
                replaced: Arc::clone(&replaced),
                stopping: Arc::clone(&stopping),
                max_requests: worker.as_ref().and_then(|w| w.max_requests),
                files: worker.as_ref().map(|w| w.files.clone()).unwrap_or_default(),
                broken: worker.as_ref().and_then(|w| w.broken.clone()),
            };
            announce(plan, &loaded, &urls, control, serving, &notifier);
            let (stop, s) = (
                first_signal(
                    Arc::clone(&first),
                    asgi.as_ref().map(asgi::Server::going_away),
                    replaced,
                ),
                Arc::clone(&second),
            );
            let outcome = server::serve(listeners, app_state, tls, share, stop, async move {
                s.notified().await;
            })
            .await;
            let since = stopping.get().copied().unwrap_or_else(Instant::now);
            let deadline = since + plan.graceful_timeout;
            let drained = wind_down(asgi.as_ref(), &pool, outcome, deadline, &second).await;
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
    process::restore_default_signals();
    if !drained {
        let (threads, busy) = pool.threads();
        if busy > 0 {
            log_warn!("Exiting with {busy} of {threads} worker threads still running a request");
        }
        return Ok(Exit::Immediate(i32::from(outcome == Outcome::Forced)));
    }
    // The pool has drained: no request waits on the loop any more. An ASGI application's
    // lifespan ends first.
    if let Some(server) = &asgi {
        server.shutdown(py, plan.graceful_timeout);
    }
    event_loop.stop(py);
    log_info!("Shutdown complete");
    Ok(Exit::Clean(0))
}

/// `--spool-dir` and this process's share of `--max-spool-size`; says so, and warns when
/// `--forwarded-allow-ips '*'` leaves `--max-connections-per-ip` to forwarded addresses only.
fn spool(plan: &Plan) -> Spool {
    if plan.proxy.allow.is_any() && plan.clients.per_ip.is_some() && !plan.proxy.protocol {
        log_warn!(
            "--forwarded-allow-ips '*' trusts every peer as a proxy: --max-connections-per-ip then counts only the requests of forwarded clients, whose addresses a client can choose; list your proxies' addresses instead"
        );
    }
    let clients = &plan.clients;
    let spool = Spool::new(
        &clients.spool_dir,
        clients.max_spool,
        plan.supervise.workers,
    );
    log_debug!(
        "request bodies over {} bytes are spooled to {}, at most {} bytes at once in this process (--max-spool-size)",
        plan.limits.body_buffer,
        spool.dir().display(),
        spool.cap()
    );
    spool
}

/// Serve the statistics on the admin listener, if there is one, until the token is
/// cancelled: ready (`/readyz`) from now until a signal starts the drain. Call within the
/// runtime.
fn start_admin(
    admin: Option<listen::Bound>,
    stats: &Arc<Stats>,
    stopping: &Arc<OnceLock<Instant>>,
    access: stats::admin::Access,
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
            access,
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
    loaded: &Loaded,
    urls: &[String],
    control: Option<std::os::unix::net::UnixStream>,
    serving: Serving,
    notifier: &Arc<Notifier>,
) {
    let described = &loaded.described;
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
        // No master runs it: this process does, beside serving (a hook may call the server).
        if let Some(hooks) = &loaded.hooks {
            hooks.run_apart(Point::WhenReady);
        }
    }
}

/// The listeners, the admin listener, (a worker) the control socket and (`--pid`, not a
/// worker) the pid file, removed when dropped.
type Sockets = (
    Vec<listen::Bound>,
    Option<listen::Bound>,
    Option<std::os::unix::net::UnixStream>,
    Option<crate::pidfile::PidFile>,
);

/// The listeners, the admin listener, the control socket and the pid file. A worker serves
/// the listeners its master bound, and leaves the admin listener and the pid file to it.
fn sockets(plan: &Plan, worker: Option<&Spec>) -> Result<Sockets, Error> {
    if let Some(spec) = worker {
        let listeners = spec
            .listeners
            .iter()
            .map(|fd| listen::adopt::adopt(*fd))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((listeners, None, Some(spec.control_socket()?), None));
    }
    // systemd's sockets instead of --bind when socket-activated.
    let (listeners, admin) =
        listen::systemd::listeners(&plan.binds, plan.stats.bind.as_ref(), plan.unix_socket_mode)?;
    let pid_file = crate::pidfile::PidFile::for_plan(plan)?;
    Ok((listeners, admin, None, pid_file))
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

/// After the listeners closed: an ASGI application's WebSockets' closing handshakes and
/// disconnect handlers, then the pool (`drain`).
async fn wind_down(
    asgi: Option<&asgi::Server>,
    pool: &Pool,
    outcome: Outcome,
    deadline: Instant,
    second: &Notify,
) -> (Outcome, bool) {
    if let Some(server) = asgi {
        server.settle(WEBSOCKET_CLOSE, deadline.into()).await;
    }
    drain(pool, outcome, deadline, second).await
}

/// A worker's seat on the master's connection board, if it has one and can use it.
fn join_board(worker: &Spec) -> Option<Arc<listen::share::Share>> {
    let (fd, seat) = worker.board?;
    listen::share::Share::join(fd, seat)
        .inspect_err(|e| {
            log_warn!(
                "cannot use the master's connection board ({e}); accepting without looking at \
                 the other workers"
            );
        })
        .ok()
}

/// The first signal: shutdown begins, and an ASGI application's WebSockets close (they would
/// never end by themselves): with 1012 if the master is `replaced` this worker, else 1001.
async fn first_signal(
    first: Arc<Notify>,
    going_away: Option<asgi::GoingAway>,
    replaced: Arc<AtomicBool>,
) {
    first.notified().await;
    if let Some(going_away) = going_away {
        going_away.begin(replaced.load(Ordering::Acquire));
    }
}

/// How long open WebSockets get at shutdown to finish their closing handshake (1001).
/// Arbitrary: a live client answers a close within a round trip.
const WEBSOCKET_CLOSE: Duration = Duration::from_secs(5);

/// Cancel what the pool still holds for a forced shutdown; returns whether there was any.
fn cancel_all(pool: &Pool) -> bool {
    let cancelled = pool.cancel_all(Reason::Shutdown);
    if cancelled > 0 {
        log_warn!("Cancelling {cancelled} request(s) still in progress at shutdown");
    }
    cancelled > 0
}

fn network_runtime(plan: &Plan) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.io_threads)
        .thread_name("ferrule-io")
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(format!("cannot start the network runtime: {e}")))
}

/// What runs the application: the loop, the pool, and the dispatcher that hands requests to
/// one of them; for ASGI, the application on the loop (its lifespan started).
struct Running {
    event_loop: bridge::EventLoop,
    pool: Pool,
    dispatch: Arc<dyn Dispatch>,
    asgi: Option<asgi::Server>,
}

fn start_application(
    py: Python<'_>,
    plan: &Plan,
    loaded: &Loaded,
    runtime: &tokio::runtime::Handle,
) -> Result<Running, Error> {
    let application = loaded.app.clone_ref(py);
    if loaded.asgi {
        let (event_loop, pool) = start_workers(py, plan, None)?;
        let loop_object = event_loop
            .asyncio_loop(py)
            .map_err(|e| Error::runtime(format!("cannot use the event loop: {e}")))?;
        let server = asgi::Server::start(
            py,
            application,
            &loop_object,
            pool.clone(),
            plan.cancel_grace,
        )
        .inspect_err(|_| event_loop.stop(py))?;
        let dispatch: Arc<dyn Dispatch> = Arc::clone(&server.dispatch) as Arc<dyn Dispatch>;
        return Ok(Running {
            event_loop,
            pool,
            dispatch,
            asgi: Some(server),
        });
    }
    let sending = Sending {
        runtime: runtime.clone(),
        timeout: plan.send_timeout,
    };
    let interrupts = Interrupts {
        runtime: runtime.clone(),
        grace: plan.cancel_grace,
    };
    let wsgi = Application::new(py, application, sending, interrupts, loaded.hooks.clone())
        .map_err(|e| Error::runtime(e.to_string()))?;
    let (event_loop, pool) = start_workers(py, plan, Some(wsgi))?;
    let dispatch: Arc<dyn Dispatch> = Arc::new(crate::http::Queued(pool.clone()));
    Ok(Running {
        event_loop,
        pool,
        dispatch,
        asgi: None,
    })
}

/// The asyncio event loop, then the worker pool. The loop starts after the import (the
/// application's settings and logging are in place) and before the pool, so the first
/// request finds it running.
fn start_workers(
    py: Python<'_>,
    plan: &Plan,
    wsgi: Option<Application>,
) -> Result<(bridge::EventLoop, Pool), Error> {
    process::return_large_buffers();
    let event_loop = bridge::EventLoop::start(py, plan.event_loop.as_str())
        .map_err(|e| Error::runtime(format!("cannot start the asyncio event loop: {e}")))?;
    // ASGI requests never become jobs; the pool runs their sync parts (asgiref's executor).
    let runner = move |py: Python<'_>, job: Job| match &wsgi {
        Some(wsgi) => wsgi.run(py, job),
        None => drop(job),
    };
    match Pool::start(plan.pool, Box::new(runner)) {
        Ok(pool) => Ok((event_loop, pool)),
        Err(e) => {
            event_loop.stop(py);
            Err(Error::runtime(format!("cannot start the worker pool: {e}")))
        }
    }
}

/// Forget the variables that handed this process its sockets: systemd's, and the master's.
fn forget_handed_over(py: Python<'_>) {
    process::forget_variables(
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
