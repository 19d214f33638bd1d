//! The bounded memory of the statistics: a timeline and per-view windows, advanced once a
//! second.
//!
//! Each tick receives what every series recorded since the previous one ([`Tick`]) and
//! folds it into: an [`Interval`] per second for the last 15 minutes; one per minute for the
//! last 24 hours; and per view, 10-second [`Slot`]s of sparse fine histograms for the last
//! 15 minutes, from which the 1, 5 and 15 minute windows are read. Intervals and slots keep
//! histograms, not percentiles, so those of several worker processes add up exactly
//! (`export.rs`), and a minute's percentiles come from its merged histogram, not from
//! averaged seconds. Every ring has a fixed capacity, so memory stays bounded however long
//! the server runs. Time is passed in (Unix seconds), never read here, so the bounds are
//! tested with a simulated clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::histogram::{Counts, Sparse};
use super::series::TickCounts;
use super::snapshot::{Point, Window, WINDOWS};

/// One-second points kept: 15 minutes.
pub const SECONDS_KEPT: usize = 15 * 60;
/// One-minute points kept: 24 hours.
pub const MINUTES_KEPT: usize = 24 * 60;
/// Length of a view's window slot, in seconds: windows are this coarse at their old end.
pub const SLOT: i64 = 10;
/// Slots kept per view: 15 minutes.
pub const SLOTS_KEPT: usize = (15 * 60 / SLOT) as usize;

/// What one tick brings.
pub struct Tick {
    /// Unix time of the tick, in seconds.
    pub now: i64,
    /// What each label recorded since the previous tick (labels with nothing left out).
    pub labels: Vec<(Arc<str>, TickCounts)>,
    /// Every label there is, sorted: the rings of the others (evicted labels) are dropped.
    pub live: Vec<Arc<str>>,
    /// Worker-thread seconds spent holding a request, since start.
    pub busy_seconds: f64,
    /// Worker-thread seconds spent asleep in async waits, since start.
    pub asleep_seconds: f64,
    pub threads: usize,
    pub queue_depth: usize,
}

#[derive(Default)]
pub struct History {
    seconds: VecDeque<Interval>,
    minutes: VecDeque<Interval>,
    minute: Option<Accumulator>,
    views: HashMap<Arc<str>, ViewRing>,
    last: Option<(i64, f64, f64)>,
}

/// One second or minute of the timeline, in a form that adds up across processes: counts and
/// histograms rather than percentiles. [`Interval::point`] is what the exports show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Unix time of the interval's start, in seconds.
    pub time: i64,
    pub requests: u64,
    pub errors: u64,
    pub cancelled: u64,
    /// Average worker threads holding a request over the interval.
    pub busy: f64,
    /// Average worker threads asleep in async waits over the interval.
    pub asleep: f64,
    /// At the end of the interval.
    pub threads: usize,
    pub queue_depth: usize,
    pub processing: Sparse,
    pub queue: Sparse,
}

impl Interval {
    fn empty(time: i64, threads: usize, queue_depth: usize) -> Self {
        Self {
            time,
            threads,
            queue_depth,
            ..Self::default()
        }
    }

    /// Add another process's interval of the same time.
    pub fn add(&mut self, other: &Interval) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.cancelled += other.cancelled;
        self.busy += other.busy;
        self.asleep += other.asleep;
        self.threads += other.threads;
        self.queue_depth += other.queue_depth;
        self.processing.add(&other.processing);
        self.queue.add(&other.queue);
    }

    pub fn point(&self) -> Point {
        Point {
            time: self.time,
            requests: self.requests,
            errors: self.errors,
            cancelled: self.cancelled,
            processing: self.processing.quantiles(),
            queue_p99: self.queue.quantile(0.99),
            busy: self.busy,
            asleep: self.asleep,
            threads: self.threads,
            queue_depth: self.queue_depth,
        }
    }
}

