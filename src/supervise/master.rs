//! The master process: it binds the listeners, starts the worker processes, and keeps the
//! wanted number of them serving — restarting those that die (with backoff, giving up when
//! they keep dying before they are ready), replacing those that reach `--max-requests` or
//! `--max-rss` or stop answering the heartbeat, and reloading them all on SIGHUP, always with
//! the new worker ready before the old one is told to stop. It never imports the application.
//!
//! One loop owns all the state ([`Master`]); each worker has a task (`process.rs`) that owns
//! its child process and control channel and reports [`Event`]s. Decisions are made in one
//! place, [`Master::reconcile`], after every event and once a second. Serving requests is the
//! workers' (the ordinary server in `run.rs`, started in worker mode by `worker.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use super::control::{Pulse, ToWorker};
use super::process::{Event, Order, Spawner, WorkerHandle};
use super::watch::Watcher;
use crate::config::Plan;
use crate::error::Error;
use crate::stats::Cluster;
use crate::{log_error, log_info, log_warn, logging};

/// Consecutive workers dying before they are ready, with none ready in between, after which
/// the master gives up: the application cannot start, and restarting it forever would only
/// fill the log.
const BOOT_FAILURES: u32 = 5;
/// A worker that dies after serving this long is restarted at once; one that dies sooner is
/// restarted after a delay that doubles with each such death, up to [`MAX_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the master pings workers, samples their memory and re-checks its timers.
const TICK: Duration = Duration::from_millis(500);
/// Time a draining worker gets beyond `--graceful-timeout` to exit by itself before it is
/// killed (it needs a moment to unwind after cancelling what still ran).
const EXIT_MARGIN: Duration = Duration::from_secs(5);

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

/// How the master's loop ended.
enum End {
    /// Every worker exited after a stop.
    Stopped,
    /// Workers kept failing to start.
    BootFailed,
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

    /// Start a worker; false if it could not be started.
    fn spawn(&mut self) -> bool {
        match self.spawner.spawn(self.events_tx.clone()) {
            Ok(handle) => {
                let pid = handle.pid;
                log_info!("Started worker process {pid}");
                self.cluster
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .welcome(pid);
                self.workers.insert(
                    pid,
                    Worker {
                        pid,
                        state: State::Starting,
                        retiring: false,
                        started: Instant::now(),
                        started_unix: unix_now(),
                        ready_at: None,
                        draining_since: None,
                        killed: false,
                        last_pong: Instant::now(),
                        pulse: Pulse::default(),
                        files: Vec::new(),
                        broken: None,
                        failure: None,
                        rss: 0,
                        restarts: self.replacing.pop().unwrap_or(0),
                        handle,
                    },
                );
                true
            }
            Err(e) => {
                let why = format!(
                    "cannot start a worker process ({}): {e}",
                    self.spawner.program.display()
                );
                log_error!("{why}");
                self.last_failure = Some(why);
                self.boot_failures += 1;
                self.crash();
                self.abandon_reload_if_hopeless();
                false
            }
        }
    }

