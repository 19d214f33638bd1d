//! `wsgi.file_wrapper`: lets tokio send a file while the worker thread moves on.
//!
//! The wrapper is an ordinary iterable (so any code may iterate it), but when the application
//! returns it and the file-like object has a real file descriptor for a regular file, the
//! response layer (`response.rs`) opens the same file independently and tokio sends it.

use std::fs::File;
use std::os::fd::FromRawFd;

use pyo3::prelude::*;

#[pyclass(module = "ferrule", name = "FileWrapper", frozen)]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

/// A file the server can send by itself: its own descriptor, the position the application
/// left it at, and the bytes from there to the end.
pub struct Sendable {
    pub file: File,
    pub offset: u64,
    pub remaining: u64,
}

impl FileWrapper {
    /// The file behind the wrapper, if it is a regular file with a descriptor; None means the
    /// wrapper must be iterated like any other body.
    pub fn sendable(&self, py: Python<'_>) -> Option<Sendable> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
        // Only a regular file can be sent this way; checking first also keeps the open below
        // from blocking on a FIFO.
        // SAFETY: `stat` is a plain C struct for which all-zero is valid; fstat only writes it.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on any integer is safe; an invalid descriptor makes it fail.
        if unsafe { libc::fstat(fd, &raw mut stat) } != 0
            || stat.st_mode & libc::S_IFMT != libc::S_IFREG
        {
            return None;
        }
        let offset: u64 = f.call_method0("tell").ok()?.extract().ok()?;
        // On Linux an independent open file description, so closing the application's object
        // cannot pull the file away; elsewhere a duplicate. Our reads are positioned either way,
        // so they neither move nor depend on the application's file position.
        #[cfg(target_os = "linux")]
        let reopened = File::open(format!("/proc/self/fd/{fd}")).ok();
        #[cfg(not(target_os = "linux"))]
        let reopened = None;
        let file = reopened.or_else(|| {
            // SAFETY: dup returns a new descriptor we own, or -1 which we check.
            let dup = unsafe { libc::dup(fd) };
            (dup >= 0).then(|| unsafe { File::from_raw_fd(dup) })
        })?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Sendable {
            file,
            offset,
            remaining: meta.len().saturating_sub(offset),
        })
    }
}
