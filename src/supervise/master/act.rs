//! The master carrying out what `decide.rs` decided: starting workers (and counting those
//! that cannot start), telling them to stop or killing them, completing or abandoning a
//! reload (with the stale-code bookkeeping), announcing readiness, the log lines and the
//! hooks that go with each, and publishing the roster. Deciding is `decide.rs`'s; reacting
//! to events and signals is `events.rs`'s.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::decide::{self, Action, End, Seen, Situation, BOOT_FAILURES, MAX_BACKOFF};
use super::{lock, processes, unix_now, Master, StaleCode, State, Worker, WorkerView};
use crate::supervise::control::{Pulse, ToWorker};
use crate::supervise::process::Order;
use crate::{log_error, log_info};

impl Worker {
    fn seen(&self) -> Seen {
        Seen {
            pid: self.pid,
            state: self.state,
            retiring: self.retiring,
            killed: self.killed,
            started: self.started,
        }
    }
}

impl Master {
    fn situation(&self, now: Instant) -> Situation {
        Situation {
            now,
            workers: self.workers.values().map(Worker::seen).collect(),
            target: self.target,
            crashes: self.crashes,
            next_spawn: self.next_spawn,
            boot_failures: self.boot_failures,
            reloading: self.reloading,
            stopping: self.stopping.is_some(),
            watching: self.watcher.is_some(),
            waiting_for_change: self.waiting_for_change,
            giving_up: self.giving_up,
            announced: self.announced_flag.load(Ordering::Relaxed),
        }
    }

    /// Bring the workers towards what is wanted ([`decide::decide`]). Returns how the master
    /// ends, if it does.
    pub(super) fn reconcile(&mut self) -> Option<End> {
        let now = Instant::now();
        let end = 'decide: loop {
            for action in decide::decide(&self.situation(now)) {
                match action {
                    Action::GiveUp => self.giving_up = true,
                    Action::WaitForChange => {
                        self.waiting_for_change = true;
                        log_error!(
                            "worker processes keep failing to start (see the errors above); retrying every {}s and at the next change",
                            MAX_BACKOFF.as_secs()
                        );
                    }
                    Action::Spawn(wanted) => {
                        for _ in 0..wanted {
                            if !self.spawn() {
                                // The backoff now runs past `now` and the failure is counted
                                // (a reload may have been abandoned): decide again on that.
                                continue 'decide;
                            }
                        }
                    }
                    Action::Stop(pid) => self.stop(pid),
                    Action::Kill(pid) => self.kill(pid),
                    Action::ReloadComplete { serving } => self.finish_reload(serving),
                    Action::AnnounceReady => self.announce(),
                    Action::End(end) => break 'decide Some(end),
                }
            }
            break None;
        };
        self.publish();
        end
    }

    /// Start a worker; false if it could not be started.
    fn spawn(&mut self) -> bool {
        match self.spawner.spawn(self.events_tx.clone()) {
            Ok(handle) => {
                let pid = handle.pid;
                log_info!("Started worker process {pid}");
                lock(&self.cluster).welcome(pid);
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
    pub(super) fn crash(&mut self) {
        self.crashes = self.crashes.saturating_add(1);
        self.next_spawn = Instant::now() + decide::backoff(self.crashes);
    }

    /// During a reload, new workers that keep failing to start: keep serving with the old.
    pub(super) fn abandon_reload_if_hopeless(&mut self) {
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

    /// The reload is complete: `serving` fresh workers and no retiring one left.
    fn finish_reload(&mut self, serving: usize) {
        self.reloading = false;
        log_info!("Reload complete: {} serving", processes(serving));
        if lock(&self.stale).take().is_some() {
            log_info!("The workers run the code on disk again");
        }
        if let Some(hook) = &self.hooks.ready {
            hook();
        }
    }

    /// The first workers are ready: the log says where, and systemd hears of it.
    fn announce(&self) {
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

    /// Tell a worker to finish and exit (it stops accepting at once).
    fn stop(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        let replace = self.stopping.is_none();
        w.handle.try_order(Order::Send(ToWorker::Stop { replace }));
        w.state = State::Draining;
        w.draining_since = Some(Instant::now());
    }

    /// SIGKILL a worker; its death is not a crash.
    fn kill(&mut self, pid: u32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        w.handle.kill();
        w.killed = true;
        w.state = State::Draining;
        w.draining_since.get_or_insert_with(Instant::now);
    }

    pub(super) fn publish(&self) {
        let mut roster = lock(&self.roster);
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

    pub(super) fn roster_remove(&self, pid: u32) {
        lock(&self.roster).remove(&pid);
        // Its counters stay in the totals; its gauges and requests in flight go.
        lock(&self.cluster).retire(pid);
    }
}