/// The minute in progress.
struct Accumulator {
    start: i64,
    processing: Counts,
    queue: Counts,
    requests: u64,
    errors: u64,
    cancelled: u64,
    busy: f64,
    asleep: f64,
    seconds: u32,
    threads: usize,
    queue_depth: usize,
}

impl Accumulator {
    fn new(start: i64) -> Self {
        Self {
            start,
            processing: Counts::default(),
            queue: Counts::default(),
            requests: 0,
            errors: 0,
            cancelled: 0,
            busy: 0.0,
            asleep: 0.0,
            seconds: 0,
            threads: 0,
            queue_depth: 0,
        }
    }

    fn interval(&self) -> Interval {
        let seconds = f64::from(self.seconds.max(1));
        Interval {
            time: self.start,
            requests: self.requests,
            errors: self.errors,
            cancelled: self.cancelled,
            busy: self.busy / seconds,
            asleep: self.asleep / seconds,
            threads: self.threads,
            queue_depth: self.queue_depth,
            processing: self.processing.sparse(),
            queue: self.queue.sparse(),
        }
    }
}

/// One view's last 15 minutes.
#[derive(Default)]
struct ViewRing {
    slots: VecDeque<Slot>,
    current: Option<(i64, TickCounts)>,
}

/// Ten seconds of one view: what its windows are read from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Unix time of the slot's start, a multiple of [`SLOT`].
    pub start: i64,
    pub queue: Sparse,
    pub processing: Sparse,
    pub asleep: Sparse,
    pub requests: u64,
    /// 4xx responses. (Defaulted: a worker started from an older install sends none.)
    #[serde(default)]
    pub client_errors: u64,
    /// 5xx responses.
    pub errors: u64,
    pub cancelled: u64,
}

impl Slot {
    fn new(start: i64, counts: &TickCounts) -> Self {
        Self {
            start,
            queue: counts.queue.sparse(),
            processing: counts.processing.sparse(),
            asleep: counts.asleep.sparse(),
            requests: counts.requests,
            client_errors: counts.client_errors,
            errors: counts.errors,
            cancelled: counts.cancelled,
        }
    }

    /// Add another process's slot of the same start.
    pub fn add(&mut self, other: &Slot) {
        self.queue.add(&other.queue);
        self.processing.add(&other.processing);
        self.asleep.add(&other.asleep);
        self.requests += other.requests;
        self.client_errors += other.client_errors;
        self.errors += other.errors;
        self.cancelled += other.cancelled;
    }
}

/// A view's windows and its processing-time distribution over 15 minutes.
pub struct ViewWindows {
    pub windows: [Window; 3],
    pub histogram: Vec<(f64, u64)>,
}

/// The windows ending at `now` of a view's slots, given newest first.
pub fn windows<'a>(newest_first: impl Iterator<Item = &'a Slot>, now: i64) -> ViewWindows {
    let mut acc = Slot::default();
    let mut windows = [Window::default(); 3];
    let mut slots = newest_first.peekable();
    for (window, minutes) in windows.iter_mut().zip(WINDOWS) {
        let since = now - i64::from(minutes) * 60;
        while let Some(slot) = slots.next_if(|s| s.start + SLOT > since) {
            acc.add(slot);
        }
        *window = Window {
            minutes,
            requests: acc.requests,
            client_errors: acc.client_errors,
            errors: acc.errors,
            cancelled: acc.cancelled,
            queue: acc.queue.quantiles(),
            processing: acc.processing.quantiles(),
            asleep: acc.asleep.quantiles(),
        };
    }
    ViewWindows {
        windows,
        histogram: acc.processing.bins_in_seconds(),
    }
}

/// Where an export starts: it carries only the timeline points and closed slots newer than
/// these (points and closed slots never change once made, so the master asks each worker
/// only for what it has not seen). [`Since::ALL`] asks for everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    /// The newest one-second point already held.
    pub seconds: i64,
    /// The newest one-minute point already held.
    pub minutes: i64,
    /// The start of the newest closed slot already held (slots close in order of start,
    /// across every view).
    pub slots: i64,
}

