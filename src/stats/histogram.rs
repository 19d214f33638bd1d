//! Latency histograms: the fixed Prometheus buckets, and a fine log-linear one for
//! percentiles.
//!
//! Both record microseconds with relaxed atomic adds, so recording from any thread takes no
//! lock. [`Prom`] counts per bucket of [`PROM_BUCKETS`] for `/metrics`. [`Fine`] has eight
//! linear sub-buckets per power of two (`HdrHistogram`'s layout with three significant bits),
//! so a percentile read from it is within 1/16 of the true value; it is drained once a second
//! into [`Counts`], the plain form the history rings keep and merge.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::snapshot::{self, Quantiles, PROM_BUCKETS};

/// Bins of a fine histogram: values below 8 µs get one bin each, then eight per power of two
/// up to 2^30 µs (about 18 minutes); anything longer lands in the last bin (the exact maximum
/// is kept apart).
pub const FINE_BINS: usize = 224;

/// The bin of a value in microseconds.
pub fn fine_bin(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // ≥ 3
    let sub = ((us >> (exp - 3)) & 7) as usize;
    ((exp - 3) * 8 + sub + 8).min(FINE_BINS - 1)
}

/// The values a bin holds: `[low, high)` in microseconds.
pub fn fine_range(bin: usize) -> (u64, u64) {
    if bin < 8 {
        return (bin as u64, bin as u64 + 1);
    }
    let exp = (bin - 8) / 8 + 3;
    let sub = ((bin - 8) % 8) as u64;
    ((8 + sub) << (exp - 3), (9 + sub) << (exp - 3))
}

/// The Prometheus bucket of a value in microseconds (16: above the last bound).
fn prom_bucket(us: u64) -> usize {
    const BOUNDS_US: [u64; 16] = {
        let mut out = [0; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (PROM_BUCKETS[i] * 1e6) as u64;
            i += 1;
        }
        out
    };
    BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(16)
}

