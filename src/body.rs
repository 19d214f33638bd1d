//! Request bodies, read completely by Rust before the application runs.
//!
//! A body is kept in memory up to `--body-buffer-size` and spooled to an anonymous temporary
//! file in `--spool-dir` beyond it (unlinked at creation, so it disappears with the last
//! descriptor however the request ends), up to `--max-body-size`. What is spooled at once is
//! bounded by `--max-spool-size` ([`Spool`]), and a body must keep up `--min-rate`
//! ([`Pace`]). Reading here rather than from a Python thread means a slow upload never holds
//! a thread, and hyper notices a client that went away. Presenting the body to the
//! application (`wsgi.input`) belongs to `wsgi/input.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// A complete request body.
#[derive(Debug)]
pub enum Body {
    Memory(Bytes),
    /// Spooled: the lease holds its bytes against `--max-spool-size` until the body is
    /// dropped (with the file).
    File {
        file: std::fs::File,
        len: u64,
        lease: SpoolLease,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a body could not be read; `R` is the trailer check's refusal.
#[derive(Debug)]
pub enum BodyError<R> {
    /// More than `--max-body-size` bytes: answer 413.
    TooLarge,
    /// The client sent a broken body or went away: nothing to answer.
    Client(hyper::Error),
    /// The temporary file could not be written: answer 500.
    Spool(io::Error),
    /// The client paused longer than `--body-timeout`: answer 408.
    Timeout,
    /// The client sent less than `--min-rate` over a window: answer 408.
    TooSlow,
    /// Spooling the body's first this many bytes would pass `--max-spool-size`: answer 503.
    SpoolFull(u64),
    /// The chunked body's trailer failed the caller's check (a field that belongs in a
    /// head): answer what the refusal says.
    Trailer(R),
}

/// A declared length sizes the first buffer, but only up to this much: a client must send
/// bytes, not just promise them, before it holds more memory. 64 KiB covers most form posts.
const FIRST_BUFFER: usize = 64 * 1024;

/// What a body must keep to.
pub struct Rules<'a> {
    /// `--body-buffer-size`: more is spooled.
    pub buffer: usize,
    /// `--max-body-size`.
    pub max: u64,
    /// `--body-timeout`: the longest pause.
    pub idle: Duration,
    /// `--min-rate`, if on.
    pub pace: Option<Pace>,
    pub spool: &'a Spool,
}

/// Read the whole body, spooling past `rules.buffer` bytes (taking room in the spool as the
/// bytes arrive) and refusing more than `rules.max`. `declared` is the Content-Length, if
/// any: it sizes the first buffer. A chunked body's trailer must pass `check_trailers` (the
/// rule is admission's), and is then dropped.
pub async fn read<R>(
    mut incoming: Incoming,
    declared: Option<u64>,
    mut rules: Rules<'_>,
    check_trailers: impl Fn(&http::HeaderMap) -> Result<(), R>,
) -> Result<Body, BodyError<R>> {
    let mut lease: Option<SpoolLease> = None;
    let buffer = rules.buffer;
    let expected = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let first = if expected <= buffer {
        expected.min(FIRST_BUFFER)
    } else {
        0
    };
    let mut memory = BytesMut::with_capacity(first);
    let mut spool: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    while let Some(frame) = next_frame(&mut incoming, rules.idle, &mut rules.pace).await? {
        let data = match frame.map_err(BodyError::Client)?.into_data() {
            Ok(data) => data,
            // Trailers carry no body bytes; they are checked, then dropped.
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    check_trailers(trailers).map_err(BodyError::Trailer)?;
                }
                continue;
            }
        };
        total += data.len() as u64;
        if total > rules.max {
            return Err(BodyError::TooLarge);
        }
        if spool.is_none() && memory.len() + data.len() <= buffer {
            memory.extend_from_slice(&data);
            continue;
        }
        // On disk from here: the spool must hold `total` bytes for this body.
        let held = lease.get_or_insert_with(|| rules.spool.empty_lease());
        if !held.cover(total) {
            return Err(BodyError::SpoolFull(total));
        }
        if spool.is_none() {
            let mut file = tokio::fs::File::from_std(rules.spool.file().map_err(BodyError::Spool)?);
            file.write_all(&memory).await.map_err(BodyError::Spool)?;
            memory = BytesMut::new();
            spool = Some(file);
        }
        let file = spool.as_mut().expect("the spool file was made just above");
        file.write_all(&data).await.map_err(BodyError::Spool)?;
    }
    match spool {
        Some(mut file) => {
            file.flush().await.map_err(BodyError::Spool)?;
            Ok(Body::File {
                file: file.into_std().await,
                len: total,
                lease: lease.unwrap_or_else(|| rules.spool.empty_lease()),
            })
        }
        None => Ok(Body::Memory(memory.freeze())),
    }
}

/// The next frame of a body, or `None` at its end; an error once the client pauses longer
/// than `idle` or falls below `pace`. Cancel-safe.
pub async fn next_frame<R>(
    incoming: &mut Incoming,
    idle: Duration,
    pace: &mut Option<Pace>,
) -> Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, BodyError<R>> {
    let paused_until = Instant::now() + idle;
    loop {
        let until = pace
            .as_ref()
            .map_or(paused_until, |p| p.window_end().min(paused_until));
        if let Ok(frame) = tokio::time::timeout_at(until, incoming.frame()).await {
            if let (Some(pace), Some(Ok(frame))) = (pace.as_mut(), &frame) {
                if !pace.received(frame.data_ref().map_or(0, Bytes::len)) {
                    return Err(BodyError::TooSlow);
                }
            }
            return Ok(frame);
        }
        if Instant::now() >= paused_until {
            return Err(BodyError::Timeout);
        }
        if pace.as_mut().is_some_and(|p| !p.received(0)) {
            return Err(BodyError::TooSlow);
        }
    }
}

