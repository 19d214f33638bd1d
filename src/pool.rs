//! The Python worker threads and the bounded job queue.
//!
//! Threads start lazily up to `--threads`, attach to the interpreter once for their whole
//! life (detaching while they wait), and exit after `--thread-idle-timeout` idle above
//! `--min-threads`. Idle threads form a stack: the most recently idle one is woken first, so
//! its caches stay warm.
//!
//! A new job wakes a thread at once only when no thread is running one. Otherwise the
//! hand-off monitor decides, from the busy threads' CPU time over short ticks and their
//! scheduler state: it adds a thread when they are blocked (I/O, a sleep, a database) —
//! below [`BLOCKED_BELOW`] of a core with none runnable, twice in a row — and lowers the
//! allowance when they saturate the GIL (above [`CONTENDED_ABOVE`] with one runnable), so
//! that the next thread to finish a job steps back. A thread that finishes a job takes the
//! next queued one without releasing the GIL. CPU-bound views then run on one hot thread
//! without bouncing the GIL, while I/O-bound views grow the pool to whatever they need, with
//! the same settings. What a thread does with a job is the WSGI layer's business (`wsgi/`);
//! the pool only calls the runner it was given.
//!
//! Each thread's slot holds the flight of the request it is running, so a forced shutdown can
//! cancel every request the pool holds, queued or running ([`Pool::cancel_all`]).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::cancel::{Flight, Reason};
use crate::config::PoolPlan;
use crate::job::Job;
use crate::log_error;

/// How long the monitor watches the busy threads before deciding. Short enough that an
/// I/O-bound pool reaches 32 threads in well under 100 ms; long enough that a CPU-bound
/// thread's usage is measured over many scheduler slices. Chosen by measurement (bench/).
const TICK: Duration = Duration::from_millis(2);

/// Busy threads that used less than this fraction of one core during a tick are blocked,
/// and the GIL has room for another thread.
const BLOCKED_BELOW: f64 = 0.75;

/// Busy threads that used more than this fraction of one core, one of them runnable, are
/// competing for a saturated GIL: the pool steps down by one thread. Well above what a pool
/// of I/O-bound threads uses (32 threads each running 0.5 ms of Python per 50 ms request use
/// about a third of a core), below what two CPU-bound threads use even when other processes
/// take some of the CPU.
const CONTENDED_ABOVE: f64 = 0.8;

/// Stack size of a worker thread: Python's recursion and Django's template engine expect the
/// 8 MiB that `threading` threads get on Linux, not Rust's 2 MiB default.
const STACK_SIZE: usize = 8 << 20;

/// Runs one job on a worker thread that holds the GIL.
pub type Runner = dyn Fn(Python<'_>, Job) + Send + Sync;

pub use crate::job::Rejected;

/// The worker threads; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the hand-off monitor when jobs wait behind busy threads.
    monitor: Condvar,
    /// Signalled whenever a thread has left the interpreter.
    exited: Condvar,
    plan: PoolPlan,
    run: Box<Runner>,
    /// Jobs run to the end (the supervisor's `--max-requests`).
    completed: std::sync::atomic::AtomicU64,
    /// Woken when `completed` reaches the count.
    milestone: Mutex<Option<(u64, Arc<tokio::sync::Notify>)>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Idle threads, most recently idle last.
    idle: Vec<Arc<Slot>>,
    /// Every live thread.
    workers: Vec<Arc<Slot>>,
    /// Threads running a job.
    busy: usize,
    /// Threads woken (or being started) that have not picked a job yet.
    waking: usize,
    /// How many threads may run jobs at once, as the monitor last judged: raised when the
    /// busy threads are blocked, lowered when they compete for the GIL. A thread that
    /// finishes a job while more than this many are busy goes idle instead of taking another.
    allowed: usize,
    /// Threads that have not yet left the interpreter; `close` waits for this to reach 0,
    /// so Python never finalizes under a thread that is still attached.
    alive: usize,
    closing: bool,
    spawned: u64,
    /// Thread time spent holding a job until `busy_mark`, for the statistics: the integral of
    /// `busy` over time, advanced whenever `busy` changes.
    busy_time: Duration,
    busy_mark: Option<Instant>,
}

impl State {
    /// Bring `busy_time` up to now; call before changing `busy`.
    fn account(&mut self) {
        let now = Instant::now();
        if let Some(mark) = self.busy_mark {
            self.busy_time += (now - mark) * self.busy as u32;
        }
        self.busy_mark = Some(now);
    }
}

/// One thread's mailbox. The flags are only read or written under the pool's state lock.
struct Slot {
    wake: Condvar,
    /// The thread's CPU clock, set by the thread when it starts (-1 until then).
    clock: AtomicI32,
    /// The thread's `/proc/thread-self/stat`, opened by the thread when it starts, read by
    /// the monitor for the scheduler state.
    stat: OnceLock<File>,
    flags: Mutex<Flags>,
    /// The flight of the request the thread is running.
    running: Mutex<Option<Arc<Flight>>>,
}

