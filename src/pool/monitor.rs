//! The `ferrule-handoff` thread: it samples the busy threads over a tick and acts on what
//! `policy.rs` decides — waits to be told of a change, wakes a thread, or moves the
//! allowance. It decides nothing itself; the CPU clock and scheduler state are read through
//! `sample.rs`, and threads are woken through `threads.rs`.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::outbox;
use super::policy::{self, Books, Look, Sampled, Step, TICK};
use super::queue::{Shared, State};
use super::threads::{wake_one, Slot};
use crate::platform::{self, RunState, ThreadProbe};

pub(super) fn monitor_loop(shared: &Arc<Shared>) {
    let max_threads = shared.plan.max_threads;
    let mut st = shared.lock();
    let mut blocked_ticks = 0u32;
    loop {
        let room = !st.idle.is_empty() || st.workers.len() < max_threads;
        let books = Books {
            closing: st.closing,
            queued: st.queue.len(),
            busy: st.busy,
            waking: st.waking,
            room,
        };
        let look = policy::look(&books);
        if st.hold_replies && look != Look::Measure(TICK) {
            // Not ticking soon: from now on no thread holds a reply, and none is left held.
            // The books may change while the lock is let go to deliver: look again.
            st.hold_replies = false;
            let held = outbox::take_all(&st.workers);
            st = deliver_unlocked(shared, st, held);
            continue;
        }
        let tick = match look {
            Look::Stop => return,
            Look::Wait => {
                st = shared
                    .monitor
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            Look::WakeFirst => {
                wake_one(shared, &mut st);
                if st.waking == 0 {
                    // Nothing could be woken: the threads are between states (starting, going
                    // idle). Look again shortly rather than spin.
                    st = shared
                        .monitor
                        .wait_timeout(st, TICK)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                continue;
            }
            Look::Measure(tick) => tick,
        };
        // Threads woken but not yet running a job are not busy, so not measured: they will be
        // by the next look.
        let sample: Vec<(Arc<Slot>, Duration)> = st
            .workers
            .iter()
            .filter(|s| s.flags().busy)
            .map(|s| (Arc::clone(s), s.probe.cpu_time()))
            .collect();
        // Where a thread's run state is unknown, a preemption during the tick tells a thread
        // starved by other processes from one blocked in I/O.
        let switches = || {
            if ThreadProbe::TELLS_RUN_STATE {
                0
            } else {
                platform::involuntary_switches()
            }
        };
        let switched_before = switches();
        let started = Instant::now();
        drop(st);
        std::thread::sleep(tick);
        let used: Duration = sample
            .iter()
            .map(|(s, before)| s.probe.cpu_time().saturating_sub(*before))
            .sum();
        let load = used.as_secs_f64() / started.elapsed().as_secs_f64();
        let state = run_state(sample.iter().map(|(s, _)| s.probe.is_runnable()));
        let preempted = switches() != switched_before;
        st = shared.lock();
        // No reply waits longer than a tick behind a job that turned out long; replies are
        // held at all only while the busy threads keep a core busy (`outbox.rs`).
        let held = outbox::take_all(&st.workers);
        st.hold_replies = tick == TICK && policy::saturated(load);
        let decision = policy::judge(&Sampled {
            measured: sample.len(),
            load,
            state,
            preempted,
            room,
            queued: st.queue.len(),
            busy: st.busy,
            waking: st.waking,
            allowed: st.allowed,
            max_threads,
            blocked_ticks,
        });
        blocked_ticks = decision.blocked_ticks;
        st.allowed = decision.allowed;
        act(shared, &mut st, decision.step, (sample.len(), load, state));
        st = deliver_unlocked(shared, st, held);
    }
}

/// Take `step`, judged from `measured` busy threads that used `load` of a core in `state`.
fn act(shared: &Arc<Shared>, st: &mut State, step: Step, measured: (usize, f64, RunState)) {
    let (busy, load, state) = measured;
    match step {
        Step::Grow => {
            crate::log_debug!(
                "{busy} busy thread(s) used {:.0}% of a core ({state:?}); waking another for {} queued request(s)",
                100.0 * load,
                st.queue.len()
            );
            wake_one(shared, st);
        }
        Step::Shrink => crate::log_debug!(
            "{busy} busy thread(s) used {:.0}% of a core ({state:?}): allowing {}",
            100.0 * load,
            st.allowed
        ),
        Step::Keep => {}
    }
}

/// Hand `held` to the core with the pool lock let go: waking the I/O thread is a system call,
/// and the core needs the lock to queue a job.
fn deliver_unlocked<'a>(
    shared: &'a Shared,
    st: MutexGuard<'a, State>,
    held: Vec<outbox::Held>,
) -> MutexGuard<'a, State> {
    if held.is_empty() {
        return st;
    }
    drop(st);
    outbox::deliver(held);
    shared.lock()
}

/// The busy threads' state as one: runnable if any is, waiting if all are, else unknown.
fn run_state(states: impl Iterator<Item = RunState>) -> RunState {
    let mut all_waiting = true;
    for state in states {
        match state {
            RunState::Runnable => return RunState::Runnable,
            RunState::Unknown => all_waiting = false,
            RunState::Waiting => {}
        }
    }
    if all_waiting {
        RunState::Waiting
    } else {
        RunState::Unknown
    }
}
