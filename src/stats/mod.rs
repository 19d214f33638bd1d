//! Per-view statistics: recorded for every request, exported on the admin listener.
//!
//! Recording (`record.rs`, `series.rs`, `histogram.rs`, `labels.rs`) happens on the request
//! path and is lock-light: atomics, a read lock to find a label's series, a sharded set of the
//! requests in flight. Once a second (the `ferrule-stats` thread) `history.rs` folds what was
//! recorded into bounded rings (the timeline and the per-view windows). On demand, the
//! statistics are read out as an [`Export`] (`export.rs`: mergeable data), from which the
//! exports' [`Snapshot`] is built: Prometheus text (`prometheus.rs`), JSON (`json.rs`) and an
//! HTML dashboard with server-rendered SVG charts (`dashboard.rs`, `svg.rs`, its style in
//! `dashboard.css`), served by the admin listener (`admin.rs`) with `/healthz` and `/readyz`,
//! to the requests `guard.rs` allows (their `Host`, `--stats-token`).
//! With `--workers`, each worker sends its master an [`Export`]; the master sums them, keeping
//! the totals of retired workers (`cluster.rs`). Nothing here touches Python; the pool's
//! gauges come in through [`Stats::set_pool`].

pub mod admin;
pub mod cluster;
pub mod dashboard;
pub mod export;
#[cfg(test)]
mod fixtures;
mod guard;
mod histogram;
mod history;
pub mod json;
mod labels;
#[cfg(test)]
mod merge_tests;
pub mod prometheus;
mod record;
mod series;
pub mod snapshot;
mod svg;
pub mod websocket;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cancel::Reason;
use crate::config::StatsPlan;

pub use admin::{Health, HealthFn, SnapshotFn};
pub use cluster::{Cluster, WorkerStatus};
pub use export::Export;
pub use history::Since;
pub use labels::{Fallback, SERVER, STATIC};
pub use record::{Trace, WorkerHold};
pub use snapshot::{Snapshot, Stale, WorkerRow, WorkerState};

use history::{History, Tick};
use record::InFlightSet;

/// A finished request, as it is counted.
pub struct Finished<'a> {
    pub label: &'a str,
    pub method: &'a http::Method,
    /// The status sent, or for a cancelled request the one its access line shows.
    pub status: u16,
    pub cancelled: Option<Reason>,
    pub queue: Duration,
    pub processing: Duration,
    pub asleep: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The label is a fallback made from the path (the application set none): a 404 does not
    /// create it, so a scanner's random paths cannot take the places of real views.
    pub from_path: bool,
}

/// What the worker pool reports about itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolGauges {
    pub threads: usize,
    pub busy: usize,
    pub max_threads: usize,
    pub queue_depth: usize,
    /// Thread time spent holding a request, since start.
    pub busy_time: Duration,
}

type PoolSource = Box<dyn Fn() -> PoolGauges + Send + Sync>;

