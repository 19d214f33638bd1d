//! What every ferrule process sets up about itself, the master and a serving process alike:
//! signals left to the tokio runtime (and given back at the end), where logs go, the
//! environment variables addressed to this process removed, and glibc's mmap threshold.
//! What the process then does is `run/`'s (serving) or `supervise/`'s (the master).

use pyo3::prelude::*;

use crate::config::identity::Identity;
use crate::config::Plan;
use crate::error::Error;
use crate::logging::{self, LogThread};

/// Logs to `--log-file` (and access lines on or off), before anything else is done; without
/// a file, records go to stderr until [`log_to_python`].
pub fn log_to_file(plan: &Plan) -> Result<(), Error> {
    logging::set_access_log(plan.access_log);
    if let Some(path) = &plan.log_file {
        logging::init_file(path).map_err(Error::config)?;
    }
    Ok(())
}

/// Without `--log-file`, logs into Python `logging` from now on (`dev`: the development
/// access line's handler); the thread to stop at the end.
pub fn log_to_python(py: Python<'_>, plan: &Plan, dev: bool) -> Result<Option<LogThread>, Error> {
    if plan.log_file.is_some() {
        return Ok(None);
    }
    logging::init_python(py, dev)
        .map(Some)
        .map_err(|e| Error::runtime(format!("cannot set up logging: {e}")))
}

/// Signals are the runtime's: with Python's handlers left in place, SIGINT would also raise
/// `KeyboardInterrupt` in the main thread once serving returns.
pub fn leave_signals_to_the_runtime(py: Python<'_>) -> Result<(), Error> {
    let signal_mod = py
        .import("signal")
        .map_err(|e| Error::runtime(e.to_string()))?;
    for name in ["SIGINT", "SIGTERM"] {
        let sig = signal_mod
            .getattr(name)
            .map_err(|e| Error::runtime(e.to_string()))?;
        let dfl = signal_mod
            .getattr("SIG_DFL")
            .map_err(|e| Error::runtime(e.to_string()))?;
        signal_mod
            .call_method1("signal", (sig, dfl))
            .map_err(|e| Error::runtime(e.to_string()))?;
    }
    Ok(())
}

/// Give SIGINT, SIGTERM and SIGHUP their default action back. The runtime's handlers outlive
/// it; without this a Ctrl-C while the interpreter finalizes would do nothing.
pub fn restore_default_signals() {
    // SAFETY: restoring the default disposition of signals has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
    }
}

/// Remove the variables addressed to this process (systemd's `LISTEN_*`, `NOTIFY_SOCKET`...)
/// from `os.environ` too, which copied the environment at start-up: an application that
/// starts a process with `env=os.environ` must not hand them on.
pub fn forget_variables(py: Python<'_>, lists: &[&[&str]]) {
    let Ok(environ) = py.import("os").and_then(|os| os.getattr("environ")) else {
        return;
    };
    for name in lists.iter().flat_map(|list| list.iter()) {
        let _ = environ.call_method1("pop", (*name, py.None()));
    }
}

/// The size from which glibc serves an allocation with its own `mmap`, unmapped on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fix glibc's mmap threshold at its initial 128 KiB. By default glibc raises it to the size
/// of each large block freed (up to 32 MiB), after which request-sized buffers — bodies,
/// Django's in-memory uploads, big responses — come from the per-thread arenas and stay
/// there when freed: with many threads the serving process's RSS crept up by ~25 MiB over a
/// 30-minute soak of 3 MB uploads, and stayed ~80 MiB lower with the threshold fixed
/// (bench/RESULTS.md, issue 7). A user's `MALLOC_MMAP_THRESHOLD_` wins.
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes the allocator's tuning; any value is accepted or
        // refused with 0.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } == 0 {
            crate::log_warn!("cannot set glibc's mmap threshold; large buffers stay in the arenas");
        }
    }
}

/// The group `initgroups` takes: a `gid_t`, except on macOS, which declares it a C int
/// (`libc`: `unix/bsd/apple/mod.rs`, `initgroups(user: *const c_char, basegroup: c_int)`); ids
/// above 2^31 there, such as nobody's 4294967294, are that int's negative values.
#[cfg(target_os = "macos")]
#[allow(clippy::cast_possible_wrap)]
fn base_group(gid: libc::gid_t) -> libc::c_int {
    gid as libc::c_int
}

#[cfg(not(target_os = "macos"))]
fn base_group(gid: libc::gid_t) -> libc::gid_t {
    gid
}

/// `--user`/`--group`: give `owned` (the Unix socket files, the pid file, the log file) to
/// the identity, then switch this process to it for good: supplementary groups, group, user.
/// Already being it is fine; any other failure (not started as root) stops the start.
pub fn become_identity(id: &Identity, owned: &[&std::path::Path]) -> Result<(), Error> {
    // SAFETY: these calls only read the process's ids.
    let (user, group) = unsafe { (libc::geteuid(), libc::getegid()) };
    if user != 0 && id.uid.is_none_or(|u| u == user) && id.gid == group {
        return Ok(());
    }
    let cannot = |what: String| {
        let e = std::io::Error::last_os_error();
        let hint = if user == 0 {
            ""
        } else {
            " (only root can switch; ferrule was started as another user)"
        };
        Error::config(format!(
            "--user/--group {}: cannot {what}: {e}{hint}",
            id.described
        ))
    };
    for path in owned {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::config(format!("a path with a NUL byte: {}", path.display())))?;
        // SAFETY: `c` is a valid C string; -1 (u32::MAX) keeps the owner.
        if unsafe { libc::chown(c.as_ptr(), id.uid.unwrap_or(u32::MAX), id.gid) } != 0 {
            return Err(cannot(format!("give {} to it", path.display())));
        }
    }
    // SAFETY: plain system calls with valid arguments; the C library applies them to every
    // thread (glibc signals each one; on macOS and FreeBSD the ids are the process's).
    unsafe {
        let groups = match (&id.user_name, id.uid) {
            (Some(name), Some(_)) => libc::initgroups(name.as_ptr(), base_group(id.gid)),
            _ => libc::setgroups(1, &raw const id.gid),
        };
        if groups != 0 {
            return Err(cannot("set its supplementary groups".to_owned()));
        }
        if libc::setgid(id.gid) != 0 {
            return Err(cannot(format!("switch to group {}", id.gid)));
        }
        if let Some(uid) = id.uid {
            if libc::setuid(uid) != 0 {
                return Err(cannot(format!("switch to user {uid}")));
            }
        }
    }
    Ok(())
}
