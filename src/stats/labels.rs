//! Labels: which series a request is counted in, and the cap on how many there are.
//!
//! A Django request is labelled with its view by ferrule's Django hook
//! (`python/ferrule/_django.py`); any application may set `environ["ferrule.request"].label`.
//! A request left unlabelled gets its fallback here: `unresolved` for a Django project (a URL
//! no pattern matched, or a response a middleware gave before resolution), otherwise the first
//! path segment or `--stats-label`'s match. Requests the server answered without the
//! application are `static` or `server`. Past `--stats-max-labels` distinct labels, new ones
//! are counted as `other`: label values come from clients, and a scanner must not grow memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

/// Every series, by label.
pub struct Labels {
    map: RwLock<Map>,
    max: usize,
    overflowed: AtomicU64,
}

#[derive(Default)]
struct Map {
    series: HashMap<Arc<str>, Arc<Series>>,
    /// Labels other than the reserved ones: what `--stats-max-labels` caps.
    custom: usize,
}

fn is_reserved(label: &str) -> bool {
    [OTHER, STATIC, SERVER, UNRESOLVED].contains(&label)
}

impl Labels {
    pub fn new(max: usize) -> Self {
        Self {
            map: RwLock::new(Map::default()),
            max,
            overflowed: AtomicU64::new(0),
        }
    }

    /// Run `f` with the series of `label`: created if `create` and there is room, else
    /// `other`'s.
    pub fn with<R>(&self, label: &str, create: bool, f: impl FnOnce(&Series) -> R) -> R {
        let mut label = clip(label);
        {
            let map = self
                .map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(series) = map.series.get(label) {
                return f(series);
            }
            if !create && !is_reserved(label) {
                label = OTHER;
                if let Some(series) = map.series.get(OTHER) {
                    return f(series);
                }
            } else if map.custom >= self.max && !is_reserved(label) {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                if let Some(series) = map.series.get(OTHER) {
                    return f(series);
                }
                label = OTHER;
            }
        }
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.series.contains_key(label) && !is_reserved(label) {
            // Another thread may have filled the last place meanwhile.
            if map.custom >= self.max {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                label = OTHER;
            } else {
                map.custom += 1;
            }
        }
        let series = map
            .series
            .entry(Arc::from(label))
            .or_insert_with_key(|key| Arc::new(Series::new(Arc::clone(key))));
        f(series)
    }

    /// Every series, sorted by label.
    pub fn all(&self) -> Vec<Arc<Series>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<Arc<Series>> = map.series.values().cloned().collect();
        all.sort_by(|a, b| a.label.cmp(&b.label));
        all
    }

    /// Requests whose label was replaced by `other` because the cap was reached.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
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

    #[test]
    fn the_cap_sends_new_labels_to_other() {
        let labels = Labels::new(2);
        for label in ["a", "b", "c", "a", "d", STATIC, SERVER] {
            labels.with(label, true, |_| ());
        }
        // Not created (a 404 on a path-made label), and no overflow either.
        labels.with("e", false, |_| ());
        labels.with("a", false, |s| assert_eq!(&*s.label, "a"));
        let names: Vec<String> = labels.all().iter().map(|s| s.label.to_string()).collect();
        assert_eq!(names, ["a", "b", "other", "server", "static"]);
        assert_eq!(labels.overflowed(), 2);
    }

    #[test]
    fn long_labels_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_LABEL && long.starts_with(clipped));
    }
}
