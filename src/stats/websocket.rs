//! WebSocket counters by route: connections open, messages and bytes each way, closes by code.
//! Kept apart from the per-view request statistics: a socket may live for hours, and counting
//! it as a request in flight would make every latency figure meaningless.
//!
//! A socket's route is the label the application gave it before accepting
//! (`scope["ferrule.request"].label`), else its path's first segment or `--stats-label`'s
//! match. Routes are capped like views (`--stats-max-labels`); past the cap, new ones are
//! counted as `other`. Each socket holds its route's counters, so a message costs two atomic
//! additions and no lookup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::labels::{clip, OTHER};

/// One route's counters since start (summed over worker processes), and its open sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsRouteTotals {
    pub open: u64,
    /// Connections accepted (handshakes answered 101 or 200).
    pub opened: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Closed connections by close code (1006: dropped without a close).
    pub closes: BTreeMap<u16, u64>,
}

impl WsRouteTotals {
    fn add(&mut self, other: &WsRouteTotals) {
        self.open += other.open;
        self.opened += other.opened;
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (code, n) in &other.closes {
            *self.closes.entry(*code).or_default() += n;
        }
    }
}

/// Every route's counters; `all` is their sum, kept for the gauges and the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsTotals {
    #[serde(flatten)]
    pub all: WsRouteTotals,
    #[serde(default)]
    pub routes: BTreeMap<String, WsRouteTotals>,
}

impl WsTotals {
    /// Nothing counted (an application without WebSockets): left out of exports.
    pub fn is_empty(&self) -> bool {
        *self == WsTotals::default()
    }

    pub fn add(&mut self, other: &WsTotals) {
        self.all.add(&other.all);
        for (route, totals) in &other.routes {
            self.routes.entry(route.clone()).or_default().add(totals);
        }
    }
}

/// The counters a socket records into: its route's.
#[derive(Default)]
pub struct WsRoute {
    open: AtomicU64,
    opened: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
}

impl WsRoute {
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A connection that was [opened](WsRecorder::opened) on this route ended with `code`.
    pub fn closed(&self, code: u16) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        *self
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
    }

    fn totals(&self) -> WsRouteTotals {
        WsRouteTotals {
            open: self.open.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            closes: self
                .closes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The routes of one process.
pub struct WsRecorder {
    routes: RwLock<BTreeMap<Box<str>, Arc<WsRoute>>>,
    /// `--stats-max-labels`, `other` aside.
    max: usize,
}

impl WsRecorder {
    pub fn new(max: usize) -> Self {
        Self {
            routes: RwLock::default(),
            max,
        }
    }

    /// A socket on `route` was accepted: the counters it records into until it closes.
    pub fn opened(&self, route: &str) -> Arc<WsRoute> {
        let counters = self.route(clip(route));
        counters.open.fetch_add(1, Ordering::Relaxed);
        counters.opened.fetch_add(1, Ordering::Relaxed);
        counters
    }

    fn route(&self, route: &str) -> Arc<WsRoute> {
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return Arc::clone(r);
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let custom = routes.len() - usize::from(routes.contains_key(OTHER));
        let route = if routes.contains_key(route) || custom < self.max {
            route
        } else {
            OTHER
        };
        Arc::clone(routes.entry(route.into()).or_default())
    }

    /// Sockets open now, over every route.
    pub fn open(&self) -> usize {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let open: u64 = routes
            .values()
            .map(|r| r.open.load(Ordering::Relaxed))
            .sum();
        usize::try_from(open).unwrap_or(usize::MAX)
    }

    pub fn totals(&self) -> WsTotals {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut totals = WsTotals::default();
        for (route, counters) in routes.iter() {
            let route_totals = counters.totals();
            totals.all.add(&route_totals);
            totals.routes.insert(route.to_string(), route_totals);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_counted_apart_and_capped() {
        let recorder = WsRecorder::new(2);
        let chat = recorder.opened("/chat");
        chat.received(3);
        chat.sent(5);
        let feed = recorder.opened("/feed");
        // Past the cap: counted as `other`, and an existing route still has its own.
        let late = recorder.opened("/late");
        let chat_again = recorder.opened("/chat");
        assert_eq!(recorder.open(), 4);
        late.closed(1000);
        feed.closed(1006);
        chat_again.closed(1001);
        let totals = recorder.totals();
        assert_eq!(
            totals.routes.keys().collect::<Vec<_>>(),
            ["/chat", "/feed", "other"]
        );
        let chat_totals = &totals.routes["/chat"];
        assert_eq!((chat_totals.open, chat_totals.opened), (1, 2));
        assert_eq!((chat_totals.messages_in, chat_totals.bytes_out), (1, 5));
        assert_eq!(chat_totals.closes, [(1001, 1)].into_iter().collect());
        assert_eq!(
            totals.routes["other"].closes,
            [(1000, 1)].into_iter().collect()
        );
        assert_eq!((totals.all.open, totals.all.opened), (1, 4));
        assert_eq!(
            totals.all.closes,
            [(1000, 1), (1001, 1), (1006, 1)].into_iter().collect()
        );
        let mut merged = totals.clone();
        merged.add(&totals);
        assert_eq!(merged.routes["/chat"].opened, 4);
        assert_eq!(merged.all.opened, 8);
    }
}