/// `--min-rate`: a transfer must average at least `rate` bytes a second over each window.
#[derive(Debug, Clone)]
pub struct Pace {
    rate: u64,
    window: Duration,
    start: Instant,
    bytes: u64,
}

impl Pace {
    /// The first window starts now.
    pub fn new(rate: u64, window: Duration) -> Self {
        Self {
            rate,
            window,
            start: Instant::now(),
            bytes: 0,
        }
    }

    fn window_end(&self) -> Instant {
        self.start + self.window
    }

    /// `n` more bytes arrived (0 when a window ended with none): false if a window that
    /// ended fell short; a window that ended well starts the next one.
    fn received(&mut self, n: usize) -> bool {
        self.bytes = self.bytes.saturating_add(n as u64);
        let now = Instant::now();
        if now < self.window_end() {
            return true;
        }
        // The window as it really ran: a frame may arrive a little after its end.
        let needed = self.rate as f64 * (now - self.start).as_secs_f64();
        let kept_up = self.bytes as f64 >= needed;
        self.restart();
        kept_up
    }

    /// Time that was the server's, not the client's (an application not reading yet): the
    /// next window starts now.
    pub fn restart(&mut self) {
        self.start = Instant::now();
        self.bytes = 0;
    }
}

/// Where bodies larger than `--body-buffer-size` go, and how much of the disk they may hold
/// at once (`--max-spool-size`, this process's share of it).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    cap: u64,
    used: Arc<AtomicU64>,
}

/// Bytes held in the spool for one body; given back when dropped.
#[derive(Debug)]
pub struct SpoolLease {
    cap: u64,
    used: Arc<AtomicU64>,
    held: u64,
}

impl Spool {
    /// The spool in `dir`, holding at most `cap` bytes (by default half the directory's free
    /// space now), shared out evenly among `processes`.
    pub fn new(dir: &Path, cap: Option<u64>, processes: usize) -> Self {
        let cap = cap.unwrap_or_else(|| free_space(dir).map_or(u64::MAX, |free| free / 2));
        Self {
            dir: dir.to_owned(),
            cap: cap / processes.max(1) as u64,
            used: Arc::new(AtomicU64::new(0)),
        }
    }

    /// This process's limit, in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `n` more bytes fit now (without taking them: a body takes its room as it
    /// arrives).
    pub fn has_room(&self, n: u64) -> bool {
        self.used()
            .checked_add(n)
            .is_some_and(|after| after <= self.cap)
    }

    /// A lease of `n` bytes, if the spool has room for them.
    #[cfg(test)]
    fn reserve(&self, n: u64) -> Option<SpoolLease> {
        let mut lease = self.empty_lease();
        lease.cover(n).then_some(lease)
    }

    fn empty_lease(&self) -> SpoolLease {
        SpoolLease {
            cap: self.cap,
            used: Arc::clone(&self.used),
            held: 0,
        }
    }

    fn file(&self) -> io::Result<std::fs::File> {
        tempfile::tempfile_in(&self.dir)
    }
}

impl SpoolLease {
    /// Hold at least `n` bytes, if the spool has room for the difference.
    fn cover(&mut self, n: u64) -> bool {
        let more = n.saturating_sub(self.held);
        if more == 0 {
            return true;
        }
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|after| *after <= self.cap)
            });
        if taken.is_ok() {
            self.held = n;
        }
        taken.is_ok()
    }
}

impl Drop for SpoolLease {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Bytes an unprivileged process may still write in `dir`'s file system.
fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid C string; `stat` is plain data that statvfs fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &raw mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    Some(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_the_cap_and_give_it_back_when_dropped() {
        let spool = Spool::new(Path::new("/tmp"), Some(3000), 3);
        assert_eq!(spool.cap(), 1000);
        let a = spool.reserve(600).unwrap();
        assert!(spool.reserve(500).is_none());
        let mut b = spool.reserve(400).unwrap();
        assert_eq!(spool.used(), 1000);
        assert!(!b.cover(401));
        drop(a);
        assert!(b.cover(900));
        assert_eq!(spool.used(), 900);
        drop(b);
        assert_eq!(spool.used(), 0);
    }

    #[test]
    fn the_default_cap_is_half_the_free_space() {
        let dir = std::env::temp_dir();
        let free = free_space(&dir).unwrap();
        let cap = Spool::new(&dir, None, 1).cap();
        // Other processes write meanwhile: within 1% of half.
        assert!(cap.abs_diff(free / 2) < free / 100, "{cap} vs {free}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_short_of_the_rate_fails_and_a_full_one_starts_the_next() {
        let mut pace = Pace::new(100, Duration::from_secs(10));
        assert!(pace.received(500));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(pace.received(500), "1,000 bytes in 10 s keeps 100 B/s");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(pace.received(900));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!pace.received(0), "900 bytes in 10 s is short of 100 B/s");
    }
}
