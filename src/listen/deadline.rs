//! The write deadline of every accepted connection (`--send-timeout`).
//!
//! [`Deadline`] wraps the accepted socket, below TLS, and fails a write that has made no
//! progress at all for `--send-timeout` with `io::ErrorKind::TimedOut`. hyper then drops the
//! connection with everything it holds: the `--max-connections` permit, the response body
//! (an open static file, an in-memory body, a worker thread's stream) and the buffers. Any
//! byte the socket accepts restarts the clock, and so does the kernel's queue for the client
//! getting shorter (the kernel wakes a writer only once a good part of its buffer is free), so
//! a slow but steady reader gets its whole response. Reads pass through untouched: waiting for a request is governed by hyper's head
//! timer and ferrule's HTTP/2 idle timer (`server/streams.rs`). A TCP connection closed for
//! this, or dropped while a write waits, is reset rather than closed, so the kernel does not
//! keep trying to deliver what the client will not read.
//!
//! Below TLS rather than above it: a TLS record the socket will not take is the same stall as
//! plain bytes, and below TLS the clock also covers what rustls writes on its own (the
//! `close_notify` of a shutdown) and never counts bytes that only reached rustls's buffer as
//! progress. Which responses there are, and when a connection ends otherwise, is
//! `server.rs`'s and `http/`'s business.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Peer;
use crate::log_debug;

/// A socket whose writes may wait for the client at most `timeout` without progress.
pub struct Deadline<S: Socket> {
    inner: S,
    peer: Peer,
    timeout: Duration,
    state: State,
    /// What the socket held for the client when the current stall began.
    queued: Option<usize>,
    /// Made at the first write that has to wait and reused for every later stall, so a
    /// connection whose writes never wait (most of them) neither allocates nor touches the
    /// timer wheel.
    timer: Option<Pin<Box<Sleep>>>,
    /// `--min-rate`, bytes a second, if on.
    min_rate: Option<u64>,
    /// Bytes the socket took, all told.
    written: u64,
    /// How long writes have waited for the client since the last `--min-rate` check that
    /// passed, not counting the current stall.
    waited: Duration,
    /// What the client had taken at that check.
    taken_then: u64,
    /// When the current stall began.
    stalled_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The last write completed; no clock runs.
    Flowing,
    /// A write is waiting for the client; the timer holds its deadline.
    Stalled,
    /// The deadline passed; every write fails from now on.
    Expired,
}

impl<S: Socket> Deadline<S> {
    pub fn new(inner: S, peer: Peer, timeout: Duration) -> Self {
        Self {
            inner,
            peer,
            timeout,
            state: State::Flowing,
            queued: None,
            timer: None,
            min_rate: None,
            written: 0,
            waited: Duration::ZERO,
            taken_then: 0,
            stalled_at: None,
        }
    }

    /// Also fail writes once they have waited `--send-timeout` in all and the client took
    /// less than `rate` bytes a second of that time (`--min-rate`): a client that reads a
    /// little just often enough to never stall a whole `--send-timeout` is still bounded.
    #[must_use]
    pub fn with_min_rate(mut self, rate: Option<u64>) -> Self {
        self.min_rate = rate;
        self
    }

    /// Whether the client has been slower than `--min-rate` while writes waited for it (a
    /// system call: called only when a write starts or goes on waiting). Once writes have
    /// waited `--send-timeout` since the last check that passed, what the client took
    /// meanwhile is judged, and a pass starts the next period: a fast start does not buy a
    /// slow rest.
    fn too_slow(&mut self, now: Instant) -> bool {
        let Some(rate) = self.min_rate else {
            return false;
        };
        let waited = self.waited + self.stalled_at.map_or(Duration::ZERO, |t| now - t);
        if waited < self.timeout {
            return false;
        }
        // What the client took: the kernel's send buffer grows to megabytes for a slow TCP
        // reader, so what it accepted is not what the client read.
        let unsent = self.inner.unsent().map_or(0, |n| n as u64);
        let taken = self.written - unsent.min(self.written);
        // As f64: a rate times seconds, compared with a byte count well within 2^53.
        #[allow(clippy::cast_precision_loss)]
        let slow =
            ((taken - self.taken_then.min(taken)) as f64) < rate as f64 * waited.as_secs_f64();
        if !slow {
            self.taken_then = taken;
            self.waited = Duration::ZERO;
            if self.stalled_at.is_some() {
                self.stalled_at = Some(now);
            }
        }
        slow
    }