impl Since {
    pub const ALL: Since = Since {
        seconds: i64::MIN,
        minutes: i64::MIN,
        slots: i64::MIN,
    };
}

impl Default for Since {
    fn default() -> Self {
        Self::ALL
    }
}

impl History {
    pub fn tick(&mut self, tick: Tick) {
        let Tick {
            now,
            labels,
            live,
            busy_seconds,
            asleep_seconds,
            threads,
            queue_depth,
        } = tick;
        // The first tick comes a second after start: what the threads did before it is that
        // second's.
        let (last, last_busy, last_asleep) = self.last.unwrap_or((now - 1, 0.0, 0.0));
        self.last = Some((now, busy_seconds, asleep_seconds));
        // A clock stepped back: count this tick as one second.
        let elapsed = (now - last).max(1);
        // Seconds the server did not tick (a stalled runtime, a suspended machine) get
        // empty points, at most a ring's worth.
        for missed in (now - elapsed..now - 1).skip((elapsed as usize).saturating_sub(SECONDS_KEPT))
        {
            self.push_second(Interval::empty(missed, threads, queue_depth));
        }
        let mut all = TickCounts::default();
        for (label, counts) in labels {
            all.add(&counts);
            self.views.entry(label).or_default().add(now, &counts);
        }
        let interval = elapsed as f64;
        self.push_second(Interval {
            time: now - 1,
            requests: all.requests,
            errors: all.errors,
            cancelled: all.cancelled,
            busy: (busy_seconds - last_busy).max(0.0) / interval,
            asleep: (asleep_seconds - last_asleep).max(0.0) / interval,
            threads,
            queue_depth,
            processing: all.processing.sparse(),
            queue: all.queue.sparse(),
        });
        // An evicted label's ring goes with it (`labels.rs`): the rings are as many as the
        // labels, however many a scanner's paths have churned through.
        self.views
            .retain(|label, _| live.binary_search(label).is_ok());
        for ring in self.views.values_mut() {
            ring.roll(now);
        }
    }

    fn push_second(&mut self, second: Interval) {
        let start = second.time - second.time.rem_euclid(60);
        match &self.minute {
            Some(acc) if acc.start == start => {}
            _ => {
                if let Some(done) = self.minute.take() {
                    let done_start = done.start;
                    push_bounded(&mut self.minutes, done.interval(), MINUTES_KEPT);
                    // Minutes with no tick at all (the server stalled) get empty points, the
                    // last day's worth at most.
                    let first = (done_start + 60).max(start - 60 * MINUTES_KEPT as i64);
                    for missed in (first..start).step_by(60) {
                        push_bounded(
                            &mut self.minutes,
                            Interval::empty(missed, 0, 0),
                            MINUTES_KEPT,
                        );
                    }
                }
                self.minute = Some(Accumulator::new(start));
            }
        }
        if let Some(acc) = &mut self.minute {
            acc.requests += second.requests;
            acc.errors += second.errors;
            acc.cancelled += second.cancelled;
            acc.busy += second.busy;
            acc.asleep += second.asleep;
            acc.seconds += 1;
            acc.threads = second.threads;
            acc.queue_depth = second.queue_depth;
            acc.processing.add_sparse(&second.processing);
            acc.queue.add_sparse(&second.queue);
        }
        push_bounded(&mut self.seconds, second, SECONDS_KEPT);
    }

    /// The one-second intervals newer than `after`, oldest first.
    pub fn seconds(&self, after: i64) -> Vec<Interval> {
        newer(&self.seconds, after)
    }

    /// The one-minute intervals newer than `after`, oldest first (the minute in progress is
    /// not included).
    pub fn minutes(&self, after: i64) -> Vec<Interval> {
        newer(&self.minutes, after)
    }

