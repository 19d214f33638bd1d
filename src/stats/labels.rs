//! Labels: which series a request is counted in, and the cap on how many there are.
//!
//! A Django request is labelled with its view by ferrule's Django hook
//! (`python/ferrule/_django.py`); any application may set `environ["ferrule.request"].label`.
//! A request left unlabelled gets its fallback here: `unresolved` for a Django project (a URL
//! no pattern matched, or a response a middleware gave before resolution), otherwise the first
//! path segment or `--stats-label`'s match. Requests the server answered without the
//! application are `static` or `server`.
//!
//! At most `--stats-max-labels` labels besides the fixed ones are kept: label values made from
//! paths come from clients, and a scanner must not grow memory. Labels the application set and
//! the fixed ones stay for good; a label made from a path may be evicted for a newcomer (the
//! one with the fewest requests, then the least recently used; [`admit`] decides), its counts
//! moving into `other`, so that a scanner's one-hit paths churn among themselves and the
//! views that real traffic hits keep their places. When no place can be had, the request is
//! counted under `other`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use regex::Regex;

use super::series::Series;

pub const OTHER: &str = "other";
pub const STATIC: &str = "static";
pub const SERVER: &str = "server";
pub const UNRESOLVED: &str = "unresolved";

/// Longest label kept, in bytes; longer ones are cut (at a character boundary). Arbitrary:
/// longer than any view name, short enough for a table cell.
const MAX_LABEL: usize = 120;

/// How an unlabelled application request is labelled.
pub enum Fallback {
    /// The first path segment: `/api/users/7` → `/api`.
    FirstSegment,
    /// `--stats-label`: the first capture group, or the whole match; `other` when it does not
    /// match.
    Pattern(Regex),
    /// A Django project: its hook labels every request that reached a view.
    Unresolved,
}

impl Fallback {
    pub fn label<'a>(&self, path: &'a str) -> &'a str {
        match self {
            Fallback::Unresolved => UNRESOLVED,
            Fallback::FirstSegment => {
                let rest = path.strip_prefix('/').unwrap_or(path);
                let segment = rest.split('/').next().unwrap_or_default();
                if segment.is_empty() {
                    "/"
                } else {
                    &path[..path.len() - rest.len() + segment.len()]
                }
            }
            Fallback::Pattern(re) => re.captures(path).map_or(OTHER, |caps| {
                caps.get(1)
                    .or_else(|| caps.get(0))
                    .map_or(OTHER, |m| m.as_str())
            }),
        }
    }
}

/// Cut a label to [`MAX_LABEL`] bytes.
pub fn clip(label: &str) -> &str {
    if label.len() <= MAX_LABEL {
        return label;
    }
    let mut end = MAX_LABEL;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// Where a request's label came from: what may create it, and whether it may be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Set by the application or ferrule's Django hook, or one of the fixed labels: created
    /// while there is room (or by evicting a path-made label), never evicted.
    Set,
    /// Made from the request's path (the application set none): may be evicted.
    Path,
    /// Made from the path of a 404: counted under the label if it exists, never created, so
    /// a scanner's 404s take no place at all.
    PathMiss,
}

/// Slots of the doorkeeper: hashes of path-made labels turned away while the table was full.
/// Arbitrary: a power of two well above the default 200 labels, 8 KiB.
const DOORKEEPER: usize = 1024;

/// What to do with a label that is not in a full table (a pure decision, tested by table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Evict the victim and take its place.
    Evict,
    /// Count the request under `other`.
    TurnAway,
}

/// Decide for a newcomer with `origin`, given the path-made label that would be evicted
/// (`victim_hits`: its requests, `None` when every label in the table was set by the
/// application) and whether the newcomer was turned away before and not forgotten since.
///
/// A label the application set is worth more than one made from a path, so it always takes
/// one's place. A path-made newcomer takes the place of a label that has had a single
/// request at once (one-hit paths churn among themselves), but of a label that has had more
/// only on its second sighting: a scanner's paths are seen once, and must not displace a view
/// that real traffic hit twice.
pub fn admit(origin: Origin, victim_hits: Option<u64>, seen_before: bool) -> Admit {
    match (origin, victim_hits) {
        (Origin::Set, Some(_)) => Admit::Evict,
        (Origin::Path, Some(hits)) if hits <= 1 || seen_before => Admit::Evict,
        (Origin::PathMiss, _) | (_, None) | (Origin::Path, Some(_)) => Admit::TurnAway,
    }
}

