//! Cancellation: one [`Flight`] per request, shared by the network core and the worker thread.
//!
//! The core fires it — the client went away (the hyper service future was dropped, see
//! [`DisconnectGuard`]), `--timeout` expired, or a forced shutdown reached the request — and the
//! worker side observes it: a queued job is skipped, `environ["ferrule.disconnected"]()` turns
//! true, a thread blocked in `ferrule.wait` wakes at once. What a fired flight does to Python
//! (exceptions, asyncio tasks, async exception injection) is `bridge/`'s and `wsgi/`'s.
//!
//! A flight also carries the time its thread spent asleep in async waits, for statistics, and
//! which worker thread is running the request's application code (so that `wsgi/interrupt.rs`
//! raises the exception in the right thread, and only while it still runs this request).
//! [`Deadline`] is the `--timeout` timer.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Why a request was cancelled. The first reason to fire wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client closed or reset the connection (HTTP/1), or reset the stream (HTTP/2).
    Disconnected,
    /// `--timeout` expired.
    Timeout,
    /// A forced shutdown (a second signal, or the graceful timeout) reached the request.
    Shutdown,
}

impl Reason {
    fn code(self) -> u8 {
        match self {
            Reason::Disconnected => 1,
            Reason::Timeout => 2,
            Reason::Shutdown => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Reason::Disconnected),
            2 => Some(Reason::Timeout),
            3 => Some(Reason::Shutdown),
            _ => None,
        }
    }

    /// The status the access log records for a request cancelled this way (499 is nginx's
    /// "client closed request"; it is logged, never sent).
    pub fn log_status(self) -> u16 {
        match self {
            Reason::Disconnected => 499,
            Reason::Timeout => 504,
            Reason::Shutdown => 503,
        }
    }

    /// The word `ferrule.request.cancelled` gives for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disconnected => "disconnected",
            Reason::Timeout => "timeout",
            Reason::Shutdown => "shutdown",
        }
    }

    /// Why, in words, for log messages.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Disconnected => "the client disconnected",
            Reason::Timeout => "it ran longer than --timeout",
            Reason::Shutdown => "the server is shutting down",
        }
    }
}

/// A hook run once when the flight fires, on the thread that fires it (a tokio thread: it
/// must not block).
pub type OnFire = Box<dyn FnOnce(Reason) + Send>;

/// The cancellation state and async-wait accounting of one request.
pub struct Flight {
    reason: AtomicU8,
    /// When it was cancelled (nanoseconds after [`epoch`]), for the supervisor's check of
    /// requests that outlive their cancellation.
    fired_at: AtomicU64,
    asleep_ns: AtomicU64,
    /// Wakes threads blocked in [`Flight::block_until`]; also guards the hooks.
    lock: Mutex<Hooks>,
    wake: Condvar,
    /// Wakes tasks awaiting [`Flight::fired`].
    fired: Notify,
    /// `threading.get_ident()` of the worker thread while it runs this request's application
    /// code, 0 otherwise. Written only by that thread and read only by the injector, both
    /// holding the GIL, which is what makes "still runs this request" a safe check.
    runner: AtomicU64,
    /// An exception was handed to the runner's thread and may not have been raised yet.
    injected: AtomicBool,
    /// Async waits in progress (the statistics' in-flight state), and when the first of them
    /// began (nanoseconds after [`epoch`]).
    sleeping: AtomicU32,
    sleep_began: AtomicU64,
}

/// Async waits in progress in the whole process, and the time they have taken: the integral
/// of their number over time, advanced whenever it changes, so a wait that lasts seconds is
/// counted second by second in the statistics' timeline rather than all at its end. A
/// process-wide value: a flight does not know the statistics.
struct Sleepers {
    count: u32,
    mark: Option<Instant>,
    total: Duration,
}

impl Sleepers {
    fn advance(&mut self) -> Duration {
        let now = Instant::now();
        if let Some(mark) = self.mark {
            self.total += (now - mark) * self.count;
        }
        self.mark = Some(now);
        self.total
    }
}