/// A histogram over [`PROM_BUCKETS`], since start.
#[derive(Default)]
pub struct Prom {
    buckets: [AtomicU64; 17],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Prom {
    pub fn observe(&self, us: u64) {
        self.buckets[prom_bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn read(&self) -> snapshot::Histogram {
        let mut out = snapshot::Histogram::default();
        for (slot, b) in out.buckets.iter_mut().zip(&self.buckets) {
            *slot = b.load(Ordering::Relaxed);
        }
        // Read after the buckets: a concurrent observation then shows in the buckets no later
        // than in the count, and `+Inf` never exceeds `_count` by much in either direction.
        out.count = self.count.load(Ordering::Relaxed);
        out.sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        out
    }

    /// Add what `other` counted (a label evicted into `other`; nothing records into it
    /// meanwhile).
    pub fn absorb(&self, other: &Prom) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.count
            .fetch_add(other.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.sum_us
            .fetch_add(other.sum_us.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A fine histogram being recorded into; drained once a second.
pub struct Fine {
    bins: Box<[AtomicU32; FINE_BINS]>,
    max_us: AtomicU64,
}

impl Default for Fine {
    fn default() -> Self {
        Self {
            bins: Box::new(std::array::from_fn(|_| AtomicU32::new(0))),
            max_us: AtomicU64::new(0),
        }
    }
}

impl Fine {
    pub fn observe(&self, us: u64) {
        self.bins[fine_bin(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Move what was recorded since the last drain into `into`.
    pub fn drain_into(&self, into: &mut Counts) {
        for (bin, cell) in self.bins.iter().enumerate() {
            // A load first: most bins are empty, and a swap would dirty their cache lines.
            if cell.load(Ordering::Relaxed) != 0 {
                into.bins[bin] += u64::from(cell.swap(0, Ordering::Relaxed));
            }
        }
        into.max_us = into.max_us.max(self.max_us.swap(0, Ordering::Relaxed));
    }

    /// Move what `other` recorded since its last drain into this one: each observation is
    /// drained once, here or by a tick that reads `other` at the same moment.
    pub fn absorb(&self, other: &Fine) {
        for (mine, theirs) in self.bins.iter().zip(other.bins.iter()) {
            if theirs.load(Ordering::Relaxed) != 0 {
                mine.fetch_add(theirs.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        self.max_us
            .fetch_max(other.max_us.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A fine histogram as plain counts, merged and read by the history.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Counts {
    pub bins: [u64; FINE_BINS],
    pub max_us: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            bins: [0; FINE_BINS],
            max_us: 0,
        }
    }
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn add_sparse(&mut self, other: &Sparse) {
        for &(bin, n) in &other.bins {
            self.bins[usize::from(bin)] += u64::from(n);
        }
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The non-empty bins, for keeping in a ring.
    pub fn sparse(&self) -> Sparse {
        Sparse {
            bins: self
                .bins
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(bin, &n)| (bin as u8, u32::try_from(n).unwrap_or(u32::MAX)))
                .collect(),
            max_us: self.max_us,
        }
    }
}

/// The value below which a fraction `q` of the observations in `bins` (bin, count) fall, in
/// seconds: the bin holding that rank, interpolated linearly inside it, and never above the
/// maximum seen. `bins` is called twice (a total, then the walk), lowest bin first.
fn quantile<I: Iterator<Item = (usize, u64)>>(bins: impl Fn() -> I, max_us: u64, q: f64) -> f64 {
    let total: u64 = bins().map(|(_, n)| n).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut below = 0u64;
    for (bin, n) in bins() {
        if n == 0 {
            continue;
        }
        if (below + n) as f64 >= rank {
            let (low, high) = fine_range(bin);
            let within = (rank - below as f64) / n as f64;
            let us = low as f64 + within * (high - low) as f64;
            return us.min(max_us as f64) / 1e6;
        }
        below += n;
    }
    max_us as f64 / 1e6
}

fn quantiles<I: Iterator<Item = (usize, u64)>>(bins: impl Fn() -> I, max_us: u64) -> Quantiles {
    Quantiles {
        p50: quantile(&bins, max_us, 0.5),
        p90: quantile(&bins, max_us, 0.9),
        p99: quantile(&bins, max_us, 0.99),
        max: max_us as f64 / 1e6,
    }
}

/// A fine histogram's non-empty bins, lowest first; what a history slot and a timeline point
/// keep (most views' latencies cluster in a few bins), and what an export carries to the
/// master (serialized as `[[bin, count], …]`).
#[derive(Clone, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sparse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    bins: Vec<(u8, u32)>,
    #[serde(default, skip_serializing_if = "is_zero")]
    max_us: u64,
}

// serde's `skip_serializing_if` takes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Sparse {
    pub fn total(&self) -> u64 {
        self.bins.iter().map(|&(_, n)| u64::from(n)).sum()
    }

    fn pairs(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.bins
            .iter()
            .map(|&(bin, n)| (usize::from(bin), u64::from(n)))
    }

    pub fn quantile(&self, q: f64) -> f64 {
        quantile(|| self.pairs(), self.max_us, q)
    }

    pub fn quantiles(&self) -> Quantiles {
        quantiles(|| self.pairs(), self.max_us)
    }

    /// Add `other`'s counts (a merge of two sorted lists; counts saturate).
    pub fn add(&mut self, other: &Sparse) {
        self.max_us = self.max_us.max(other.max_us);
        if other.bins.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (
            self.bins.iter().copied().peekable(),
            other.bins.iter().copied().peekable(),
        );
        loop {
            let next = match (a.peek().copied(), b.peek().copied()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    a.next();
                    b.next();
                    (x.0, x.1.saturating_add(y.1))
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (_, Some(y)) => {
                    b.next();
                    y
                }
                (Some(x), None) => {
                    a.next();
                    x
                }
                (None, None) => break,
            };
            out.push(next);
        }
        self.bins = out;
    }

    /// (upper bound in seconds, count) of every non-empty bin.
    pub fn bins_in_seconds(&self) -> Vec<(f64, u64)> {
        self.pairs()
            .map(|(bin, n)| (fine_range(bin).1 as f64 / 1e6, n))
            .collect()
    }

    #[cfg(test)]
    /// Heap bytes held, for the memory bound.
    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<(u8, u32)>()
    }
}

// `u8` bins: the layout must fit.
const _: () = assert!(FINE_BINS <= 256);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_contiguous_and_cover_their_values() {
        let mut expected_low = 0;
        for bin in 0..FINE_BINS {
            let (low, high) = fine_range(bin);
            assert_eq!(low, expected_low, "bin {bin}");
            assert!(high > low);
            assert_eq!(fine_bin(low), bin);
            assert_eq!(fine_bin(high - 1), bin);
            expected_low = high;
        }
        assert_eq!(fine_bin(u64::MAX), FINE_BINS - 1);
    }

    #[test]
    fn prometheus_buckets_are_inclusive_upper_bounds() {
        for (us, bucket) in [
            (0, 0),
            (500, 0),
            (501, 1),
            (1000, 1),
            (50_000, 6),
            (50_001, 7),
        ] {
            assert_eq!(prom_bucket(us), bucket, "{us} µs");
        }
        assert_eq!(prom_bucket(60_000_001), 16);
        let h = Prom::default();
        h.observe(50_000);
        h.observe(120_000_000);
        let read = h.read();
        assert_eq!((read.buckets[6], read.buckets[16], read.count), (1, 1, 2));
        assert!((read.sum - 120.05).abs() < 1e-9);
    }

    #[test]
    fn quantiles_are_within_a_sixteenth() {
        let fine = Fine::default();
        // 1..=1000 ms, one each.
        for ms in 1..=1000u64 {
            fine.observe(ms * 1000);
        }
        let mut counts = Counts::default();
        fine.drain_into(&mut counts);
        let counts = counts.sparse();
        for (q, want) in [(0.5, 0.5), (0.9, 0.9), (0.99, 0.99)] {
            let got = counts.quantile(q);
            assert!((got - want).abs() / want < 1.0 / 16.0, "q{q}: {got}");
        }
        assert!((counts.quantiles().max - 1.0).abs() < 1e-9);
        // Drained: the atomic side is empty again.
        let mut again = Counts::default();
        fine.drain_into(&mut again);
        assert_eq!(again.sparse().total(), 0);
    }

    #[test]
    fn a_single_value_reads_back_as_itself() {
        let mut counts = Counts::default();
        counts.bins[fine_bin(50_000)] = 20;
        counts.max_us = 50_400;
        let q = counts.sparse().quantiles();
        assert!(q.p50 > 0.0466 && q.p50 <= 0.0504, "{q:?}");
        assert!(q.p99 <= 0.0504);
        let mut merged = Counts::default();
        merged.add_sparse(&counts.sparse());
        assert_eq!(merged, counts);
        assert!(Sparse::default().quantiles().p99.abs() < f64::EPSILON);
        // Sparse sums: disjoint and shared bins, and the larger maximum.
        let mut a = Counts::default();
        a.bins[3] = 2;
        a.bins[40] = 1;
        a.max_us = 10;
        let mut b = Counts::default();
        b.bins[40] = 5;
        b.bins[41] = 1;
        b.bins[0] = 7;
        b.max_us = 99;
        let mut sum = a.sparse();
        sum.add(&b.sparse());
        a.add(&b);
        assert_eq!(sum, a.sparse());
    }
}
