//! The bounded in-memory cache of static resources, so a hot file costs no system call.
//!
//! Keyed by mount and decoded relative path. An entry holds a [`Resource`]: metadata,
//! validators and, for files up to 64 KiB, the bytes. It is trusted for [`REVALIDATE_MS`];
//! after that the next request for it checks the files again (`mod.rs`), reading them only
//! if they changed. The total is bounded by [`BUDGET`]; past it the least recently served
//! entries go, down to three quarters of the budget, so evictions come in batches rather
//! than on every insert. Missing files are not cached: a flood of 404s cannot fill memory.

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

pub struct Cache {
    inner: Mutex<Inner>,
    epoch: Instant,
    budget: usize,
}

struct Inner {
    /// One map per mount.
    maps: Vec<HashMap<Box<[u8]>, Arc<Resource>>>,
    cost: usize,
}

impl Cache {
    pub fn new(mounts: usize) -> Self {
        Self::with_budget(mounts, BUDGET)
    }

    fn with_budget(mounts: usize, budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                maps: (0..mounts).map(|_| HashMap::new()).collect(),
                cost: 0,
            }),
            epoch: Instant::now(),
            budget,
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
        inner.cost += cost;
        if let Some(old) = inner.maps[mount].insert(key.into(), res) {
            inner.cost -= old.cost();
        }
        if inner.cost > self.budget {
            inner.evict(self.budget / 4 * 3);
        }
    }

    pub fn remove(&self, mount: usize, key: &[u8]) {
        let mut inner = self.lock();
        if let Some(old) = inner.maps[mount].remove(key) {
            inner.cost -= old.cost();
        }
    }

    #[cfg(test)]
    fn cost(&self) -> usize {
        self.lock().cost
    }
}

impl Inner {
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
        };
        match load(&roots, &relative(name).unwrap(), &policy, None, now).unwrap() {
            Loaded::Resource(r) => Arc::new(r),
            _ => panic!("{name} not loaded"),
        }
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::with_budget(1, 12_000);
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
        let cache = Cache::with_budget(2, 1 << 20);
        let a = resource(dir.path(), "a", 100, 0);
        let cost = a.cost();
        cache.put(1, b"a", Arc::clone(&a));
        cache.put(1, b"a", a);
        assert_eq!(cache.cost(), cost);
        assert!(cache.get(0, b"a").is_none());
        cache.remove(1, b"a");
        assert_eq!(cache.cost(), 0);
        let huge = resource(dir.path(), "huge", 60_000, 0);
        let tiny = Cache::with_budget(1, 1000);
        tiny.put(0, b"huge", huge);
        assert!(tiny.get(0, b"huge").is_none());
    }
}
