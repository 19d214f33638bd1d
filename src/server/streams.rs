//! The streams of one HTTP/2 connection, as ferrule watches them: whether any is open, and
//! whether the client still takes their data.
//!
//! hyper closes neither an HTTP/2 connection with no open stream (it has no idle timeout) nor
//! one whose client stopped granting flow-control window. The latter is how a client stops
//! reading a response on HTTP/2 while it still reads the connection and answers pings, so the
//! socket never stalls (that stall is `listen/deadline.rs`'s): hyper waits for window
//! forever, holding the response body (an open file, a buffer, a worker's stream) and the
//! connection's `--max-connections` permit.
//!
//! [`Tracked`] wraps every response body. It hands hyper at most [`PIECE`] bytes at a time —
//! hyper (1.12) takes a piece, waits until the client has granted some window, passes it to
//! `h2`, and asks for the next — and counts its stream as waiting for the client from the
//! response until hyper asks for the first piece, and from each piece until hyper asks for the
//! next or, after the last, drops the body. [`Watch::next`] says when to close the connection: after the idle time
//! with no stream open ([`Quiet::Idle`]), or once some stream has waited for a whole
//! `--send-timeout` in which no response body on the connection moved ([`Quiet::Stalled`]).
//! A client still taking any response keeps the connection, so a stream it paused on purpose
//! (a browser's paused video) lives while the connection is otherwise in use; alone, it gets
//! `--send-timeout`, as on HTTP/1. Closing is `server.rs`'s business.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::response::OutBody;

/// The most a response body hands hyper at once. One large piece (a 16 MiB `HttpResponse`)
/// would go to `h2` whole at the first byte of window, and the body would be done while the
/// client still had all of it to take; with pieces, taking one per `--send-timeout` is
/// progress. 64 KiB is about HTTP/2's default initial window (65,535 bytes) and the size of a
/// file read.
pub const PIECE: usize = 64 * 1024;

/// Why a connection should close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// No stream has been open for the idle time.
    Idle,
    /// A stream waited for the client's window for a whole `--send-timeout` in which no
    /// response body moved.
    Stalled,
}

/// What a connection's streams share with its watcher. Counters only: relaxed atomics, as the
/// verdict needs no ordering with anything else and a stale read delays it by one period.
pub struct Streams {
    open: watch::Sender<usize>,
    /// Streams whose body hyper has not asked for a piece since the last one (or since the
    /// response).
    waiting: AtomicUsize,
    /// Requests for a piece, on any stream: the connection's progress.
    moved: AtomicU64,
}

impl Streams {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            open: watch::channel(0).0,
            waiting: AtomicUsize::new(0),
            moved: AtomicU64::new(0),
        })
    }

    /// Count a stream as open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> Open {
        self.open.send_modify(|n| *n += 1);
        Open(Arc::clone(self))
    }

    /// The watcher of this connection: `idle` with no stream open, `send_timeout` for a
    /// stream waiting on the client.
    pub fn watch(self: &Arc<Self>, idle: Duration, send_timeout: Duration) -> Watch {
        Watch {
            open: self.open.subscribe(),
            streams: Arc::clone(self),
            idle,
            send_timeout,
            timer: Box::pin(tokio::time::sleep(idle)),
            phase: Phase::Unset,
            moved: 0,
        }
    }
}