static SLEEPERS: Mutex<Sleepers> = Mutex::new(Sleepers {
    count: 0,
    mark: None,
    total: Duration::ZERO,
});

fn sleepers() -> MutexGuard<'static, Sleepers> {
    // Three numbers; a panic elsewhere cannot leave them inconsistent.
    SLEEPERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Time all requests' threads have spent asleep in async waits since the process started,
/// waits in progress included.
pub fn asleep_total() -> Duration {
    sleepers().advance()
}

/// A reference point for the flights' timestamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Hooks {
    on_fire: Vec<OnFire>,
}

impl Flight {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            reason: AtomicU8::new(0),
            fired_at: AtomicU64::new(0),
            asleep_ns: AtomicU64::new(0),
            lock: Mutex::new(Hooks::default()),
            wake: Condvar::new(),
            fired: Notify::new(),
            runner: AtomicU64::new(0),
            injected: AtomicBool::new(false),
            sleeping: AtomicU32::new(0),
            sleep_began: AtomicU64::new(0),
        })
    }

    fn hooks(&self) -> MutexGuard<'_, Hooks> {
        // A panic while holding this lock leaves only a list of hooks behind; keep going.
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cancel the request. Returns false if it was already cancelled (the first reason stays).
    pub fn fire(&self, reason: Reason) -> bool {
        if self
            .reason
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.fired_at
            .store(nanos_since_epoch().max(1), Ordering::Release);
        let hooks = std::mem::take(&mut self.hooks().on_fire);
        self.wake.notify_all();
        self.fired.notify_waiters();
        for hook in hooks {
            hook(reason);
        }
        true
    }

    /// Why the request was cancelled, if it was.
    pub fn reason(&self) -> Option<Reason> {
        Reason::from_code(self.reason.load(Ordering::Acquire))
    }

    /// How long ago the request was cancelled; `None` if it was not.
    pub fn cancelled_for(&self) -> Option<Duration> {
        match self.fired_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_nanos(nanos_since_epoch().saturating_sub(at))),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.reason.load(Ordering::Acquire) != 0
    }

    /// Resolves when the flight fires (at once if it has), with the reason.
    pub async fn fired(&self) -> Reason {
        loop {
            let notified = self.fired.notified();
            tokio::pin!(notified);
            // Registered before the check, so a fire in between still wakes this task.
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// Run `hook` when the flight fires (at once, on this thread, if it already has). A hook
    /// that needs the flight holds a [`Weak`] to it: a strong one would be a cycle, and a
    /// flight that never fires would never be freed.
    pub fn on_fire(&self, hook: OnFire) {
        let mut hooks = self.hooks();
        match self.reason() {
            Some(reason) => {
                drop(hooks);
                hook(reason);
            }
            None => hooks.on_fire.push(hook),
        }
    }

    /// Wake the threads blocked in [`Flight::block_until`] so they re-check their condition
    /// (an awaited future finished).
    pub fn wake(&self) {
        let _guard = self.hooks();
        self.wake.notify_all();
    }

    /// Block the calling thread until `done()` is true, the flight fires, or `deadline`
    /// passes; callers make `done` true and then call [`Flight::wake`]. The time blocked is
    /// added to the flight's asleep time. Call it with the GIL released.
    pub fn block_until(&self, done: impl Fn() -> bool, deadline: Option<Instant>) -> Wakeup {
        self.sleep_began();
        let mut guard = self.hooks();
        let woke = loop {
            if done() {
                break Wakeup::Done;
            }
            if let Some(reason) = self.reason() {
                break Wakeup::Cancelled(reason);
            }
            match deadline {
                None => {
                    guard = self
                        .wake
                        .wait(guard)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Wakeup::TimedOut;
                    }
                    guard = self
                        .wake
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
        };
        drop(guard);
        self.sleep_ended();
        woke
    }

    /// The request's thread starts waiting for async work (in [`Flight::block_until`], or
    /// asgiref's `async_to_sync`). Waits nest (an `async_to_sync` inside a thread-sensitive
    /// call made from another): only the outermost one counts, so a thread is never asleep
    /// twice over.
    pub fn sleep_began(&self) {
        if self.sleeping.fetch_add(1, Ordering::AcqRel) == 0 {
            self.sleep_began
                .store(nanos_since_epoch(), Ordering::Release);
            let mut all = sleepers();
            all.advance();
            all.count += 1;
        }
    }

    /// A wait begun by [`Flight::sleep_began`] is over.
    pub fn sleep_ended(&self) {
        let began = self.sleep_began.load(Ordering::Acquire);
        if self.sleeping.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.add_asleep(Duration::from_nanos(
                nanos_since_epoch().saturating_sub(began),
            ));
            let mut all = sleepers();
            all.advance();
            all.count = all.count.saturating_sub(1);
        }
    }

    /// Whether the request's thread is waiting for async work right now.
    pub fn is_asleep(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed) > 0
    }

    /// Count `d` as time the request's thread spent asleep in an async wait.
    fn add_asleep(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.asleep_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Total time asleep in async waits so far, the wait in progress included.
    pub fn asleep(&self) -> Duration {
        let done = Duration::from_nanos(self.asleep_ns.load(Ordering::Relaxed));
        if self.sleeping.load(Ordering::Acquire) == 0 {
            return done;
        }
        let began = self.sleep_began.load(Ordering::Acquire);
        done + Duration::from_nanos(nanos_since_epoch().saturating_sub(began))
    }

    /// The thread `ident` (`threading.get_ident()`) starts running this request's application
    /// code. Call it holding the GIL.
    pub fn set_runner(&self, ident: u64) {
        self.runner.store(ident, Ordering::Release);
    }

    /// The runner thread is done with the application code; returns whether an exception
    /// was handed to it (which the caller then clears if it is still pending). Call it
    /// holding the GIL.
    pub fn clear_runner(&self) -> bool {
        self.runner.store(0, Ordering::Release);
        self.injected.swap(false, Ordering::AcqRel)
    }

    /// The thread running this request's application code, if one still is.
    pub fn runner(&self) -> Option<u64> {
        Some(self.runner.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    /// Note that an exception was handed to the runner thread.
    pub fn mark_injected(&self) {
        self.injected.store(true, Ordering::Release);
    }
}

/// The `--timeout` timer of one request: fires the flight with [`Reason::Timeout`] when it
/// expires, unless dropped first (the response is complete). Runs on the tokio runtime of the
/// caller.
pub struct Deadline(JoinHandle<()>);

impl Deadline {
    /// Start the timer; `on_expiry` runs (on a runtime thread) if the timer is what cancelled
    /// the request.
    pub fn start(
        flight: &Arc<Flight>,
        after: Duration,
        on_expiry: impl FnOnce() + Send + 'static,
    ) -> Self {
        let flight: Weak<Flight> = Arc::downgrade(flight);
        Self(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if flight.upgrade().is_some_and(|f| f.fire(Reason::Timeout)) {
                on_expiry();
            }
        }))
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.0.abort();
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Arc<Flight>>> = const { std::cell::RefCell::new(None) };
}

/// The flight of the request the calling worker thread is running, if any.
pub fn current() -> Option<Arc<Flight>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Make `flight` the calling thread's current one until the returned guard is dropped.
pub fn enter(flight: &Arc<Flight>) -> Entered {
    CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(flight)));
    Entered(())
}

