//! The response body type handed to hyper, and the bookkeeping that ends with it.
//!
//! One enum covers the three ways a body arrives (whole, streamed from a worker thread, read
//! from a file by tokio). The body owns a [`Finish`] hook that runs when hyper drops it — after
//! the last byte was written, or when the connection died — so the access log line and the
//! per-connection in-flight count are always settled exactly once.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

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
        matches!(&self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(..) | Kind::File(_) => SizeHint::default(),
        }
    }
}
