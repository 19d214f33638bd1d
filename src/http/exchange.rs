//! The bookkeeping of one request from its head to its last byte: its id, its access line,
//! and its statistics.
//!
//! `service.rs` opens an [`Exchange`] for every request, tells it what the request turned
//! out to be (a static file, an application job, or something the server answered itself) and
//! hands it to the response body, whose end finishes it — or drops it unanswered when the
//! client leaves first. Either way it is finished exactly once: counted in the statistics and
//! logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;

use super::access::{Format, Outcome, Pending};
use crate::cancel::Reason;
use crate::job::InApp;
use crate::listen::per_ip::IpSlot;
use crate::listen::Peer;
use crate::stats::{self, Finished, Stats, Trace};

/// What a request turned out to be.
enum Kind {
    /// Answered by the server without the application (refused, outside the prefix, the
    /// queue full…).
    Server,
    Static,
    /// An application job.
    App(Arc<Trace>),
}

pub struct Exchange {
    stats: Arc<Stats>,
    format: Arc<Format>,
    received: Instant,
    method: http::Method,
    id: Arc<str>,
    bytes_in: u64,
    kind: Kind,
    access: Option<Pending>,
    /// The forwarded client's count of requests in flight (`--max-connections-per-ip`
    /// behind a trusted proxy), held until the request is finished.
    slot: Option<IpSlot>,
    /// Why the server refused the request itself, for the access line.
    refused: Option<&'static str>,
    /// Its place in the connection's `--h2-max-pending`, until a job takes it or the
    /// response head is made.
    pending: Option<InApp>,
}

impl Exchange {
    pub fn open(
        parts: &Parts,
        peer: Peer,
        id: Arc<str>,
        stats: Arc<Stats>,
        format: Arc<Format>,
    ) -> Self {
        let received = Instant::now();
        Self {
            stats,
            format,
            received,
            method: parts.method.clone(),
            id,
            bytes_in: 0,
            kind: Kind::Server,
            access: Pending::capture(parts, peer, received),
            slot: None,
            refused: None,
            pending: None,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// Log `client`, the address a trusted proxy forwarded, instead of the peer's.
    pub fn forwarded_for(&mut self, client: &str) {
        if let Some(line) = &mut self.access {
            line.forwarded_for(client);
        }
    }

    /// The server refused the request itself, for this reason.
    pub fn refused(&mut self, why: &'static str) {
        self.refused = Some(why);
    }

    /// Hold the request's place in its connection's `--h2-max-pending` until
    /// [`Exchange::take_pending`].
    pub fn holds_pending(&mut self, pending: InApp) {
        self.pending = Some(pending);
    }

    /// The request's place in its connection's `--h2-max-pending`: a job keeps it until its
    /// worker is done; otherwise it ends with the response head.
    pub fn take_pending(&mut self) -> Option<InApp> {
        self.pending.take()
    }

    /// Hold `slot` until the request is finished.
    pub fn holds(&mut self, slot: IpSlot) {
        self.slot = Some(slot);
    }

    pub fn is_static(&mut self) {
        self.kind = Kind::Static;
    }

    /// The request became an application job with this trace, its body `bytes_in` long.
    pub fn is_app(&mut self, trace: Arc<Trace>, bytes_in: u64) {
        self.kind = Kind::App(trace);
        self.bytes_in = bytes_in;
    }

    /// The job was not queued after all (the queue is full, the server is closing): the server
    /// answered it.
    pub fn not_queued(&mut self) {
        if let Kind::App(trace) = std::mem::replace(&mut self.kind, Kind::Server) {
            trace.answered();
        }
    }

    /// The response ended after `bytes_out` bytes with `status`; `cancelled` when the body
    /// was cut short because the request was cancelled.
    pub fn finish(self, status: u16, bytes_out: u64, cancelled: Option<Reason>) {
        let end = Instant::now();
        let set = match &self.kind {
            Kind::App(trace) => trace.label(),
            _ => None,
        };
        let (label, queue, processing, asleep, cancelled) = match &self.kind {
            Kind::App(trace) => {
                let (queue, processing) = trace.timings(end);
                let label = self.stats.label_of(trace, set.as_ref());
                // A request answered 504 or 503 before the application replied was cancelled
                // too, though its (server-made) body ended normally.
                let cancelled = cancelled.or_else(|| trace.flight.reason());
                (label, queue, processing, trace.flight.asleep(), cancelled)
            }
            Kind::Static => (
                stats::STATIC,
                Duration::ZERO,
                end - self.received,
                Duration::ZERO,
                cancelled,
            ),
            Kind::Server => (
                stats::SERVER,
                Duration::ZERO,
                end - self.received,
                Duration::ZERO,
                cancelled,
            ),
        };
        let status = cancelled.map_or(status, Reason::log_status);
        let finished = Finished {
            label,
            method: &self.method,
            status,
            cancelled,
            queue,
            processing,
            asleep,
            bytes_in: self.bytes_in,
            bytes_out,
            from_path: matches!(self.kind, Kind::App(_)) && set.is_none(),
        };
        match &self.kind {
            Kind::App(trace) => self.stats.finish(trace, &finished),
            _ => self.stats.record(&finished),
        }
        if let Some(line) = self.access {
            line.finish(
                &self.format,
                &Outcome {
                    status,
                    bytes_in: self.bytes_in,
                    bytes_out,
                    queue,
                    processing,
                    asleep,
                    request_id: &self.id,
                    label,
                    cancelled,
                    refused: self.refused,
                },
            );
        }
    }
}