    /// What the socket answered, with the clock applied: a completed operation (or its
    /// error) stops the clock; one that must wait starts it, or fails once it has run out.
    #[inline]
    fn settle<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                if let Some(at) = self.stalled_at.take() {
                    self.waited += at.elapsed();
                }
                self.state = State::Flowing;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx),
        }
    }

    #[cold]
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            let starting = self.state != State::Stalled;
            if starting {
                let now = Instant::now();
                self.stalled_at = Some(now);
                if self.too_slow(now) {
                    return self.expire(true);
                }
            }
            let timer = match (&mut self.timer, starting) {
                (Some(timer), false) => timer,
                (Some(timer), true) => {
                    timer.as_mut().reset(Instant::now() + self.timeout);
                    timer
                }
                (slot @ None, _) => slot.insert(Box::pin(tokio::time::sleep(self.timeout))),
            };
            if starting {
                self.state = State::Stalled;
                self.queued = self.inner.unsent();
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The kernel wakes a writer only once a good part of its buffer is free (a third
            // for TCP, three quarters for a Unix socket): a client reading steadily but slower
            // than that buffer per timeout still drains it, and has made progress.
            let queued = self.inner.unsent();
            match (self.queued, queued) {
                (Some(then), Some(now)) if now < then => {
                    if self.too_slow(Instant::now()) {
                        return self.expire(true);
                    }
                    if let Some(at) = self.stalled_at.take() {
                        self.waited += at.elapsed();
                    }
                    self.state = State::Flowing;
                }
                _ => break,
            }
        }
        self.expire(false)
    }

    #[cold]
    fn expire<T>(&mut self, slow: bool) -> Poll<io::Result<T>> {
        self.state = State::Expired;
        self.timer = None;
        if slow {
            log_debug!(
                "closing the connection to {}: it took its response slower than --min-rate ({} bytes/s) over {}s of waiting",
                self.peer,
                self.min_rate.unwrap_or_default(),
                self.waited.as_secs()
            );
        } else {
            log_debug!(
                "closing the connection to {}: it accepted nothing of its response for {}s (--send-timeout)",
                self.peer,
                self.timeout.as_secs_f64()
            );
        }
        self.inner.abort();
        Poll::Ready(Err(self.expired()))
    }

    fn expired(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client accepted nothing for {}s (--send-timeout), or less than --min-rate",
                self.timeout.as_secs_f64()
            ),
        )
    }
}

impl<S: Socket> Drop for Deadline<S> {
    /// A connection dropped while a write waits (its HTTP/2 stream stalled, or shutdown gave
    /// up on it) has a client that is not reading: reset it too, rather than leave the kernel
    /// holding what it could not deliver.
    fn drop(&mut self) {
        if self.state == State::Stalled {
            self.inner.abort();
        }
    }
}

