//! The worker side of supervision: reading `FERRULE_WORKER` (the inherited listener fds and
//! control socket), and the control loop that answers the master — the heartbeat, stop
//! orders, statistics — while the ordinary server (`run/`) serves.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::control::{self, InFlight, Pulse, ToMaster, ToWorker, WORKER_ENV};
use crate::error::Error;
use crate::pool::Pool;
use crate::stats::Stats;
use crate::{log_error, log_info, log_warn, logging};

/// Most in-flight requests a heartbeat carries (the kill log line names them).
const IN_FLIGHT_REPORTED: usize = 32;

/// What the master handed this worker process.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub control: RawFd,
    pub listeners: Vec<RawFd>,
    /// `--max-requests` with this worker's jitter.
    pub max_requests: Option<u64>,
    /// The master's connection board and this worker's seat on it (`listen/share.rs`).
    pub board: Option<(RawFd, usize)>,
    /// Filled in once the application is loaded, for the ready message: the source files it
    /// imported (reload only) and, if the import failed (reload only), the error.
    pub files: Vec<String>,
    pub broken: Option<String>,
}

impl Spec {
    /// `FERRULE_WORKER`, removed from the environment so that processes the application
    /// starts are not taken for workers. `None` in a process the master did not start.
    pub fn take() -> Result<Option<Spec>, Error> {
        let Some(value) = std::env::var_os(WORKER_ENV) else {
            return Ok(None);
        };
        std::env::remove_var(WORKER_ENV);
        let value = value.to_string_lossy();
        let spec = Self::parse(&value).ok_or_else(|| {
            Error::config(format!(
                "invalid {WORKER_ENV}='{value}': this variable is set by the ferrule master process for its workers"
            ))
        })?;
        // Before the application is imported: a process it starts must not inherit them.
        let board = spec.board.map(|(fd, _)| fd);
        for fd in spec
            .listeners
            .iter()
            .chain([&spec.control])
            .chain(board.as_ref())
        {
            set_cloexec(*fd);
        }
        Ok(Some(spec))
    }

    fn parse(value: &str) -> Option<Spec> {
        let mut control = None;
        let mut listeners = Vec::new();
        let mut max_requests = None;
        let mut board = None;
        for part in value.split(';') {
            let (key, v) = part.split_once('=')?;
            match key {
                "control" => control = Some(v.parse().ok()?),
                "listeners" => {
                    for fd in v.split(',').filter(|s| !s.is_empty()) {
                        listeners.push(fd.parse().ok()?);
                    }
                }
                "max_requests" => max_requests = Some(v.parse().ok()?),
                "board" => {
                    let (fd, seat) = v.split_once(':')?;
                    board = Some((fd.parse().ok()?, seat.parse().ok()?));
                }
                _ => return None,
            }
        }
        Some(Spec {
            control: control?,
            listeners,
            max_requests,
            board,
            files: Vec::new(),
            broken: None,
        })
    }

    /// Tell the master why this worker cannot serve (the application failed to load), before
    /// it exits: the master's log, `/readyz` and dashboard name the error rather than only an
    /// exit code. Best effort: the master may be gone.
    pub fn report_failure(&self, error: &str) {
        let Ok(socket) = self.control_socket() else {
            return;
        };
        let mut line = serde_json::to_vec(&ToMaster::Failed {
            error: error.to_owned(),
        })
        .unwrap_or_default();
        line.push(b'\n');
        let _ = socket.set_nonblocking(false);
        let _ = std::io::Write::write_all(&mut &socket, &line);
    }

    /// The control socket, taken over from its fd. Call once.
    pub fn control_socket(&self) -> Result<std::os::unix::net::UnixStream, Error> {
        // SAFETY: the master passed this fd open for this process alone, and `take` is the
        // only reader of the spec; nothing else in the process owns it.
        let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(self.control) };
        set_cloexec(self.control);
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::runtime(format!("cannot use the control socket: {e}")))?;
        Ok(stream)
    }
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

