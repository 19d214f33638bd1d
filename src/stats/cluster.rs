//! The master's statistics: what it holds of each worker's, and of the workers gone.
//!
//! A master process (`--workers N`) records no requests of its own. For each scrape of its
//! admin listener it asks every live worker for an [`Export`] of what is new since the last
//! one ([`Cluster::since`]), folds the answers in ([`Cluster::update`]) and builds one
//! [`Snapshot`] of the sum ([`Cluster::snapshot`]) with a row per worker. A worker that exits
//! or is replaced is retired ([`Cluster::retire`]): its counters, histograms and history stay
//! in the sum, so Prometheus counters never go backwards and the timeline keeps what it
//! served; its gauges and requests in flight leave it. Asking the workers, and the state of
//! each, are the supervisor's business; the sums are `export.rs`'s.

use std::collections::BTreeMap;
use std::time::Instant;

use super::export::{Export, Live};
use super::history::Since;
use super::snapshot::{Snapshot, WorkerRow, WorkerState};

/// How many one-second points a worker's requests per second are averaged over.
const RATE_SECONDS: usize = 10;

/// What the master knows of a worker that its export does not say.
#[derive(Debug, Clone, Copy)]
pub struct WorkerStatus {
    pub pid: u32,
    pub state: WorkerState,
    /// Unix time the process was spawned, in seconds.
    pub started_unix: f64,
    /// How many times a worker in this one's place was restarted after it died.
    pub restarts: u32,
    /// Resident set size the master sampled itself (for `--max-rss`); `None`: the one the
    /// worker's last export reported.
    pub rss_bytes: Option<u64>,
}

/// The statistics of a master's workers, live and retired.
pub struct Cluster {
    live: BTreeMap<u32, Export>,
    /// The sum of every retired worker's last export, without gauges or requests in flight.
    retired: Export,
    /// Pids already retired: an export of theirs that arrives late (a scrape in progress when
    /// the worker exited) must not bring them back and count them twice.
    gone: std::collections::HashSet<u32>,
    started: Instant,
    started_unix: f64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// The master's own start is now (its uptime and `process_start_time_seconds`).
    pub fn new() -> Self {
        Self {
            live: BTreeMap::new(),
            retired: Export::default(),
            gone: std::collections::HashSet::new(),
            started: Instant::now(),
            started_unix: super::unix_now(),
        }
    }

    /// What to ask worker `pid` for ([`super::Stats::export`]'s argument): everything for a
    /// worker not heard from yet.
    pub fn since(&self, pid: u32) -> Since {
        self.live.get(&pid).map_or(Since::ALL, Export::since)
    }

    /// Fold in a worker's answer (its pid is in it). Idempotent: the same answer twice, or
    /// an older one after a newer (two scrapes crossing), changes nothing.
    pub fn update(&mut self, export: Export) {
        if self.gone.contains(&export.pid) {
            return;
        }
        match self.live.get_mut(&export.pid) {
            Some(held) => held.update(export),
            None => {
                self.live.insert(export.pid, export);
            }
        }
    }

    /// Worker `pid` has exited, or is being replaced and will not be asked again: keep what
    /// it counted, drop its gauges and requests in flight. A worker never heard from has
    /// nothing to keep. (Ask it for a last export and [`Cluster::update`] first, if it can
    /// still answer: what it served since the last scrape is otherwise not counted.)
    pub fn retire(&mut self, pid: u32) {
        self.gone.insert(pid);
        let Some(mut gone) = self.live.remove(&pid) else {
            return;
        };
        gone.gauges = Live::default();
        gone.in_flight.clear();
        self.retired.absorb(&gone);
        self.retired.trim(self.now() as i64);
    }

    /// A new worker `pid` (a pid the system reused after a retired worker's is a new worker).
    pub fn welcome(&mut self, pid: u32) {
        self.gone.remove(&pid);
    }

    /// Pids of the workers whose statistics are held and not retired.
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.live.keys().copied()
    }

    /// The merged snapshot now, with a row for each of `workers` (in the order given).
    pub fn snapshot(&self, workers: &[WorkerStatus]) -> Snapshot {
        let time = self.now();
        let mut sum = Export {
            pid: std::process::id(),
            time,
            started: self.started_unix,
            rss_bytes: super::rss_bytes(),
            ..Export::default()
        };
        sum.absorb(&self.retired);
        for export in self.live.values() {
            sum.absorb(export);
        }
        sum.trim(time as i64);
        sum.snapshot(workers.iter().map(|w| self.row(w)).collect())
    }

    fn row(&self, w: &WorkerStatus) -> WorkerRow {
        let export = self.live.get(&w.pid);
        let gauges = export.map(|e| e.gauges).unwrap_or_default();
        WorkerRow {
            pid: w.pid,
            state: w.state,
            started_unix: w.started_unix,
            requests: export.map_or(0, Export::requests),
            requests_per_second: export.map_or(0.0, |e| e.requests_per_second(RATE_SECONDS)),
            busy_threads: gauges.busy_threads,
            threads: gauges.threads,
            rss_bytes: w
                .rss_bytes
                .or_else(|| export.map(|e| e.rss_bytes))
                .unwrap_or(0),
            restarts: w.restarts,
        }
    }

    /// Unix time now, on the monotonic clock (as a worker's statistics keep it).
    fn now(&self) -> f64 {
        self.started_unix + self.started.elapsed().as_secs_f64()
    }
}
