//! Reading files for response bodies: a byte range of a file read a chunk at a time with
//! positioned reads (static files), a sequence of parts mixing bytes and ranges of one file
//! (`multipart/byteranges`), and the recycled read buffers. The body type that sends them is
//! `body.rs`'s.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::Part;

/// Chunk size for file bodies: large enough to keep syscalls few, small enough that a slow
/// client holds little memory.
pub(super) const FILE_CHUNK: usize = 64 * 1024;

/// Parts sent in order; file parts are ranges of one file.
pub(super) struct Parts {
    pub(super) queue: VecDeque<Part>,
    pub(super) file: Option<Arc<File>>,
    /// The file part at the front of the queue, being read.
    pub(super) current: Option<FileRange>,
    pub(super) len: u64,
}

/// A byte range of a file, read with positioned reads (no shared file position), a chunk at a
/// time. On Linux a chunk whose pages are in the page cache is read right on the runtime
/// thread (`preadv2` with `RWF_NOWAIT` never waits for the disk); one that is not goes to the
/// blocking pool, as every chunk does elsewhere. A hop to the blocking pool per chunk costs
/// more than the copy itself for a cached file, and that is the common case for static files.
pub(super) struct FileRange {
    file: Arc<File>,
    offset: u64,
    pub(super) remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl Parts {
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
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
    pub(super) fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self {
            file,
            offset,
            remaining: len,
            pending: None,
        }
    }

    pub(super) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
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
