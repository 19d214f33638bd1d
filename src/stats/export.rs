//! A process's statistics as data that adds up: what a worker sends its master, and what the
//! master sums its workers' into.
//!
//! An [`Export`] holds everything a [`Snapshot`] is built from, in mergeable form: the
//! counters and Prometheus histograms since start per view and method, the per-view
//! 10-second slots and the timeline intervals as sparse fine histograms (not percentiles), the
//! gauges and the requests in flight. [`Export::absorb`] sums another process's, exactly:
//! the percentiles of the merged snapshot are read from merged histograms, never averaged.
//! [`Export::update`] folds a worker's next, incremental export into what the master holds
//! of it ([`Since`]: timeline points and closed slots never change, so each is sent once).
//! Making one from the recording structures is `mod.rs`'s ([`super::Stats::export`]); keeping
//! one per worker and the totals of retired workers is `cluster.rs`'s; the bytes on the wire
//! (`serde_json`) and the control socket are the supervisor's.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::history::{self, Interval, Since, Slot, MINUTES_KEPT, SECONDS_KEPT, SLOT, SLOTS_KEPT};
use super::snapshot::{self, InFlight, MethodStats, Snapshot, View, WorkerRow};
use super::websocket::WsTotals;

/// The statistics of one process (or the sum of several), ready to merge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub pid: u32,
    /// Unix time of the export, in seconds, on the process's monotonic clock.
    pub time: f64,
    /// Unix time the process's statistics started, in seconds.
    pub started: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    pub gauges: Live,
    /// Worker-thread seconds spent holding a request, since start.
    pub busy_seconds: f64,
    /// Worker-thread seconds spent asleep in async waits, since start.
    pub asleep_seconds: f64,
    pub labels_overflowed: u64,
    /// Path-made labels evicted for a newcomer (`labels.rs`).
    #[serde(default)]
    pub labels_evicted: u64,
    #[serde(default, skip_serializing_if = "WsTotals::is_empty")]
    pub websocket: WsTotals,
    /// Sorted by label.
    pub views: Vec<ExportView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlight>,
    /// One-second intervals, oldest first (only those after [`Since::seconds`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<Interval>,
    /// One-minute intervals, oldest first (only those after [`Since::minutes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minutes: Vec<Interval>,
}

/// The gauges of a live process; a retired worker's are not added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub threads: usize,
    pub busy_threads: usize,
    pub max_threads: usize,
    pub queue_depth: usize,
    pub connections: usize,
    /// Open WebSockets.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub websockets: usize,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Live {
    fn add(&mut self, other: &Live) {
        self.threads += other.threads;
        self.busy_threads += other.busy_threads;
        self.max_threads += other.max_threads;
        self.queue_depth += other.queue_depth;
        self.connections += other.connections;
        self.websockets += other.websockets;
    }
}

/// One label's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportView {
    pub label: String,
    /// Since start, per method seen, in [`snapshot::METHODS`] order.
    pub methods: Vec<MethodStats>,
    /// Closed 10-second slots, oldest first (only those after [`Since::slots`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<Slot>,
    /// The slot being filled; none in a sum (it is among `slots` there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Slot>,
}

impl Export {
    /// What to ask this process for next: what is newer than what is held here.
    pub fn since(&self) -> Since {
        Since {
            seconds: self.seconds.last().map_or(i64::MIN, |i| i.time),
            minutes: self.minutes.last().map_or(i64::MIN, |i| i.time),
            slots: self
                .views
                .iter()
                .filter_map(|v| v.slots.last().map(|s| s.start))
                .max()
                .unwrap_or(i64::MIN),
        }
    }

    /// Add another process's statistics: counters, histograms, slots and intervals (by
    /// time), gauges and requests in flight. This process's `pid`, `time`, `started` and
    /// `rss_bytes` stay.
    pub fn absorb(&mut self, other: &Export) {
        self.gauges.add(&other.gauges);
        self.busy_seconds += other.busy_seconds;
        self.asleep_seconds += other.asleep_seconds;
        self.labels_overflowed += other.labels_overflowed;
        self.labels_evicted += other.labels_evicted;
        self.websocket.add(&other.websocket);
        for theirs in &other.views {
            let mine = self.view_mut(&theirs.label);
            for m in &theirs.methods {
                add_method(&mut mine.methods, m);
            }
            let current = mine.current.take();
            merge_by(&mut mine.slots, current.iter(), |s| s.start, Slot::add);
            let slots = theirs.slots.iter().chain(&theirs.current);
            merge_by(&mut mine.slots, slots, |s| s.start, Slot::add);
        }
        self.in_flight.extend(other.in_flight.iter().cloned());
        merge_by(
            &mut self.seconds,
            other.seconds.iter(),
            |i| i.time,
            Interval::add,
        );
        merge_by(
            &mut self.minutes,
            other.minutes.iter(),
            |i| i.time,
            Interval::add,
        );
    }

