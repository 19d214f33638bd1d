//! The pool's shared books and its handle: the bounded job queue, the counts the threads
//! and the monitor keep (busy, waking, idle, the allowance), and the public [`Pool`] API
//! (submit, gauges, cancellation, close). The threads themselves are `threads.rs`'s; the
//! hand-off monitor is `monitor.rs`'s, its policy `policy.rs`'s.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::monitor::monitor_loop;
use super::threads::{spawn_worker, wake_one, Slot};
use crate::cancel::{Flight, Reason};
use crate::config::PoolPlan;
use crate::job::Job;

/// Runs one job on a worker thread that holds the GIL.
pub type Runner = dyn Fn(Python<'_>, Job) + Send + Sync;

/// What a pool thread runs: a WSGI request (handed to the [`Runner`]), or other Python work
/// done for a request — an ASGI request's sync calls (`asgi/executor.rs`) — run as it is.
pub enum Work {
    // Boxed: a job is ~440 bytes, and the queue holds up to --max-queue of them.
    Request(Box<Job>),
    Call {
        flight: Arc<Flight>,
        run: Box<dyn FnOnce(Python<'_>) + Send>,
    },
}

impl Work {
    /// The flight of the request the work is for.
    pub fn flight(&self) -> &Arc<Flight> {
        match self {
            Work::Request(job) => job.flight(),
            Work::Call { flight, .. } => flight,
        }
    }
}

pub use crate::job::Rejected;

/// The worker threads; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    state: Mutex<State>,
    /// Wakes the hand-off monitor when jobs wait behind busy threads.
    pub(super) monitor: Condvar,
    /// Signalled whenever a thread has left the interpreter.
    pub(super) exited: Condvar,
    pub(super) plan: PoolPlan,
    pub(super) run: Box<Runner>,
    /// Jobs run to the end (the supervisor's `--max-requests`).
    pub(super) completed: std::sync::atomic::AtomicU64,
    /// Woken when `completed` reaches the count.
    milestone: Mutex<Option<(u64, Arc<tokio::sync::Notify>)>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<Work>,
    /// Idle threads, most recently idle last.
    pub(super) idle: Vec<Arc<Slot>>,
    /// Every live thread.
    pub(super) workers: Vec<Arc<Slot>>,
    /// Threads running a job.
    pub(super) busy: usize,
    /// Threads woken (or being started) that have not picked a job yet.
    pub(super) waking: usize,
    /// How many threads may run jobs at once, as the monitor last judged: raised when the
    /// busy threads are blocked, lowered when they compete for the GIL. A thread that
    /// finishes a job while more than this many are busy goes idle instead of taking another.
    pub(super) allowed: usize,
    /// Threads that have not yet left the interpreter; `close` waits for this to reach 0,
    /// so Python never finalizes under a thread that is still attached.
    pub(super) alive: usize,
    pub(super) closing: bool,
    /// Threads may hold replies (`outbox.rs`): the monitor ticks every `TICK`, delivering
    /// what they hold at each tick, and the busy threads used a core during the last one.
    pub(super) hold_replies: bool,
    pub(super) spawned: u64,
    /// Thread time spent holding a job until `busy_mark`, for the statistics: the integral of
    /// `busy` over time, advanced whenever `busy` changes.
    busy_time: Duration,
    busy_mark: Option<Instant>,
}

impl State {
    /// Bring `busy_time` up to now; call before changing `busy`.
    pub(super) fn account(&mut self) {
        let now = Instant::now();
        if let Some(mark) = self.busy_mark {
            self.busy_time += (now - mark) * self.busy as u32;
        }
        self.busy_mark = Some(now);
    }
}

impl Pool {
    /// Start the pool with `--min-threads` threads and the hand-off monitor.
    pub fn start(plan: PoolPlan, run: Box<Runner>) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                allowed: 1,
                ..State::default()
            }),
            monitor: Condvar::new(),
            exited: Condvar::new(),
            plan,
            run,
            completed: std::sync::atomic::AtomicU64::new(0),
            milestone: Mutex::new(None),
        });
        {
            let mut st = shared.lock();
            for _ in 0..plan.min_threads {
                spawn_worker(&shared, &mut st, false);
            }
        }
        let monitor = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ferrule-handoff".into())
            .spawn(move || monitor_loop(&monitor))?;
        Ok(Pool { shared })
    }

    /// Queue a job, waking a thread if none is running one.
    pub fn submit(&self, job: Job) -> Result<(), (Rejected, Box<Job>)> {
        self.queue(Work::Request(Box::new(job)))
            .map_err(|(why, work)| match *work {
                Work::Request(job) => (why, job),
                Work::Call { .. } => unreachable!("the work given back is the work queued"),
            })
    }

    /// Queue Python work done for the request of `flight` (it runs as a job does, under the
    /// same bounds), waking a thread if none is running one.
    pub fn call(
        &self,
        flight: Arc<Flight>,
        run: Box<dyn FnOnce(Python<'_>) + Send>,
    ) -> Result<(), Rejected> {
        self.queue(Work::Call { flight, run })
            .map_err(|(why, _)| why)
    }

    fn queue(&self, job: Work) -> Result<(), (Rejected, Box<Work>)> {
        let mut st = self.shared.lock();
        if st.closing {
            return Err((Rejected::Closing, Box::new(job)));
        }
        if st.queue.len() >= self.shared.plan.max_queue {
            // Requests whose clients left are skipped when a thread reaches them; under a storm
            // of abandoned requests they would fill the queue first and turn honest clients
            // away, so a full queue drops them now. O(queue) only when the queue is full.
            st.queue.retain(|queued| !queued.flight().is_cancelled());
        }
        if st.queue.len() >= self.shared.plan.max_queue {
            let depth = st.queue.len();
            return Err((Rejected::Full { depth }, Box::new(job)));
        }
        st.queue.push_back(job);
        let woke = st.busy + st.waking == 0 && {
            wake_one(&self.shared, &mut st);
            st.waking > 0
        };
        if !woke {
            // The job waits behind a running or woken thread (or none could be woken): the
            // monitor decides whether another thread is worth it.
            self.shared.monitor.notify_one();
        }
        Ok(())
    }

    /// (live threads, threads running a job).
    pub fn threads(&self) -> (usize, usize) {
        let st = self.shared.lock();
        (st.workers.len(), st.busy)
    }

    /// Wake `notify` once `count` jobs have run to the end (at once if they have).
    pub fn notify_at(&self, count: u64, notify: Arc<tokio::sync::Notify>) {
        *self
            .shared
            .milestone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((count, Arc::clone(&notify)));
        if self.completed() >= count {
            notify.notify_one();
        }
    }

    /// Jobs run to the end since the pool started.
    pub fn completed(&self) -> u64 {
        self.shared
            .completed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long the longest-cancelled request that a thread still runs has been cancelled:
    /// a thread stuck where cancellation cannot reach (a blocking C call).
    pub fn stuck(&self) -> Duration {
        let st = self.shared.lock();
        st.workers
            .iter()
            .filter_map(|slot| slot.running().as_ref().and_then(|f| f.cancelled_for()))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The pool's gauges for the statistics.
    pub fn gauges(&self) -> crate::stats::PoolGauges {
        let mut st = self.shared.lock();
        st.account();
        crate::stats::PoolGauges {
            threads: st.workers.len(),
            busy: st.busy,
            max_threads: self.shared.plan.max_threads,
            queue_depth: st.queue.len(),
            busy_time: st.busy_time,
        }
    }

    /// Cancel every request the pool holds, queued (it will be skipped) or running, for
    /// `reason`; returns how many were not cancelled already.
    pub fn cancel_all(&self, reason: Reason) -> usize {
        let st = self.shared.lock();
        let queued = st.queue.iter().map(|job| Arc::clone(job.flight()));
        let running = st.workers.iter().filter_map(|slot| slot.running().clone());
        let flights: Vec<Arc<Flight>> = queued.chain(running).collect();
        drop(st);
        // Fired outside the pool lock: a flight's hooks may take other locks.
        flights.iter().filter(|f| f.fire(reason)).count()
    }

    /// Let the threads finish the queue, then stop them. Returns false if some were still
    /// running a job at `deadline`. Call without holding the GIL.
    pub fn close(&self, deadline: Instant) -> bool {
        let mut st = self.shared.lock();
        st.closing = true;
        for slot in &st.workers {
            slot.wake.notify_one();
        }
        self.shared.monitor.notify_all();
        while st.alive > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .exited
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl crate::job::Jobs for Pool {
    fn submit(&self, job: Job) -> Result<(), (Rejected, Box<Job>)> {
        Pool::submit(self, job)
    }

    fn threads(&self) -> (usize, usize) {
        Pool::threads(self)
    }
}

impl Shared {
    pub(super) fn milestone_reached(&self, done: u64) {
        let milestone = self
            .milestone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((count, notify)) = milestone.as_ref() {
            if done == *count {
                notify.notify_one();
            }
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (jobs run outside it), but if one did,
        // the counters are still consistent enough to keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
