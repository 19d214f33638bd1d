//! `wsgi.errors`: a text stream whose lines go to the `ferrule` logger at ERROR.

use std::sync::Mutex;

use pyo3::prelude::*;

use crate::log_error;

#[pyclass(module = "ferrule", name = "ErrorStream", frozen)]
#[derive(Default)]
pub struct ErrorStream {
    pending: Mutex<String>,
}

impl ErrorStream {
    fn emit_lines(&self, flush_all: bool) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            log_error!("{}", line.trim_end_matches('\n'));
        }
        if flush_all && !pending.is_empty() {
            log_error!("{}", std::mem::take(&mut *pending));
        }
    }
}

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_str(text);
        self.emit_lines(false);
        text.chars().count()
    }

    fn writelines(&self, lines: Vec<String>) {
        for line in lines {
            self.write(&line);
        }
    }

    fn flush(&self) {
        self.emit_lines(true);
    }
}

impl Drop for ErrorStream {
    fn drop(&mut self) {
        self.emit_lines(true);
    }
}
