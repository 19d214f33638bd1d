//! The master's periodic checks, every tick: the backoff starts afresh once workers serve
//! again; ready workers are pinged and their memory sampled (`platform::resident_bytes`); a worker
//! over `--max-rss` is marked for replacement; one silent or stuck past `--worker-timeout`,
//! or draining past `--graceful-timeout`, is killed. Replacing it is `decide.rs`'s.

use std::time::Duration;

use super::{Master, State, HEALTHY_RUN};
use crate::supervise::control::ToWorker;
use crate::supervise::process::Order;
use crate::{log_error, log_info};

/// Time a draining worker gets beyond `--graceful-timeout` to exit by itself before it is
/// killed (it needs a moment to unwind after cancelling what still ran).
const EXIT_MARGIN: Duration = Duration::from_secs(5);

impl Master {
    pub(super) fn on_tick(&mut self) {
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
            w.rss = crate::platform::resident_bytes(w.pid).unwrap_or(0);
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
}
