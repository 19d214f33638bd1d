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
    /// CPU time inside `start_response` during the sampled request this thread runs; `None`
    /// while it runs one that is not sampled.
    static OURS_NS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The application's part of one request, added to as it runs, if the request is sampled;
/// otherwise every method does nothing.
pub struct Sample(Option<Sampled>);

struct Sampled {
    costs: &'static Costs,
    app_ns: u64,
    since: u64,
}

impl Sample {
    /// Sampled when sampling is on and it is this request's turn.
    pub fn pick() -> Sample {
        let sampled = costs()
            .filter(|costs| costs.seen.fetch_add(1, Ordering::Relaxed) % costs.every == 0)
            .map(|costs| {
                OURS_NS.set(Some(0));
                Sampled {
                    costs,
                    app_ns: 0,
                    since: 0,
                }
            });
        Sample(sampled)
    }

    /// The application's code starts running.
    pub fn enter(&mut self) {
        if let Some(s) = &mut self.0 {
            s.since = this_thread_cpu_ns();
        }
    }

    /// The application's code has returned.
    pub fn leave(&mut self) {
        if let Some(s) = &mut self.0 {
            s.app_ns += this_thread_cpu_ns().saturating_sub(s.since);
        }
    }

    /// The request is done: add it to the totals.
    pub fn finish(self) {
        if let Some(s) = self.0 {
            let ours = OURS_NS.take().unwrap_or(0);
            s.costs.sampled.fetch_add(1, Ordering::Relaxed);
            s.costs
                .app_ns
                .fetch_add(s.app_ns.saturating_sub(ours), Ordering::Relaxed);
        }
    }
}

/// Held while ferrule's code runs inside the application's call (`start_response`): that
/// time is not the application's.
pub struct Ours(Option<u64>);

impl Ours {
    pub fn start() -> Self {
        Ours(OURS_NS.get().map(|_| this_thread_cpu_ns()))
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        if let (Some(since), Some(ours)) = (self.0, OURS_NS.get()) {
            OURS_NS.set(Some(ours + this_thread_cpu_ns().saturating_sub(since)));
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