/// The statistics of one server process.
pub struct Stats {
    labels: labels::Labels,
    fallback: Fallback,
    history: Mutex<History>,
    in_flight: Arc<InFlightSet>,
    connections: AtomicUsize,
    /// WebSockets of an ASGI application.
    pub websockets: websocket::WsRecorder,
    pool: OnceLock<PoolSource>,
    started: Instant,
    started_unix: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Stats {
    /// `django`: the application is a Django project, whose hook labels requests with views.
    pub fn new(plan: &StatsPlan, django: bool) -> Self {
        let fallback = match (&plan.label, django) {
            (Some(re), _) => Fallback::Pattern(re.clone()),
            (None, true) => Fallback::Unresolved,
            (None, false) => Fallback::FirstSegment,
        };
        Self {
            labels: labels::Labels::new(plan.max_labels),
            fallback,
            history: Mutex::new(History::default()),
            in_flight: Arc::new(InFlightSet::default()),
            connections: AtomicUsize::new(0),
            websockets: websocket::WsRecorder::new(plan.max_labels),
            pool: OnceLock::new(),
            started: Instant::now(),
            started_unix: unix_now(),
        }
    }

    /// Where the pool's gauges come from (set once the pool runs).
    pub fn set_pool(&self, source: PoolSource) {
        let _ = self.pool.set(source);
    }

    fn pool_gauges(&self) -> PoolGauges {
        self.pool.get().map(|f| f()).unwrap_or_default()
    }

    /// An application request becomes a job: its trace, and the hold the job carries.
    pub fn admit(
        &self,
        id: Arc<str>,
        method: http::Method,
        path: &str,
        flight: Arc<crate::cancel::Flight>,
    ) -> (Arc<Trace>, WorkerHold) {
        self.in_flight.admit(id, method, path, flight)
    }

    /// The label an application request is counted under.
    pub fn label_of<'a>(&self, trace: &'a Trace, label: Option<&'a Arc<str>>) -> &'a str {
        match label {
            Some(l) => l,
            None => self.fallback.label(&trace.path),
        }
    }

    /// The route a WebSocket is counted under: the label the application gave it, else
    /// `--stats-label`'s match or the path's first segment — in a Django project too, whose
    /// hook labels HTTP requests only.
    pub fn websocket_route(&self, trace: &Trace) -> Arc<str> {
        if let Some(label) = trace.label() {
            return label;
        }
        match &self.fallback {
            Fallback::Pattern(_) => self.fallback.label(&trace.path).into(),
            Fallback::FirstSegment | Fallback::Unresolved => {
                Fallback::FirstSegment.label(&trace.path).into()
            }
        }
    }

    /// An application request's response is over: count it. It stays in flight while its
    /// worker thread still runs it.
    pub fn finish(&self, trace: &Trace, finished: &Finished<'_>) {
        self.record(finished);
        trace.answered();
    }

    /// Count a finished request.
    pub fn record(&self, finished: &Finished<'_>) {
        let origin = match (finished.from_path, finished.status) {
            (false, _) => labels::Origin::Set,
            (true, 404) => labels::Origin::PathMiss,
            (true, _) => labels::Origin::Path,
        };
        self.labels
            .with(finished.label, origin, |series| series.record(finished));
    }

    /// Count an open connection until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    /// Fold the last second into the history. Called once a second by the ticker thread.
    pub fn tick(&self, now: i64) {
        let mut labels = Vec::new();
        let all = self.labels.all();
        for series in &all {
            let mut counts = series::TickCounts::default();
            if series.drain_into(&mut counts) {
                labels.push((Arc::clone(&series.label), counts));
            }
        }
        let pool = self.pool_gauges();
        let tick = Tick {
            now,
            labels,
            live: all.iter().map(|s| Arc::clone(&s.label)).collect(),
            busy_seconds: pool.busy_time.as_secs_f64(),
            asleep_seconds: crate::cancel::asleep_total().as_secs_f64(),
            threads: pool.threads,
            queue_depth: pool.queue_depth,
        };
        self.lock_history().tick(tick);
    }

    /// The time now, in Unix seconds, on the monotonic clock: the wall clock at start plus the
    /// time since. A wall clock stepped later (NTP) cannot put points out of order.
    fn now(&self) -> f64 {
        self.started_unix + self.started.elapsed().as_secs_f64()
    }

    /// Tick once a second, on the second, on a thread of its own (`ferrule-stats`) until the
    /// statistics are dropped. Not on the runtime: a scrape holding the history's lock must
    /// never stall a network thread.
    pub fn start_ticker(self: &Arc<Self>) -> std::io::Result<()> {
        let stats = Arc::downgrade(self);
        let mut last = self.now().floor() as i64;
        std::thread::Builder::new()
            .name("ferrule-stats".into())
            .spawn(move || loop {
                let Some(now) = stats.upgrade().map(|s| s.now()) else {
                    return;
                };
                let next = (now.floor() as i64 + 1).max(last + 1);
                std::thread::sleep(Duration::from_secs_f64((next as f64 - now).clamp(0.0, 1.0)));
                let Some(stats) = stats.upgrade() else {
                    return;
                };
                // A second late or more (a stalled machine): the history fills the gap.
                last = (stats.now().floor() as i64).max(next);
                stats.tick(last);
            })
            .map(drop)
    }

    fn lock_history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests per second lately and the pool's gauges, for a status line (systemd's
    /// STATUS=); cheap next to a snapshot.
    pub fn pulse(&self) -> Pulse {
        let (requests, seconds) = self.lock_history().recent_requests(PULSE_SECONDS);
        let pool = self.pool_gauges();
        Pulse {
            requests_per_second: if seconds == 0 {
                0.0
            } else {
                requests as f64 / seconds as f64
            },
            busy_threads: pool.busy,
            threads: pool.threads,
            queue_depth: pool.queue_depth,
        }
    }

    /// The requests in flight, without building a whole export (the supervisor's heartbeat).
    pub fn in_flight(&self) -> Vec<snapshot::InFlight> {
        self.in_flight
            .list(|t| self.fallback.label(&t.path).to_owned())
    }

    /// Everything, now.
    pub fn snapshot(&self) -> Snapshot {
        self.export(&Since::ALL).snapshot(Vec::new())
    }

    /// Everything, now, as mergeable data; only the timeline points and closed slots newer
    /// than `since` (a worker's master asks for what it has not seen yet).
    pub fn export(&self, since: &Since) -> Export {
        let time = self.now();
        let pool = self.pool_gauges();
        let series = self.labels.all();
        let history = self.lock_history();
        let views = series
            .iter()
            .map(|s| {
                let (slots, current) = history.slots(&s.label, since.slots);
                export::ExportView {
                    label: s.label.to_string(),
                    methods: s.methods(),
                    slots,
                    current,
                }
            })
            .collect();
        let (seconds, minutes) = (
            history.seconds(since.seconds),
            history.minutes(since.minutes),
        );
        drop(history);
        let in_flight = self.in_flight();
        Export {
            pid: std::process::id(),
            time,
            started: self.started_unix,
            rss_bytes: rss_bytes(),
            gauges: export::Live {
                threads: pool.threads,
                busy_threads: pool.busy,
                max_threads: pool.max_threads,
                queue_depth: pool.queue_depth,
                connections: self.connections.load(Ordering::Relaxed),
                websockets: self.websockets.open(),
            },
            busy_seconds: pool.busy_time.as_secs_f64(),
            asleep_seconds: crate::cancel::asleep_total().as_secs_f64(),
            labels_overflowed: self.labels.overflowed(),
            labels_evicted: self.labels.evicted(),
            websocket: self.websockets.totals(),
            views,
            in_flight,
            seconds,
            minutes,
        }
    }
}

/// The seconds a [`Pulse`] averages requests over. Arbitrary: smooths a bursty second, still
/// follows a change within a status interval or two.
const PULSE_SECONDS: usize = 10;

/// How busy the server is right now, in a few numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pulse {
    /// Finished requests per second over the last ten seconds.
    pub requests_per_second: f64,
    pub busy_threads: usize,
    pub threads: usize,
    pub queue_depth: usize,
}

impl std::fmt::Display for Pulse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} requests/s, {} of {} threads busy, {} queued",
            self.requests_per_second, self.busy_threads, self.threads, self.queue_depth
        )
    }
}

/// An open connection, counted while it lives.
pub struct ConnectionGuard(Arc<Stats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// This process's resident set size (0 where it cannot be read).
pub fn rss_bytes() -> u64 {
    crate::platform::resident_bytes(std::process::id()).unwrap_or(0)
}
