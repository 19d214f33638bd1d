//! What the exports read: a [`Snapshot`] of every statistic at one instant, as plain data.
//!
//! Built by [`super::Stats::snapshot`] when the admin listener is asked (a scrape, a page
//! load), never on the request path. The exports — Prometheus text (`prometheus.rs`), JSON
//! (`json.rs`), the dashboard (`dashboard.rs`) — only read it; keeping them apart from the
//! recording structures is what lets the supervisor merge several workers' snapshots later.

use serde::Serialize;

/// The request methods counted apart; anything else is counted as `OTHER`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// Upper bounds, in seconds, of the Prometheus buckets of every latency histogram (`+Inf`
/// follows). From half a millisecond (a view that hits a cache) to a minute (past any sane
/// `--timeout`), about three per decade, as Prometheus client libraries space theirs.
pub const PROM_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Status classes counted per view: `1xx` … `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why requests were cancelled, as `ferrule.request.cancelled` names it.
pub const CANCEL_REASONS: [&str; 3] = ["disconnected", "timeout", "shutdown"];

/// The lengths, in minutes, of the windows [`View::windows`] covers.
pub const WINDOWS: [u32; 3] = [1, 5, 15];

/// Every statistic of one server process at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `ferrule.__version__`.
    pub version: &'static str,
    pub pid: u32,
    /// Unix time of the snapshot, in seconds.
    pub time: f64,
    /// Seconds since the server started.
    pub uptime: f64,
    /// Resident set size of the process, in bytes (from `/proc/self/statm`).
    pub rss_bytes: u64,
    pub gauges: Gauges,
    /// Totals since start, over every view.
    pub totals: Totals,
    /// One entry per label, sorted by label.
    pub views: Vec<View>,
    /// Requests not finished yet, longest-running first.
    pub in_flight: Vec<InFlight>,
    /// The last 15 minutes, one point per second, oldest first.
    pub seconds: Vec<Point>,
    /// The last 24 hours, one point per minute, oldest first (the minute in progress is not
    /// included).
    pub minutes: Vec<Point>,
}

/// Values that go up and down.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gauges {
    /// Live worker threads.
    pub threads: usize,
    /// Worker threads running a request.
    pub busy_threads: usize,
    /// `--threads`.
    pub max_threads: usize,
    /// Requests waiting for a thread.
    pub queue_depth: usize,
    /// Open client connections.
    pub connections: usize,
    /// Application requests admitted and not finished (queued, running, or being sent).
    pub in_flight: usize,
    /// Over the last minute: time the worker threads spent working on requests divided by the
    /// time they spent asleep in async waits; `None` when they slept not at all.
    pub work_sleep_ratio: Option<f64>,
}

/// Counters since start, over every view.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub requests: u64,
    /// Seconds worker threads spent holding a request (running it, or asleep in it).
    pub busy_seconds: f64,
    /// Seconds worker threads spent asleep in `ferrule.wait`/`gather`/`async_to_sync`.
    pub asleep_seconds: f64,
    /// Requests counted under `other` because their label would have exceeded
    /// `--stats-max-labels`.
    pub labels_overflowed: u64,
}

/// Everything recorded under one label.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub label: String,
    /// Per request method, only methods that were seen; in [`METHODS`] order.
    pub methods: Vec<MethodStats>,
    /// Over the last 1, 5 and 15 minutes ([`WINDOWS`]).
    pub windows: [Window; 3],
    /// The processing-time distribution over the last 15 minutes: (upper bound in seconds,
    /// requests) per bin, lowest first, empty bins left out. Finer than [`PROM_BUCKETS`].
    pub histogram: Vec<(f64, u64)>,
}

/// One view's counters and histograms for one method, since start.
#[derive(Debug, Clone, Serialize)]
pub struct MethodStats {
    pub method: &'static str,
    /// Admitted → a worker thread started it.
    pub queue: Histogram,
    /// Started → the response was complete.
    pub processing: Histogram,
    /// Time asleep in async waits.
    pub asleep: Histogram,
    /// Responses per status class ([`STATUS_CLASSES`]); a cancelled request counts with the
    /// status its access log line shows (499, 504, 503).
    pub status: [u64; 5],
    /// Cancelled requests per reason ([`CANCEL_REASONS`]).
    pub cancelled: [u64; 3],
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A Prometheus histogram: observations per bucket of [`PROM_BUCKETS`] (not cumulative; the
/// last entry is above the last bound), their count and their sum in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    pub buckets: [u64; 17],
    pub count: u64,
    pub sum: f64,
}

/// One view over a recent window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Window {
    pub minutes: u32,
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    pub cancelled: u64,
    pub queue: Quantiles,
    pub processing: Quantiles,
    pub asleep: Quantiles,
}

/// Percentiles and maximum in seconds; all zero when there were no requests.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// A request not finished yet.
#[derive(Debug, Clone, Serialize)]
pub struct InFlight {
    /// The request id (`X-Request-ID`).
    pub id: String,
    pub label: String,
    pub method: String,
    /// The path as sent, without the query string.
    pub path: String,
    /// `queued`, `running`, `asleep` (in an async wait), `sending` (the worker is done, the
    /// response is still being written), `cancelled` (answered 504, or its client left, while
    /// the view still runs) or `closing` (answered; the application's `close()` still runs).
    pub state: &'static str,
    /// Seconds since the request was admitted.
    pub elapsed: f64,
    /// Seconds asleep in async waits so far.
    pub asleep: f64,
}

/// One interval of the timeline (a second or a minute).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Point {
    /// Unix time of the interval's start, in seconds.
    pub time: i64,
    /// Requests that finished in the interval.
    pub requests: u64,
    /// Of them, with a 5xx status.
    pub errors: u64,
    /// Of them, cancelled.
    pub cancelled: u64,
    /// Processing time of those requests, seconds.
    pub processing: Quantiles,
    /// The 99th percentile of their queue wait, seconds.
    pub queue_p99: f64,
    /// Average number of worker threads holding a request over the interval.
    pub busy: f64,
    /// Average number of worker threads asleep in async waits over the interval.
    pub asleep: f64,
    /// Live worker threads at the end of the interval.
    pub threads: usize,
    /// Requests waiting for a thread at the end of the interval.
    pub queue_depth: usize,
}