/// Clears the thread's current flight when dropped.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// How [`Flight::block_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    Done,
    Cancelled(Reason),
    TimedOut,
}

/// Held by the hyper service future of a request: if the future is dropped before
/// [`DisconnectGuard::disarm`] — hyper drops it when the client closes or resets the
/// connection or the HTTP/2 stream — the flight fires with [`Reason::Disconnected`].
pub struct DisconnectGuard(Option<Arc<Flight>>);

impl DisconnectGuard {
    pub fn new(flight: &Arc<Flight>) -> Self {
        Self(Some(Arc::clone(flight)))
    }

    /// The response is complete (or the request was never the application's): dropping the
    /// guard no longer means the client left.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if let Some(flight) = self.0.take() {
            flight.fire(Reason::Disconnected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn the_first_reason_wins_and_hooks_run_once() {
        let f = Flight::new();
        let runs = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&runs);
        f.on_fire(Box::new(move |why| {
            assert_eq!(why, Reason::Timeout);
            r.fetch_add(1, Ordering::Relaxed);
        }));
        assert!(f.fire(Reason::Timeout));
        assert!(!f.fire(Reason::Disconnected));
        assert_eq!(f.reason(), Some(Reason::Timeout));
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        // A hook registered late runs at once.
        let r = Arc::clone(&runs);
        f.on_fire(Box::new(move |_| {
            r.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(runs.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_blocked_thread_wakes_when_done_or_fired() {
        let f = Flight::new();
        let done = Arc::new(AtomicBool::new(false));
        let (f2, d2) = (Arc::clone(&f), Arc::clone(&done));
        let t = std::thread::spawn(move || f2.block_until(|| d2.load(Ordering::Acquire), None));
        done.store(true, Ordering::Release);
        f.wake();
        assert_eq!(t.join().unwrap(), Wakeup::Done);

        let f2 = Arc::clone(&f);
        let t = std::thread::spawn(move || f2.block_until(|| false, None));
        f.fire(Reason::Disconnected);
        assert_eq!(t.join().unwrap(), Wakeup::Cancelled(Reason::Disconnected));
        assert!(f.asleep() > Duration::ZERO);
    }

    #[test]
    fn a_deadline_ends_the_wait() {
        let f = Flight::new();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert_eq!(f.block_until(|| false, Some(deadline)), Wakeup::TimedOut);
    }

    #[tokio::test]
    async fn fired_resolves_for_a_fire_before_or_during_the_wait() {
        let f = Flight::new();
        let f2 = Arc::clone(&f);
        let waiter = tokio::spawn(async move { f2.fired().await });
        tokio::task::yield_now().await;
        f.fire(Reason::Shutdown);
        assert_eq!(waiter.await.unwrap(), Reason::Shutdown);
        assert_eq!(f.fired().await, Reason::Shutdown, "already fired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_timeout_unless_dropped_first() {
        let f = Flight::new();
        let expired = Arc::new(AtomicBool::new(false));
        let e = Arc::clone(&expired);
        let _d = Deadline::start(&f, Duration::from_secs(2), move || {
            e.store(true, Ordering::Release);
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!f.is_cancelled());
        assert_eq!(f.fired().await, Reason::Timeout);
        tokio::task::yield_now().await;
        assert!(expired.load(Ordering::Acquire));

        let f = Flight::new();
        drop(Deadline::start(&f, Duration::from_secs(2), || {
            panic!("the timer was dropped")
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!f.is_cancelled());
    }

    #[test]
    fn the_runner_is_cleared_with_the_injection_flag() {
        let f = Flight::new();
        assert_eq!(f.runner(), None);
        f.set_runner(42);
        assert_eq!(f.runner(), Some(42));
        f.mark_injected();
        assert!(f.clear_runner());
        assert_eq!(f.runner(), None);
        assert!(!f.clear_runner());
    }

    #[test]
    fn dropping_an_armed_guard_fires_disconnected() {
        let f = Flight::new();
        drop(DisconnectGuard::new(&f));
        assert_eq!(f.reason(), Some(Reason::Disconnected));
        let f = Flight::new();
        let mut g = DisconnectGuard::new(&f);
        g.disarm();
        drop(g);
        assert!(!f.is_cancelled());
    }
}
