//! The response body type handed to hyper, and the bookkeeping that ends with it.
//!
//! One enum covers the ways a body arrives: whole, streamed from a worker thread, read from a
//! file by tokio (`wsgi.file_wrapper`), a byte range of a file read by positioned reads (static
//! files), or a sequence of parts (`multipart/byteranges`). The body owns a [`Finish`] hook
//! that runs when hyper drops it — after the last byte was written, or when the connection
//! died — so the access log line and the per-connection in-flight count are always settled
//! exactly once.
//!
//! The body of an application response also carries the request's cancellation state
//! ([`OutBody::watched`]): the disconnect guard, armed until the last frame is handed out (a
//! body dropped before that means the client left), and for a stream still being produced,
//! the `--timeout` timer and a watch on the flight that cuts the stream when it fires.
//! Reading the files (ranges, parts, recycled buffers) is `body/file.rs`'s.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

use crate::cancel::{Deadline, DisconnectGuard, Flight, Reason};

mod file;

use file::{FileRange, Parts, FILE_CHUNK};

/// A chunk of a streamed body, or the error that ends it early (the connection is then
/// aborted so the client cannot mistake a truncated body for a complete one).
pub type Chunk = Result<Bytes, io::Error>;

/// Trailer fields that follow a streamed body (ASGI's `http.response.trailers`). The producer
/// fills the slot before it drops the stream's sender, so the body finds them once the
/// channel has ended, and sends them as its last frame: over HTTP/2 always, over HTTP/1.1
/// when hyper may (a chunked body, a client that sent `TE: trailers`, fields the response's
/// `Trailer` header names).
pub type Trailers = Arc<Mutex<Option<http::HeaderMap>>>;

/// Runs once when the response body is dropped, with the number of body bytes sent and, for
/// an application response, why it was cancelled if it was.
pub type Finish = Box<dyn FnOnce(u64, Option<Reason>) + Send + Sync>;

pub struct OutBody {
    kind: Kind,
    sent: u64,
    /// The length of a streamed or file body when known ahead (the file's, or the
    /// Content-Length the application declared): hyper stops polling an HTTP/1 body once that
    /// many bytes are out, so the body counts as complete then, not only at its end.
    declared: Option<u64>,
    finish: Option<Finish>,
    watch: Option<Box<Watch>>,
}

/// The cancellation state an application response carries while it is sent.
struct Watch {
    flight: Arc<Flight>,
    /// Until the last frame is handed out: dropped before that, the guard fires (the client
    /// left) and the deadline stops.
    armed: Option<(DisconnectGuard, Option<Deadline>)>,
    /// For a body the application is still producing: resolves when the flight fires, and
    /// the stream is then cut.
    fired: Option<Pin<Box<dyn Future<Output = Reason> + Send + Sync>>>,
}

impl Watch {
    /// The response is complete (or ended by the application): nothing to watch any more.
    fn disarm(&mut self) {
        if let Some((mut guard, _deadline)) = self.armed.take() {
            guard.disarm();
        }
        self.fired = None;
    }
}

enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>, Arc<AtomicBool>, Option<Trailers>),
    File(ReaderStream<tokio::io::Take<tokio::fs::File>>),
    Range(FileRange),
    Parts(Parts),
}

/// One piece of a [`OutBody::parts`] body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Bytes(Bytes),
    /// `len` bytes of the body's file from `offset`.
    File {
        offset: u64,
        len: u64,
    },
}

impl OutBody {
    fn new(kind: Kind, declared: Option<u64>) -> Self {
        Self {
            kind,
            sent: 0,
            declared,
            finish: None,
            watch: None,
        }
    }

    pub fn full(bytes: Bytes) -> Self {
        Self::new(Kind::Full(Some(bytes).filter(|b| !b.is_empty())), None)
    }

    pub fn stream(
        rx: mpsc::Receiver<Chunk>,
        aborted: Arc<AtomicBool>,
        trailers: Option<Trailers>,
    ) -> Self {
        Self::new(Kind::Stream(rx, aborted, trailers), None)
    }

    /// `len` bytes of `file`, which is already positioned at the first one.
    pub fn file(file: tokio::fs::File, len: u64) -> Self {
        use tokio::io::AsyncReadExt;
        let stream = ReaderStream::with_capacity(file.take(len), FILE_CHUNK);
        Self::new(Kind::File(stream), Some(len))
    }

    /// `len` bytes of `file` from `offset` (a static file, or a range of one).
    pub fn file_range(file: File, offset: u64, len: u64) -> Self {
        Self::new(
            Kind::Range(FileRange::new(Arc::new(file), offset, len)),
            None,
        )
    }

    /// `parts` in order, `len` bytes in all; `file` is read for the [`Part::File`] parts (a
    /// body without any may pass `None`).
    pub fn parts(parts: Vec<Part>, file: Option<File>, len: u64) -> Self {
        Self::new(
            Kind::Parts(Parts {
                queue: parts.into(),
                file: file.map(Arc::new),
                current: None,
                len,
            }),
            None,
        )
    }

    /// A streamed body that will be `len` bytes long (the application declared
    /// Content-Length).
    #[must_use]
    pub fn with_length(mut self, len: u64) -> Self {
        self.declared = Some(len);
        self
    }

    #[must_use]
    pub fn on_finish(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }

