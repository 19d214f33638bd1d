//! `FERRULE_COST_SAMPLE=N`, for benchmarks: how much of a worker thread's CPU time per
//! request the application uses, so that the rest is known to be ferrule's own
//! (`bench/run.py --cost`).
//!
//! Every Nth WSGI request reads its thread's CPU clock around the application call and
//! around `close()`, and around `start_response` inside the call: ferrule's code, though the
//! application calls it. The application's part is the call less `start_response`, plus
//! `close()`. Iterating the response is ferrule's part (a Django `HttpResponse` walks a list);
//! so is everything before the call and after `close()`. The benchmark reads the totals with
//! `ferrule._ferrule.worker_costs()` and the thread's whole CPU time from outside (Linux's
//! `/proc/PID/task/TID/schedstat`); ferrule's own is the difference.
//!
//! Each read costs a system call (`clock_cost_ns`, measured at start), which the numbers
//! returned include: a sampled request's application part holds about one read, and the
//! thread's whole time holds all [`READS_PER_SAMPLE`]. The benchmark subtracts both. Off (the
//! variable unset or 0), a request pays one load of a `OnceLock`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::platform::this_thread_cpu_ns;

/// Clock reads in a sampled request: two around the call, two around `start_response`, two
/// around `close()`.
pub const READS_PER_SAMPLE: u64 = 6;

/// The totals of the sampled requests.
pub struct Costs {
    every: u64,
    seen: AtomicU64,
    sampled: AtomicU64,
    app_ns: AtomicU64,
    clock_cost_ns: u64,
}

static COSTS: OnceLock<Option<Costs>> = OnceLock::new();

fn costs() -> Option<&'static Costs> {
    COSTS
        .get_or_init(|| {
            let every = std::env::var("FERRULE_COST_SAMPLE")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)?;
            Some(Costs {
                every,
                seen: AtomicU64::new(0),
                sampled: AtomicU64::new(0),
                app_ns: AtomicU64::new(0),
                clock_cost_ns: clock_cost_ns(),
            })
        })
        .as_ref()
}

/// What one read of the thread's CPU clock costs: consecutive reads, timed by themselves.
fn clock_cost_ns() -> u64 {
    const READS: u64 = 2000;
    let first = this_thread_cpu_ns();
    let mut last = first;
    for _ in 0..READS {
        last = this_thread_cpu_ns();
    }
    (last - first) / READS
}

thread_local! {
    /// Whether this thread is running a sampled request.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// CPU time inside `start_response` during the sampled request.
    static OURS_NS: Cell<u64> = const { Cell::new(0) };
}

/// The application's part of one sampled request, added to as it runs.
pub struct Sample {
    app_ns: u64,
    since: u64,
}

impl Sample {
    /// `Some` when this request is one of the sampled ones.
    pub fn pick() -> Option<Sample> {
        let costs = costs()?;
        if costs.seen.fetch_add(1, Ordering::Relaxed) % costs.every != 0 {
            return None;
        }
        ACTIVE.set(true);
        OURS_NS.set(0);
        Some(Sample {
            app_ns: 0,
            since: 0,
        })
    }

    /// The application's code starts running.
    pub fn enter(&mut self) {
        self.since = this_thread_cpu_ns();
    }

    /// The application's code has returned.
    pub fn leave(&mut self) {
        self.app_ns += this_thread_cpu_ns().saturating_sub(self.since);
    }

    /// The request is done: add it to the totals.
    pub fn finish(self) {
        ACTIVE.set(false);
        if let Some(costs) = costs() {
            let app = self.app_ns.saturating_sub(OURS_NS.get());
            costs.sampled.fetch_add(1, Ordering::Relaxed);
            costs.app_ns.fetch_add(app, Ordering::Relaxed);
        }
    }
}

/// [`Sample::enter`] if this request is sampled.
pub fn enter(sample: &mut Option<Sample>) {
    if let Some(sample) = sample {
        sample.enter();
    }
}

/// [`Sample::leave`] if this request is sampled.
pub fn leave(sample: &mut Option<Sample>) {
    if let Some(sample) = sample {
        sample.leave();
    }
}

/// Held while ferrule's code runs inside the application's call (`start_response`): that
/// time is not the application's.
pub struct Ours(Option<u64>);

impl Ours {
    pub fn start() -> Self {
        Ours(ACTIVE.get().then(this_thread_cpu_ns))
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        if let Some(since) = self.0 {
            OURS_NS.set(OURS_NS.get() + this_thread_cpu_ns().saturating_sub(since));
        }
    }
}

/// `ferrule._ferrule.worker_costs()`: the sampling totals as a dict, or `None` when
/// `FERRULE_COST_SAMPLE` is not set. Keys: `every`, `seen` (WSGI requests run), `sampled`,
/// `app_ns` (the application's CPU time over the sampled requests, reads included),
/// `clock_cost_ns`, `reads_per_sample`.
#[pyfunction]
pub fn worker_costs(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let Some(costs) = costs() else {
        return Ok(None);
    };
    let d = PyDict::new(py);
    d.set_item("every", costs.every)?;
    d.set_item("seen", costs.seen.load(Ordering::Relaxed))?;
    d.set_item("sampled", costs.sampled.load(Ordering::Relaxed))?;
    d.set_item("app_ns", costs.app_ns.load(Ordering::Relaxed))?;
    d.set_item("clock_cost_ns", costs.clock_cost_ns)?;
    d.set_item("reads_per_sample", READS_PER_SAMPLE)?;
    Ok(Some(d))
}
