//! The worker threads: starting them, the life of one (attach to the interpreter once, run
//! jobs, detach while waiting), how a thread finds its next job or goes idle, and waking an
//! idle one. The books they keep are `queue.rs`'s; when another thread is wanted is the
//! monitor's (`monitor.rs`, `policy.rs`); what a job does is the runner's (`wsgi/`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pyo3::prelude::*;

use super::outbox::{self, Outbox, HOLD_AT_MOST, HOLD_DEPTH};
use super::queue::Work;
use super::queue::{Shared, State};
use crate::cancel::Flight;
use crate::log_error;
use crate::platform::ThreadProbe;

/// Stack size of a worker thread: Python's recursion and Django's template engine expect the
/// 8 MiB that `threading` threads get on Linux, not Rust's 2 MiB default.
const STACK_SIZE: usize = 8 << 20;

/// One thread's mailbox. The flags are only read or written under the pool's state lock.
pub(super) struct Slot {
    pub(super) wake: Condvar,
    /// The thread's CPU clock and scheduler state, for the monitor.
    pub(super) probe: ThreadProbe,
    flags: Mutex<Flags>,
    /// The flight of the request the thread is running.
    running: Mutex<Option<Arc<Flight>>>,
    /// Replies the thread holds back while jobs queue behind it (`outbox.rs`).
    pub(super) outbox: Outbox,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Flags {
    pub(super) busy: bool,
    pub(super) woken: bool,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            wake: Condvar::new(),
            probe: ThreadProbe::new(),
            flags: Mutex::new(Flags::default()),
            running: Mutex::new(None),
            outbox: Outbox::default(),
        })
    }

    pub(super) fn running(&self) -> MutexGuard<'_, Option<Arc<Flight>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn flags(&self) -> MutexGuard<'_, Flags> {
        self.flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Wake the most recently idle thread, or start one if there is room.
pub(super) fn wake_one(shared: &Arc<Shared>, st: &mut State) {
    if let Some(slot) = st.idle.pop() {
        slot.flags().woken = true;
        st.waking += 1;
        slot.wake.notify_one();
    } else if st.workers.len() < shared.plan.max_threads {
        spawn_worker(shared, st, true);
    }
}

pub(super) fn spawn_worker(shared: &Arc<Shared>, st: &mut State, woken: bool) {
    let slot = Slot::new();
    slot.flags().woken = woken;
    if woken {
        st.waking += 1;
    }
    st.spawned += 1;
    let name = format!("ferrule-worker-{}", st.spawned);
    let (for_thread, shared_for_thread) = (Arc::clone(&slot), Arc::clone(shared));
    let started = std::thread::Builder::new()
        .name(name)
        .stack_size(STACK_SIZE)
        .spawn(move || worker_main(&shared_for_thread, &for_thread));
    match started {
        Ok(_) => {
            st.workers.push(slot);
            st.alive += 1;
        }
        Err(e) => {
            if woken {
                st.waking -= 1;
            }
            log_error!("cannot start a worker thread: {e}");
        }
    }
}

fn worker_main(shared: &Arc<Shared>, slot: &Arc<Slot>) {
    slot.probe.attach();
    outbox::install(slot);
    Python::attach(|py| {
        name_python_thread(py);
        let mut next = py.detach(|| next_job(shared, slot));
        while let Some(job) = next {
            *slot.running() = Some(Arc::clone(job.flight()));
            let ran = catch_unwind(AssertUnwindSafe(|| match job {
                Work::Request(job) => (shared.run)(py, *job),
                Work::Call { run, .. } => run(py),
            }));
            if ran.is_err() {
                log_error!("a worker thread panicked while running a request; the thread goes on");
            }
            *slot.running() = None;
            let done = shared
                .completed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            shared.milestone_reached(done);
            // A thread that finishes a job while others wait takes the next one without
            // letting go of the GIL: releasing and re-taking it per request is a hand-off in
            // which any other thread may grab the GIL first.
            next = queued_job(shared, slot).or_else(|| {
                // Going idle or stepping back: nothing it holds may wait for its next job.
                outbox::hold(false);
                let held = slot.outbox.take();
                py.detach(|| {
                    outbox::deliver(held);
                    next_job(shared, slot)
                })
            });
        }
    });
    slot.probe.detach();
    shared.lock().alive -= 1;
    shared.exited.notify_all();
}

/// Python calls a thread it did not start `Dummy-N` in tracebacks, logging's
/// `%(threadName)s` and `threading.enumerate()`: give it the OS thread's name
/// (`ferrule-worker-N`), as py-spy and `top -H` show it.
fn name_python_thread(py: Python<'_>) {
    let Some(name) = std::thread::current().name().map(str::to_owned) else {
        return;
    };
    let named = py
        .import("threading")
        .and_then(|threading| threading.call_method0("current_thread"))
        .and_then(|thread| thread.setattr("name", name));
    if let Err(e) = named {
        crate::log_debug!("cannot name the worker thread in Python: {e}");
    }
}

/// For a thread that has just finished a job (and so is still counted busy): the next queued
/// job, if one waits and the allowance permits. Never blocks for long: the pool lock is only
/// held for queue operations, never while waiting for the GIL.
///
/// With the job comes whether its reply may be held (`outbox.rs`): when many more wait and
/// the monitor allows it. Replies held already are delivered unless both still hold and there
/// is room for one more.
fn queued_job(shared: &Shared, slot: &Arc<Slot>) -> Option<Work> {
    let mut st = shared.lock();
    if st.busy > st.allowed {
        return None; // too many threads compete for the GIL: this one steps back
    }
    let job = st.queue.pop_front()?;
    let hold = st.hold_replies && st.queue.len() >= HOLD_DEPTH;
    drop(st);
    if !hold || slot.outbox.len() >= HOLD_AT_MOST {
        outbox::deliver(slot.outbox.take());
    }
    outbox::hold(hold);
    Some(job)
}

/// Block until there is a job for this thread, or return None when it should exit.
fn next_job(shared: &Arc<Shared>, slot: &Arc<Slot>) -> Option<Work> {
    let mut st = shared.lock();
    {
        let mut f = slot.flags();
        if f.busy {
            f.busy = false;
            st.account();
            st.busy -= 1;
        }
    }
    loop {
        let was_woken = std::mem::take(&mut slot.flags().woken);
        if was_woken {
            st.waking -= 1;
        }
        // A woken thread was wanted; any other takes a job only within the allowance.
        if was_woken || st.busy < st.allowed {
            if let Some(job) = st.queue.pop_front() {
                // It may have woken on its own (idle timeout, spuriously) while still listed
                // as idle; a busy thread must not be handed out by `wake_one`.
                st.idle.retain(|s| !Arc::ptr_eq(s, slot));
                slot.flags().busy = true;
                st.account();
                st.busy += 1;
                return Some(job);
            }
        }
        if st.closing {
            remove_worker(&mut st, slot);
            return None;
        }
        if !st.idle.iter().any(|s| Arc::ptr_eq(s, slot)) {
            st.idle.push(Arc::clone(slot));
            if !st.queue.is_empty() {
                // Jobs wait and this thread is not allowed to take one: the monitor, which
                // may be waiting for a thread to become available, should decide whether
                // it is wanted. (A thread started with the pool that reaches this point
                // after a request has woken another one used to leave the second request
                // waiting for the first to finish.)
                shared.monitor.notify_one();
            }
        }
        let (guard, waited) = slot
            .wake
            .wait_timeout(st, shared.plan.idle_timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st = guard;
        if waited.timed_out()
            && !slot.flags().woken
            && st.queue.is_empty()
            && st.workers.len() > shared.plan.min_threads
        {
            remove_worker(&mut st, slot);
            return None;
        }
    }
}

/// The thread leaves the pool's books; `alive` drops (and `close` hears of it) only once it
/// has also left the interpreter, in `worker_main`.
fn remove_worker(st: &mut State, slot: &Arc<Slot>) {
    st.idle.retain(|s| !Arc::ptr_eq(s, slot));
    st.workers.retain(|s| !Arc::ptr_eq(s, slot));
}