    /// Requests finished over the last `seconds` one-second points, and how many points
    /// there were (fewer just after start).
    pub fn recent_requests(&self, seconds: usize) -> (u64, usize) {
        self.seconds
            .iter()
            .rev()
            .take(seconds)
            .fold((0, 0), |(r, n), p| (r + p.requests, n + 1))
    }

    /// A view's closed slots that started after `after`, oldest first, and the slot being
    /// filled.
    pub fn slots(&self, label: &str, after: i64) -> (Vec<Slot>, Option<Slot>) {
        let Some(ring) = self.views.get(label) else {
            return (Vec::new(), None);
        };
        let skip = ring.slots.partition_point(|s| s.start <= after);
        let closed = ring.slots.range(skip..).cloned().collect();
        let current = ring
            .current
            .as_ref()
            .map(|(start, counts)| Slot::new(*start, counts));
        (closed, current)
    }

    #[cfg(test)]
    /// A view's windows as of `now`; `None` for a label never seen.
    pub fn windows(&self, label: &str, now: i64) -> Option<ViewWindows> {
        let ring = self.views.get(label)?;
        let current = ring.current.as_ref().map(|(s, c)| Slot::new(*s, c));
        Some(windows(current.iter().chain(ring.slots.iter().rev()), now))
    }

    #[cfg(test)]
    /// Bytes held by the rings, for the memory bound (an estimate: capacities, not the
    /// allocator's real footprint).
    pub fn heap_bytes(&self) -> usize {
        let interval = |i: &Interval| i.processing.heap_bytes() + i.queue.heap_bytes();
        let views: usize = self
            .views
            .values()
            .map(|ring| {
                ring.slots.capacity() * std::mem::size_of::<Slot>()
                    + ring
                        .slots
                        .iter()
                        .map(|s| {
                            s.queue.heap_bytes() + s.processing.heap_bytes() + s.asleep.heap_bytes()
                        })
                        .sum::<usize>()
                    + ring
                        .current
                        .as_ref()
                        .map_or(0, |_| std::mem::size_of::<TickCounts>())
            })
            .sum();
        (self.seconds.capacity() + self.minutes.capacity()) * std::mem::size_of::<Interval>()
            + self
                .seconds
                .iter()
                .chain(&self.minutes)
                .map(interval)
                .sum::<usize>()
            + views
    }
}

fn newer(ring: &VecDeque<Interval>, after: i64) -> Vec<Interval> {
    let skip = ring.partition_point(|i| i.time <= after);
    ring.range(skip..).cloned().collect()
}

impl ViewRing {
    fn add(&mut self, now: i64, counts: &TickCounts) {
        let start = now - now.rem_euclid(SLOT);
        match &mut self.current {
            Some((s, current)) if *s == start => current.add(counts),
            _ => {
                self.roll(now);
                self.current = Some((start, counts.clone()));
            }
        }
    }

    /// Close the current slot if `now` is past it, and forget slots older than 15 minutes.
    fn roll(&mut self, now: i64) {
        let start = now - now.rem_euclid(SLOT);
        if self.current.as_ref().is_some_and(|(s, _)| *s != start) {
            if let Some((s, counts)) = self.current.take() {
                push_bounded(&mut self.slots, Slot::new(s, &counts), SLOTS_KEPT);
            }
        }
        let oldest = now - SLOTS_KEPT as i64 * SLOT;
        while self.slots.front().is_some_and(|s| s.start < oldest) {
            self.slots.pop_front();
        }
    }
}