/// Every series, by label.
pub struct Labels {
    map: RwLock<Map>,
    max: usize,
    /// Ticks once per request on a path-made label: what "recently used" is measured in.
    clock: AtomicU64,
    overflowed: AtomicU64,
    evicted: AtomicU64,
    hashes: RandomState,
}

struct Entry {
    series: Arc<Series>,
    /// Made from a path, and never set by the application since: may be evicted.
    evictable: AtomicBool,
    /// Requests counted under it (path-made labels only): what eviction compares first.
    hits: AtomicU64,
    /// [`Labels::clock`] at its last request: among equal hits, the lowest goes first.
    used: AtomicU64,
}

struct Map {
    series: HashMap<Arc<str>, Entry>,
    /// Labels other than the reserved ones: what `--stats-max-labels` caps.
    custom: usize,
    /// Direct-mapped by hash; a slot holding a newcomer's hash means it was turned away once.
    doorkeeper: Box<[u64; DOORKEEPER]>,
}

fn is_reserved(label: &str) -> bool {
    [OTHER, STATIC, SERVER, UNRESOLVED].contains(&label)
}

impl Labels {
    pub fn new(max: usize) -> Self {
        Self {
            map: RwLock::new(Map {
                series: HashMap::new(),
                custom: 0,
                doorkeeper: Box::new([0; DOORKEEPER]),
            }),
            max,
            clock: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            hashes: RandomState::new(),
        }
    }

