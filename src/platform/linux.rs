//! Linux's own calls. The rows of the table in `mod.rs` that have a POSIX twin (`posix.rs`) are
//! compiled only without the `portable` feature.

use std::fs::File;
use std::io;
use std::path::PathBuf;

#[cfg(not(feature = "portable"))]
pub use native::{random_bytes, shared_memory, Doorbell, ThreadProbe};

/// Resident memory of process `pid`, from `/proc/PID/statm` (its second field, in pages).
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * super::page_size())
}

/// `SIOCOUTQ` (which Linux defines as `TIOCOUTQ`): for TCP what the peer has not acknowledged,
/// for a Unix socket what the peer has not read.
pub fn unacknowledged(socket: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at a live c_int; the
    // descriptor is open for as long as `socket` is.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &raw mut queued) };
    (rc == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Where the file behind `file` really is: the kernel's own name for the descriptor.
pub fn open_path(file: &File) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Name the calling thread for `top -H`, `ps -L` and py-spy; the kernel keeps 15 bytes.
pub fn name_this_thread(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string and keeps at most 16 bytes of it.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

#[cfg(not(feature = "portable"))]
mod native {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::super::RunState;

    /// Fill `buf` from the kernel's random pool (`getrandom`); false if it could not.
    pub fn random_bytes(buf: &mut [u8]) -> bool {
        // SAFETY: `buf` is valid for writes of its length.
        let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(got).is_ok_and(|n| n == buf.len())
    }

    /// An anonymous, zero-filled shared memory file of `bytes` bytes (`memfd_create`),
    /// closed on exec.
    pub fn shared_memory(bytes: usize) -> io::Result<OwnedFd> {
        // SAFETY: memfd_create with a static C string; the result is checked.
        let raw = unsafe { libc::memfd_create(c"ferrule-board".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        super::super::set_len(&fd, bytes)?;
        Ok(fd)
    }

    /// An fd that becomes readable when rung and stays so until cleared: an `eventfd`.
    pub struct Doorbell(OwnedFd);

    impl Doorbell {
        pub fn new() -> io::Result<Self> {
            // SAFETY: eventfd with an initial count of 0 and valid flags; the result is checked.
            let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a new fd that nothing else owns.
            Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
        }

        /// The fd to watch for reading.
        pub fn fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }

        pub fn ring(&self) {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd; a full counter (never,
            // with one ring per clear) only fails with EAGAIN.
            unsafe {
                libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8);
            }
        }

        /// Take every ring so far: the fd is not readable until the next.
        pub fn clear(&self) {
            let mut count: u64 = 0;
            // SAFETY: reading 8 bytes into a live u64 from our non-blocking eventfd; EAGAIN
            // (nothing to read) leaves it untouched.
            unsafe {
                libc::read(self.0.as_raw_fd(), (&raw mut count).cast(), 8);
            }
        }
    }

    /// One thread's CPU clock (`pthread_getcpuclockid`) and scheduler state
    /// (`/proc/thread-self/stat`), readable from other threads.
    pub struct ThreadProbe {
        /// The thread's CPU clock, set by the thread when it starts (-1 until then and after
        /// it has exited).
        clock: AtomicI32,
        /// The thread's `/proc/thread-self/stat`, opened by the thread when it starts.
        stat: OnceLock<File>,
    }

    impl ThreadProbe {
        /// Whether [`Self::is_runnable`] can say anything but `Unknown`.
        pub const TELLS_RUN_STATE: bool = true;

        pub fn new() -> Self {
            Self {
                clock: AtomicI32::new(-1),
                stat: OnceLock::new(),
            }
        }

        /// Called by the thread itself when it starts: what it opens is its own.
        pub fn attach(&self) {
            let mut clock: libc::clockid_t = -1;
            // SAFETY: pthread_self is always valid for the calling thread; `clock` is an
            // out-pointer.
            if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) } == 0 {
                self.clock.store(clock, Ordering::Relaxed);
            }
            if let Ok(stat) = File::open("/proc/thread-self/stat") {
                let _ = self.stat.set(stat);
            }
        }

        /// Called by the thread as it exits: its clock id is no longer its own.
        pub fn detach(&self) {
            self.clock.store(-1, Ordering::Relaxed);
        }

        /// CPU time the thread has used; zero if it has not started or has exited.
        pub fn cpu_time(&self) -> Duration {
            // -1 is "no thread" only: real thread CPU clock ids are negative too (glibc
            // encodes the thread id as `!tid << 3 | 6`, which is never -1). Testing `< 0` here
            // once turned every clock away, and the monitor judged every tick with a load of 0.
            super::super::cpu_clock(self.clock.load(Ordering::Relaxed))
        }

        /// Running or waiting for a CPU (state `R`), or sleeping in a blocking call.
        pub fn is_runnable(&self) -> RunState {
            if self.clock.load(Ordering::Relaxed) == -1 {
                return RunState::Unknown;
            }
            let Some(file) = self.stat.get() else {
                return RunState::Unknown;
            };
            let mut buf = [0u8; 512];
            let Ok(n) = file.read_at(&mut buf, 0) else {
                return RunState::Unknown;
            };
            state_in(&buf[..n])
        }
    }

    /// The state a `stat` line gives.
    pub(super) fn state_in(line: &[u8]) -> RunState {
        // "tid (comm) S ...": comm may hold spaces and parentheses; the state follows the
        // last ')'.
        match line
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| line.get(i + 2))
        {
            Some(b'R') => RunState::Runnable,
            Some(_) => RunState::Waiting,
            None => RunState::Unknown,
        }
    }
}

#[cfg(all(test, not(feature = "portable")))]
mod tests {
    use super::super::RunState;
    use super::native::state_in;

    #[test]
    fn state_in_table() {
        let rows: &[(&[u8], RunState)] = &[
            (b"4242 (ferrule-worker) R 1 2 3", RunState::Runnable),
            (b"4242 (ferrule-worker) S 1 2 3", RunState::Waiting),
            (b"4242 (ferrule-worker) D 1 2 3", RunState::Waiting),
            (b"4242 (a) b) (c) S 1", RunState::Waiting),
            (b"4242 (a) b) (c) R 1", RunState::Runnable),
            (b"4242 (truncated)", RunState::Unknown),
            (b"", RunState::Unknown),
        ];
        for (line, want) in rows {
            assert_eq!(state_in(line), *want, "{}", String::from_utf8_lossy(line));
        }
    }
}
