//! What the rest of the core asks of the operating system beyond POSIX, in one place: random
//! seeds, the workers' shared board, the wake-up fd of the event loop, a thread's CPU time and
//! run state, a process's resident memory, a socket's unacknowledged bytes, an open file's
//! real path and a thread's name. Everything else ferrule calls is POSIX and the same on every
//! Unix (`libc`'s `unix/mod.rs`).
//!
//! | need | Linux | macOS | FreeBSD |
//! |---|---|---|---|
//! | random seed | `getrandom` | `getentropy` | `getentropy` |
//! | shared memory | `memfd_create` | `shm_open` + `shm_unlink` | `shm_open` + `shm_unlink` |
//! | loop wake-up | `eventfd` | a pipe | a pipe |
//! | thread CPU time | `pthread_getcpuclockid` | `thread_info(THREAD_BASIC_INFO)` | `pthread_getcpuclockid` |
//! | thread run state | `/proc/thread-self/stat` | `thread_info` `run_state` | not read: the process's involuntary switches instead |
//! | resident memory | `/proc/PID/statm` | `proc_pidinfo(PROC_PIDTASKINFO)` | `sysctl(KERN_PROC_PID)` |
//! | unacknowledged bytes | `ioctl(SIOCOUTQ)` | `getsockopt(SO_NWRITE)` | `ioctl(FIONWRITE)` |
//! | an open file's path | `/proc/self/fd/N` | `fcntl(F_GETPATH)` | `fcntl(F_KINFO)` |
//! | thread name | `prctl(PR_SET_NAME)` | `pthread_setname_np` | `pthread_setname_np` |
//!
//! Only the Linux column is compiled and run on the machines ferrule is developed on; the
//! macOS and FreeBSD code was checked against the `libc` crate's definitions for those targets,
//! cited at each call. The cargo feature `portable` makes a Linux build use the POSIX column
//! wherever Linux has it too (`posix.rs`: `getentropy`, `shm_open`, a pipe, a CPU clock without
//! a run state), so that `make test-portable` runs those paths here; the Linux-only rows
//! without a POSIX twin (`/proc`, `SIOCOUTQ`, `prctl`) stay Linux's in that build.
//!
//! | file | for |
//! |---|---|
//! | `linux.rs` | Linux (both builds: the rows without a POSIX twin; the rest unless `portable`) |
//! | `posix.rs` | macOS, FreeBSD, and Linux with `portable` |
//! | `apple.rs` | macOS |
//! | `freebsd.rs` | FreeBSD |

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
compile_error!("ferrule runs on Linux, macOS and FreeBSD");

#[cfg(target_os = "macos")]
mod apple;
#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
mod posix;

#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub use linux::{random_bytes, shared_memory, Doorbell};
#[cfg(any(not(target_os = "linux"), feature = "portable"))]
pub use posix::{random_bytes, shared_memory, Doorbell};

#[cfg(target_os = "macos")]
pub use apple::ThreadProbe;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
pub use linux::ThreadProbe;
#[cfg(any(target_os = "freebsd", all(target_os = "linux", feature = "portable")))]
pub use posix::ThreadProbe;

#[cfg(target_os = "macos")]
pub use apple::{name_this_thread, open_path, resident_bytes, unacknowledged};
#[cfg(target_os = "freebsd")]
pub use freebsd::{name_this_thread, open_path, resident_bytes, unacknowledged};
#[cfg(target_os = "linux")]
pub use linux::{name_this_thread, open_path, resident_bytes, unacknowledged};

/// An `int` socket option at `SOL_SOCKET` level (`getsockopt`, POSIX; `libc`: `unix/mod.rs`).
pub fn socket_option(
    socket: &impl std::os::fd::AsRawFd,
    name: libc::c_int,
) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(std::io::Error::other)?;
    // SAFETY: an int option writes one int into `value`, whose size `len` gives; the socket is
    // open for as long as `socket` is.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}

/// Give `fd` (a new shared memory file) its size; the pages are zero-filled.
fn set_len(fd: &std::os::fd::OwnedFd, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(bytes).map_err(std::io::Error::other)?;
    // SAFETY: ftruncate on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The size of a memory page (`sysconf(_SC_PAGESIZE)`, POSIX).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).unwrap_or(4096)
}

/// The time on CPU clock `clock` (`clock_gettime`), zero for the "no thread" id -1 or if the
/// clock cannot be read (its thread has exited).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn cpu_clock(clock: libc::clockid_t) -> std::time::Duration {
    if clock == -1 {
        return std::time::Duration::ZERO;
    }
    clock_time(clock)
}