    /// Fold in the same process's next export, made with [`Export::since`] of this one: its
    /// counters, gauges and in-flight requests replace these (unless it is older: two scrapes
    /// may cross), its new intervals and closed slots are appended, and what is older than the
    /// rings keep is dropped.
    pub fn update(&mut self, next: Export) {
        let newer = next.time >= self.time;
        if newer {
            self.pid = next.pid;
            self.time = next.time;
            self.started = next.started;
            self.rss_bytes = next.rss_bytes;
            self.gauges = next.gauges;
            self.busy_seconds = next.busy_seconds;
            self.asleep_seconds = next.asleep_seconds;
            self.labels_overflowed = next.labels_overflowed;
            self.labels_evicted = next.labels_evicted;
            self.websocket = next.websocket;
            self.in_flight = next.in_flight;
            // A process sends every label it has in each export: one it no longer has was
            // evicted, its counts moved into `other` (kept here, it would be counted twice).
            self.views
                .retain(|v| next.views.iter().any(|n| n.label == v.label));
        }
        append_newer(&mut self.seconds, next.seconds, |i| i.time);
        append_newer(&mut self.minutes, next.minutes, |i| i.time);
        for theirs in next.views {
            let mine = self.view_mut(&theirs.label);
            if newer {
                mine.methods = theirs.methods;
                mine.current = theirs.current;
            }
            append_newer(&mut mine.slots, theirs.slots, |s| s.start);
            let closed = mine.slots.last().map_or(i64::MIN, |s| s.start);
            if mine.current.as_ref().is_some_and(|c| c.start <= closed) {
                mine.current = None;
            }
        }
        self.trim(self.time as i64);
    }

    /// Forget intervals and slots older than the rings of a process keep at `now`.
    pub fn trim(&mut self, now: i64) {
        trim_front(
            &mut self.seconds,
            SECONDS_KEPT,
            now - SECONDS_KEPT as i64,
            |i| i.time,
        );
        trim_front(
            &mut self.minutes,
            MINUTES_KEPT,
            now - 60 * (MINUTES_KEPT as i64 + 1),
            |i| i.time,
        );
        let oldest = now - SLOTS_KEPT as i64 * SLOT;
        for view in &mut self.views {
            trim_front(&mut view.slots, SLOTS_KEPT, oldest, |s| s.start);
            if view.current.as_ref().is_some_and(|c| c.start < oldest) {
                view.current = None;
            }
        }
    }

    /// Requests finished since start, over every view and method.
    pub fn requests(&self) -> u64 {
        self.views
            .iter()
            .flat_map(|v| &v.methods)
            .map(|m| m.processing.count)
            .sum()
    }

    /// Requests finished per second over the last `seconds` one-second intervals.
    pub fn requests_per_second(&self, seconds: usize) -> f64 {
        let n: u64 = self
            .seconds
            .iter()
            .rev()
            .take(seconds)
            .map(|i| i.requests)
            .sum();
        n as f64 / seconds.max(1) as f64
    }