    /// Carry an application request's cancellation state: `guard` fires `flight` if the body
    /// is dropped before its last frame; for a `streamed` body (still being produced by a
    /// worker thread) the stream is cut when the flight fires, and `deadline` runs until the
    /// stream ends.
    #[must_use]
    pub fn watched(
        mut self,
        flight: Arc<Flight>,
        mut guard: DisconnectGuard,
        deadline: Option<Deadline>,
        streamed: bool,
    ) -> Self {
        let fired: Option<Pin<Box<dyn Future<Output = Reason> + Send + Sync>>> = if streamed {
            let flight = Arc::clone(&flight);
            Some(Box::pin(async move { flight.fired().await }))
        } else {
            None
        };
        let armed = if self.is_end_stream() {
            // hyper never polls a body that is already at its end.
            guard.disarm();
            None
        } else {
            Some((guard, deadline))
        };
        self.watch = Some(Box::new(Watch {
            flight,
            armed,
            fired,
        }));
        self
    }
}

impl Drop for OutBody {
    fn drop(&mut self) {
        // The guard first: if it fires, the access line records why.
        let reason = self.watch.take().and_then(|mut w| {
            drop(w.armed.take());
            w.flight.reason()
        });
        if let Some(finish) = self.finish.take() {
            finish(self.sent, reason);
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(fired) = this.watch.as_mut().and_then(|w| w.fired.as_mut()) {
            if let Poll::Ready(reason) = fired.as_mut().poll(cx) {
                // Cancelled while the application was still producing the body: end the
                // connection (HTTP/1) or reset the stream (HTTP/2), so the client cannot
                // mistake what it got for the whole response.
                if let Some(w) = this.watch.as_mut() {
                    w.fired = None;
                }
                return Poll::Ready(Some(Err(io::Error::other(format!(
                    "the response was cut short: {}",
                    reason.describe()
                )))));
            }
        }
        let next = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Kind::Stream(rx, aborted, trailers) => match rx.poll_recv(cx) {
                // The worker gave up on this response (an error, or a client too slow to
                // read): end the connection so the client cannot mistake a truncated body for
                // a complete one.
                Poll::Ready(None) if aborted.swap(false, Ordering::AcqRel) => Poll::Ready(Some(
                    Err(io::Error::other("the response was cut short by the server")),
                )),
                Poll::Ready(None) => {
                    let fields = trailers.as_ref().and_then(|slot| {
                        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
                    });
                    if let Some(fields) = fields {
                        this.disarm();
                        return Poll::Ready(Some(Ok(Frame::trailers(fields))));
                    }
                    Poll::Ready(None)
                }
                other => other,
            },
            Kind::File(stream) => Pin::new(stream).poll_next(cx),
            Kind::Range(range) => range.poll_chunk(cx),
            Kind::Parts(parts) => parts.poll_next(cx),
        };
        match next {
            Poll::Ready(Some(Ok(bytes))) => {
                this.sent += bytes.len() as u64;
                // hyper may never poll again after the last frame (it asks `is_end_stream`),
                // so the response counts as complete once that frame is handed out.
                if this.is_end_stream() {
                    this.disarm();
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => {
                // Ended by the server (the application failed, a file shrank): not a client
                // that left.
                this.disarm();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.disarm();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(None) => true,
            Kind::Range(r) => r.remaining == 0,
            Kind::Parts(p) => p.queue.is_empty(),
            Kind::Full(Some(_)) => false,
            Kind::Stream(..) | Kind::File(_) => self.declared.is_some_and(|len| self.sent >= len),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Range(r) => SizeHint::with_exact(r.remaining),
            Kind::Parts(p) => SizeHint::with_exact(p.len.saturating_sub(self.sent)),
            Kind::Stream(..) | Kind::File(_) => SizeHint::default(),
        }
    }
}

impl OutBody {
    fn disarm(&mut self) {
        if let Some(w) = self.watch.as_mut() {
            w.disarm();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn file_with(data: &[u8]) -> File {
        use std::io::{Seek, Write};
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f.rewind().unwrap();
        f
    }

    #[tokio::test]
    async fn file_ranges_and_parts_read_the_right_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let body = OutBody::file_range(file_with(&data), 1000, 200_000);
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[1000..201_000]);

        let parts = vec![
            Part::Bytes(Bytes::from_static(b"<a>")),
            Part::File { offset: 5, len: 3 },
            Part::Bytes(Bytes::from_static(b"<b>")),
            Part::File {
                offset: 100_000,
                len: 150_000,
            },
        ];
        let body = OutBody::parts(parts, Some(file_with(&data)), 3 + 3 + 3 + 150_000);
        let got = body.collect().await.unwrap().to_bytes();
        let mut want = b"<a>".to_vec();
        want.extend_from_slice(&data[5..8]);
        want.extend_from_slice(b"<b>");
        want.extend_from_slice(&data[100_000..250_000]);
        assert_eq!(&got[..], &want[..]);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pages_not_in_the_page_cache_are_read_on_the_blocking_pool() {
        use std::os::fd::AsRawFd;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let file = file_with(&data);
        file.sync_all().unwrap();
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let got = OutBody::file_range(file, 10, 150_000)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&got[..], &data[10..150_010]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error() {
        let body = OutBody::file_range(file_with(b"short"), 0, 10);
        assert!(body.collect().await.is_err());
    }
}