/// The time on clock `clock` (`clock_gettime`, POSIX), zero if it cannot be read.
fn clock_time(clock: libc::clockid_t) -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id only makes the call fail.
    if unsafe { libc::clock_gettime(clock, &raw mut ts) } != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`, POSIX: the same
/// clock on Linux, macOS and FreeBSD); 0 if it cannot be read. A system call on Linux (no vDSO
/// for it): about 0.28 µs on the benchmark machine.
pub fn this_thread_cpu_ns() -> u64 {
    u64::try_from(clock_time(libc::CLOCK_THREAD_CPUTIME_ID).as_nanos()).unwrap_or(u64::MAX)
}

/// How many times this process's threads have been switched off a CPU against their will
/// (`getrusage(RUSAGE_SELF)`'s `ru_nivcsw`): it rises while a thread that could run is
/// preempted, as when other processes starve it of CPU. Where the run state of a thread is
/// unknown, the pool reads this instead (`pool/policy.rs`). 0 if it cannot be read.
///
/// `libc`: `getrusage(resource: c_int, usage: *mut rusage) -> c_int` and `struct rusage { ..,
/// ru_nivcsw: c_long }` in `unix/mod.rs`; `RUSAGE_SELF: c_int = 0` in `unix/linux_like/mod.rs`,
/// `unix/bsd/apple/mod.rs` and `unix/bsd/freebsdlike/mod.rs`.
pub fn involuntary_switches() -> u64 {
    // SAFETY: a plain C struct of integers, for which all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_nivcsw).unwrap_or(0)
}

/// Which column of the table above this build uses, for `ferrule --version` and the tests
/// that must know which paths they ran.
pub const PATHS: &str = if cfg!(all(target_os = "linux", not(feature = "portable"))) {
    "linux"
} else if cfg!(target_os = "linux") {
    "portable"
} else if cfg!(target_os = "macos") {
    "macos"
} else {
    "freebsd"
};

/// What [`ThreadProbe::is_runnable`] can say about a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// FreeBSD, and Linux built `portable`, have no probe that can tell.
#[cfg_attr(any(target_os = "freebsd", feature = "portable"), allow(dead_code))]
pub enum RunState {
    /// Running, or waiting for a CPU.
    Runnable,
    /// Sleeping in a blocking call (I/O, a lock, a sleep).
    Waiting,
    /// The platform does not say (FreeBSD, and Linux with `portable`), or the read failed.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn random_bytes_fill_the_buffer_and_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        assert!(random_bytes(&mut a));
        assert!(random_bytes(&mut b));
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn shared_memory_is_sized_and_closed_on_exec() {
        use std::os::fd::AsRawFd;
        let fd = shared_memory(8192).unwrap();
        // SAFETY: F_GETFD on an fd we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        assert_eq!(std::fs::File::from(fd).metadata().unwrap().len(), 8192);
    }

    #[test]
    fn a_rung_doorbell_is_readable_until_cleared() {
        use std::os::fd::BorrowedFd;
        let bell = Doorbell::new().unwrap();
        let readable = |fd| {
            // SAFETY: the doorbell's fd is open for the whole test.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let mut poll = [libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(poll.as_mut_ptr(), 1, 0) == 1 }
        };
        assert!(!readable(bell.fd()));
        bell.ring();
        bell.ring();
        assert!(readable(bell.fd()));
        bell.clear();
        assert!(!readable(bell.fd()), "one clear takes every ring");
        bell.ring();
        assert!(readable(bell.fd()));
    }

    #[test]
    fn a_thread_reads_its_own_cpu_time_and_state() {
        let probe = ThreadProbe::new();
        assert_eq!(probe.cpu_time(), Duration::ZERO, "not started");
        assert_eq!(probe.is_runnable(), RunState::Unknown, "not started");
        probe.attach();
        // It has used some CPU to get here, and it is running while it reads its own state.
        assert!(probe.cpu_time() > Duration::ZERO);
        let want = if ThreadProbe::TELLS_RUN_STATE {
            RunState::Runnable
        } else {
            RunState::Unknown
        };
        assert_eq!(probe.is_runnable(), want);
        probe.detach();
        assert_eq!(probe.cpu_time(), Duration::ZERO, "exited");
    }

    #[test]
    fn a_sleeping_thread_is_seen_waiting_from_another() {
        use std::sync::Arc;
        if !ThreadProbe::TELLS_RUN_STATE {
            return;
        }
        let probe = Arc::new(ThreadProbe::new());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let theirs = Arc::clone(&probe);
        let sleeper = std::thread::spawn(move || {
            theirs.attach();
            let _ = rx.recv();
            theirs.detach();
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = probe.is_runnable();
        while seen != RunState::Waiting && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            seen = probe.is_runnable();
        }
        tx.send(()).unwrap();
        sleeper.join().unwrap();
        assert_eq!(seen, RunState::Waiting);
    }

    #[cfg(target_os = "linux")] // sched_setaffinity: a Linux call, in a test only
    #[test]
    fn threads_that_fight_for_one_cpu_are_switched_against_their_will() {
        // Two threads spinning on the one CPU they are pinned to preempt each other.
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let pin = move || {
            // SAFETY: all-zero is an empty CPU set; the call reads `size` bytes of it and
            // applies to the calling thread only (pid 0).
            unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut one);
                libc::sched_setaffinity(0, size, &raw const one);
            }
        };
        let spin = move || {
            pin();
            let end = std::time::Instant::now() + Duration::from_millis(300);
            while std::time::Instant::now() < end {
                std::hint::spin_loop();
            }
        };
        let before = involuntary_switches();
        let (a, b) = (std::thread::spawn(spin), std::thread::spawn(spin));
        a.join().unwrap();
        b.join().unwrap();
        assert!(involuntary_switches() > before);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let me = resident_bytes(std::process::id()).unwrap();
        assert!(me > 1 << 20, "{me}");
        assert!(resident_bytes(u32::MAX >> 1).is_none());
    }

    #[test]
    fn an_open_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("named");
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(
            open_path(&file).unwrap(),
            std::fs::canonicalize(&path).unwrap()
        );
    }
}