#[derive(Default, Clone, Copy)]
struct Flags {
    busy: bool,
    woken: bool,
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            wake: Condvar::new(),
            clock: AtomicI32::new(-1),
            stat: OnceLock::new(),
            flags: Mutex::new(Flags::default()),
            running: Mutex::new(None),
        })
    }

    fn running(&self) -> MutexGuard<'_, Option<Arc<Flight>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn flags(&self) -> MutexGuard<'_, Flags> {
        self.flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// CPU time this thread has used; zero if it has not started or has exited.
    fn cpu_time(&self) -> Duration {
        let clock = self.clock.load(Ordering::Relaxed);
        if clock < 0 {
            return Duration::ZERO;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer; an invalid clock id only makes the call fail.
        if unsafe { libc::clock_gettime(clock, &raw mut ts) } != 0 {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Whether the thread is running or waiting for a CPU (state `R`), as opposed to
    /// sleeping in a blocking call. Unknown counts as runnable, so no thread is added on a
    /// guess.
    fn is_runnable(&self) -> bool {
        let Some(file) = self.stat.get() else {
            return true;
        };
        let mut buf = [0u8; 512];
        let Ok(n) = file.read_at(&mut buf, 0) else {
            return true;
        };
        // "tid (comm) S ...": comm may hold spaces and parentheses; the state follows the
        // last ')'.
        let line = &buf[..n];
        line.iter()
            .rposition(|&b| b == b')')
            .and_then(|i| line.get(i + 2))
            .is_none_or(|&state| state == b'R')
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
    fn milestone_reached(&self, done: u64) {
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (jobs run outside it), but if one did,
        // the counters are still consistent enough to keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Wake the most recently idle thread, or start one if there is room.
fn wake_one(shared: &Arc<Shared>, st: &mut State) {
    if let Some(slot) = st.idle.pop() {
        slot.flags().woken = true;
        st.waking += 1;
        slot.wake.notify_one();
    } else if st.workers.len() < shared.plan.max_threads {
        spawn_worker(shared, st, true);
    }
}

fn spawn_worker(shared: &Arc<Shared>, st: &mut State, woken: bool) {
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
    let mut clock: libc::clockid_t = -1;
    // SAFETY: pthread_self is always valid for the calling thread; `clock` is an out-pointer.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) } == 0 {
        slot.clock.store(clock, Ordering::Relaxed);
    }
    if let Ok(stat) = File::open("/proc/thread-self/stat") {
        let _ = slot.stat.set(stat);
    }
    Python::attach(|py| {
        let mut next = py.detach(|| next_job(shared, slot));
        while let Some(job) = next {
            *slot.running() = Some(Arc::clone(job.flight()));
            if catch_unwind(AssertUnwindSafe(|| (shared.run)(py, job))).is_err() {
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
            next = queued_job(shared).or_else(|| py.detach(|| next_job(shared, slot)));
        }
    });
    slot.clock.store(-1, Ordering::Relaxed);
    shared.lock().alive -= 1;
    shared.exited.notify_all();
}

/// For a thread that has just finished a job (and so is still counted busy): the next queued
/// job, if one waits and the allowance permits. Never blocks for long: the pool lock is only
/// held for queue operations, never while waiting for the GIL.
fn queued_job(shared: &Shared) -> Option<Job> {
    let mut st = shared.lock();
    if st.busy > st.allowed {
        return None; // too many threads compete for the GIL: this one steps back
    }
    st.queue.pop_front()
}

/// Block until there is a job for this thread, or return None when it should exit.
fn next_job(shared: &Arc<Shared>, slot: &Arc<Slot>) -> Option<Job> {
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

fn monitor_loop(shared: &Arc<Shared>) {
    let mut st = shared.lock();
    let mut blocked_ticks = 0u32;
    loop {
        if st.closing {
            return;
        }
        let room = !st.idle.is_empty() || st.workers.len() < shared.plan.max_threads;
        if st.queue.is_empty() || !(room || st.busy > 1) {
            st = shared
                .monitor
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            continue;
        }
        if st.busy + st.waking == 0 {
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
        let sample: Vec<(Arc<Slot>, Duration)> = st
            .workers
            .iter()
            .filter(|s| s.flags().busy)
            .map(|s| (Arc::clone(s), s.cpu_time()))
            .collect();
        // With no room to grow, only shrinking is left to judge: look less often.
        let tick = if room { TICK } else { TICK * 10 };
        let started = Instant::now();
        drop(st);
        std::thread::sleep(tick);
        if sample.is_empty() {
            // Only threads that were woken and have not picked their job yet: nothing to
            // measure. They will be busy by the next look.
            st = shared.lock();
            continue;
        }
        let used: Duration = sample
            .iter()
            .map(|(s, before)| s.cpu_time().saturating_sub(*before))
            .sum();
        let load = used.as_secs_f64() / started.elapsed().as_secs_f64();
        let runnable = sample.iter().any(|(s, _)| s.is_runnable());
        st = shared.lock();
        if st.queue.is_empty() || st.waking > 0 {
            continue;
        }
        let blocked = load < BLOCKED_BELOW && !runnable;
        blocked_ticks = if blocked { blocked_ticks + 1 } else { 0 };
        if blocked {
            // Two looks in a row: a single one may catch the busy threads waiting out a
            // short GIL hold by another thread (logging, say) rather than blocked in I/O.
            if room && blocked_ticks >= 2 {
                blocked_ticks = 0;
                crate::log_debug!(
                    "{} busy thread(s) used {:.0}% of a core and none is runnable; waking another for {} queued request(s)",
                    sample.len(),
                    100.0 * load,
                    st.queue.len()
                );
                st.allowed = (st.busy + 1).min(shared.plan.max_threads).max(st.allowed);
                wake_one(shared, &mut st);
            }
        } else if load >= CONTENDED_ABOVE && runnable && st.busy > 1 {
            // The busy threads keep the GIL (or the CPU) occupied: one fewer will do.
            st.allowed = st.busy - 1;
            crate::log_debug!(
                "{} busy thread(s) used {:.0}% of a core, one runnable: allowing {}",
                sample.len(),
                100.0 * load,
                st.allowed
            );
        }
    }
}
