//! Python `bytes` lent to the network core without copying.
//!
//! A `bytes` object is immutable and its buffer lives as long as the object, so holding a
//! reference is enough to let hyper write straight from it. Small bodies are copied instead:
//! the bookkeeping of a lent buffer costs more than copying a few kilobytes.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Bodies at least this large are lent rather than copied. 4 KiB: about where a copy starts
/// to cost more than the shared owner that `Bytes::from_owner` allocates.
const LEND_FROM: usize = 4096;

struct Lent {
    /// Keeps the buffer alive. Dropped wherever hyper finishes with it, possibly without
    /// the GIL: pyo3 then defers the reference count update to the next GIL holder.
    _object: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the buffer is immutable and owned by `_object`, which `Lent` keeps alive; reading
// it needs no GIL, and `Py<T>` itself may be sent and dropped on any thread.
unsafe impl Send for Lent {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` describe the buffer of `_object`, alive and unchanged.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The contents of `bytes` as `Bytes`, lent when large and copied when small.
pub fn lend(bytes: &Bound<'_, PyBytes>) -> Bytes {
    let data = bytes.as_bytes();
    if data.len() < LEND_FROM {
        return Bytes::copy_from_slice(data);
    }
    Bytes::from_owner(Lent {
        ptr: data.as_ptr(),
        len: data.len(),
        _object: bytes.clone().unbind(),
    })
}
