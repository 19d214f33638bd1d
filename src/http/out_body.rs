//! The response body type handed to hyper, and the bookkeeping that ends with it.
//!
//! One enum covers the ways a body arrives (whole, streamed from a worker thread, read from a
//! file by tokio, or a sequence of parts — `multipart/byteranges` of a static file). The body owns a [`Finish`] hook that runs when hyper drops it — after
//! the last byte was written, or when the connection died — so the access log line and the
//! per-connection in-flight count are always settled exactly once.

use std::collections::VecDeque;
use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncSeek;
use tokio::sync::mpsc;
use tokio_util::io::{poll_read_buf, ReaderStream};

use crate::job::Chunk;

/// Runs once when the response body is dropped, with the number of body bytes sent.
pub type Finish = Box<dyn FnOnce(u64) + Send + Sync>;

/// Chunk size for file bodies: large enough to keep syscalls few, small enough that a slow
/// client holds little memory.
const FILE_CHUNK: usize = 64 * 1024;

pub struct OutBody {
    kind: Kind,
    sent: u64,
    finish: Option<Finish>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>, Arc<AtomicBool>),
    File(ReaderStream<tokio::io::Take<tokio::fs::File>>),
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

/// Parts sent in order; file parts are read from one file, seeking to each.
struct Parts {
    queue: VecDeque<Part>,
    file: Option<tokio::fs::File>,
    /// The seek to the front file part has completed.
    positioned: bool,
    /// A seek to the front file part was started and not yet completed.
    seeking: bool,
    len: u64,
}

impl OutBody {
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes).filter(|b| !b.is_empty())),
            sent: 0,
            finish: None,
        }
    }

    pub fn stream(rx: mpsc::Receiver<Chunk>, aborted: Arc<AtomicBool>) -> Self {
        Self {
            kind: Kind::Stream(rx, aborted),
            sent: 0,
            finish: None,
        }
    }

    /// `len` bytes of `file`, which is already positioned at the first one.
    pub fn file(file: tokio::fs::File, len: u64) -> Self {
        use tokio::io::AsyncReadExt;
        let stream = ReaderStream::with_capacity(file.take(len), FILE_CHUNK);
        Self {
            kind: Kind::File(stream),
            sent: 0,
            finish: None,
        }
    }

    /// `parts` in order, `len` bytes in all; `file` is read for the [`Part::File`] parts (a
    /// body without any may pass `None`).
    pub fn parts(parts: Vec<Part>, file: Option<tokio::fs::File>, len: u64) -> Self {
        Self {
            kind: Kind::Parts(Parts {
                queue: parts.into(),
                file,
                positioned: false,
                seeking: false,
                len,
            }),
            sent: 0,
            finish: None,
        }
    }

    #[must_use]
    pub fn on_finish(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }
}

impl Drop for OutBody {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish(self.sent);
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
        let next = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(Ok)),
            Kind::Stream(rx, aborted) => match rx.poll_recv(cx) {
                // The worker gave up on this response (an error, or a client too slow to
                // read): end the connection so the client cannot mistake a truncated body for
                // a complete one.
                Poll::Ready(None) if aborted.swap(false, Ordering::AcqRel) => Poll::Ready(Some(
                    Err(io::Error::other("the response was cut short by the server")),
                )),
                other => other,
            },
            Kind::File(stream) => Pin::new(stream).poll_next(cx),
            Kind::Parts(parts) => parts.poll_next(cx),
        };
        match next {
            Poll::Ready(Some(Ok(bytes))) => {
                this.sent += bytes.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(None) => true,
            Kind::Parts(p) => p.queue.is_empty(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Parts(p) => SizeHint::with_exact(p.len.saturating_sub(self.sent)),
            Kind::Stream(..) | Kind::File(_) => SizeHint::default(),
        }
    }
}

impl Parts {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        match self.queue.front_mut() {
            None => Poll::Ready(None),
            Some(Part::Bytes(_)) => {
                let Some(Part::Bytes(b)) = self.queue.pop_front() else {
                    unreachable!("the front part was just matched as bytes")
                };
                Poll::Ready(Some(Ok(b)))
            }
            Some(Part::File { offset, len }) => {
                let Some(file) = self.file.as_mut() else {
                    return Poll::Ready(Some(Err(io::Error::other(
                        "a file part without a file to read it from",
                    ))));
                };
                if !self.positioned {
                    if !self.seeking {
                        Pin::new(&mut *file).start_seek(SeekFrom::Start(*offset))?;
                        self.seeking = true;
                    }
                    std::task::ready!(Pin::new(&mut *file).poll_complete(cx))?;
                    self.seeking = false;
                    self.positioned = true;
                }
                let want = usize::try_from(*len).unwrap_or(usize::MAX).min(FILE_CHUNK);
                let mut buf = BytesMut::with_capacity(want);
                let mut limited = tokio::io::AsyncReadExt::take(&mut *file, want as u64);
                let n = std::task::ready!(poll_read_buf(Pin::new(&mut limited), cx, &mut buf))?;
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was being sent",
                    ))));
                }
                *len -= n as u64;
                if *len == 0 {
                    self.queue.pop_front();
                    self.positioned = false;
                }
                Poll::Ready(Some(Ok(buf.freeze())))
            }
        }
    }
}
