//! Server and access logs, into Python `logging` or straight into a file.
//!
//! Server records are `tracing` events (`log_info!` and the like are `tracing`'s macros, see
//! `facade.rs`), and so are the records of our dependencies, whether they speak `tracing`
//! (h2) or `log` (rustls, mio, globset, notify): `facade.rs` is the process's subscriber and
//! decides what is kept. Access lines do not go through the facade: `http/access.rs` formats
//! them and hands them to [`emit_access`] with their status.
//!
//! Records are filtered against a cached level before anything is formatted, so a filtered
//! record costs one atomic load and never touches the GIL. Accepted records go through a
//! bounded channel to one log thread (`ferrule-log`) that stays attached to the interpreter
//! and calls `logging.getLogger(name).log(...)`, so tokio threads never wait for the GIL:
//! `ferrule` for the server, `ferrule.access` for access lines, `ferrule.<crate>` for a
//! dependency (`ferrule.rustls`, `ferrule.h2`), which propagates to `ferrule`'s handlers. With
//! `--log-file` the same records are written to the file instead, at the verbosity of
//! `FERRULE_DEBUG`. Before [`init_python`] or [`init_file`], server records at INFO and above
//! go to stderr.
//!
//! The level that matters is the `ferrule` logger's (or `FERRULE_DEBUG`'s): a dependency's
//! records are kept only while it is DEBUG or TRACE. Setting `ferrule.h2` to WARNING silences
//! h2 (Python filters again); setting it to DEBUG while `ferrule` is at INFO does not turn it on.

pub mod facade;
pub mod throttle;

use std::collections::hash_map::{Entry, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Python's numeric levels, so a cached threshold compares directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Trace = 5,
    Debug = 10,
    Info = 20,
    Warn = 30,
    Error = 40,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The `ferrule` logger: server events.
    Server,
    /// The `ferrule.access` logger: one line per request.
    Access,
}

impl Target {
    fn logger_name(self) -> &'static str {
        match self {
            Target::Server => "ferrule",
            Target::Access => "ferrule.access",
        }
    }
}

/// Lowest level that passes, per target; 0 lets everything through. Before `init`, server
/// records at INFO and above go to stderr so start-up errors are never lost. Changed only
/// through [`set_server_threshold`], which tells the facade.
static SERVER_THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
static ACCESS_THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);
/// `--access-log`: access lines are only made when it is on, whatever the logger's level.
static ACCESS_ON: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<Sink> = OnceLock::new();

/// Records waiting for the log thread; beyond this they are dropped and counted rather than
/// blocking a tokio thread. 16384 was chosen to absorb a burst of access lines at ~100k req/s.
const QUEUE: usize = 16_384;

enum Sink {
    Python(SyncSender<Message>),
    File(Mutex<LineWriter<File>>),
}

enum Message {
    Record(Target, Level, String),
    /// A dependency's record, for the `ferrule.<crate>` logger.
    Dependency(Box<str>, Level, String),
    /// An access line and its status, which Python's record carries as `status_code` (as
    /// Django's `django.server` records do), so a handler can colour by it.
    Access(u16, String),
    Stop,
}

/// True when a record at `level` for `target` would be kept.
#[inline]
pub fn enabled(target: Target, level: Level) -> bool {
    let threshold = match target {
        Target::Server => &SERVER_THRESHOLD,
        Target::Access if ACCESS_ON.load(Ordering::Relaxed) => &ACCESS_THRESHOLD,
        Target::Access => return false,
    };
    level as u8 >= threshold.load(Ordering::Relaxed)
}

/// The `ferrule` logger's level, which the facade filters against.
#[inline]
fn server_threshold() -> u8 {
    SERVER_THRESHOLD.load(Ordering::Relaxed)
}

fn set_server_threshold(level: u8) {
    if SERVER_THRESHOLD.swap(level, Ordering::Relaxed) != level {
        facade::level_changed();
    }
}

/// Log a record that already passed [`enabled`].
pub fn emit(target: Target, level: Level, message: String) {
    match SINK.get() {
        Some(Sink::Python(tx)) => send(tx, Message::Record(target, level, message)),
        Some(Sink::File(file)) => write_file(file, target, level, &message),
        None => write_stderr(target, level, &message),
    }
}

/// Log the record of dependency `krate` (its line already names its target), which already
/// passed the facade's filter.
fn emit_dependency(krate: &str, level: Level, line: String) {
    match SINK.get() {
        Some(Sink::Python(tx)) => send(tx, Message::Dependency(krate.into(), level, line)),
        Some(Sink::File(file)) => write_file(file, Target::Server, level, &line),
        None => write_stderr(Target::Server, level, &line),
    }
}

