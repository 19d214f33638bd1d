//! The POSIX twins of Linux's calls: what macOS and FreeBSD use, and what a Linux build with the
//! `portable` feature uses so that they run here. Each call exists in the `libc` crate for all
//! three targets; the definitions checked are cited at the call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fill `buf` from the kernel's random pool (`getentropy`, at most 256 bytes a call); false if
/// it could not.
///
/// `libc`: `unix/bsd/apple/mod.rs` and `unix/bsd/freebsdlike/mod.rs` (and
/// `unix/linux_like/linux/gnu/mod.rs`) declare `fn getentropy(buf: *mut c_void, buflen:
/// size_t) -> c_int`.
pub fn random_bytes(buf: &mut [u8]) -> bool {
    buf.chunks_mut(256).all(|chunk| {
        // SAFETY: `chunk` is valid for writes of its length, which is at most 256.
        unsafe { libc::getentropy(chunk.as_mut_ptr().cast(), chunk.len()) == 0 }
    })
}

/// An anonymous, zero-filled shared memory object of `bytes` bytes, closed on exec (which POSIX
/// has `shm_open` set; macOS refuses an `O_CLOEXEC` flag): a `shm_open` under a name unlinked at
/// once, so nothing is left behind however the process ends.
///
/// `libc`: `shm_open(name: *const c_char, oflag: c_int, mode: mode_t) -> c_int` in
/// `unix/bsd/freebsdlike/mod.rs` and `unix/linux_like/linux/mod.rs`; variadic
/// `shm_open(name, oflag, ...)` in `unix/bsd/apple/mod.rs`, where the untyped mode below is
/// passed as a C `int`, as the C varargs promotion of `mode_t` would. `shm_unlink(name: *const
/// c_char) -> c_int` in `unix/bsd/mod.rs` and `unix/linux_like/linux/mod.rs`. macOS limits the
/// name to 31 bytes (`PSHMNAMLEN`): "/ferrule-" and two numbers of at most 10 digits fit.
pub fn shared_memory(bytes: usize) -> io::Result<OwnedFd> {
    static MADE: AtomicU32 = AtomicU32::new(0);
    loop {
        let name = format!(
            "/ferrule-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a valid C string and flags; the result is checked.
        let raw = unsafe {
            libc::shm_open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                continue; // left by a process with our pid before: take the next name
            }
            return Err(e);
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the name just created; the object lives on while `fd` is open.
        unsafe { libc::shm_unlink(name.as_ptr()) };
        super::set_len(&fd, bytes)?;
        return Ok(fd);
    }
}

/// An fd that becomes readable when rung and stays so until cleared: the read end of a
/// non-blocking pipe (the POSIX stand-in for an `eventfd`, which macOS lacks).
///
/// `libc`: `pipe(fds: *mut c_int) -> c_int` and `fcntl(fd: c_int, cmd: c_int, ...) -> c_int`
/// in `unix/mod.rs`, for every Unix; `O_NONBLOCK`, `F_SETFL`, `F_SETFD` and `FD_CLOEXEC` in each
/// target's module.
pub struct Doorbell {
    read: OwnedFd,
    write: OwnedFd,
}

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        let mut fds = [-1; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two new fds that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: flag changes on fds we own; failures are checked.
            let ok = unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) == 0
                    && libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) == 0
            };
            if !ok {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { read, write })
    }

    /// The fd to watch for reading.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn ring(&self) {
        // SAFETY: one byte from a live static into our non-blocking pipe; a full pipe (never,
        // with one ring per clear) only fails with EAGAIN, and is readable anyway.
        unsafe {
            libc::write(self.write.as_raw_fd(), b"!".as_ptr().cast(), 1);
        }
    }

    /// Take every ring so far: the fd is not readable until the next.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live buffer of its length from our non-blocking pipe, until it
        // is empty (EAGAIN) or fails.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
    }
}

#[cfg(not(target_os = "macos"))]
pub use clock_only::ThreadProbe;

/// A thread's CPU clock without its run state, which FreeBSD does not give cheaply (a
/// `sysctl` copying out every thread of the process) and Linux without `/proc` cannot: the
/// pool then judges from CPU time and the process's preemptions (`pool/policy.rs`).
///
/// `libc`: `pthread_getcpuclockid(thread: pthread_t, clk_id: *mut clockid_t) -> c_int` in
/// `unix/bsd/freebsdlike/mod.rs` and `new/common/posix/pthread.rs` (Linux); `clockid_t` is
/// `c_int` on both (`unix/bsd/freebsdlike/mod.rs`, `unix/linux_like/mod.rs`).
#[cfg(not(target_os = "macos"))]
mod clock_only {
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::time::Duration;

    use super::super::RunState;

    pub struct ThreadProbe {
        /// The thread's CPU clock, set by the thread when it starts (-1 until then and after
        /// it has exited).
        clock: AtomicI32,
    }

    impl ThreadProbe {
        /// Whether [`Self::is_runnable`] can say anything but `Unknown`.
        pub const TELLS_RUN_STATE: bool = false;

        pub fn new() -> Self {
            Self {
                clock: AtomicI32::new(-1),
            }
        }

        /// Called by the thread itself when it starts.
        pub fn attach(&self) {
            let mut clock: libc::clockid_t = -1;
            // SAFETY: pthread_self is always valid for the calling thread; `clock` is an
            // out-pointer.
            if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) } == 0 {
                self.clock.store(clock, Ordering::Relaxed);
            }
        }

        /// Called by the thread as it exits: its clock id is no longer its own.
        pub fn detach(&self) {
            self.clock.store(-1, Ordering::Relaxed);
        }

        /// CPU time the thread has used; zero if it has not started or has exited.
        pub fn cpu_time(&self) -> Duration {
            super::super::cpu_clock(self.clock.load(Ordering::Relaxed))
        }

        #[allow(clippy::unused_self)] // the same interface as the probes that can tell
        pub fn is_runnable(&self) -> RunState {
            RunState::Unknown
        }
    }
}
