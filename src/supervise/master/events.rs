//! How the master's state changes with what happens: a worker's events (ready, pong,
//! recycle, failed, exited, with the backoff and boot-failure counts), signals (SIGHUP,
//! SIGTERM/SIGINT, SIGUSR1) and changed files. What to do about the new state is
//! `decide.rs`'s, asked by the loop after each of these; the periodic checks are `tick.rs`'s.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Master, State, HEALTHY_RUN};
use crate::supervise::control::ToWorker;
use crate::supervise::process::{Event, Order};
use crate::{log_error, log_info, log_warn, logging};

impl Master {
    pub(super) fn on_event(&mut self, event: Event) {
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
            if let Some(why) = &w.failure {
                log_error!("Worker process {pid} exited before it was ready ({status}): {why}");
            } else {
                log_error!("Worker process {pid} exited before it was ready ({status})");
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
    pub(super) fn on_change(&mut self, changed: &[std::path::PathBuf]) {
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

    pub(super) fn on_reload(&mut self) {
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

    pub(super) fn on_stop(&mut self, name: &str) {
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
                w.handle
                    .try_order(Order::Send(ToWorker::Stop { replace: false }));
            }
            w.state = State::Draining;
            w.draining_since.get_or_insert_with(Instant::now);
        }
    }

    pub(super) fn on_reopen(&mut self) {
        match logging::reopen() {
            Ok(true) => log_info!("Received SIGUSR1: reopened the log file"),
            Ok(false) => log_info!("Received SIGUSR1: asking the workers to reopen their logs"),
            Err(e) => log_error!("Received SIGUSR1: {e}"),
        }
        for w in self.workers.values() {
            w.handle.try_order(Order::Send(ToWorker::Reopen));
        }
    }
}