/// Log an access line (which already passed [`enabled`]) for a response with `status`.
pub fn emit_access(status: u16, line: String) {
    match SINK.get() {
        Some(Sink::Python(tx)) => send(tx, Message::Access(status, line)),
        _ => emit(Target::Access, Level::Info, line),
    }
}

/// Queue a message for the log thread: dropped and counted when the queue is full, written
/// to stderr when the thread has stopped.
fn send(tx: &SyncSender<Message>, message: Message) {
    match tx.try_send(message) {
        Ok(()) | Err(TrySendError::Disconnected(Message::Stop)) => {}
        Err(TrySendError::Full(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(Message::Record(target, level, m))) => {
            write_stderr(target, level, &m);
        }
        Err(TrySendError::Disconnected(Message::Dependency(_, level, m))) => {
            write_stderr(Target::Server, level, &m);
        }
        Err(TrySendError::Disconnected(Message::Access(_, m))) => {
            write_stderr(Target::Access, Level::Info, &m);
        }
    }
}

fn write_file(file: &Mutex<LineWriter<File>>, target: Target, level: Level, message: &str) {
    let line = format_line(target, level, message);
    if let Ok(mut f) = file.lock() {
        let _ = f.write_all(line.as_bytes());
    }
}

fn write_stderr(target: Target, level: Level, message: &str) {
    let _ = std::io::stderr().write_all(format_line(target, level, message).as_bytes());
}

fn format_line(target: Target, level: Level, message: &str) -> String {
    if target == Target::Access {
        return format!("{message}\n");
    }
    let (y, mo, d, h, mi, s) = utc_parts(SystemTime::now());
    format!(
        "[{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000] [{}] [{}] {message}\n",
        std::process::id(),
        level.name()
    )
}

/// The running log thread, stopped (after writing what is queued) by [`LogThread::stop`].
pub struct LogThread {
    tx: SyncSender<Message>,
    handle: Option<JoinHandle<()>>,
}

impl LogThread {
    /// Flush what is queued and stop. Call without holding the GIL.
    pub fn stop(mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Turn access lines on or off (`--access-log`).
pub fn set_access_log(on: bool) {
    ACCESS_ON.store(on, Ordering::Relaxed);
}

/// Route logs to a file, verbosity from `FERRULE_DEBUG`.
pub fn init_file(path: &Path) -> Result<(), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file '{}': {e}", path.display()))?;
    let level = match std::env::var("FERRULE_DEBUG")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("1") => Level::Error,
        Some("2") => Level::Warn,
        Some("4") => Level::Debug,
        Some("5") => Level::Trace,
        _ => Level::Info,
    };
    set_server_threshold(level as u8);
    ACCESS_THRESHOLD.store(level as u8, Ordering::Relaxed);
    let _ = SINK.set(Sink::File(Mutex::new(LineWriter::new(file))));
    let _ = LOG_PATH.set(path.to_path_buf());
    Ok(())
}

/// The `--log-file` path, for [`reopen`].
static LOG_PATH: OnceLock<std::path::PathBuf> = OnceLock::new();

/// SIGUSR1: open the log file again (logrotate moved it away). Returns whether there is a
/// log file; logs that go through Python `logging` are the application's to rotate.
pub fn reopen() -> Result<bool, String> {
    let (Some(Sink::File(writer)), Some(path)) = (SINK.get(), LOG_PATH.get()) else {
        return Ok(false);
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot reopen log file '{}': {e}", path.display()))?;
    let mut w = writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = std::io::Write::flush(&mut *w);
    *w = LineWriter::new(file);
    Ok(true)
}

/// Route logs into Python `logging`, adding default stderr handlers when the application
/// configured none (`dev`: access lines with the time of day, coloured on a terminal), and
/// start the log thread.
pub fn init_python(py: Python<'_>, dev: bool) -> PyResult<LogThread> {
    py.import("ferrule._logging")?
        .call_method1("ensure_handlers", (dev,))?;
    let logging = py.import("logging")?;
    let server = logging
        .call_method1("getLogger", (Target::Server.logger_name(),))?
        .unbind();
    let access = logging
        .call_method1("getLogger", (Target::Access.logger_name(),))?
        .unbind();
    let logging = logging.unbind();
    refresh_thresholds(py, &server, &access);
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let _ = SINK.set(Sink::Python(tx.clone()));
    let handle = std::thread::Builder::new()
        .name("ferrule-log".into())
        .spawn(move || {
            Python::attach(|py| {
                python_log_loop(py, &Mutex::new(rx), &logging, &server, &access);
            });
        })
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the log thread: {e}"))
        })?;
    Ok(LogThread {
        tx,
        handle: Some(handle),
    })
}

