//! What the exports read: a [`Snapshot`] of every statistic at one instant, as plain data.
//!
//! Built by [`super::Stats::snapshot`] when the admin listener is asked (a scrape, a page
//! load), never on the request path. The exports — Prometheus text (`prometheus.rs`), JSON
//! (`json.rs`), the dashboard (`dashboard.rs`) — only read it; keeping them apart from the
//! recording structures is what lets the master of several worker processes serve one built
//! from their merged exports (`export.rs`, `cluster.rs`), with a row per worker.

use serde::{Deserialize, Deserializer, Serialize};

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

/// The states of a request in flight ([`InFlight::state`]).
pub const IN_FLIGHT_STATES: [&str; 6] = [
    "queued",
    "running",
    "asleep",
    "sending",
    "cancelled",
    "closing",
];

/// One of `names`, as a static string: the exports keep these as `&'static str`, and a
/// worker's export is read back by the master. A name not in the list (a newer worker's)
/// reads as the last one.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    Ok(names
        .iter()
        .find(|n| **n == name)
        .or(names.last())
        .copied()
        .unwrap_or_default())
}

/// A name from a fixed list. (An alias: serde would otherwise borrow a `&'static str` field
/// from the input it reads, which a worker's export, read from a buffer, cannot lend.)
pub type StaticName = &'static str;

fn method_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &METHODS)
}

fn in_flight_state<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    one_of(d, &IN_FLIGHT_STATES)
}

/// Every statistic of one server process — or of the worker processes of a master, merged —
/// at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `ferrule.__version__`.
    pub version: &'static str,
    pub pid: u32,
    /// Unix time of the snapshot, in seconds.
    pub time: f64,
    /// Seconds since the server started.
    pub uptime: f64,
    /// Resident set size of the process, in bytes (`platform::resident_bytes`).
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
    /// With `--workers`: one row per worker process, by pid; empty for a single process.
    pub workers: Vec<WorkerRow>,
    /// Set by a master whose last reload was abandoned: the workers run code older than the
    /// code on disk. `null` otherwise.
    pub stale: Option<Stale>,
}

/// The running code is older than the code on disk: a reload was abandoned because the new
/// worker processes kept failing to start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stale {
    /// Unix time the reload was abandoned, in seconds.
    pub since: f64,
    /// Why the new workers failed, in one line.
    pub reason: String,
}

/// Where a worker process is in its life, as its master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Spawned, importing the application; not serving yet.
    Starting,
    /// Serving requests.
    Ready,
    /// Finishing its requests before it exits (a reload, a recycle, a stop).
    Draining,
}

impl WorkerState {
    pub const ALL: [WorkerState; 3] = [Self::Starting, Self::Ready, Self::Draining];

    pub fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }
}

/// One worker process of a master.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub pid: u32,
    pub state: WorkerState,
    /// Unix time the worker process was started, in seconds.
    pub started_unix: f64,
    /// Requests it finished, since it started.
    pub requests: u64,
    /// Requests it finished per second, over the last 10 seconds.
    pub requests_per_second: f64,
    /// Its worker threads running a request, and live.
    pub busy_threads: usize,
    pub threads: usize,
    /// Its resident set size, in bytes.
    pub rss_bytes: u64,
    /// How many times the master restarted a worker in this one's place after it died.
    pub restarts: u32,
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
    /// Open WebSockets (ASGI applications).
    pub websockets: usize,
    /// Application requests admitted and not finished (queued, running, or being sent).
    pub in_flight: usize,
    /// Over the last minute: time the worker threads spent working on requests divided by the
    /// time they spent asleep in async waits; `None` when they slept not at all.
    pub work_sleep_ratio: Option<f64>,
}

/// Counters since start, over every view.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub requests: u64,
    /// Seconds worker threads spent holding a request (running it, or asleep in it).
    pub busy_seconds: f64,
    /// Seconds worker threads spent asleep in `ferrule.wait`/`gather`/`async_to_sync`.
    pub asleep_seconds: f64,
    /// Requests counted under `other` because no place could be had for their label under
    /// `--stats-max-labels`.
    pub labels_overflowed: u64,
    /// Labels made from paths that were evicted for a newcomer; their requests moved into
    /// `other`.
    pub labels_evicted: u64,
    /// Requests counted under `other`, since start: turned away, evicted, a 404 on a path
    /// with no label, a path `--stats-label` does not match.
    pub other_requests: u64,
    /// WebSocket counters since start.
    pub websocket: super::websocket::WsTotals,
}

/// Everything recorded under one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodStats {
    #[serde(deserialize_with = "method_name")]
    pub method: StaticName,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: [u64; 17],
    pub count: u64,
    pub sum: f64,
}

/// One view over a recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Window {
    pub minutes: u32,
    pub requests: u64,
    /// Responses with a 4xx status (a request whose client left counts here, as 499).
    pub client_errors: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    pub cancelled: u64,
    pub queue: Quantiles,
    pub processing: Quantiles,
    pub asleep: Quantiles,
}

/// Percentiles and maximum in seconds; all zero when there were no requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// A request not finished yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The process running it (a worker's, with `--workers`).
    pub pid: u32,
    /// The request id (`X-Request-ID`).
    pub id: String,
    pub label: String,
    pub method: String,
    /// The path as sent, without the query string.
    pub path: String,
    /// `queued`, `running`, `asleep` (in an async wait), `sending` (the worker is done, the
    /// response is still being written), `cancelled` (answered 504, or its client left, while
    /// the view still runs) or `closing` (answered; the application's `close()` still runs).
    #[serde(deserialize_with = "in_flight_state")]
    pub state: StaticName,
    /// Seconds since the request was admitted.
    pub elapsed: f64,
    /// Seconds asleep in async waits so far.
    pub asleep: f64,
}

/// One interval of the timeline (a second or a minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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
