//! Listening sockets: TCP (IPv4 and IPv6) and Unix, with or without TLS.
//!
//! Owns binding (before the runtime starts, so a port in use is reported with its address and
//! nothing has been served), the Unix-socket rules (refuse a path that is not a socket, replace
//! a stale socket, apply `--unix-socket-mode`, unlink on exit), the write deadline of every
//! accepted socket (`deadline.rs`, `--send-timeout`), a balancer's PROXY protocol header
//! (`proxy_protocol.rs`, `--proxy-protocol`), request targets with the raw bytes clients send
//! (`target.rs`), TLS (`tls.rs`, with the PEM files in `pem.rs`), the count of connections
//! per client address (`per_ip.rs`, `--max-connections-per-ip`) and telling HTTP/2 prior
//! knowledge from HTTP/1 (`sniff.rs`). Sockets inherited
//! instead of bound (from the master process, or systemd's socket activation) are taken over in
//! `adopt.rs`, and systemd's `LISTEN_FDS` protocol is read in `systemd.rs`; worker processes
//! sharing a listener balance their connections through `share.rs`. What happens on an
//! accepted connection belongs to `server.rs` and `http/`.

pub mod accept;
pub mod adopt;
pub mod deadline;
mod pem;
pub mod per_ip;
pub mod proxy_protocol;
pub mod share;
pub mod sniff;
pub mod systemd;
pub mod target;
pub mod tls;
mod unix;

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::BindAddr;
use crate::error::Error;

pub use unix::UnixSocketFile;

/// `AsyncWrite` for a wrapper `$ty<S>` that only looks at what is read: every write goes
/// straight to its `$field` (`sniff.rs`'s `Rewind`, `target.rs`'s `Lenient`, the server's
/// HTTP/2 `Floodgate`).
macro_rules! writes_through {
    ($ty:ident, $field:ident) => {
        impl<S: ::tokio::io::AsyncWrite + Unpin> ::tokio::io::AsyncWrite for $ty<S> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().$field).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use writes_through;

/// Backlog passed to `listen(2)`; the kernel caps it at `net.core.somaxconn` (4096 on current
/// kernels). Connections beyond `--max-connections` wait here.
const BACKLOG: i32 = 2048;

/// A bound socket, not yet registered with tokio.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, UnixSocketFile),
}

impl Bound {
    /// The socket's fd, for handing it to worker processes.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Bound::Tcp(l) => l.as_raw_fd(),
            Bound::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// The address clients use, as printed in `Listening at: …`; `scheme` is `http` or
    /// `https`.
    pub fn url(&self, scheme: &str) -> String {
        match self {
            Bound::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("{scheme}://{addr}"),
                Err(_) => format!("{scheme}://?"),
            },
            Bound::Unix(_, file) => format!("unix:{}", file.path().display()),
        }
    }
}

/// Bind every address, or fail naming the first one that cannot be bound.
pub fn bind_all(binds: &[BindAddr], unix_mode: u32) -> Result<Vec<Bound>, Error> {
    binds.iter().map(|b| bind(b, unix_mode)).collect()
}

fn bind(addr: &BindAddr, unix_mode: u32) -> Result<Bound, Error> {
    match addr {
        BindAddr::Tcp(sa) => bind_tcp(*sa)
            .map(Bound::Tcp)
            .map_err(|e| Error::listen(format!("cannot listen on {sa}: {}", why_not(&e, sa)))),
        BindAddr::Unix(path) => unix::bind(path, unix_mode).map(|(l, f)| Bound::Unix(l, f)),
    }
}

/// What a user should know about a failed bind, with what to do about it.
fn why_not(e: &io::Error, addr: &SocketAddr) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "the address is in use: another process is listening on port {} (stop it, or choose another port)",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => {
            format!("{} is not an address of this machine", addr.ip())
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            format!("ports below 1024 need root or CAP_NET_BIND_SERVICE ({e})")
        }
        _ => e.to_string(),
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix => f.write_str("a Unix-socket peer"),
        }
    }
}