    /// The snapshot these statistics make at [`Export::time`], with `workers`' rows.
    pub fn snapshot(&self, workers: Vec<WorkerRow>) -> Snapshot {
        let now = self.time as i64;
        let views = self
            .views
            .iter()
            .map(|v| {
                let w = history::windows(v.current.iter().chain(v.slots.iter().rev()), now);
                View {
                    label: v.label.clone(),
                    methods: v.methods.clone(),
                    windows: w.windows,
                    histogram: w.histogram,
                }
            })
            .collect();
        let (busy, asleep) = self
            .seconds
            .iter()
            .rev()
            .take(60)
            .fold((0.0, 0.0), |(b, a), i| (b + i.busy, a + i.asleep));
        let mut in_flight = self.in_flight.clone();
        in_flight.sort_by(|a, b| b.elapsed.total_cmp(&a.elapsed));
        let g = &self.gauges;
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            pid: self.pid,
            time: self.time,
            uptime: (self.time - self.started).max(0.0),
            rss_bytes: self.rss_bytes,
            gauges: snapshot::Gauges {
                threads: g.threads,
                busy_threads: g.busy_threads,
                max_threads: g.max_threads,
                queue_depth: g.queue_depth,
                connections: g.connections,
                websockets: g.websockets,
                in_flight: in_flight.len(),
                work_sleep_ratio: (asleep > 0.0).then(|| (busy - asleep).max(0.0) / asleep),
            },
            totals: snapshot::Totals {
                requests: self.requests(),
                busy_seconds: self.busy_seconds,
                asleep_seconds: self.asleep_seconds,
                labels_overflowed: self.labels_overflowed,
                labels_evicted: self.labels_evicted,
                other_requests: self
                    .views
                    .iter()
                    .find(|v| v.label == super::labels::OTHER)
                    .map_or(0, |v| v.methods.iter().map(|m| m.processing.count).sum()),
                websocket: self.websocket.clone(),
            },
            views,
            in_flight,
            seconds: self.seconds.iter().map(Interval::point).collect(),
            minutes: self.minutes.iter().map(Interval::point).collect(),
            workers,
            stale: None,
        }
    }

    /// The view of `label`, added in label order if there is none.
    fn view_mut(&mut self, label: &str) -> &mut ExportView {
        let at = match self.views.binary_search_by(|v| v.label.as_str().cmp(label)) {
            Ok(at) => at,
            Err(at) => {
                self.views.insert(
                    at,
                    ExportView {
                        label: label.to_owned(),
                        ..ExportView::default()
                    },
                );
                at
            }
        };
        &mut self.views[at]
    }
}

/// Add a method's statistics to the list (kept in [`snapshot::METHODS`] order).
fn add_method(methods: &mut Vec<MethodStats>, m: &MethodStats) {
    let order = |name: &str| snapshot::METHODS.iter().position(|x| *x == name);
    match methods.binary_search_by(|x| order(x.method).cmp(&order(m.method))) {
        Ok(at) => {
            let mine = &mut methods[at];
            for (a, b) in [
                (&mut mine.queue, &m.queue),
                (&mut mine.processing, &m.processing),
                (&mut mine.asleep, &m.asleep),
            ] {
                for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
                    *x += y;
                }
                a.count += b.count;
                a.sum += b.sum;
            }
            for (x, y) in mine.status.iter_mut().zip(&m.status) {
                *x += y;
            }
            for (x, y) in mine.cancelled.iter_mut().zip(&m.cancelled) {
                *x += y;
            }
            mine.bytes_in += m.bytes_in;
            mine.bytes_out += m.bytes_out;
        }
        Err(at) => methods.insert(at, m.clone()),
    }
}

/// Merge `items` (sorted by `key`) into `into` (sorted by `key`, keys unique): an item whose
/// key is there is added to it, others are inserted in order.
fn merge_by<'a, T: Clone + 'a>(
    into: &mut Vec<T>,
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> i64,
    add: impl Fn(&mut T, &T),
) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        return;
    }
    let mine = std::mem::take(into);
    let mut mine = mine.into_iter().peekable();
    loop {
        let next = match (mine.peek(), items.peek()) {
            (Some(a), Some(b)) => match key(a).cmp(&key(b)) {
                Ordering::Less => mine.next(),
                Ordering::Greater => items.next().cloned(),
                Ordering::Equal => {
                    let mut a = mine.next();
                    if let (Some(a), Some(b)) = (&mut a, items.next()) {
                        add(a, b);
                    }
                    a
                }
            },
            (Some(_), None) => mine.next(),
            (None, Some(_)) => items.next().cloned(),
            (None, None) => break,
        };
        into.extend(next);
    }
}

/// Append the items of `next` newer than the last of `into` (both sorted by `key`).
fn append_newer<T>(into: &mut Vec<T>, next: Vec<T>, key: impl Fn(&T) -> i64) {
    let last = into.last().map_or(i64::MIN, &key);
    into.extend(next.into_iter().filter(|x| key(x) > last));
}

/// Drop items older than `oldest` from the front, and keep at most `cap`.
fn trim_front<T>(ring: &mut Vec<T>, cap: usize, oldest: i64, key: impl Fn(&T) -> i64) {
    let old = ring.partition_point(|x| key(x) < oldest);
    let over = ring.len().saturating_sub(cap);
    ring.drain(..old.max(over));
}
