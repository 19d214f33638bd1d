//! How hyper is built for each connection: the HTTP/1 and HTTP/2 builders with the plan's
//! limits and timers, and the executor that puts HTTP/2 stream tasks on the connection
//! tracker. What runs the connections is `server.rs`'s.

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use tokio_util::task::TaskTracker;

use crate::config::Plan;

/// How long a connection may wait for a request head, including between keep-alive
/// requests: hyper restarts its header-read timer whenever it waits for a head, so one timer
/// serves both; see docs/architecture.md. HTTP/2 uses the same time for a connection with
/// no open stream, and the preface sniffing for the first bytes.
pub(super) fn head_timeout(plan: &Plan) -> Duration {
    let idle = plan.header_timeout.min(plan.keep_alive);
    if idle.is_zero() {
        plan.header_timeout
    } else {
        idle
    }
}

pub(super) fn http1_builder(plan: &Plan) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(!plan.keep_alive.is_zero())
        .header_read_timeout(head_timeout(plan))
        .max_headers(plan.limits.fields.saturating_add(1).max(1))
        .max_buf_size(head_buffer(plan));
    builder
}

/// HTTP/2 pings on a connection that has received nothing for this long (open streams or
/// not)...
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection is closed if the answer takes longer than this. hyper sends no pings
/// unless told an interval; 20 s is its default ping timeout, used for both: long enough for
/// any live client, short enough that a peer that vanished (no FIN, say a laptop closed) does
/// not hold a request open for minutes.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

pub(super) fn http2_builder(
    plan: &Plan,
    tracker: TaskTracker,
    websockets: bool,
) -> http2::Builder<Spawner> {
    let limits = &plan.tls.h2;
    let mut builder = http2::Builder::new(Spawner(tracker));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        // Rapid reset (CVE-2023-44487): at most 20 streams the client opened and reset
        // before we accepted them, then GOAWAY; h2's default, stated here so it stays on.
        .max_pending_accept_reset_streams(20)
        // And at most 1024 streams we had to reset for the client's errors (CVE-2024-2653
        // style floods); hyper's default.
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT);
    if websockets {
        // SETTINGS_ENABLE_CONNECT_PROTOCOL: WebSockets over HTTP/2 (RFC 8441).
        builder.enable_connect_protocol();
    }
    builder
}

/// Runs HTTP/2 stream tasks on the connection tracker, so a graceful shutdown also waits
/// for them.
#[derive(Clone)]
pub(super) struct Spawner(TaskTracker);

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// hyper's read buffer must hold a whole request head within the configured limits, its
/// request line as `listen/target.rs` may rewrite it (each encoded byte three); 8 KiB is
/// hyper's minimum.
fn head_buffer(plan: &crate::config::Plan) -> usize {
    let l = &plan.limits;
    l.request_line
        .saturating_mul(3)
        .saturating_add(l.fields.saturating_mul(l.field_size.saturating_add(2)))
        .saturating_add(4096)
        .clamp(8192, 16 << 20)
}
