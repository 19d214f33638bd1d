//! At most one log line per interval for events a client can repeat at will (refused
//! connections, floods) or that recur while a condition lasts (out of file descriptors), with
//! the count of those not logged. What the line says is the caller's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of event's log lines, for a `static`.
pub struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
    since: AtomicU64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// Another event: `Some(n)` when it is to be logged, `n` being how many were not since
    /// the last line; `None` when it is only counted.
    pub fn pass(&self) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < self.every) {
            self.since.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.since.swap(0, Ordering::Relaxed))
    }
}

/// `" (N more WHAT since the last such line)"` (`what` may be empty), or nothing for 0.
pub fn more(n: u64, what: &str) -> String {
    let space = if what.is_empty() { "" } else { " " };
    match n {
        0 => String::new(),
        n => format!(" ({n} more{space}{what} since the last such line)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.pass(), Some(0));
        assert_eq!(t.pass(), None);
        assert_eq!(t.pass(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.pass(), Some(2));
        assert_eq!(more(2, ""), " (2 more since the last such line)");
        assert_eq!(
            more(3, "failed"),
            " (3 more failed since the last such line)"
        );
        assert_eq!(more(0, "failed"), "");
    }
}