/// Re-read the effective levels, which the application may change at any time.
fn refresh_thresholds(py: Python<'_>, server: &Py<PyAny>, access: &Py<PyAny>) {
    set_server_threshold(threshold_of(py, server).unwrap_or(Level::Info as u8));
    let access_level = threshold_of(py, access).unwrap_or(Level::Info as u8);
    ACCESS_THRESHOLD.store(access_level, Ordering::Relaxed);
}

fn threshold_of(py: Python<'_>, logger: &Py<PyAny>) -> PyResult<u8> {
    let logger = logger.bind(py);
    // isEnabledFor also honours logging.disable() and a disabled logger.
    for level in [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ] {
        if logger
            .call_method1("isEnabledFor", (level as u8,))?
            .is_truthy()?
        {
            return Ok(level as u8);
        }
    }
    Ok(u8::MAX)
}

fn python_log_loop(
    py: Python<'_>,
    rx: &Mutex<Receiver<Message>>,
    logging: &Py<PyModule>,
    server: &Py<PyAny>,
    access: &Py<PyAny>,
) {
    // `ferrule.<crate>` for each dependency that logged.
    let mut children: HashMap<Box<str>, Py<PyAny>> = HashMap::new();
    // Levels are re-read after every batch. The thread never wakes on a timer: taking the
    // GIL on a schedule would stall the worker threads for nothing.
    loop {
        // The lock is only ever taken by this thread; it makes the receiver shareable with
        // the detached closure.
        let lock = || rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ok(first) = py.detach(|| lock().recv()) else {
            return;
        };
        let mut batch = vec![first];
        batch.extend(lock().try_iter().take(1024));
        let mut stop = false;
        for m in batch {
            match m {
                Message::Record(target, level, text) => {
                    let logger = match target {
                        Target::Server => server,
                        Target::Access => access,
                    };
                    let result = logger.bind(py).call_method1("log", (level as u8, text));
                    // A broken handler must not take logging down with it; Python's
                    // logging already printed the handler's error to stderr.
                    if result.is_err() {
                        PyErr::fetch(py);
                    }
                }
                Message::Dependency(krate, level, text) => {
                    let logger = match children.entry(krate) {
                        Entry::Occupied(known) => Ok(known.into_mut()),
                        Entry::Vacant(new) => {
                            let name = format!("{}.{}", Target::Server.logger_name(), new.key());
                            logging
                                .bind(py)
                                .call_method1("getLogger", (name,))
                                .map(|logger| new.insert(logger.unbind()))
                        }
                    };
                    let result =
                        logger.and_then(|l| l.bind(py).call_method1("log", (level as u8, text)));
                    if result.is_err() {
                        PyErr::fetch(py);
                    }
                }
                Message::Access(status, text) => {
                    let extra = PyDict::new(py);
                    let result = extra
                        .set_item("status_code", status)
                        .and_then(|()| {
                            let kwargs = PyDict::new(py);
                            kwargs.set_item("extra", extra)?;
                            Ok(kwargs)
                        })
                        .and_then(|kwargs| {
                            access.bind(py).call_method(
                                "log",
                                (Level::Info as u8, text),
                                Some(&kwargs),
                            )
                        });
                    if result.is_err() {
                        PyErr::fetch(py);
                    }
                }
                Message::Stop => stop = true,
            }
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = server.bind(py).call_method1(
                "log",
                (
                    Level::Warn as u8,
                    format!("{dropped} log records were dropped because logging could not keep up"),
                ),
            );
        }
        refresh_thresholds(py, server, access);
        if stop {
            return;
        }
    }
}

/// Current UTC time split into (year, month, day, hour, minute, second).
#[allow(clippy::many_single_char_names)] // the names of the published algorithm
pub fn utc_parts(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_parts_matches_known_dates() {
        assert_eq!(utc_parts(UNIX_EPOCH), (1970, 1, 1, 0, 0, 0));
        let t = UNIX_EPOCH + Duration::from_secs(1_795_704_736);
        assert_eq!(utc_parts(t), (2026, 11, 26, 14, 52, 16));
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_parts(leap), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn levels_filter_below_threshold() {
        assert!(enabled(Target::Server, Level::Error));
        assert!(!enabled(Target::Server, Level::Debug));
    }
}