fn push_bounded<T>(ring: &mut VecDeque<T>, item: T, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram::fine_bin;

    fn counts(ms: u64, n: u64) -> TickCounts {
        let mut c = TickCounts::default();
        c.processing.bins[fine_bin(ms * 1000)] = n;
        c.processing.max_us = ms * 1000;
        c.queue.bins[0] = n;
        c.asleep.bins[0] = n;
        c.requests = n;
        c
    }

    fn tick(history: &mut History, now: i64, labels: Vec<(Arc<str>, TickCounts)>) {
        let mut live: Vec<Arc<str>> = history.views.keys().cloned().collect();
        live.extend(labels.iter().map(|(l, _)| Arc::clone(l)));
        live.sort();
        live.dedup();
        history.tick(Tick {
            now,
            labels,
            live,
            busy_seconds: now as f64 * 0.5,
            asleep_seconds: now as f64 * 0.25,
            threads: 4,
            queue_depth: 0,
        });
    }

    #[test]
    fn an_evicted_labels_ring_goes_with_it() {
        let mut history = History::default();
        let (kept, evicted): (Arc<str>, Arc<str>) = (Arc::from("/kept"), Arc::from("/gone"));
        let mut at = |now: i64, labels: Vec<(Arc<str>, TickCounts)>, live: &[&Arc<str>]| {
            history.tick(Tick {
                now,
                labels,
                live: live.iter().map(|l| Arc::clone(l)).collect(),
                busy_seconds: 0.0,
                asleep_seconds: 0.0,
                threads: 1,
                queue_depth: 0,
            });
        };
        let both = vec![
            (Arc::clone(&evicted), counts(5, 1)),
            (Arc::clone(&kept), counts(5, 1)),
        ];
        at(1_800_000_001, both, &[&evicted, &kept]);
        at(1_800_000_002, Vec::new(), &[&kept]);
        assert!(history.windows("/kept", 1_800_000_002).is_some());
        assert!(history.windows("/gone", 1_800_000_002).is_none());
        // The second's point still counts both.
        assert_eq!(history.recent_requests(5).0, 2);
    }

    #[test]
    fn memory_stays_bounded_past_a_simulated_day() {
        let mut history = History::default();
        let labels: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("view{i}"))).collect();
        let start = 1_800_000_000;
        let mut after_one_day = 0;
        // Every ring is full after 24 hours; six more must not grow anything.
        for s in 0..30 * 3600 {
            let now = start + s;
            let batch = labels
                .iter()
                // Latencies spread over many bins, so sparse slots are not trivially small.
                .map(|l| (Arc::clone(l), counts(1 + (s as u64 * 7) % 900, 3)))
                .collect();
            tick(&mut history, now, batch);
            if s == 24 * 3600 {
                after_one_day = history.heap_bytes();
            }
        }
        assert_eq!(history.seconds.len(), SECONDS_KEPT);
        assert_eq!(history.minutes.len(), MINUTES_KEPT);
        assert!(history.views.values().all(|r| r.slots.len() <= SLOTS_KEPT));
        let end = history.heap_bytes();
        assert!(
            end <= after_one_day + after_one_day / 10,
            "{after_one_day} → {end}"
        );
        // 8 views with 15 minutes of slots, and 2,340 points: well under 2 MB.
        assert!(end < 2 << 20, "{end}");
    }

    #[test]
    fn windows_cover_their_minutes() {
        let mut history = History::default();
        let view: Arc<str> = Arc::from("v");
        let start = 1_800_000_000;
        // 10 minutes of 100 ms requests, then 2 minutes of 10 ms ones, one per second.
        for s in 0..720 {
            let ms = if s < 600 { 100 } else { 10 };
            tick(
                &mut history,
                start + s,
                vec![(Arc::clone(&view), counts(ms, 1))],
            );
        }
        let w = history.windows("v", start + 720).unwrap().windows;
        assert!((w[0].processing.p50 - 0.010).abs() < 0.001, "{:?}", w[0]);
        assert!(
            w[0].requests >= 60 && w[0].requests <= 70,
            "{}",
            w[0].requests
        );
        // 5 minutes: 120 s of 10 ms requests, 180 s (and a slot) of 100 ms ones.
        assert!(
            w[1].requests >= 300 && w[1].requests <= 310,
            "{}",
            w[1].requests
        );
        assert!((w[1].processing.p50 - 0.1).abs() < 0.01, "{:?}", w[1]);
        assert!(w[2].requests >= 720 - 10);
        assert!((w[2].processing.p50 - 0.1).abs() < 0.01, "{:?}", w[2]);
        assert!(history.windows("nothing", start + 720).is_none());
    }

    #[test]
    fn windows_count_4xx_and_5xx_apart() {
        let mut history = History::default();
        let view: Arc<str> = Arc::from("v");
        let start = 1_800_000_000;
        let mut c = counts(10, 5);
        c.client_errors = 2;
        c.errors = 1;
        // One tick 3 minutes ago, one now: both in the 5-minute window, one in the 1-minute.
        tick(&mut history, start, vec![(Arc::clone(&view), c.clone())]);
        tick(&mut history, start + 180, vec![(Arc::clone(&view), c)]);
        let w = history.windows("v", start + 181).unwrap().windows;
        let counted = |w: &Window| (w.requests, w.client_errors, w.errors);
        assert_eq!(counted(&w[0]), (5, 2, 1));
        assert_eq!(counted(&w[1]), (10, 4, 2));
    }

    #[test]
    fn a_slot_from_an_older_worker_has_no_4xx() {
        let slot: Slot = serde_json::from_str(
            r#"{"start":10,"queue":{},"processing":{},"asleep":{},"requests":3,"errors":1,"cancelled":0}"#,
        )
        .unwrap();
        assert_eq!((slot.requests, slot.client_errors, slot.errors), (3, 0, 1));
    }

    #[test]
    fn points_per_second_and_minute() {
        let mut history = History::default();
        let start = 1_800_000_000; // a whole minute
        for s in 0..125 {
            tick(
                &mut history,
                start + s,
                vec![(Arc::from("v"), counts(20, 2))],
            );
        }
        let last = history.seconds(i64::MIN).last().unwrap().point();
        assert_eq!((last.requests, last.threads), (2, 4));
        assert!((last.busy - 0.5).abs() < 1e-9 && (last.asleep - 0.25).abs() < 1e-9);
        // The first tick's point belongs to the minute before `start`; the minute from
        // `start + 120` is still in progress.
        let minutes: Vec<Point> = history
            .minutes(i64::MIN)
            .iter()
            .map(Interval::point)
            .collect();
        assert_eq!(minutes.len(), 3);
        assert_eq!(minutes[2].time, start + 60);
        assert_eq!(minutes[2].requests, 120);
        assert!((minutes[2].processing.p50 - 0.02).abs() < 0.002);
        // A stall of 100 s leaves empty points, not a hole.
        tick(&mut history, start + 225, vec![]);
        let seconds = history.seconds(i64::MIN);
        assert_eq!(seconds.len(), 226);
        assert!(seconds.windows(2).all(|p| p[1].time == p[0].time + 1));
        // An hour's stall: the minutes stay in order, one a minute.
        tick(&mut history, start + 225 + 3600, vec![]);
        tick(&mut history, start + 225 + 3660, vec![]);
        let minutes = history.minutes(i64::MIN);
        assert!(
            minutes.windows(2).all(|p| p[1].time == p[0].time + 60),
            "{minutes:?}"
        );
    }

    #[test]
    fn recent_requests_count_the_last_seconds() {
        let mut history = History::default();
        assert_eq!(history.recent_requests(10), (0, 0));
        let label: Arc<str> = Arc::from("v");
        for now in 1000..1020 {
            tick(&mut history, now, vec![(Arc::clone(&label), counts(5, 3))]);
        }
        assert_eq!(history.recent_requests(10), (30, 10));
        assert_eq!(history.recent_requests(100), (60, 20));
    }
}
