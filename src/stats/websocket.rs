//! WebSocket counters: connections open, messages and bytes each way, closes by code. Kept
//! apart from the per-view request statistics: a socket may live for hours, and counting it
//! as a request in flight would make every latency figure meaningless.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Counters since start (summed over worker processes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsTotals {
    /// Connections accepted (handshakes answered 101 or 200).
    pub opened: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Closed connections by close code (1006: dropped without a close).
    pub closes: BTreeMap<u16, u64>,
}

impl WsTotals {
    /// Nothing counted (an application without WebSockets): left out of exports.
    pub fn is_empty(&self) -> bool {
        *self == WsTotals::default()
    }

    pub fn add(&mut self, other: &WsTotals) {
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

/// What the socket tasks record into.
#[derive(Default)]
pub struct WsRecorder {
    open: AtomicUsize,
    opened: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    closes: Mutex<BTreeMap<u16, u64>>,
}

impl WsRecorder {
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A connection that was [`opened`](Self::opened) ended with `code`.
    pub fn closed(&self, code: u16) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        *self
            .closes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> WsTotals {
        WsTotals {
            opened: self.opened.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            closes: self
                .closes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}
