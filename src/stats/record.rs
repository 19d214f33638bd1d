//! One application request as the statistics follow it: a [`Trace`] from admission to the
//! last byte, and the set of traces in flight.
//!
//! The http layer admits a trace when a request becomes a job (`http/service.rs`), the worker
//! thread marks when it starts running it (`wsgi/response.rs`), the application may label it
//! (`environ["ferrule.request"].label`, set by the Django hook), and the response body's end
//! finishes it (`http/exchange.rs`), which records it in its series. It leaves the in-flight
//! set when both the response and the worker thread are done with it: a request answered 504
//! or abandoned by its client may still hold a thread, and that is when a team most wants to
//! see it. The set is sharded mutexes, each taken twice per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cancel::Flight;

use super::snapshot::InFlight;

/// Shards of the in-flight set: enough that the network threads and worker threads rarely
/// meet on one lock. Arbitrary.
const SHARDS: usize = 8;

/// One application request, admitted and not finished.
pub struct Trace {
    pub id: Arc<str>,
    pub method: http::Method,
    /// The path as sent, without the query string.
    pub path: Box<str>,
    pub flight: Arc<Flight>,
    admitted: Instant,
    /// Nanoseconds after admission when a worker thread started it, plus one; 0 before.
    started: AtomicU64,
    /// Nanoseconds after admission when the worker thread was done with it, plus one; 0
    /// before.
    done: AtomicU64,
    label: Mutex<Option<Arc<str>>>,
    key: u64,
    /// The response is over (sent, or cut short).
    answered: AtomicBool,
    /// The response and the worker's [`WorkerHold`]: the last to let go takes the trace out
    /// of the in-flight set.
    holders: AtomicU8,
    set: Arc<InFlightSet>,
}

/// The worker side's hold on a trace, carried by the job: dropped when the worker thread is
/// done with the request — or when the job is dropped unrun (skipped, refused by a full
/// queue).
pub struct WorkerHold(Arc<Trace>);

impl WorkerHold {
    pub fn trace(&self) -> &Arc<Trace> {
        &self.0
    }
}

impl Drop for WorkerHold {
    fn drop(&mut self) {
        self.0.done.store(since(self.0.admitted), Ordering::Release);
        self.0.release();
    }
}

fn since(admitted: Instant) -> u64 {
    u64::try_from(admitted.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

impl Trace {
    /// A worker thread starts running the request.
    pub fn start(&self) {
        self.started.store(since(self.admitted), Ordering::Release);
    }

    /// The response is over: the http side lets go of the trace.
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Release);
        self.release();
    }

    fn release(&self) {
        if self.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set.remove(self);
        }
    }

    pub fn set_label(&self, label: &str) {
        *self.lock_label() = Some(Arc::from(super::labels::clip(label)));
    }

    pub fn label(&self) -> Option<Arc<str>> {
        self.lock_label().clone()
    }

    fn lock_label(&self) -> std::sync::MutexGuard<'_, Option<Arc<str>>> {
        self.label
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (queue wait, processing) at `end`: admitted → started, started → end. A request that
    /// never started waited in the queue all along.
    pub fn timings(&self, end: Instant) -> (Duration, Duration) {
        let total = end.saturating_duration_since(self.admitted);
        match self.started.load(Ordering::Acquire) {
            0 => (total, Duration::ZERO),
            ns => {
                let queue = Duration::from_nanos(ns - 1).min(total);
                (queue, total.saturating_sub(queue))
            }
        }
    }

    fn state(&self) -> &'static str {
        if self.started.load(Ordering::Acquire) == 0 {
            "queued"
        } else if self.done.load(Ordering::Acquire) != 0 {
            "sending"
        } else if self.answered.load(Ordering::Acquire) {
            // The response is over and the thread still runs the view: cancelled (a 504, a
            // client gone) or finishing (`close()`).
            if self.flight.is_cancelled() {
                "cancelled"
            } else {
                "closing"
            }
        } else if self.flight.is_asleep() {
            "asleep"
        } else {
            "running"
        }
    }

    fn describe(&self, fallback: &str) -> InFlight {
        InFlight {
            pid: std::process::id(),
            id: self.id.to_string(),
            label: self
                .label()
                .map_or_else(|| fallback.to_owned(), |l| l.to_string()),
            method: self.method.to_string(),
            path: self.path.to_string(),
            state: self.state(),
            elapsed: self.admitted.elapsed().as_secs_f64(),
            asleep: self.flight.asleep().as_secs_f64(),
        }
    }
}

/// The traces of requests admitted and not finished.
pub struct InFlightSet {
    shards: [Mutex<HashMap<u64, Arc<Trace>>>; SHARDS],
    next: AtomicU64,
}

impl Default for InFlightSet {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
        }
    }
}

impl InFlightSet {
    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Trace>>> {
        self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new trace in the set, and the worker side's hold on it.
    pub fn admit(
        self: &Arc<Self>,
        id: Arc<str>,
        method: http::Method,
        path: &str,
        flight: Arc<Flight>,
    ) -> (Arc<Trace>, WorkerHold) {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let trace = Arc::new(Trace {
            id,
            method,
            path: path.into(),
            flight,
            admitted: Instant::now(),
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
            label: Mutex::new(None),
            key,
            answered: AtomicBool::new(false),
            holders: AtomicU8::new(2),
            set: Arc::clone(self),
        });
        self.shard(key).insert(key, Arc::clone(&trace));
        let hold = WorkerHold(Arc::clone(&trace));
        (trace, hold)
    }

    fn remove(&self, trace: &Trace) {
        self.shard(trace.key).remove(&trace.key);
    }

    /// Every request in flight, longest-running first; `fallback` labels the unlabelled.
    pub fn list(&self, fallback: impl Fn(&Trace) -> String) -> Vec<InFlight> {
        let mut all: Vec<InFlight> = (0..SHARDS as u64)
            .flat_map(|s| {
                self.shard(s)
                    .values()
                    .map(|t| t.describe(&fallback(t)))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.elapsed.total_cmp(&a.elapsed));
        all
    }
}
