//! The bounded in-memory cache of static resources, so a hot file costs no system call.
//!
//! Keyed by mount and decoded relative path. An entry holds a [`Resource`]: metadata,
//! validators and, for files up to 64 KiB, the bytes. It is trusted for [`REVALIDATE_MS`];
//! after that the next request for it checks the files again (`mod.rs`), reading them only
//! if they changed. The total is bounded by [`BUDGET`]; past it the least recently served
//! entries go, down to three quarters of the budget, so evictions come in batches rather
//! than on every insert.
//!
//! Paths found missing are remembered apart, for [`REVALIDATE_MS`] too, so a burst of
//! requests for a file that is not there costs one look-up per second rather than one per
//! request. They are bounded by [`MISSING_BUDGET`] on their own, so a flood of 404s for
//! made-up names can neither fill memory nor push real files out of the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::resource::Resource;

/// How long a cached entry is trusted without looking at the disk: a changed file is
/// served stale for up to a second, the price of not making a system call per request.
pub const REVALIDATE_MS: u64 = 1000;

/// Bytes of file contents and bookkeeping kept at most (32 MiB: the static files of a large
/// site's pages, compressed variants included, at a cost any server can spare per process).
pub const BUDGET: usize = 32 << 20;

/// Bytes of missing paths (plus [`MISSING_OVERHEAD`] each) remembered at most: 1 MiB, some
/// ten thousand typical paths, far more than a site's broken links within a second.
pub const MISSING_BUDGET: usize = 1 << 20;

/// A rough allowance for a missing path's map slot and allocation.
const MISSING_OVERHEAD: usize = 64;

pub struct Cache {
    inner: Mutex<Inner>,
    epoch: Instant,
    budget: usize,
    missing_budget: usize,
}

struct Inner {
    /// One map per mount.
    maps: Vec<HashMap<Box<[u8]>, Arc<Resource>>>,
    cost: usize,
    /// Paths found missing, per mount, with when they were last looked for.
    missing: Vec<HashMap<Box<[u8]>, u64>>,
    missing_cost: usize,
}

impl Cache {
    pub fn new(mounts: usize) -> Self {
        Self::with_budgets(mounts, BUDGET, MISSING_BUDGET)
    }

    fn with_budgets(mounts: usize, budget: usize, missing_budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                maps: (0..mounts).map(|_| HashMap::new()).collect(),
                cost: 0,
                missing: (0..mounts).map(|_| HashMap::new()).collect(),
                missing_cost: 0,
            }),
            epoch: Instant::now(),
            budget,
            missing_budget,
        }
    }

    /// Milliseconds since the cache was made: the clock of `checked` and `used`.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: at worst `cost` is off until entries are replaced.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, mount: usize, key: &[u8]) -> Option<Arc<Resource>> {
        self.lock().maps[mount].get(key).cloned()
    }

    /// Insert or replace; evicts the least recently served entries when over budget. A
    /// resource larger than the whole budget is not kept.
    pub fn put(&self, mount: usize, key: &[u8], res: Arc<Resource>) {
        let cost = res.cost();
        if cost > self.budget {
            self.remove(mount, key);
            return;
        }
        let mut inner = self.lock();
        inner.forget_missing(mount, key);
        inner.cost += cost;
        if let Some(old) = inner.maps[mount].insert(key.into(), res) {
            inner.cost -= old.cost();
        }
        if inner.cost > self.budget {
            inner.evict(self.budget / 4 * 3);
        }
    }

    /// Forget `key`, whether it was found or missing.
    pub fn remove(&self, mount: usize, key: &[u8]) {
        let mut inner = self.lock();
        inner.forget(mount, key);
        inner.forget_missing(mount, key);
    }

    /// Is `key` known to be missing at `now`? True while its last look-up is fresh. Once it is
    /// stale the first caller gets false and is to look again (and report what it found);
    /// meanwhile the others still get true, as a stale resource is still served while one
    /// request revalidates it.
    pub fn known_missing(&self, mount: usize, key: &[u8], now: u64) -> bool {
        let mut inner = self.lock();
        match inner.missing[mount].get_mut(key) {
            Some(checked) if now.saturating_sub(*checked) < REVALIDATE_MS => true,
            Some(checked) => {
                *checked = now;
                false
            }
            None => false,
        }
    }

    /// Remember that `key` was missing at `now` (and forget what it was before).
    pub fn put_missing(&self, mount: usize, key: &[u8], now: u64) {
        let mut inner = self.lock();
        inner.forget(mount, key);
        if let Some(checked) = inner.missing[mount].get_mut(key) {
            *checked = now;
            return;
        }
        let cost = key.len() + MISSING_OVERHEAD;
        if inner.missing_cost + cost > self.missing_budget {
            // Each entry is trusted for a second only, so dropping them all costs at most one
            // more look-up each; done once per budget's worth of inserts, it is cheap.
            for map in &mut inner.missing {
                map.clear();
            }
            inner.missing_cost = 0;
            if cost > self.missing_budget {
                return;
            }
        }
        inner.missing[mount].insert(key.into(), now);
        inner.missing_cost += cost;
    }

    #[cfg(test)]
    fn cost(&self) -> usize {
        self.lock().cost
    }

    #[cfg(test)]
    fn missing_cost(&self) -> usize {
        self.lock().missing_cost
    }
}