    /// A worker died soon after starting, or could not be started: wait longer before the
    /// next one.
    fn crash(&mut self) {
        self.crashes = self.crashes.saturating_add(1);
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << self.crashes.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.next_spawn = Instant::now() + delay;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready { pid, files, broken } => {
                let Some(w) = self.workers.get_mut(&pid) else {
                    return;
                };
                if w.state == State::Starting {
                    w.state = State::Ready;
                }
                w.ready_at = Some(Instant::now());
                w.last_pong = Instant::now();
                w.files = files;
                if let Some(error) = &broken {
                    log_error!(
                        "worker process {pid} could not import the application; it answers every request with 500 until a change fixes it: {error}"
                    );
                } else {
                    log_info!("Worker process {pid} is ready");
                }
                w.broken = broken;
                if let Some(watcher) = &mut self.watcher {
                    let files: Vec<std::path::PathBuf> =
                        w.files.iter().map(std::path::PathBuf::from).collect();
                    watcher.watch_files(&files);
                }
                self.boot_failures = 0;
            }
            Event::Pong { pid, pulse } => {
                if let Some(w) = self.workers.get_mut(&pid) {
                    w.last_pong = Instant::now();
                    w.pulse = pulse;
                }
            }
            Event::Recycle { pid, served } => {
                if let Some(w) = self.workers.get_mut(&pid) {
                    if !w.retiring && w.state != State::Draining {
                        log_info!(
                            "Worker process {pid} has served {served} requests (--max-requests): replacing it"
                        );
                        w.retiring = true;
                    }
                }
            }
            Event::Failed { pid, error } => {
                if let Some(w) = self.workers.get_mut(&pid) {
                    w.failure = Some(error);
                }
            }
            Event::Exited { pid, status } => self.on_exit(pid, &status),
        }
    }

    fn on_exit(&mut self, pid: u32, status: &str) {
        let Some(w) = self.workers.remove(&pid) else {
            return;
        };
        self.roster_remove(pid);
        if w.state == State::Draining {
            log_info!("Worker process {pid} exited ({status})");
            return;
        }
        if w.killed {
            // Counted as a restart when it was killed.
            log_info!("Worker process {pid} was killed ({status}); starting another");
            return;
        }
        if w.retiring {
            // Its replacement is on its way already.
            log_error!("Worker process {pid}, which was being replaced, died ({status})");
            return;
        }
        if w.ready_at.is_none() {
            match &w.failure {
                Some(why) => {
                    log_error!("Worker process {pid} exited before it was ready ({status}): {why}");
                }
                None => log_error!("Worker process {pid} exited before it was ready ({status})"),
            }
            self.last_failure = Some(w.failure.unwrap_or_else(|| {
                format!("a worker process exited before it was ready ({status})")
            }));
            self.replacing.push(w.restarts + 1);
            self.boot_failures += 1;
            self.crash();
            self.abandon_reload_if_hopeless();
            return;
        }
        self.replacing.push(w.restarts + 1);
        let served_for = w.ready_at.map_or(Duration::ZERO, |t| t.elapsed());
        log_error!(
            "Worker process {pid} died ({status}) after {:.1}s; starting another",
            served_for.as_secs_f64()
        );
        if served_for >= HEALTHY_RUN {
            self.crashes = 0;
        } else {
            self.crash();
        }
    }

    /// `--reload`: a watched file changed.
    fn on_change(&mut self, changed: &[std::path::PathBuf]) {
        if self.stopping.is_some() || changed.is_empty() {
            return;
        }
        let more = match changed.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        log_info!(
            "{}{more} changed: restarting the worker processes",
            changed[0].display()
        );
        self.replace_all();
    }

    /// During a reload, new workers that keep failing to start: keep serving with the old.
    fn abandon_reload_if_hopeless(&mut self) {
        if !self.reloading || self.boot_failures < BOOT_FAILURES {
            return;
        }
        let reason = self
            .last_failure
            .clone()
            .unwrap_or_else(|| "the new worker processes could not be started".to_owned());
        log_error!(
            "Reload abandoned: the new worker processes keep failing to start ({reason}); still serving with the previous ones, whose code is not the code on disk"
        );
        *lock(&self.stale) = Some(StaleCode {
            since_unix: unix_now(),
            reason,
        });
        for w in self.workers.values_mut() {
            if w.state == State::Ready {
                w.retiring = false;
            }
        }
        self.reloading = false;
        self.boot_failures = 0;
        if let Some(hook) = &self.hooks.ready {
            hook();
        }
    }

    fn on_reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        log_info!(
            "Received SIGHUP: starting {} new worker processes, then stopping the current ones",
            self.target
        );
        self.replace_all();
        if let Some(hook) = &self.hooks.reloading {
            hook();
        }
    }

    /// Start a new generation of workers; the current ones stop as the new ones are ready.
    fn replace_all(&mut self) {
        for w in self.workers.values_mut() {
            if w.state != State::Draining {
                w.retiring = true;
            }
        }
        self.reloading = true;
        self.boot_failures = 0;
        self.crashes = 0;
        self.waiting_for_change = false;
        self.next_spawn = Instant::now();
    }

    fn on_stop(&mut self, name: &str) {
        if self.stopping.is_some() {
            log_warn!("Received {name} again: stopping the worker processes now");
            for w in self.workers.values() {
                w.handle.try_order(Order::Send(ToWorker::StopNow));
            }
            return;
        }
        log_info!("Received {name}: stopping the worker processes once their requests are done");
        if let Some(hook) = &self.hooks.stopping {
            hook();
        }
        self.stopping = Some(Instant::now());
        self.draining.store(true, Ordering::Relaxed);
        for w in self.workers.values_mut() {
            if w.state == State::Starting {
                w.handle.kill();
                w.killed = true;
            } else if w.state == State::Ready {
                w.handle.try_order(Order::Send(ToWorker::Stop));
            }
            w.state = State::Draining;
            w.draining_since.get_or_insert_with(Instant::now);
        }
    }

    fn on_reopen(&mut self) {
        match logging::reopen() {
            Ok(true) => log_info!("Received SIGUSR1: reopened the log file"),
            Ok(false) => log_info!("Received SIGUSR1: asking the workers to reopen their logs"),
            Err(e) => log_error!("Received SIGUSR1: {e}"),
        }
        for w in self.workers.values() {
            w.handle.try_order(Order::Send(ToWorker::Reopen));
        }
    }

    fn on_tick(&mut self) {
        // Workers serve again: the next death starts the backoff afresh.
        if self.crashes > 0
            && self.workers.values().any(|w| {
                w.state == State::Ready && w.ready_at.is_some_and(|t| t.elapsed() >= HEALTHY_RUN)
            })
        {
            self.crashes = 0;
        }
        let timeout = self.plan.supervise.worker_timeout;
        let max_rss = self.plan.supervise.max_rss;
        let graceful = self.plan.graceful_timeout + EXIT_MARGIN;
        let mut kill = Vec::new();
        for w in self.workers.values_mut() {
            w.rss = resident_bytes(w.pid).unwrap_or(0);
            match w.state {
                State::Starting => {}
                State::Ready if w.killed => {}
                State::Ready => {
                    w.handle.try_order(Order::Send(ToWorker::Ping));
                    if let (Some(limit), false) = (max_rss, w.retiring) {
                        if w.rss > limit {
                            log_info!(
                                "Worker process {} uses {} MB, over --max-rss ({} MB): replacing it",
                                w.pid,
                                w.rss >> 20,
                                limit >> 20
                            );
                            w.retiring = true;
                        }
                    }
                    if let Some(limit) = timeout {
                        let silent = w.last_pong.elapsed();
                        if silent > limit {
                            kill.push((
                                w.pid,
                                format!(
                                    "has not answered the heartbeat for {:.1}s (--worker-timeout)",
                                    silent.as_secs_f64()
                                ),
                            ));
                        } else if w.pulse.stuck > limit.as_secs_f64() {
                            kill.push((w.pid, format!(
                                "has kept a request running {:.1}s after it was cancelled (--worker-timeout)",
                                w.pulse.stuck
                            )));
                        }
                    }
                }
                State::Draining => {
                    if w.draining_since.is_some_and(|t| t.elapsed() > graceful) && !w.killed {
                        kill.push((
                            w.pid,
                            format!(
                                "is still running {:.0}s after it was told to stop",
                                graceful.as_secs_f64()
                            ),
                        ));
                    }
                }
            }
        }
        for (pid, why) in kill {
            let Some(w) = self.workers.get_mut(&pid) else {
                continue;
            };
            let in_flight = if w.pulse.in_flight.is_empty() {
                "none".to_owned()
            } else {
                w.pulse
                    .in_flight
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            log_error!("Worker process {pid} {why}: killing it. Requests in flight: {in_flight}");
            w.killed = true;
            w.handle.kill();
            let restarts = w.restarts + 1;
            if w.state == State::Ready && !w.retiring {
                self.replacing.push(restarts);
            }
        }
        self.publish();
    }

    /// Bring the workers towards what is wanted. Returns how the master ends, if it does.
    fn reconcile(&mut self) -> Option<End> {
        if self.giving_up {
            return self.workers.is_empty().then_some(End::BootFailed);
        }
        if self.stopping.is_some() {
            return self.workers.is_empty().then_some(End::Stopped);
        }
        if self.boot_failures >= BOOT_FAILURES
            && !self.workers.values().any(|w| w.state == State::Ready)
        {
            if self.watcher.is_none() {
                // Workers still importing would outlive the master, holding the listeners.
                self.giving_up = true;
                for w in self.workers.values_mut() {
                    w.handle.kill();
                    w.killed = true;
                    w.state = State::Draining;
                }
                return self.workers.is_empty().then_some(End::BootFailed);
            }
            if !self.waiting_for_change {
                self.waiting_for_change = true;
                log_error!(
                    "worker processes keep failing to start (see the errors above); retrying every {}s and at the next change",
                    MAX_BACKOFF.as_secs()
                );
            }
        }
        // Oldest first; a worker still starting counts as newer than any serving one.
        let mut fresh: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| !w.retiring && w.state != State::Draining && !w.killed)
            .collect();
        fresh.sort_by_key(|w| (w.state == State::Starting, w.started));
        let fresh: Vec<u32> = fresh.iter().map(|w| w.pid).collect();
        // Too few: start more (one at a time while backing off).
        if fresh.len() < self.target && Instant::now() >= self.next_spawn {
            let wanted = if self.crashes > 0 {
                1
            } else {
                self.target - fresh.len()
            };
            for _ in 0..wanted {
                if !self.spawn() {
                    break;
                }
            }
        }
        // Too many (SIGTTOU): stop the newest.
        if fresh.len() > self.target {
            for pid in fresh.iter().rev().take(fresh.len() - self.target) {
                self.stop(*pid);
            }
        }
        // Retiring workers go once enough fresh ones are ready to take their place.
        let ready = |w: &Worker| w.state == State::Ready && !w.killed;
        let fresh_ready = self
            .workers
            .values()
            .filter(|w| ready(w) && !w.retiring)
            .count();
        let mut retiring: Vec<u32> = self
            .workers
            .values()
            .filter(|w| w.retiring && w.state != State::Draining)
            .map(|w| w.pid)
            .collect();
        let mut serving = fresh_ready + retiring.len();
        while serving > self.target.max(fresh_ready) {
            let Some(pid) = retiring.pop() else { break };
            self.stop(pid);
            serving -= 1;
        }
        self.finish_reload(fresh_ready);
        if !self.announced_flag.load(Ordering::Relaxed) && fresh_ready >= self.target {
            self.announced_flag.store(true, Ordering::Relaxed);
            for url in &self.urls {
                log_info!("Listening at: {url}");
            }
            log_info!(
                "Ready to accept requests: {} serving {} (master pid {})",
                processes(self.target),
                self.described,
                std::process::id()
            );
            if let Some(hook) = &self.hooks.ready {
                hook();
            }
        }
        self.publish();
        None
    }

    /// A reload is complete once fresh workers serve and no retiring one is left.
    fn finish_reload(&mut self, fresh_ready: usize) {
        if !self.reloading
            || fresh_ready == 0
            || self
                .workers
                .values()
                .any(|w| w.retiring && w.state != State::Draining)
        {
            return;
        }
        self.reloading = false;
        log_info!("Reload complete: {} serving", processes(fresh_ready));
        if lock(&self.stale).take().is_some() {
            log_info!("The workers run the code on disk again");
        }
        if let Some(hook) = &self.hooks.ready {
            hook();
        }
    }

    /// Tell a worker to finish and exit (it stops accepting at once).
    fn stop(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        if w.state == State::Starting {
            w.killed = true;
            w.handle.kill();
        } else {
            w.handle.try_order(Order::Send(ToWorker::Stop));
        }
        w.state = State::Draining;
        w.draining_since = Some(Instant::now());
    }

    fn publish(&self) {
        let mut roster = self
            .roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        roster.clear();
        for w in self.workers.values() {
            roster.insert(
                w.pid,
                WorkerView {
                    state: w.state,
                    started_unix: w.started_unix,
                    served: w.pulse.served,
                    rss: w.rss,
                    restarts: w.restarts,
                    orders: w.handle.orders(),
                },
            );
        }
    }

    fn roster_remove(&self, pid: u32) {
        self.roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&pid);
        // Its counters stay in the totals; its gauges and requests in flight go.
        self.cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retire(pid);
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

/// Resident memory of a process, from `/proc/PID/statm` (pages).
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}
