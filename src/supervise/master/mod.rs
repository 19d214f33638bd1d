//! The master process: it binds the listeners, starts the worker processes, and keeps the
//! wanted number of them serving — restarting those that die (with backoff, giving up when
//! they keep dying before they are ready), replacing those that reach `--max-requests` or
//! `--max-rss` or stop answering the heartbeat, and reloading them all on SIGHUP, always with
//! the new worker ready before the old one is told to stop. It never imports the application.
//!
//! One loop owns all the state ([`Master`], here); each worker has a task (`process.rs`) that
//! owns its child process and control channel and reports [`Event`]s. After every event,
//! signal and tick the loop asks one pure function what to do (`decide.rs`) and does it
//! (`act.rs`). Serving requests is the workers' (the ordinary server in `run/`, started in
//! worker mode by `worker.rs`).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the types the rest of `supervise/` reads, the loop, signals |
//! | `events.rs` | the state changes a worker's events, signals and changed files make |
//! | `tick.rs` | the periodic checks: heartbeat, memory, timeouts, the backoff's reset |
//! | `decide.rs` | what to do next, as a pure function of the state, with its table tests |
//! | `act.rs` | doing it: spawning, stopping, killing, reload bookkeeping, logs and hooks |

mod act;
mod decide;
mod events;
mod tick;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use super::control::Pulse;
use super::process::{Event, Order, Spawner, WorkerHandle};
use super::watch::Watcher;
use crate::config::Plan;
use crate::error::Error;
use crate::stats::Cluster;
use crate::{log_error, log_info};
use decide::{End, BOOT_FAILURES};

/// A worker that dies after serving this long is restarted at once; one that dies sooner is
/// restarted after a delay that doubles with each such death (`decide::backoff`).
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How often the master pings workers, samples their memory and re-checks its timers.
const TICK: Duration = Duration::from_millis(500);

/// The exit code when workers keep failing to start.
pub const BOOT_FAILURE_EXIT: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Spawned; importing the application.
    Starting,
    /// Serving.
    Ready,
    /// Told to stop; finishing what it has.
    Draining,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Draining => "draining",
        }
    }
}

/// The master's view of one worker process.
pub struct Worker {
    pub pid: u32,
    pub state: State,
    /// To be replaced: an older generation after SIGHUP, or recycled. It keeps serving until
    /// a replacement is ready.
    pub retiring: bool,
    pub started: Instant,
    pub started_unix: f64,
    ready_at: Option<Instant>,
    draining_since: Option<Instant>,
    /// Killed by the master (heartbeat); its death is not a crash.
    killed: bool,
    last_pong: Instant,
    pub pulse: Pulse,
    /// Source files the worker imported (for the reload watcher).
    pub files: Vec<String>,
    /// The import failed; the worker serves an error page (development reload only).
    pub broken: Option<String>,
    /// Why the worker cannot serve, as it reported before exiting.
    failure: Option<String>,
    pub rss: u64,
    /// How many workers in this one's place died before it.
    pub restarts: u32,
    handle: WorkerHandle,
}

/// The workers run code older than the code on disk: a reload was abandoned because the new
/// workers kept failing to start. Cleared by the next reload that completes.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleCode {
    /// Unix time the reload was abandoned.
    pub since_unix: f64,
    /// The new workers' error, in one line.
    pub reason: String,
}

/// Whether the running code is stale, for the admin listener.
pub type Staleness = Arc<Mutex<Option<StaleCode>>>;

/// What the rest of the master (the admin listener) may read about the workers.
pub type Roster = Arc<Mutex<BTreeMap<u32, WorkerView>>>;

/// One worker as the admin listener sees it.
#[derive(Clone)]
pub struct WorkerView {
    pub state: State,
    pub started_unix: f64,
    pub served: u64,
    pub rss: u64,
    pub restarts: u32,
    pub orders: mpsc::Sender<Order>,
}

pub struct Master {
    plan: Arc<Plan>,
    spawner: Spawner,
    /// Wanted workers (`--workers`, changed by SIGTTIN/SIGTTOU).
    target: usize,
    workers: BTreeMap<u32, Worker>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    /// Deaths soon after starting, for the backoff.
    crashes: u32,
    /// The restart counts of workers that died and are not replaced yet.
    replacing: Vec<u32>,
    boot_failures: u32,
    next_spawn: Instant,
    /// SIGHUP in progress.
    reloading: bool,
    stopping: Option<Instant>,
    described: String,
    urls: Vec<String>,
    roster: Roster,
    /// The workers' statistics, merged for the admin listener.
    cluster: Arc<Mutex<Cluster>>,
    /// For `/readyz`: stopping, and the first workers announced ready (the master's log
    /// line and systemd's READY=1 are made once).
    draining: Arc<AtomicBool>,
    announced_flag: Arc<AtomicBool>,
    hooks: Hooks,
    /// `--reload`: the files whose change restarts the workers.
    watcher: Option<Watcher>,
    /// Boot failures were reported; in reload mode the master waits for a change.
    waiting_for_change: bool,
    /// Workers keep failing to start: the master kills what is left and exits.
    giving_up: bool,
    /// What the last worker that failed to start said.
    last_failure: Option<String>,
    stale: Staleness,
}

