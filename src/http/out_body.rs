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

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::cancel::{Deadline, DisconnectGuard, Flight, Reason};
use crate::job::Chunk;

/// Runs once when the response body is dropped, with the number of body bytes sent and, for
/// an application response, why it was cancelled if it was.
pub type Finish = Box<dyn FnOnce(u64, Option<Reason>) + Send + Sync>;

/// Chunk size for file bodies: large enough to keep syscalls few, small enough that a slow
/// client holds little memory.
const FILE_CHUNK: usize = 64 * 1024;

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
    Stream(mpsc::Receiver<Chunk>, Arc<AtomicBool>),
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

/// Parts sent in order; file parts are ranges of one file.
struct Parts {
    queue: VecDeque<Part>,
    file: Option<Arc<File>>,
    /// The file part at the front of the queue, being read.
    current: Option<FileRange>,
    len: u64,
}

/// A byte range of a file, read with positioned reads (no shared file position), a chunk at a
/// time. On Linux a chunk whose pages are in the page cache is read right on the runtime
/// thread (`preadv2` with `RWF_NOWAIT` never waits for the disk); one that is not goes to the
/// blocking pool, as every chunk does elsewhere. A hop to the blocking pool per chunk costs
/// more than the copy itself for a cached file, and that is the common case for static files.
struct FileRange {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
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

    pub fn stream(rx: mpsc::Receiver<Chunk>, aborted: Arc<AtomicBool>) -> Self {
        Self::new(Kind::Stream(rx, aborted), None)
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

impl Parts {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.queue.front() {
                None => return Poll::Ready(None),
                Some(Part::Bytes(_)) => {
                    let Some(Part::Bytes(b)) = self.queue.pop_front() else {
                        unreachable!("the front part was just matched as bytes")
                    };
                    return Poll::Ready(Some(Ok(b)));
                }
                Some(&Part::File { offset, len }) => {
                    let Some(file) = &self.file else {
                        return Poll::Ready(Some(Err(io::Error::other(
                            "a file part without a file to read it from",
                        ))));
                    };
                    let range = self
                        .current
                        .get_or_insert_with(|| FileRange::new(Arc::clone(file), offset, len));
                    if let Some(chunk) = std::task::ready!(range.poll_chunk(cx)) {
                        return Poll::Ready(Some(chunk));
                    }
                    self.current = None;
                    self.queue.pop_front();
                }
            }
        }
    }
}

impl FileRange {
    fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self {
            file,
            offset,
            remaining: len,
            pending: None,
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(FILE_CHUNK);
        let read = match &mut self.pending {
            None => {
                if let Some(read) = read_cached(&self.file, self.offset, want) {
                    read
                } else {
                    let (file, offset) = (Arc::clone(&self.file), self.offset);
                    self.pending = Some(tokio::task::spawn_blocking(move || {
                        read_at(&file, offset, want, 0)
                    }));
                    return self.poll_chunk(cx);
                }
            }
            Some(handle) => {
                let joined = std::task::ready!(Pin::new(handle).poll(cx));
                self.pending = None;
                joined.unwrap_or_else(|e| Err(io::Error::other(e)))
            }
        };
        Poll::Ready(Some(match read {
            Ok(chunk) if chunk.is_empty() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was being sent",
            )),
            Ok(chunk) => {
                self.offset += chunk.len() as u64;
                self.remaining -= chunk.len() as u64;
                Ok(chunk)
            }
            Err(e) => Err(e),
        }))
    }
}

/// Up to `want` bytes at `offset` if they are in the page cache; `None` means "ask the
/// blocking pool" (not cached, or a file system that cannot tell).
#[cfg(target_os = "linux")]
fn read_cached(file: &File, offset: u64, want: usize) -> Option<io::Result<Bytes>> {
    match read_at(file, offset, want, libc::RWF_NOWAIT) {
        Ok(chunk) if chunk.is_empty() => None, // EOF, or nothing cached: let a blocking read say
        Err(_) => None,
        ok => Some(ok),
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _offset: u64, _want: usize) -> Option<io::Result<Bytes>> {
    None
}

/// One positioned read of up to `want` bytes (`preadv2`, so `flags` may ask not to wait),
/// into a recycled buffer.
#[cfg(target_os = "linux")]
fn read_at(file: &File, offset: u64, want: usize, flags: libc::c_int) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = buffers::take(want);
    let iov = libc::iovec {
        iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
        iov_len: want,
    };
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    loop {
        // SAFETY: the iovec points into `buf`'s spare capacity, at least `want` bytes, which
        // stays allocated for the call; the kernel writes at most `want` bytes there.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &raw const iov, 1, offset, flags) };
        if n >= 0 {
            // SAFETY: the kernel initialized the first `n` (<= `want`) bytes.
            unsafe { buf.set_len(n as usize) };
            return Ok(buffers::share(buf));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            buffers::give_back(buf);
            return Err(e);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_at(file: &File, offset: u64, want: usize, _flags: i32) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = buffers::take(want);
    buf.resize(want, 0);
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    Ok(buffers::share(buf))
}

/// Read buffers for file bodies, recycled: a chunk handed to hyper goes back to the pool when
/// hyper drops it. Allocating a fresh 64 KiB buffer per chunk made the allocator hand pages
/// back to the kernel and fault them in again, which cost as much CPU as the copies (measured
/// on a 1 MB file: 690 µs of CPU per request with fresh buffers, 400 µs recycled).
mod buffers {
    use std::sync::{Mutex, PoisonError};

    use bytes::Bytes;

    use super::FILE_CHUNK;

    /// Idle buffers kept: 128 × 64 KiB = 8 MiB at most, enough for the chunks of about twenty
    /// busy downloads in flight at once (hyper queues up to ~400 KB per connection); beyond
    /// that buffers are freed and allocated as usual. 128 was chosen by measuring 64
    /// connections on a 1 MB file.
    const KEEP: usize = 128;

    static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    /// An empty buffer with room for at least `want` bytes.
    pub fn take(want: usize) -> Vec<u8> {
        if want <= FILE_CHUNK {
            if let Some(buf) = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop() {
                return buf;
            }
        }
        Vec::with_capacity(want.max(FILE_CHUNK))
    }

    pub fn give_back(mut buf: Vec<u8>) {
        if buf.capacity() != FILE_CHUNK {
            return;
        }
        buf.clear();
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < KEEP {
            pool.push(buf);
        }
    }

    /// `buf` as `Bytes` that return it to the pool when the last clone is dropped.
    pub fn share(buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Recycled(buf))
    }

    struct Recycled(Vec<u8>);

    impl AsRef<[u8]> for Recycled {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Recycled {
        fn drop(&mut self) {
            give_back(std::mem::take(&mut self.0));
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
