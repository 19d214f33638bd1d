//! The one way a bound listener accepts: [`Acceptor`] turns a [`Bound`] socket (TCP or Unix;
//! bound here, inherited from the master or from systemd) into a stream of connections, for
//! the server's listeners and the admin listener alike.
//!
//! Owns registering the socket with the runtime, `TCP_NODELAY` on every accepted TCP socket,
//! taking a `--max-connections` permit before accepting (so clients beyond it wait in the
//! backlog), leaving a connection to a worker with fewer through the board (`share.rs`) when
//! the process shares its listeners, and the back-off after a failed accept. What a
//! connection then does (TLS, HTTP) is the caller's; a Unix socket file is removed when the
//! acceptor is dropped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::deadline::Socket;
use super::share::{self, Share};
use super::{Bound, Peer, UnixSocketFile};
use crate::log_warn;
use crate::logging::throttle::{self, Throttle};

/// After a failed accept (out of file descriptors, usually), wait this long before the next
/// try instead of spinning; connections closing is what frees descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A listener registered with the runtime.
pub struct Acceptor {
    source: Source,
    /// What the listener is for in messages (`--bind`, `--stats-bind`).
    what: &'static str,
    /// Removes the Unix socket file when accepting ends.
    socket_file: Option<UnixSocketFile>,
}

enum Source {
    Tcp(TcpListener),
    Unix(UnixListener),
    /// A worker's share of its master's sockets.
    SharedTcp(AsyncFd<std::net::TcpListener>, Arc<Share>),
    SharedUnix(AsyncFd<std::os::unix::net::UnixListener>, Arc<Share>),
}

/// An accepted connection, holding its permit: the slot is free again when it is dropped.
pub struct Accepted {
    pub stream: Stream,
    pub peer: Peer,
    pub permit: OwnedSemaphorePermit,
}

impl Acceptor {
    /// Register `bound` with the runtime (call within it). `share` is the board seat of a
    /// worker process; `what` names the listener in messages.
    pub fn new(bound: Bound, share: Option<Arc<Share>>, what: &'static str) -> io::Result<Self> {
        let (source, socket_file) = match (bound, share) {
            (Bound::Tcp(l), None) => (Source::Tcp(TcpListener::from_std(l)?), None),
            (Bound::Unix(l, file), None) => (Source::Unix(UnixListener::from_std(l)?), Some(file)),
            (Bound::Tcp(l), Some(s)) => (Source::SharedTcp(share::register(l)?, s), None),
            (Bound::Unix(l, file), Some(s)) => {
                (Source::SharedUnix(share::register(l)?, s), Some(file))
            }
        };
        Ok(Self {
            source,
            what,
            socket_file,
        })
    }

    /// The TCP address the listener is bound to; `None` for a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.source {
            Source::Tcp(l) => l.local_addr().ok(),
            Source::SharedTcp(l, _) => l.get_ref().local_addr().ok(),
            Source::Unix(_) | Source::SharedUnix(..) => None,
        }
    }

    /// The socket file's path, for a Unix socket bound here.
    pub fn unix_path(&self) -> Option<Arc<str>> {
        self.socket_file
            .as_ref()
            .map(|f| Arc::from(f.path().to_string_lossy().as_ref()))
    }

    /// The next connection, once one of `permits` is free; `None` if the permits are closed.
    /// A failed accept is logged and retried after a pause. Cancel-safe: dropping the future
    /// loses no connection (it stays in the backlog).
    pub async fn next(&self, permits: &Arc<Semaphore>) -> Option<Accepted> {
        let permit = Arc::clone(permits).acquire_owned().await.ok()?;
        loop {
            match self.accept().await {
                Ok((stream, peer)) => {
                    return Some(Accepted {
                        stream,
                        peer,
                        permit,
                    })
                }
                Err(e) => {
                    // Out of descriptors, this recurs every back-off while it lasts: one line
                    // every 10 s says so, with the count.
                    static LINES: Throttle = Throttle::new(Duration::from_secs(10));
                    if let Some(n) = LINES.pass() {
                        let more = throttle::more(n, "failed accepts");
                        log_warn!(
                            "cannot accept a connection on the {} listener: {e}; retrying shortly{more}",
                            self.what
                        );
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match &self.source {
            Source::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok(tcp(s, Peer::Tcp(peer)))
            }
            Source::Unix(l) => l.accept().await.map(|(s, _)| (Stream::Unix(s), Peer::Unix)),
            Source::SharedTcp(l, share) => {
                let (s, peer) = share.accept(l).await?;
                Ok(tcp(s, peer))
            }
            Source::SharedUnix(l, share) => {
                let (s, peer) = share.accept(l).await?;
                Ok((Stream::Unix(s), peer))
            }
        }
    }
}

fn tcp(s: TcpStream, peer: Peer) -> (Stream, Peer) {
    // Responses are written whole or in large chunks; Nagle would only delay their tails.
    let _ = s.set_nodelay(true);
    (Stream::Tcp(s), peer)
}

/// An accepted socket, TCP or Unix.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Socket for Stream {
    fn unsent(&self) -> Option<usize> {
        match self {
            Stream::Tcp(s) => s.unsent(),
            Stream::Unix(s) => s.unsent(),
        }
    }

    fn abort(&self) {
        match self {
            Stream::Tcp(s) => s.abort(),
            Stream::Unix(s) => s.abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn accepts_tcp_with_nodelay_and_holds_a_permit_per_connection() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let addr = std.local_addr().unwrap();
        let acceptor = Acceptor::new(Bound::Tcp(std), None, "test").unwrap();
        assert_eq!(acceptor.local_addr(), Some(addr));
        let permits = Arc::new(Semaphore::new(1));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let Accepted {
            mut stream,
            peer,
            permit,
        } = acceptor.next(&permits).await.unwrap();
        assert!(matches!(peer, Peer::Tcp(p) if p == client.local_addr().unwrap()));
        let Stream::Tcp(tcp) = &stream else {
            panic!("a TCP listener accepts TCP streams")
        };
        assert!(tcp.nodelay().unwrap());
        // The only permit is held: a second client waits in the backlog.
        let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), acceptor.next(&permits));
        assert!(waiting.await.is_err(), "accepted beyond the permits");
        drop(permit);
        assert!(acceptor.next(&permits).await.is_some());
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    #[tokio::test]
    async fn closed_permits_end_accepting() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let acceptor = Acceptor::new(Bound::Tcp(std), None, "test").unwrap();
        let permits = Arc::new(Semaphore::new(1));
        permits.close();
        assert!(acceptor.next(&permits).await.is_none());
    }
}
