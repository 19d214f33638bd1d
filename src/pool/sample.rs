//! What the hand-off monitor can read about a running thread without stopping it: its CPU
//! clock (`pthread_getcpuclockid`) and its scheduler state (`/proc/thread-self/stat`). Each
//! thread attaches its own [`Probe`] when it starts; what the readings mean is `policy.rs`'s.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// One thread's CPU clock and scheduler state, readable from other threads.
pub(super) struct Probe {
    /// The thread's CPU clock, set by the thread when it starts (-1 until then and after it
    /// has exited).
    clock: AtomicI32,
    /// The thread's `/proc/thread-self/stat`, opened by the thread when it starts.
    stat: OnceLock<File>,
}

impl Probe {
    pub(super) fn new() -> Self {
        Self {
            clock: AtomicI32::new(-1),
            stat: OnceLock::new(),
        }
    }

    /// Called by the thread itself when it starts: what it opens is its own.
    pub(super) fn attach(&self) {
        let mut clock: libc::clockid_t = -1;
        // SAFETY: pthread_self is always valid for the calling thread; `clock` is an out-pointer.
        if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) } == 0 {
            self.clock.store(clock, Ordering::Relaxed);
        }
        if let Ok(stat) = File::open("/proc/thread-self/stat") {
            let _ = self.stat.set(stat);
        }
    }

    /// Called by the thread as it exits: its clock id is no longer its own.
    pub(super) fn detach(&self) {
        self.clock.store(-1, Ordering::Relaxed);
    }

    /// CPU time the thread has used; zero if it has not started or has exited.
    pub(super) fn cpu_time(&self) -> Duration {
        let clock = self.clock.load(Ordering::Relaxed);
        // -1 is "no thread" only: real thread CPU clock ids are negative too (glibc encodes
        // the thread id as `!tid << 3 | 6`, which is never -1). Testing `< 0` here once turned
        // every clock away, and the monitor judged every tick with a load of 0.
        if clock == -1 {
            return Duration::ZERO;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer; an invalid clock id only makes the call fail.
        if unsafe { libc::clock_gettime(clock, &raw mut ts) } != 0 {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Whether the thread is running or waiting for a CPU (state `R`), as opposed to
    /// sleeping in a blocking call. Unknown counts as runnable, so no thread is added on a
    /// guess.
    pub(super) fn is_runnable(&self) -> bool {
        let Some(file) = self.stat.get() else {
            return true;
        };
        let mut buf = [0u8; 512];
        let Ok(n) = file.read_at(&mut buf, 0) else {
            return true;
        };
        runnable_in(&buf[..n])
    }
}

/// Whether a `stat` line says runnable; unknown counts as runnable.
fn runnable_in(line: &[u8]) -> bool {
    // "tid (comm) S ...": comm may hold spaces and parentheses; the state follows the
    // last ')'.
    line.iter()
        .rposition(|&b| b == b')')
        .and_then(|i| line.get(i + 2))
        .is_none_or(|&state| state == b'R')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_in_table() {
        let rows: &[(&[u8], bool)] = &[
            (b"4242 (ferrule-worker) R 1 2 3", true),
            (b"4242 (ferrule-worker) S 1 2 3", false),
            (b"4242 (ferrule-worker) D 1 2 3", false),
            (b"4242 (a) b) (c) S 1", false),
            (b"4242 (a) b) (c) R 1", true),
            (b"4242 (truncated)", true),
            (b"", true),
        ];
        for (line, want) in rows {
            assert_eq!(
                runnable_in(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_thread_reads_its_own_scheduler_state() {
        let probe = Probe::new();
        assert!(probe.is_runnable(), "unknown counts as runnable");
        probe.attach();
        // The calling thread is running while it reads its own state.
        assert!(probe.is_runnable());
    }

    #[test]
    fn a_thread_reads_its_own_cpu_time() {
        let probe = Probe::new();
        assert_eq!(probe.cpu_time(), Duration::ZERO, "not started");
        probe.attach();
        // It has used some CPU to get here.
        assert!(probe.cpu_time() > Duration::ZERO);
        probe.detach();
        assert_eq!(probe.cpu_time(), Duration::ZERO, "exited");
    }
}