impl<S: AsyncRead + Socket + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Socket + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state == State::Expired {
            return Poll::Ready(Err(this.expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        this.settle(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state == State::Expired {
            return Poll::Ready(Err(this.expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        this.settle(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state == State::Expired {
            return Poll::Ready(Err(this.expired()));
        }
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.settle(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state == State::Expired {
            // Nothing more will be written; closing the socket is all that is left.
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.settle(cx, polled)
    }
}

/// What the deadline asks of a socket besides reading and writing.
pub trait Socket {
    /// Bytes written but not yet taken by the client, if the system says.
    fn unsent(&self) -> Option<usize>;

    /// Called before a socket whose client stopped reading is closed.
    fn abort(&self);
}

impl Socket for tokio::net::TcpStream {
    /// Not yet acknowledged: the client's kernel acknowledges only what fits its receive
    /// buffer, which fills when the client stops reading.
    fn unsent(&self) -> Option<usize> {
        crate::platform::unacknowledged(self)
    }

    /// Close with a reset: the kernel would otherwise keep trying, for minutes, to deliver
    /// what it still buffers (up to `net.ipv4.tcp_wmem`'s maximum) to a client that does not
    /// read it — memory no `--max-connections` bounds. nginx's `reset_timedout_connection`.
    fn abort(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl Socket for tokio::net::UnixStream {
    /// Not yet read by the peer, counted with the kernel's overhead per buffer.
    fn unsent(&self) -> Option<usize> {
        crate::platform::unacknowledged(self)
    }

    /// What was written already sits in the peer's receive queue; nothing to discard here.
    fn abort(&self) {}
}

#[cfg(test)]
impl Socket for tokio::io::DuplexStream {
    fn unsent(&self) -> Option<usize> {
        None
    }

    fn abort(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A connection whose socket holds `room` bytes, and the client's end.
    fn pair(room: usize) -> (Deadline<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(room);
        (Deadline::new(server, Peer::Unix, TIMEOUT), client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_accepts_fails_after_the_timeout() {
        let (mut conn, _client) = pair(1024);
        let start = Instant::now();
        let err = conn.write_all(&[b'x'; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), TIMEOUT);
        // And it stays failed, without waiting again.
        let err = conn.write_all(b"more").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), TIMEOUT);
        assert!(conn.shutdown().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_clock() {
        let (mut conn, mut client) = pair(1024);
        // 1 KiB every 0.6 timeouts: 64 KiB takes 38 timeouts, and never one without progress.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 1024];
            loop {
                tokio::time::sleep(TIMEOUT * 6 / 10).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n,
                }
            }
        });
        let start = Instant::now();
        conn.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
        assert_eq!(reader.await.unwrap(), 64 * 1024);
        assert!(start.elapsed() > TIMEOUT * 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_after_progress_gets_a_full_timeout_of_its_own() {
        let (mut conn, mut client) = pair(1024);
        // Stall 0.9 timeouts, drain, then stall for good: the second stall is counted from
        // its own start, not from the first.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT * 9 / 10).await;
            let mut buf = [0u8; 1024];
            client.read_exact(&mut buf).await.unwrap();
            client
        });
        let start = Instant::now();
        let err = conn.write_all(&[b'x'; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), TIMEOUT * 19 / 10);
        drop(reader.await.unwrap());
    }

    /// A socket that never takes a write, whose kernel queue the test drains.
    struct Full(Arc<AtomicUsize>, Arc<AtomicBool>);

    impl AsyncWrite for Full {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Socket for Full {
        fn unsent(&self) -> Option<usize> {
            Some(self.0.load(Ordering::Relaxed))
        }
        fn abort(&self) {
            self.1.store(true, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_draining_the_kernel_buffer_is_making_progress() {
        // The kernel wakes no writer, but the client takes a byte every 0.7 timeouts, five
        // times: each check (at 1, 2, 3 and 4 timeouts) sees the queue shorter than when the
        // stall began; the one at 5 does not.
        let queued = Arc::new(AtomicUsize::new(100));
        let draining = Arc::clone(&queued);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(TIMEOUT * 7 / 10).await;
                draining.fetch_sub(1, Ordering::Relaxed);
            }
        });
        let aborted = Arc::new(AtomicBool::new(false));
        let mut conn = Deadline::new(Full(queued, Arc::clone(&aborted)), Peer::Unix, TIMEOUT);
        let start = Instant::now();
        let err = conn.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), TIMEOUT * 5);
        assert!(
            aborted.load(Ordering::Relaxed),
            "a timed-out connection is reset"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_dropped_while_a_write_waits_is_reset() {
        let aborted = Arc::new(AtomicBool::new(false));
        let full = Full(Arc::new(AtomicUsize::new(0)), Arc::clone(&aborted));
        let mut conn = Deadline::new(full, Peer::Unix, TIMEOUT);
        let write = tokio::time::timeout(TIMEOUT / 2, conn.write_all(b"x")).await;
        assert!(write.is_err(), "still waiting");
        assert!(!aborted.load(Ordering::Relaxed));
        drop(conn);
        assert!(aborted.load(Ordering::Relaxed));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_wait_as_long_as_the_client_is_silent() {
        let (mut conn, mut client) = pair(1024);
        let writer = tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT * 5).await;
            client.write_all(b"late").await.unwrap();
            client
        });
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        drop(writer.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_never_wait_make_no_timer() {
        let (mut conn, mut client) = pair(1 << 20);
        for _ in 0..100 {
            conn.write_all(&[b'x'; 1000]).await.unwrap();
        }
        assert!(conn.timer.is_none());
        let mut buf = vec![0u8; 100_000];
        client.read_exact(&mut buf).await.unwrap();
    }
}
