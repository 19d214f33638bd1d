//! `wsgi.input`: the request body, already read by Rust, as a file-like object.
//!
//! `read`, `readline`, `readlines` and iteration over a body held in memory or in a spool
//! file. Reads keep the GIL: the state lock is held across a read, and releasing the GIL
//! while holding it could deadlock two Python threads sharing one `wsgi.input`; a spool file
//! was just written, so its reads come from the page cache. Reading the body off the network
//! is `body.rs`'s job.

use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::body::Body;

/// How much of a spool file `readline` looks at per step.
const LINE_STEP: usize = 8192;

#[pyclass(module = "ferrule", name = "Input", frozen)]
pub struct Input {
    state: Mutex<State>,
}

struct State {
    body: Body,
    pos: u64,
}

impl Input {
    /// Drop the body (reads then return nothing), freeing its memory or spool file.
    pub fn release(&self) {
        let mut state = self.lock();
        state.body = Body::Memory(bytes::Bytes::new());
        state.pos = 0;
    }

    pub fn new(body: Body) -> Self {
        Self {
            state: Mutex::new(State { body, pos: 0 }),
        }
    }
}

impl State {
    fn remaining(&self) -> u64 {
        self.body.len().saturating_sub(self.pos)
    }

    /// Up to `n` bytes from the current position, without moving it.
    fn peek(&self, n: usize) -> PyResult<Vec<u8>> {
        let n = n.min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        match &self.body {
            Body::Memory(bytes) => {
                let start = self.pos as usize;
                Ok(bytes[start..start + n].to_vec())
            }
            Body::File { file, .. } => {
                let mut buf = vec![0; n];
                let pos = self.pos;
                file.read_exact_at(&mut buf, pos).map_err(|e| {
                    PyOSError::new_err(format!("cannot read the spooled request body: {e}"))
                })?;
                Ok(buf)
            }
        }
    }

    /// Read into a new `bytes` object directly: bodies can be large, and one copy is enough.
    fn read<'py>(&mut self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let want = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let n = want.min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        let pos = self.pos;
        let data = match &self.body {
            Body::Memory(bytes) => PyBytes::new(py, &bytes[pos as usize..pos as usize + n]),
            Body::File { file, .. } => PyBytes::new_with(py, n, |buf| {
                file.read_exact_at(buf, pos).map_err(|e| {
                    PyOSError::new_err(format!("cannot read the spooled request body: {e}"))
                })
            })?,
        };
        self.pos += n as u64;
        Ok(data)
    }

    fn readline(&mut self, size: Option<i64>) -> PyResult<Vec<u8>> {
        let limit = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        if let Body::Memory(bytes) = &self.body {
            let start = self.pos as usize;
            let window = &bytes[start..bytes.len().min(start.saturating_add(limit))];
            let end = window
                .iter()
                .position(|&b| b == b'\n')
                .map_or(window.len(), |i| i + 1);
            self.pos += end as u64;
            return Ok(window[..end].to_vec());
        }
        let mut line = Vec::new();
        while line.len() < limit && self.remaining() > 0 {
            let chunk = self.peek(LINE_STEP.min(limit - line.len()))?;
            let end = chunk
                .iter()
                .position(|&b| b == b'\n')
                .map_or(chunk.len(), |i| i + 1);
            line.extend_from_slice(&chunk[..end]);
            self.pos += end as u64;
            if end < chunk.len() || chunk[..end].last() == Some(&b'\n') {
                break;
            }
        }
        Ok(line)
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        self.lock().read(py, size)
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.lock().readline(size)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<i64>) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let mut state = self.lock();
        let mut total = 0usize;
        loop {
            let line = state.readline(None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| h > 0 && total >= h as usize) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.lock().readline(None)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

impl Input {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