/// What the master tells the outside world about its progress (systemd, the log).
#[derive(Default)]
pub struct Hooks {
    pub ready: Option<Box<dyn Fn() + Send>>,
    pub reloading: Option<Box<dyn Fn() + Send>>,
    pub stopping: Option<Box<dyn Fn() + Send>>,
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    ttin: Signal,
    ttou: Signal,
    usr1: Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        let watch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::runtime(format!("cannot watch {name}: {e}")))
        };
        Ok(Self {
            term: watch(SignalKind::terminate(), "SIGTERM")?,
            int: watch(SignalKind::interrupt(), "SIGINT")?,
            hup: watch(SignalKind::hangup(), "SIGHUP")?,
            ttin: watch(SignalKind::from_raw(libc::SIGTTIN), "SIGTTIN")?,
            ttou: watch(SignalKind::from_raw(libc::SIGTTOU), "SIGTTOU")?,
            usr1: watch(SignalKind::user_defined1(), "SIGUSR1")?,
        })
    }
}

impl Master {
    pub fn new(
        plan: Arc<Plan>,
        spawner: Spawner,
        described: String,
        urls: Vec<String>,
        hooks: Hooks,
        watcher: Option<Watcher>,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(256);
        Self {
            target: plan.supervise.workers,
            plan,
            spawner,
            workers: BTreeMap::new(),
            events_tx,
            events,
            crashes: 0,
            replacing: Vec::new(),
            boot_failures: 0,
            next_spawn: Instant::now(),
            reloading: false,
            stopping: None,
            described,
            urls,
            roster: Roster::default(),
            cluster: Arc::new(Mutex::new(Cluster::new())),
            draining: Arc::default(),
            announced_flag: Arc::default(),
            hooks,
            watcher,
            waiting_for_change: false,
            giving_up: false,
            last_failure: None,
            stale: Staleness::default(),
        }
    }

    /// Whether the running code is stale (a reload was abandoned), for `/readyz` and the
    /// dashboard.
    pub fn staleness(&self) -> Staleness {
        Arc::clone(&self.stale)
    }

    /// The live view of the workers, for the admin listener.
    pub fn roster(&self) -> Roster {
        Arc::clone(&self.roster)
    }

    /// Run until the workers have stopped after SIGTERM/SIGINT; returns the exit code.
    pub async fn run(mut self) -> Result<i32, Error> {
        let mut signals = Signals::new()?;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.reconcile();
        let end = loop {
            tokio::select! {
                Some(event) = self.events.recv() => self.on_event(event),
                _ = tick.tick() => self.on_tick(),
                Some(()) = signals.term.recv() => self.on_stop("SIGTERM"),
                Some(()) = signals.int.recv() => self.on_stop("SIGINT"),
                Some(()) = signals.hup.recv() => self.on_reload(),
                Some(()) = signals.ttin.recv() => {
                    self.target += 1;
                    log_info!("Received SIGTTIN: now {}", processes(self.target));
                }
                Some(()) = signals.ttou.recv() => {
                    if self.target > 1 {
                        self.target -= 1;
                        log_info!("Received SIGTTOU: now {}", processes(self.target));
                    } else {
                        log_info!("Received SIGTTOU: keeping the last worker process");
                    }
                }
                Some(()) = signals.usr1.recv() => self.on_reopen(),
                changed = next_change(self.watcher.as_mut()) => self.on_change(&changed),
            }
            if let Some(end) = self.reconcile() {
                break end;
            }
        };
        Ok(match end {
            End::Stopped => {
                log_info!("Shutdown complete");
                0
            }
            End::BootFailed => {
                log_error!(
                    "worker processes failed to start {BOOT_FAILURES} times in a row (see the errors above); giving up"
                );
                BOOT_FAILURE_EXIT
            }
        })
    }

    /// The merged statistics, for the admin listener.
    pub fn cluster(&self) -> Arc<Mutex<Cluster>> {
        Arc::clone(&self.cluster)
    }

    /// `/readyz`'s view of the master: (stopping, announced ready).
    pub fn flags(&self) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
        (Arc::clone(&self.draining), Arc::clone(&self.announced_flag))
    }
}

/// "1 worker process", "2 worker processes".
fn processes(n: usize) -> String {
    if n == 1 {
        "1 worker process".to_owned()
    } else {
        format!("{n} worker processes")
    }
}

/// The next batch of changed files, or never without a watcher.
async fn next_change(watcher: Option<&mut Watcher>) -> Vec<std::path::PathBuf> {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// A lock whose holder cannot leave the data half-changed: a poisoned one is used as is.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