/// One open stream, from its request to the end of its response body.
pub struct Open(Arc<Streams>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

/// Decides when a connection should close; see the module documentation.
pub struct Watch {
    open: watch::Receiver<usize>,
    streams: Arc<Streams>,
    idle: Duration,
    send_timeout: Duration,
    /// One timer for the connection's life, reset as the phase changes.
    timer: Pin<Box<Sleep>>,
    phase: Phase,
    /// `Streams::moved` when the current check period began.
    moved: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Unset,
    /// No stream open: the timer runs to the idle deadline.
    Idle,
    /// Streams open: the timer runs to the end of a check period.
    Busy,
}

impl Watch {
    /// Resolves with the next reason to close. Cancel-safe: the state lives in `self`, and
    /// any stream opening or closing, even one that came and went before this looked,
    /// restarts the idle clock.
    pub async fn next(&mut self) -> Quiet {
        loop {
            let open = *self.open.borrow_and_update();
            let phase = if open == 0 { Phase::Idle } else { Phase::Busy };
            // Idle restarts on every change; a check period runs on while streams come and go.
            if phase == Phase::Idle || self.phase != Phase::Busy {
                let period = if open == 0 {
                    self.idle
                } else {
                    self.send_timeout
                };
                self.timer.as_mut().reset(Instant::now() + period);
                self.moved = self.streams.moved.load(Ordering::Relaxed);
            }
            self.phase = phase;
            tokio::select! {
                () = self.timer.as_mut() => {
                    if phase == Phase::Idle {
                        return Quiet::Idle;
                    }
                    // No stream changes from waiting to asking without moving the count, so
                    // a stream waiting now has waited the whole period.
                    let moved = self.streams.moved.load(Ordering::Relaxed);
                    if moved == self.moved && self.streams.waiting.load(Ordering::Relaxed) > 0 {
                        return Quiet::Stalled;
                    }
                    self.phase = Phase::Unset;
                }
                r = self.open.changed() => {
                    if r.is_err() {
                        // `self.streams` holds the sender: it cannot be gone.
                        return std::future::pending().await;
                    }
                }
            }
        }
    }
}

/// A response body that keeps its stream counted as open until it is dropped, hands hyper
/// at most [`PIECE`] bytes at a time, and says when it waits for the client.
pub struct Tracked {
    body: OutBody,
    /// What is left of the last data frame after the piece handed out.
    rest: Bytes,
    waiting: bool,
    open: Open,
}

impl Tracked {
    /// A response with a body counts as waiting until hyper asks for its first piece, which
    /// a hyper that reserves window first would do only once the client granted some.
    pub fn new(body: OutBody, open: Open) -> Self {
        let waiting = !body.is_end_stream();
        if waiting {
            open.0.waiting.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            body,
            rest: Bytes::new(),
            waiting,
            open,
        }
    }

    fn streams(&self) -> &Streams {
        &self.open.0
    }

    fn piece(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > PIECE {
            self.rest = data.split_off(PIECE);
        }
        data
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        this.streams().moved.fetch_add(1, Ordering::Relaxed);
        if this.waiting {
            this.waiting = false;
            this.streams().waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let polled = if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(this.piece(data))))),
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                other => other,
            }
        } else {
            let rest = std::mem::take(&mut this.rest);
            Poll::Ready(Some(Ok(Frame::data(this.piece(rest)))))
        };
        // The last piece too: hyper may hold it until the client grants window for it.
        if matches!(polled, Poll::Ready(Some(Ok(_)))) {
            this.waiting = true;
            this.streams().waiting.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.body.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.waiting {
            self.streams().waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Let the watcher see what changed, move the clock, let it see the time.
    async fn step(secs: u64) {
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(secs)).await;
        tokio::task::yield_now().await;
    }

    fn watching(streams: &Arc<Streams>) -> tokio::task::JoinHandle<Quiet> {
        let mut watch = streams.watch(Duration::from_secs(5), Duration::from_secs(10));
        tokio::spawn(async move { watch.next().await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_after_the_idle_time_without_streams() {
        let streams = Streams::new();
        let idle = watching(&streams);
        step(4).await;
        assert!(!idle.is_finished());
        // A stream that opens and closes at once still counts as activity.
        drop(streams.open());
        step(4).await;
        assert!(!idle.is_finished(), "the clock restarted");
        let open = streams.open();
        step(60).await;
        assert!(!idle.is_finished(), "a stream is open");
        drop(open);
        step(4).await;
        assert!(!idle.is_finished());
        step(2).await;
        assert_eq!(idle.await.unwrap(), Quiet::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_waiting_a_whole_period_without_progress_is_a_stall() {
        let streams = Streams::new();
        let watch = watching(&streams);
        let open = streams.open();
        // A stream that handed a piece and was not asked for the next.
        streams.waiting.fetch_add(1, Ordering::Relaxed);
        step(9).await;
        // Progress elsewhere on the connection, within the first period.
        streams.moved.fetch_add(1, Ordering::Relaxed);
        step(2).await;
        assert!(
            !watch.is_finished(),
            "the connection moved in the first period"
        );
        // Streams coming and going do not restart the check period.
        drop(streams.open());
        step(9).await;
        assert_eq!(watch.await.unwrap(), Quiet::Stalled);
        drop(open);
    }

    #[tokio::test(start_paused = true)]
    async fn open_streams_that_wait_for_the_application_are_not_a_stall() {
        let streams = Streams::new();
        let watch = watching(&streams);
        let open = streams.open();
        step(100).await;
        assert!(!watch.is_finished());
        drop(open);
    }
}
