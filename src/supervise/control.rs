//! The control channel between the master and one worker process: a Unix socketpair the
//! master creates and the worker inherits, carrying one JSON message per line.
//!
//! The master asks ([`ToWorker`]); the worker answers and reports ([`ToMaster`]). What either
//! side does with a message is `master/`'s and `worker.rs`'s business; this file only says
//! what the messages are and moves them.

use std::io;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// The environment variable that makes a process a worker, and tells it its fds.
pub const WORKER_ENV: &str = "FERRULE_WORKER";

/// Set by `manage.py server` to the `DEBUG` of the settings it started with, for workers
/// whose settings no longer import (`ferrule._manage.DEBUG_ENV`).
pub const DJANGO_DEBUG_ENV: &str = "FERRULE_DJANGO_DEBUG";

/// Longest message accepted; a statistics export of a busy worker is the largest.
const MAX_LINE: usize = 64 << 20;

/// From the master to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToWorker {
    /// Answer with [`ToMaster::Pong`].
    Ping,
    /// Stop accepting, finish what is in flight (`--graceful-timeout`), exit; `replace`: another
    /// worker takes over (a reload, a recycle), the service goes on.
    Stop {
        #[serde(default)]
        replace: bool,
    },
    /// Exit now, cancelling what still runs (a second SIGTERM at the master).
    StopNow,
    /// Reopen the log file (SIGUSR1 at the master).
    Reopen,
    /// Answer with [`ToMaster::Stats`]: what is newer than `since`.
    Stats { since: crate::stats::Since },
}

/// From a worker to the master.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToMaster {
    /// The application is imported and the worker accepts connections. `files` are the
    /// source files of the modules it imported (the reload watcher's list); `broken` says
    /// the import failed and the worker serves an error page instead (development reload).
    Ready {
        pid: u32,
        #[serde(default)]
        files: Vec<String>,
        #[serde(default)]
        broken: Option<String>,
    },
    /// The heartbeat's answer.
    Pong(Pulse),
    /// The worker reached `--max-requests`: replace it.
    Recycle { served: u64 },
    /// A statistics export.
    Stats { export: Box<crate::stats::Export> },
    /// The application could not be loaded (the error, in one line); the worker exits.
    Failed { error: String },
}

/// What a worker says about itself in each heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pulse {
    /// Requests finished since the worker started.
    pub served: u64,
    /// Seconds the longest-cancelled request still running has been cancelled (0: none).
    pub stuck: f64,
    /// Requests in flight, for the log line if the worker has to be killed.
    pub in_flight: Vec<InFlight>,
}

/// One request in flight, as the kill log line names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InFlight {
    pub id: String,
    pub method: String,
    pub path: String,
    pub state: String,
    pub elapsed: f64,
}

impl std::fmt::Display for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (id {}, {}, {:.1}s)",
            self.method, self.path, self.id, self.state, self.elapsed
        )
    }
}

/// Reading half of a control channel.
pub struct Receiver(Lines<BufReader<OwnedReadHalf>>);

/// Writing half of a control channel.
pub struct Sender(OwnedWriteHalf);

/// Split a connected control socket.
pub fn split(stream: UnixStream) -> (Receiver, Sender) {
    let (r, w) = stream.into_split();
    (Receiver(BufReader::new(r).lines()), Sender(w))
}

impl Receiver {
    /// The next message; `None` when the other side closed the channel (it exited). Not
    /// cancel-safe in the middle of a line only in the sense that `Lines` keeps the partial
    /// line buffered, so it is safe in `select!`.
    pub async fn recv<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<T>> {
        loop {
            let Some(line) = self.0.next_line().await? else {
                return Ok(None);
            };
            if line.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "control message too long",
                ));
            }
            if line.is_empty() {
                continue;
            }
            return serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

impl Sender {
    pub async fn send<T: Serialize>(&mut self, message: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(message)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        line.push(b'\n');
        self.0.write_all(&line).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_cross_the_channel_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_, mut tx) = split(a);
        let (mut rx, _) = split(b);
        tx.send(&ToWorker::Ping).await.unwrap();
        tx.send(&ToWorker::Stop { replace: true }).await.unwrap();
        drop(tx);
        assert!(matches!(
            rx.recv::<ToWorker>().await.unwrap(),
            Some(ToWorker::Ping)
        ));
        assert!(matches!(
            rx.recv::<ToWorker>().await.unwrap(),
            Some(ToWorker::Stop { replace: true })
        ));
        assert!(rx.recv::<ToWorker>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_pulse_round_trips() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_, mut tx) = split(a);
        let (mut rx, _) = split(b);
        let pulse = Pulse {
            served: 7,
            stuck: 1.5,
            in_flight: vec![InFlight {
                id: "abc".into(),
                method: "GET".into(),
                path: "/x".into(),
                state: "cancelled".into(),
                elapsed: 3.0,
            }],
        };
        tx.send(&ToMaster::Pong(pulse)).await.unwrap();
        match rx.recv::<ToMaster>().await.unwrap() {
            Some(ToMaster::Pong(p)) => {
                assert_eq!(p.served, 7);
                assert_eq!(
                    p.in_flight[0].to_string(),
                    "GET /x (id abc, cancelled, 3.0s)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut rx, _) = split(b);
        let (_, mut w) = a.into_split();
        w.write_all(b"{\"op\":\"nonsense\"}\n").await.unwrap();
        assert!(rx.recv::<ToWorker>().await.is_err());
    }
}