impl Inner {
    fn forget(&mut self, mount: usize, key: &[u8]) {
        if let Some(old) = self.maps[mount].remove(key) {
            self.cost -= old.cost();
        }
    }

    fn forget_missing(&mut self, mount: usize, key: &[u8]) {
        if let Some((k, _)) = self.missing[mount].remove_entry(key) {
            self.missing_cost -= k.len() + MISSING_OVERHEAD;
        }
    }

    /// Drop the least recently served entries until the total is at most `target`.
    fn evict(&mut self, target: usize) {
        let mut all: Vec<(u64, usize, Box<[u8]>)> = self
            .maps
            .iter()
            .enumerate()
            .flat_map(|(m, map)| map.iter().map(move |(k, r)| (r.used(), m, k.clone())))
            .collect();
        all.sort_unstable_by_key(|(used, ..)| *used);
        for (_, m, k) in all {
            if self.cost <= target {
                break;
            }
            if let Some(old) = self.maps[m].remove(&k) {
                self.cost -= old.cost();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::resolve::{relative, Root};
    use super::super::resource::{load, Loaded, Policy};
    use super::*;

    fn resource(dir: &std::path::Path, name: &str, size: usize, now: u64) -> Arc<Resource> {
        std::fs::write(dir.join(name), vec![b'x'; size]).unwrap();
        let roots = [Root {
            dir: std::fs::canonicalize(dir).unwrap(),
            prefix: Vec::new(),
        }];
        let policy = Policy {
            index: false,
            cache_control: http::HeaderValue::from_static("public, max-age=1"),
            hashed_immutable: true,
            sandbox: false,
        };
        match load(&roots, &relative(name).unwrap(), &policy, None, now).unwrap() {
            Loaded::Resource(r) => Arc::new(r),
            _ => panic!("{name} not loaded"),
        }
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::with_budgets(1, 12_000, MISSING_BUDGET);
        for i in 0..4u64 {
            let name = format!("f{i}");
            cache.put(0, name.as_bytes(), resource(dir.path(), &name, 2000, i));
        }
        // Touch f0 so it is the most recent, then overflow.
        cache.get(0, b"f0").unwrap().touch(100);
        cache.put(0, b"f4", resource(dir.path(), "f4", 2000, 101));
        assert!(cache.cost() <= 9_000, "{}", cache.cost());
        assert!(cache.get(0, b"f0").is_some());
        assert!(cache.get(0, b"f4").is_some());
        assert!(cache.get(0, b"f1").is_none());
    }

    #[test]
    fn replacing_and_removing_keep_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::with_budgets(2, 1 << 20, MISSING_BUDGET);
        let a = resource(dir.path(), "a", 100, 0);
        let cost = a.cost();
        cache.put(1, b"a", Arc::clone(&a));
        cache.put(1, b"a", a);
        assert_eq!(cache.cost(), cost);
        assert!(cache.get(0, b"a").is_none());
        cache.remove(1, b"a");
        assert_eq!(cache.cost(), 0);
        let huge = resource(dir.path(), "huge", 60_000, 0);
        let tiny = Cache::with_budgets(1, 1000, MISSING_BUDGET);
        tiny.put(0, b"huge", huge);
        assert!(tiny.get(0, b"huge").is_none());
    }

    #[test]
    fn missing_paths_are_trusted_for_a_second_then_looked_up_once() {
        let cache = Cache::with_budgets(2, BUDGET, MISSING_BUDGET);
        assert!(!cache.known_missing(0, b"nope", 0));
        cache.put_missing(0, b"nope", 0);
        assert!(cache.known_missing(0, b"nope", 999));
        // Another mount's path of the same name is another path.
        assert!(!cache.known_missing(1, b"nope", 999));
        // Stale: the first caller looks again, the others keep the 404 meanwhile.
        assert!(!cache.known_missing(0, b"nope", 1000));
        assert!(cache.known_missing(0, b"nope", 1001));
        // Found after all.
        let dir = tempfile::tempdir().unwrap();
        cache.put(0, b"nope", resource(dir.path(), "nope", 10, 1002));
        assert!(!cache.known_missing(0, b"nope", 1002));
        assert_eq!(cache.missing_cost(), 0);
        // And gone again.
        cache.put_missing(0, b"nope", 1003);
        assert!(cache.get(0, b"nope").is_none());
        assert!(cache.known_missing(0, b"nope", 1004));
        cache.remove(0, b"nope");
        assert_eq!((cache.cost(), cache.missing_cost()), (0, 0));
    }

    #[test]
    fn missing_paths_have_their_own_budget() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::with_budgets(1, 1 << 20, 10 * (MISSING_OVERHEAD + 8));
        cache.put(0, b"real", resource(dir.path(), "real", 100, 0));
        for i in 0..1000 {
            cache.put_missing(0, format!("nope{i:04}").as_bytes(), 0);
            assert!(cache.missing_cost() <= 10 * (MISSING_OVERHEAD + 8));
        }
        // The latest are remembered, and the real file was not pushed out.
        assert!(cache.known_missing(0, b"nope0999", 1));
        assert!(cache.get(0, b"real").is_some());
        // The same path again costs nothing more.
        let before = cache.missing_cost();
        cache.put_missing(0, b"nope0999", 2);
        assert_eq!(cache.missing_cost(), before);
    }
}
