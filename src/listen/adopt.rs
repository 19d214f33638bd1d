//! Listening sockets this process inherited instead of binding: from systemd's socket
//! activation (`systemd.rs`) or from the master process that bound them for its workers.
//!
//! Owns checking that an inherited file descriptor is a listening stream socket, telling TCP
//! from Unix, and making it ours (non-blocking, close-on-exec). Reading the environment that
//! names the descriptors belongs to `systemd.rs` and the supervisor; the socket's options
//! (backlog, mode, address reuse) are whoever bound it's business.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use socket2::{Domain, Socket, Type};

use super::{Bound, UnixSocketFile};
use crate::error::Error;

/// Take ownership of the inherited listening socket `fd` and return it as a [`Bound`] ready for
/// the server, as if this process had bound it. A Unix socket's file is left in place when the
/// listener is dropped: whoever created it removes it.
///
/// `fd` must not be owned by anything else in this process: it is closed when the listener is
/// dropped, or at once if it is not a listening stream socket.
pub fn adopt(fd: RawFd) -> Result<Bound, Error> {
    let fail = |why: String| Error::listen(format!("cannot listen on inherited fd {fd}: {why}"));
    // An fd that is not open cannot be owned; `fcntl` checks without touching it.
    // SAFETY: F_GETFD reads the descriptor flags and has no other effect.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(fail("the descriptor is not open".to_owned()));
    }
    // SAFETY: `fd` is open (checked above) and, per this function's contract, owned by no one
    // else in the process; from here on `socket` closes it.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let local = socket.local_addr().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTSOCK) => fail("it is not a socket".to_owned()),
        _ => fail(format!("cannot read its address: {e}")),
    })?;
    let kind = socket.r#type().map_err(|e| fail(e.to_string()))?;
    if kind != Type::STREAM {
        return Err(fail(
            "it is not a stream socket (a systemd socket unit needs ListenStream=)".to_owned(),
        ));
    }
    if !is_listening(&socket).map_err(|e| fail(e.to_string()))? {
        return Err(fail("the socket is not listening".to_owned()));
    }
    let own = |socket: &Socket| -> io::Result<()> {
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)
    };
    own(&socket).map_err(|e| fail(e.to_string()))?;
    let domain = local.domain();
    if domain == Domain::IPV4 || domain == Domain::IPV6 {
        Ok(Bound::Tcp(socket.into()))
    } else if domain == Domain::UNIX {
        let path = if let Some(path) = local.as_pathname() {
            path.to_owned()
        } else if let Some(name) = local.as_abstract_namespace() {
            let mut shown = b"@".to_vec();
            shown.extend_from_slice(name);
            PathBuf::from(std::ffi::OsStr::from_bytes(&shown))
        } else {
            PathBuf::from("(unnamed)")
        };
        Ok(Bound::Unix(socket.into(), UnixSocketFile::not_owned(path)))
    } else {
        Err(fail(format!(
            "it is neither a TCP nor a Unix socket ({domain:?})"
        )))
    }
}

/// Whether `listen(2)` was called on `socket`: `SO_ACCEPTCONN`, which Linux, macOS and FreeBSD
/// all answer (`libc`: `SO_ACCEPTCONN` in `new/linux_uapi/asm/socket.rs`,
/// `unix/bsd/apple/mod.rs` and `unix/bsd/freebsdlike/mod.rs`; socket2's `is_listener` leaves
/// Apple targets out).
fn is_listening(socket: &Socket) -> io::Result<bool> {
    Ok(crate::platform::socket_option(socket, libc::SO_ACCEPTCONN)? != 0)
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixListener;

    use super::*;

    fn message(result: Result<Bound, Error>) -> String {
        match result {
            Ok(_) => panic!("adopted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_tcp_listener_keeps_its_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bound = adopt(listener.into_raw_fd()).unwrap();
        assert_eq!(bound.url("http"), format!("http://{addr}"));
        let Bound::Tcp(l) = bound else {
            panic!("not TCP")
        };
        // Non-blocking now: no connection waiting is an error, not a hang.
        assert_eq!(l.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_unix_listener_leaves_its_file_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let bound = adopt(listener.into_raw_fd()).unwrap();
        assert_eq!(bound.url("http"), format!("unix:{}", path.display()));
        drop(bound);
        assert!(path.exists());
    }

    #[test]
    fn what_is_not_a_listening_stream_socket_is_refused() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let not_listening = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        not_listening
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let file = tempfile::tempfile().unwrap();
        let cases: [(RawFd, &str); 4] = [
            (udp.into_raw_fd(), "not a stream socket"),
            (not_listening.into_raw_fd(), "not listening"),
            (file.into_raw_fd(), "not a socket"),
            (-1, "not open"),
        ];
        for (fd, why) in cases {
            let got = message(adopt(fd));
            assert!(got.contains(why), "{got}");
            assert!(got.contains(&format!("inherited fd {fd}")), "{got}");
        }
    }
}
