//! One worker process as the master handles it: spawning it (the same command line as the
//! master, with `FERRULE_WORKER` naming the inherited listener fds and control socket), and a
//! task that owns the child and its control channel, turning what happens into [`Event`]s for
//! the master's loop and carrying out its [`Order`]s. Policy is the master's (`master/decide.rs`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::control::{self, Pulse, ToMaster, ToWorker, WORKER_ENV};
use crate::listen::share::Board;
use crate::log_debug;
use crate::stats::{Export, Since};

/// What a worker's task reports to the master.
#[derive(Debug)]
pub enum Event {
    Ready {
        pid: u32,
        files: Vec<String>,
        broken: Option<String>,
    },
    Pong {
        pid: u32,
        pulse: Pulse,
    },
    Recycle {
        pid: u32,
        served: u64,
    },
    /// The application could not be loaded; the process is exiting.
    Failed {
        pid: u32,
        error: String,
    },
    /// The process ended; `status` describes how (`exit code 1`, `killed by signal 9`).
    Exited {
        pid: u32,
        status: String,
    },
}

/// What the master asks of a worker's task.
#[derive(Debug)]
pub enum Order {
    Send(ToWorker),
    /// Ask for a statistics export newer than the cursor; the answer (or `None` if the
    /// worker is gone) comes back on the channel.
    Stats(Since, oneshot::Sender<Option<Box<Export>>>),
}

/// The master's end of a worker's task.
pub struct WorkerHandle {
    pub pid: u32,
    orders: mpsc::Sender<Order>,
}

impl WorkerHandle {
    /// Hand an order to the task; a task that has ended (the worker exited) drops it.
    pub async fn order(&self, order: Order) {
        let _ = self.orders.send(order).await;
    }

    /// [`WorkerHandle::order`] without waiting for room (orders are few; the channel is
    /// long enough that this only fails when the task is gone).
    pub fn try_order(&self, order: Order) {
        let _ = self.orders.try_send(order);
    }

    /// SIGKILL the process, directly rather than through the task, which may be waiting on
    /// a worker that does not read its control socket. The master forgets a worker as soon
    /// as its task reports it reaped, so the pid is still the worker's, but for the moment
    /// between the reaping and the report.
    pub fn kill(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    pub fn orders(&self) -> mpsc::Sender<Order> {
        self.orders.clone()
    }
}

/// Starts worker processes: the program and arguments that re-run this command, and the
/// listener fds they inherit.
pub struct Spawner {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub listeners: Vec<RawFd>,
    /// `--max-requests` and `--max-requests-jitter`.
    pub max_requests: Option<u64>,
    pub jitter: u64,
    /// Where workers count their connections (`listen/share.rs`); `None` if it could not be
    /// made, and workers then accept without looking.
    pub board: Option<Arc<Board>>,
}

impl Spawner {
    pub fn spawn(&self, events: mpsc::Sender<Event>) -> std::io::Result<WorkerHandle> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let control_fd = theirs.as_raw_fd();
        let mut spec = format!(
            "control={control_fd};listeners={}",
            self.listeners
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        if let Some(max) = self.max_requests {
            let jitter = match self.jitter {
                0 => 0,
                j => crate::http::request_id::random_seed().0 % (j + 1),
            };
            let _ = write!(spec, ";max_requests={}", max + jitter);
        }
        let mut inherit: Vec<RawFd> = self.listeners.clone();
        inherit.push(control_fd);
        // Whatever happens to the worker, or to its start, its seat is freed (`Seated`).
        let seat = self.board.as_ref().and_then(|board| {
            let seat = board.take_seat()?;
            let _ = write!(spec, ";board={}:{seat}", board.fd());
            inherit.push(board.fd());
            Some(Seated(Arc::clone(board), seat))
        });
        let mut cmd = Command::new(&self.program);
        // If the master itself is dropped without reaping (a panic), its workers go with it.
        cmd.args(&self.args)
            .env(WORKER_ENV, spec)
            .kill_on_drop(true);
        // SAFETY: the closure runs in the child between fork and exec and only calls fcntl,
        // which is async-signal-safe; the fds are the master's open listeners and the
        // socketpair end, valid in the child as in the parent.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherit {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the worker exited at once"))?;
        ours.set_nonblocking(true)?;
        let control = UnixStream::from_std(ours)?;
        let (orders_tx, orders) = mpsc::channel(64);
        tokio::spawn(run(pid, child, control, events, orders, seat));
        Ok(WorkerHandle {
            pid,
            orders: orders_tx,
        })
    }
}

/// A worker's task: until the process exits, pass messages both ways.
async fn run(
    pid: u32,
    mut child: Child,
    control: UnixStream,
    events: mpsc::Sender<Event>,
    mut orders: mpsc::Receiver<Order>,
    seat: Option<Seated>,
) {
    let (mut rx, mut tx) = control::split(control);
    let mut open = true;
    let mut waiting: Vec<oneshot::Sender<Option<Box<Export>>>> = Vec::new();
    let status = loop {
        tokio::select! {
            // Messages first: a worker that cannot load its application says why and exits
            // at once, and its last message must not lose the race with its exit.
            biased;
            message = rx.recv::<ToMaster>(), if open => match message {
                Ok(Some(message)) => {
                    let event = match message {
                        ToMaster::Ready { files, broken, .. } => Event::Ready { pid, files, broken },
                        ToMaster::Pong(pulse) => Event::Pong { pid, pulse },
                        ToMaster::Recycle { served } => Event::Recycle { pid, served },
                        ToMaster::Failed { error } => Event::Failed { pid, error },
                        ToMaster::Stats { export } => {
                            if !waiting.is_empty() {
                                let _ = waiting.remove(0).send(Some(export));
                            }
                            continue;
                        }
                    };
                    let _ = events.send(event).await;
                }
                Ok(None) => open = false,
                Err(e) => {
                    log_debug!("worker process {pid}: bad control message: {e}");
                    open = false;
                }
            },
            status = child.wait() => break status,
            Some(order) = orders.recv() => match order {
                Order::Send(message) => {
                    if open && tx.send(&message).await.is_err() {
                        open = false;
                    }
                }
                Order::Stats(since, reply) => {
                    if open && tx.send(&ToWorker::Stats { since }).await.is_ok() {
                        waiting.push(reply);
                    } else {
                        let _ = reply.send(None);
                    }
                }
            },
        }
        if !open {
            for reply in waiting.drain(..) {
                let _ = reply.send(None);
            }
        }
    };
    for reply in waiting.drain(..) {
        let _ = reply.send(None);
    }
    let status = match status {
        Ok(status) => describe(status),
        Err(e) => format!("cannot tell how: {e}"),
    };
    // Before the master hears of it: the replacement may take this seat.
    drop(seat);
    let _ = events.send(Event::Exited { pid, status }).await;
}

/// A worker's seat on the board, freed when dropped: when the process has ended, or when it
/// could not be started.
struct Seated(Arc<Board>, usize);

impl Drop for Seated {
    fn drop(&mut self) {
        self.0.free_seat(self.1);
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}