    /// Run `f` with the series of `label`: created if `origin` allows and a place can be had,
    /// else `other`'s. A label that exists is found under the read lock.
    pub fn with<R>(&self, label: &str, origin: Origin, f: impl FnOnce(&Series) -> R) -> R {
        let label = clip(label);
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = map.series.get(label) {
                self.touch(entry, origin);
                return f(&entry.series);
            }
            if origin == Origin::PathMiss && !is_reserved(label) {
                if let Some(entry) = map.series.get(OTHER) {
                    return f(&entry.series);
                }
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let label = self.place(&mut map, label, origin);
        let entry = map
            .series
            .entry(Arc::from(label))
            .or_insert_with_key(|key| self.entry(key, false));
        f(&entry.series)
    }

    /// Count a request on an entry that exists.
    fn touch(&self, entry: &Entry, origin: Origin) {
        if !entry.evictable.load(Ordering::Relaxed) {
            return;
        }
        if origin == Origin::Set {
            // The application named it too: it is one of its views now.
            entry.evictable.store(false, Ordering::Relaxed);
            return;
        }
        entry.hits.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        entry.used.store(now, Ordering::Relaxed);
    }

    fn entry(&self, label: &Arc<str>, evictable: bool) -> Entry {
        Entry {
            series: Arc::new(Series::new(Arc::clone(label))),
            evictable: AtomicBool::new(evictable),
            hits: AtomicU64::new(1),
            used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Under the write lock: make a place for `label` (creating its entry) and return it, or
    /// return `other` when it gets none.
    fn place<'a>(&self, map: &mut Map, label: &'a str, origin: Origin) -> &'a str {
        if let Some(entry) = map.series.get(label) {
            // Another thread created it meanwhile.
            self.touch(entry, origin);
            return label;
        }
        if is_reserved(label) {
            return label;
        }
        if origin == Origin::PathMiss {
            return OTHER;
        }
        if map.custom < self.max {
            map.custom += 1;
            let key = Arc::from(label);
            let entry = self.entry(&key, origin == Origin::Path);
            map.series.insert(key, entry);
            return label;
        }
        let victim = map.victim();
        let door = self.hashes.hash_one(label);
        let slot = usize::try_from(door % DOORKEEPER as u64).unwrap_or_default();
        let seen_before = map.doorkeeper[slot] == door;
        let hits = victim.as_ref().map(|(_, hits)| *hits);
        let Some((victim, _)) = victim.filter(|_| admit(origin, hits, seen_before) == Admit::Evict)
        else {
            if origin == Origin::Path {
                map.doorkeeper[slot] = door;
            }
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return OTHER;
        };
        self.evict(map, &victim);
        let key = Arc::from(label);
        let entry = self.entry(&key, origin == Origin::Path);
        if seen_before {
            map.doorkeeper[slot] = 0;
            // Seen twice (the first request went to `other`): as many as the label it
            // displaced may have had, so the next one-hit path does not displace it in turn.
            entry.hits.store(2, Ordering::Relaxed);
        }
        map.series.insert(key, entry);
        label
    }

    /// Remove `victim`, moving its counts into `other`: totals never go backwards, and the
    /// master, which holds each worker's views by label, sees the view go and `other` grow.
    fn evict(&self, map: &mut Map, victim: &str) {
        let Some(gone) = map.series.remove(victim) else {
            return;
        };
        let other = map
            .series
            .entry(Arc::from(OTHER))
            .or_insert_with_key(|key| self.entry(key, false));
        other.series.absorb(&gone.series);
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Every series, sorted by label.
    pub fn all(&self) -> Vec<Arc<Series>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Arc<Series>> =
            map.series.values().map(|e| Arc::clone(&e.series)).collect();
        all.sort_by(|a, b| a.label.cmp(&b.label));
        all
    }

    /// Requests counted under `other` because no place could be had for their label.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Path-made labels evicted for a newcomer.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl Map {
    /// The path-made label to evict first: the fewest requests, then the least recently
    /// used; with its requests.
    fn victim(&self) -> Option<(Arc<str>, u64)> {
        self.series
            .iter()
            .filter(|(_, e)| e.evictable.load(Ordering::Relaxed))
            .map(|(label, e)| {
                let hits = e.hits.load(Ordering::Relaxed);
                (hits, e.used.load(Ordering::Relaxed), label)
            })
            .min()
            .map(|(hits, _, label)| (Arc::clone(label), hits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_labels() {
        let first = Fallback::FirstSegment;
        for (path, label) in [
            ("/", "/"),
            ("", "/"),
            ("/api/users/7", "/api"),
            ("/api/", "/api"),
            ("/favicon.ico", "/favicon.ico"),
        ] {
            assert_eq!(first.label(path), label, "{path}");
        }
        let re = Fallback::Pattern(Regex::new(r"^/(users|orders)/").unwrap());
        assert_eq!(re.label("/users/7"), "users");
        assert_eq!(re.label("/carts/7"), OTHER);
        let whole = Fallback::Pattern(Regex::new(r"^/v\d+").unwrap());
        assert_eq!(whole.label("/v2/things"), "/v2");
        assert_eq!(Fallback::Unresolved.label("/x"), UNRESOLVED);
    }

    fn names(labels: &Labels) -> Vec<String> {
        labels.all().iter().map(|s| s.label.to_string()).collect()
    }

    /// Requests under `label`, since start.
    fn requests(labels: &Labels, label: &str) -> u64 {
        labels
            .all()
            .iter()
            .find(|s| &*s.label == label)
            .map_or(0, |s| s.methods().iter().map(|m| m.processing.count).sum())
    }

    fn hit(labels: &Labels, label: &str, origin: Origin) {
        labels.with(label, origin, |series| {
            series.record(&crate::stats::fixtures::finished(label));
        });
    }

    #[test]
    fn admission() {
        use Admit::{Evict, TurnAway};
        for (origin, victim_hits, seen_before, expect) in [
            // No path-made label to evict: the table is the application's.
            (Origin::Set, None, false, TurnAway),
            (Origin::Path, None, true, TurnAway),
            // The application's labels take a path-made label's place.
            (Origin::Set, Some(1000), false, Evict),
            // One-hit paths churn among themselves.
            (Origin::Path, Some(1), false, Evict),
            // A label hit twice is displaced only by a newcomer seen twice.
            (Origin::Path, Some(2), false, TurnAway),
            (Origin::Path, Some(2), true, Evict),
            // A 404 never makes a place.
            (Origin::PathMiss, Some(1), true, TurnAway),
        ] {
            assert_eq!(
                admit(origin, victim_hits, seen_before),
                expect,
                "{origin:?} {victim_hits:?} {seen_before}"
            );
        }
    }

    #[test]
    fn the_cap_holds_and_404s_take_no_place() {
        let labels = Labels::new(2);
        for label in ["a", "b", STATIC, SERVER] {
            hit(&labels, label, Origin::Set);
        }
        // Not created (a 404 on a path-made label), and no overflow either.
        hit(&labels, "e", Origin::PathMiss);
        hit(&labels, "a", Origin::PathMiss);
        // The application's labels are never evicted: the table is full for good.
        hit(&labels, "c", Origin::Path);
        hit(&labels, "d", Origin::Set);
        assert_eq!(names(&labels), ["a", "b", "other", "server", "static"]);
        assert_eq!(requests(&labels, "a"), 2);
        assert_eq!(requests(&labels, OTHER), 3);
        assert_eq!((labels.overflowed(), labels.evicted()), (2, 0));
    }

    #[test]
    fn the_fewest_requests_go_first_then_the_least_recently_used() {
        let labels = Labels::new(3);
        for label in ["/a", "/b", "/c", "/a", "/c", "/b", "/a"] {
            hit(&labels, label, Origin::Path);
        }
        // /a 3, /b 2, /c 2 (/c used before /b): a newcomer seen once is turned away...
        hit(&labels, "/new", Origin::Path);
        assert_eq!(names(&labels), ["/a", "/b", "/c", "other"]);
        // ...and takes the least used place on its second sighting.
        hit(&labels, "/new", Origin::Path);
        assert_eq!(names(&labels), ["/a", "/b", "/new", "other"]);
        assert_eq!((labels.overflowed(), labels.evicted()), (1, 1));
        // /new counts as seen twice: a one-hit newcomer does not displace it in turn.
        hit(&labels, "/next", Origin::Path);
        assert_eq!(names(&labels), ["/a", "/b", "/new", "other"]);
        // The evicted label's requests moved into other, with those turned away: none is lost.
        assert_eq!(requests(&labels, OTHER), 1 + 2 + 1);
        assert_eq!((labels.overflowed(), labels.evicted()), (2, 1));
    }

    #[test]
    fn one_hit_paths_churn_and_a_view_hit_again_stays() {
        let labels = Labels::new(10);
        for i in 0..10 {
            hit(&labels, &format!("/scan{i}"), Origin::Path);
        }
        hit(&labels, "/real", Origin::Path);
        hit(&labels, "/real", Origin::Path);
        for i in 10..5000 {
            hit(&labels, &format!("/scan{i}"), Origin::Path);
        }
        let kept = names(&labels);
        assert!(kept.contains(&"/real".to_owned()), "{kept:?}");
        assert_eq!(kept.len(), 11, "{kept:?}");
        assert_eq!(requests(&labels, "/real"), 2);
        // Every scanner request is counted, in its label or in other.
        let total: u64 = kept.iter().map(|l| requests(&labels, l)).sum();
        assert_eq!(total, 5002);
        assert_eq!(labels.evicted(), 4991);
    }

    #[test]
    fn the_application_takes_the_place_of_a_path_and_keeps_a_path_it_names() {
        let labels = Labels::new(2);
        hit(&labels, "/p", Origin::Path);
        hit(&labels, "/q", Origin::Path);
        hit(&labels, "/q", Origin::Path);
        hit(&labels, "/q", Origin::Set);
        hit(&labels, "checkout", Origin::Set);
        assert_eq!(names(&labels), ["/q", "checkout", "other"]);
        // Neither is evictable now.
        hit(&labels, "/r", Origin::Path);
        hit(&labels, "/r", Origin::Path);
        assert_eq!(names(&labels), ["/q", "checkout", "other"]);
        assert_eq!(labels.evicted(), 1);
    }

    #[test]
    fn long_labels_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_LABEL && long.starts_with(clipped));
    }
}
