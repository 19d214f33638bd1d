//! One label's counters and histograms, recorded with atomics.
//!
//! Per request method: the Prometheus histograms and counters (since start). Per label: the
//! fine histograms and counts since the last tick, drained once a second by `history.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::histogram::{Counts, Fine, Prom};
use super::snapshot::{MethodStats, METHODS};
use super::Finished;
use crate::cancel::Reason;

/// The index of a method in [`METHODS`].
pub fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn cancel_index(reason: Reason) -> usize {
    match reason {
        Reason::Disconnected => 0,
        Reason::Timeout => 1,
        Reason::Shutdown => 2,
    }
}

#[derive(Default)]
struct MethodCells {
    queue: Prom,
    processing: Prom,
    asleep: Prom,
    status: [AtomicU64; 5],
    cancelled: [AtomicU64; 3],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What one tick drains from a series.
#[derive(Default, Clone)]
pub struct TickCounts {
    pub queue: Counts,
    pub processing: Counts,
    pub asleep: Counts,
    pub requests: u64,
    /// Of them, with a 4xx status.
    pub client_errors: u64,
    /// Of them, with a 5xx status.
    pub errors: u64,
    pub cancelled: u64,
}

impl TickCounts {
    pub fn add(&mut self, other: &TickCounts) {
        self.queue.add(&other.queue);
        self.processing.add(&other.processing);
        self.asleep.add(&other.asleep);
        self.requests += other.requests;
        self.client_errors += other.client_errors;
        self.errors += other.errors;
        self.cancelled += other.cancelled;
    }
}

pub struct Series {
    pub label: Arc<str>,
    methods: [MethodCells; METHODS.len()],
    queue: Fine,
    processing: Fine,
    asleep: Fine,
    requests: AtomicU64,
    client_errors: AtomicU64,
    errors: AtomicU64,
    cancelled: AtomicU64,
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Series {
    pub fn new(label: Arc<str>) -> Self {
        Self {
            label,
            methods: Default::default(),
            queue: Fine::default(),
            processing: Fine::default(),
            asleep: Fine::default(),
            requests: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
        }
    }

    pub fn record(&self, f: &Finished<'_>) {
        let cells = &self.methods[method_index(f.method)];
        let (queue, processing, asleep) = (micros(f.queue), micros(f.processing), micros(f.asleep));
        cells.queue.observe(queue);
        cells.processing.observe(processing);
        cells.asleep.observe(asleep);
        let class = usize::from(f.status / 100).clamp(1, 5) - 1;
        cells.status[class].fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = f.cancelled {
            cells.cancelled[cancel_index(reason)].fetch_add(1, Ordering::Relaxed);
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        if f.bytes_in > 0 {
            cells.bytes_in.fetch_add(f.bytes_in, Ordering::Relaxed);
        }
        cells.bytes_out.fetch_add(f.bytes_out, Ordering::Relaxed);
        self.queue.observe(queue);
        self.processing.observe(processing);
        self.asleep.observe(asleep);
        let class_count = match class {
            3 => Some(&self.client_errors),
            4 => Some(&self.errors),
            _ => None,
        };
        if let Some(n) = class_count {
            n.fetch_add(1, Ordering::Relaxed);
        }
        // Last: a tick that sees no new request skips the histograms.
        self.requests.fetch_add(1, Ordering::Release);
    }

    /// Take in everything `other` counted, since start and since the last tick: `other` is a
    /// label being evicted (`labels.rs`), and this is `other`'s series. Called under the
    /// labels' write lock, so no request is recording into `other` meanwhile.
    pub fn absorb(&self, other: &Series) {
        for (mine, theirs) in self.methods.iter().zip(&other.methods) {
            mine.queue.absorb(&theirs.queue);
            mine.processing.absorb(&theirs.processing);
            mine.asleep.absorb(&theirs.asleep);
            for (a, b) in mine.status.iter().zip(&theirs.status) {
                a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            for (a, b) in mine.cancelled.iter().zip(&theirs.cancelled) {
                a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            for (a, b) in [
                (&mine.bytes_in, &theirs.bytes_in),
                (&mine.bytes_out, &theirs.bytes_out),
            ] {
                a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        self.queue.absorb(&other.queue);
        self.processing.absorb(&other.processing);
        self.asleep.absorb(&other.asleep);
        for (a, b) in [
            (&self.client_errors, &other.client_errors),
            (&self.errors, &other.errors),
            (&self.cancelled, &other.cancelled),
        ] {
            a.fetch_add(b.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
        // Last, as in `record`: the next tick sees the histograms moved.
        self.requests
            .fetch_add(other.requests.swap(0, Ordering::Acquire), Ordering::Release);
    }

    /// Move what was recorded since the last call into `into`; false (and nothing moved) when
    /// there was nothing.
    pub fn drain_into(&self, into: &mut TickCounts) -> bool {
        let requests = self.requests.swap(0, Ordering::Acquire);
        if requests == 0 {
            return false;
        }
        into.requests += requests;
        into.client_errors += self.client_errors.swap(0, Ordering::Relaxed);
        into.errors += self.errors.swap(0, Ordering::Relaxed);
        into.cancelled += self.cancelled.swap(0, Ordering::Relaxed);
        self.queue.drain_into(&mut into.queue);
        self.processing.drain_into(&mut into.processing);
        self.asleep.drain_into(&mut into.asleep);
        true
    }

    /// The per-method statistics since start, for methods that were seen.
    pub fn methods(&self) -> Vec<MethodStats> {
        self.methods
            .iter()
            .zip(METHODS)
            .filter_map(|(cells, method)| {
                let processing = cells.processing.read();
                if processing.count == 0 {
                    return None;
                }
                Some(MethodStats {
                    method,
                    queue: cells.queue.read(),
                    processing,
                    asleep: cells.asleep.read(),
                    status: cells.status.each_ref().map(|c| c.load(Ordering::Relaxed)),
                    cancelled: cells
                        .cancelled
                        .each_ref()
                        .map(|c| c.load(Ordering::Relaxed)),
                    bytes_in: cells.bytes_in.load(Ordering::Relaxed),
                    bytes_out: cells.bytes_out.load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Series, TickCounts};
    use crate::cancel::Reason;
    use crate::stats::Finished;

    #[test]
    fn a_tick_counts_4xx_and_5xx_apart() {
        let series = Series::new(Arc::from("v"));
        for (status, cancelled) in [
            (200, None),
            (404, None),
            (499, Some(Reason::Disconnected)),
            (500, None),
            (504, Some(Reason::Timeout)),
            (302, None),
        ] {
            series.record(&Finished {
                label: "v",
                method: &http::Method::GET,
                status,
                cancelled,
                queue: Duration::ZERO,
                processing: Duration::from_millis(3),
                asleep: Duration::ZERO,
                bytes_in: 0,
                bytes_out: 10,
                from_path: false,
            });
        }
        let mut tick = TickCounts::default();
        assert!(series.drain_into(&mut tick));
        assert_eq!(
            (
                tick.requests,
                tick.client_errors,
                tick.errors,
                tick.cancelled
            ),
            (6, 2, 2, 2)
        );
        // Drained: the next tick starts from nothing.
        assert!(!series.drain_into(&mut TickCounts::default()));
        assert_eq!(series.methods()[0].status, [0, 1, 1, 2, 2]);
    }
}