/// What the control loop reads and pokes in the serving process.
pub struct Serving {
    pub pool: Pool,
    pub stats: Arc<Stats>,
    /// The server's first and second stop signals (as SIGTERM once and twice).
    pub first: Arc<Notify>,
    pub second: Arc<Notify>,
    /// Set before `first` when the master stops this worker to replace it (not to stop the
    /// service): WebSockets then close with 1012, not 1001.
    pub replaced: Arc<AtomicBool>,
    pub stopping: Arc<OnceLock<Instant>>,
    pub max_requests: Option<u64>,
    pub files: Vec<String>,
    pub broken: Option<String>,
}

/// Tell the master this worker is ready, then answer it until the process ends. If the
/// master goes away, the worker stops gracefully: nobody would restart or stop it.
pub async fn control_loop(socket: std::os::unix::net::UnixStream, mut serving: Serving) {
    let socket = match UnixStream::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            log_error!("cannot use the control socket: {e}; stopping");
            stop(&serving);
            return;
        }
    };
    let (mut rx, mut tx) = control::split(socket);
    let ready = ToMaster::Ready {
        pid: std::process::id(),
        files: std::mem::take(&mut serving.files),
        broken: serving.broken.take(),
    };
    if tx.send(&ready).await.is_err() {
        log_warn!("the master process is gone; stopping");
        stop(&serving);
        return;
    }
    let milestone = Arc::new(Notify::new());
    if let Some(max) = serving.max_requests {
        serving.pool.notify_at(max, Arc::clone(&milestone));
    }
    let mut recycling = serving.max_requests.is_none();
    loop {
        tokio::select! {
            message = rx.recv::<ToWorker>() => {
                let reply = match message {
                    Ok(Some(ToWorker::Ping)) => Some(ToMaster::Pong(pulse(&serving))),
                    Ok(Some(ToWorker::Stop { replace })) => {
                        if replace {
                            serving.replaced.store(true, Ordering::Release);
                        }
                        stop(&serving);
                        None
                    }
                    Ok(Some(ToWorker::StopNow)) => {
                        stop(&serving);
                        serving.second.notify_one();
                        None
                    }
                    Ok(Some(ToWorker::Reopen)) => {
                        if let Err(e) = logging::reopen() {
                            log_error!("{e}");
                        }
                        None
                    }
                    Ok(Some(ToWorker::Stats { since })) => Some(ToMaster::Stats {
                        export: Box::new(serving.stats.export(&since)),
                    }),
                    Ok(None) | Err(_) => {
                        if serving.stopping.get().is_none() {
                            log_warn!("the master process is gone; stopping");
                        }
                        stop(&serving);
                        return;
                    }
                };
                if let Some(reply) = reply {
                    if tx.send(&reply).await.is_err() {
                        stop(&serving);
                        return;
                    }
                }
            }
            () = milestone.notified(), if !recycling => {
                recycling = true;
                let served = serving.pool.completed();
                log_info!("Served {served} requests (--max-requests): asking to be replaced");
                if tx.send(&ToMaster::Recycle { served }).await.is_err() {
                    stop(&serving);
                    return;
                }
            }
        }
    }
}

fn stop(serving: &Serving) {
    if serving.stopping.set(Instant::now()).is_ok() {
        serving.first.notify_one();
    }
}

fn pulse(serving: &Serving) -> Pulse {
    let in_flight = serving
        .stats
        .in_flight()
        .into_iter()
        .take(IN_FLIGHT_REPORTED)
        .map(|f| InFlight {
            id: f.id,
            method: f.method,
            path: f.path,
            state: f.state.to_owned(),
            elapsed: f.elapsed,
        })
        .collect();
    Pulse {
        served: serving.pool.completed(),
        stuck: serving.pool.stuck().as_secs_f64(),
        in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_parses_or_is_refused() {
        assert_eq!(
            Spec::parse("control=7;listeners=3,4;max_requests=100;board=9:2"),
            Some(Spec {
                control: 7,
                listeners: vec![3, 4],
                max_requests: Some(100),
                board: Some((9, 2)),
                files: vec![],
                broken: None,
            })
        );
        assert_eq!(
            Spec::parse("control=7;listeners="),
            Some(Spec {
                control: 7,
                listeners: vec![],
                max_requests: None,
                board: None,
                files: vec![],
                broken: None,
            })
        );
        for bad in [
            "",
            "listeners=3",
            "control=x",
            "control=3;what=1",
            "control",
            "control=3;board=9",
        ] {
            assert_eq!(Spec::parse(bad), None, "{bad}");
        }
    }
}
