//! systemd socket activation: the listeners systemd bound for us (`LISTEN_PID`, `LISTEN_FDS`,
//! `LISTEN_FDNAMES`; see `sd_listen_fds(3)`).
//!
//! Owns reading and checking those variables, removing them from the environment (processes we
//! start must not take the sockets for theirs), and sorting the sockets: the one named `stats`
//! (`FileDescriptorName=stats`) is the admin listener, every other one serves the application.
//! [`listeners`] chooses them over `--bind` and `--stats-bind`. Taking over each descriptor is
//! `adopt.rs`'s; telling systemd we are ready is `supervise/notify.rs`'s.

use std::os::fd::RawFd;

use super::{adopt::adopt, bind_all, Bound};
use crate::config::BindAddr;
use crate::error::Error;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`): after stdin, stdout, stderr.
const FIRST_FD: RawFd = 3;

/// The `FileDescriptorName=` of the socket that serves the statistics instead of
/// `--stats-bind`.
pub const STATS_NAME: &str = "stats";

/// The variables of the protocol, removed once read.
pub const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The sockets systemd passed.
pub struct Activated {
    /// The application's listeners, in the order of the socket unit.
    pub listeners: Vec<Bound>,
    /// The socket named `stats`, if there is one.
    pub stats: Option<Bound>,
}

/// The application's listeners and the admin listener: systemd's sockets when it passed some
/// (then `binds` is not bound at all, and a socket named `stats` replaces `stats_bind`),
/// otherwise `binds` and `stats_bind` bound here.
pub fn listeners(
    binds: &[BindAddr],
    stats_bind: Option<&BindAddr>,
    unix_mode: u32,
) -> Result<(Vec<Bound>, Option<Bound>), Error> {
    let activated = activated()?;
    let (listeners, stats) = match activated {
        Some(Activated { listeners, stats }) => (listeners, stats),
        None => (bind_all(binds, unix_mode)?, None),
    };
    let admin = match (stats, stats_bind) {
        (Some(stats), _) => Some(stats),
        (None, Some(addr)) => bind_all(std::slice::from_ref(addr), unix_mode)
            .map_err(|e| Error::listen(format!("{e} (the --stats-bind address)")))?
            .pop(),
        (None, None) => None,
    };
    Ok((listeners, admin))
}

/// One passed descriptor and its name, if `LISTEN_FDNAMES` gave names.
#[derive(Debug, PartialEq, Eq)]
struct Passed {
    fd: RawFd,
    name: Option<String>,
}

/// The sockets systemd passed to this process, or `None` when it was not socket-activated.
/// Reads the variables and removes them from the environment whatever they say. A variable
/// that is present but malformed is an error (exit code 2) naming it.
pub fn activated() -> Result<Option<Activated>, Error> {
    let [pid, fds, names] = VARIABLES.map(|name| std::env::var(name).ok());
    for name in VARIABLES {
        // Before serving, while only this thread and the application's own (if it started
        // any at import) run; none of ours reads the environment.
        std::env::remove_var(name);
    }
    let passed = match parse(
        std::process::id(),
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
    ) {
        Ok(Some(passed)) => passed,
        Ok(None) => {
            let me = std::process::id();
            if let (Some(pid), Some(_)) = (&pid, &fds) {
                if *pid != me.to_string() {
                    crate::log_warn!(
                        "LISTEN_FDS is set for process {pid}, not this one ({me}): ignoring it and binding --bind; \
                         start ferrule itself from the service (exec, not a shell that forks)"
                    );
                }
            }
            return Ok(None);
        }
        Err(e) => return Err(Error::config(format!("socket activation: {e}"))),
    };
    let mut activated = Activated {
        listeners: Vec::new(),
        stats: None,
    };
    for Passed { fd, name } in passed {
        let bound = adopt(fd).map_err(|e| Error::config(format!("socket activation: {e}")))?;
        if name.as_deref() == Some(STATS_NAME) {
            if activated.stats.is_some() {
                return Err(Error::config(format!(
                    "socket activation: more than one socket is named '{STATS_NAME}'; \
                     the admin listener is one socket"
                )));
            }
            activated.stats = Some(bound);
        } else {
            activated.listeners.push(bound);
        }
    }
    if activated.listeners.is_empty() {
        return Err(Error::config(format!(
            "socket activation: systemd passed no socket for the application, only '{STATS_NAME}'; \
             add a ListenStream= without FileDescriptorName={STATS_NAME} to the socket unit"
        )));
    }
    Ok(Some(activated))
}

/// The descriptors the variables describe for process `me`; `None` when they are not for it
/// (unset, or `LISTEN_PID` names another process, as `sd_listen_fds` does).
// Not `sd_notify::listen_fds_with_names()`, which parses the same variables: its errors do
// not say what the value was ("invalid LISTEN_FDS"), it takes LISTEN_PID=0 for another
// process's, and it sets close-on-exec on every descriptor first, so one that is not open
// fails as a bare EBADF before `adopt` can name it ("cannot listen on inherited fd 4: the
// descriptor is not open"). Those messages are what a user fixing a unit file reads, and
// test_systemd.py holds them.
fn parse(
    me: u32,
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
) -> Result<Option<Vec<Passed>>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("invalid value '{pid}' for LISTEN_PID: not a process id"))?;
    if pid != me {
        return Ok(None);
    }
    // Arbitrary bound, far above any socket unit: a typo must not make us adopt thousands of
    // descriptors.
    let count: RawFd = fds
        .parse()
        .ok()
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or_else(|| format!("invalid value '{fds}' for LISTEN_FDS: not a number of sockets"))?;
    if count == 0 {
        // `sd_listen_fds` reads this as no sockets passed, as do we.
        return Ok(None);
    }
    let names: Vec<Option<String>> = match names {
        None => vec![None; count as usize],
        Some(names) => {
            let split: Vec<Option<String>> = names.split(':').map(|n| Some(n.to_owned())).collect();
            if split.len() != count as usize {
                return Err(format!(
                    "invalid value '{names}' for LISTEN_FDNAMES: {} names for LISTEN_FDS={count} sockets",
                    split.len()
                ));
            }
            split
        }
    };
    Ok(Some(
        (FIRST_FD..FIRST_FD + count)
            .zip(names)
            .map(|(fd, name)| Passed { fd, name })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(list: &[(RawFd, Option<&str>)]) -> Vec<Passed> {
        list.iter()
            .map(|&(fd, name)| Passed {
                fd,
                name: name.map(str::to_owned),
            })
            .collect()
    }

    /// `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`.
    type Env<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

    #[test]
    fn the_variables_describe_descriptors_from_three() {
        let me = 42;
        let cases: [(Env, Option<Vec<Passed>>); 7] = [
            ((None, None, None), None),
            ((Some("42"), Some("0"), None), None),
            ((Some("42"), None, None), None),
            ((None, Some("2"), None), None),
            // For another process (a shell that forked): not ours.
            ((Some("41"), Some("2"), None), None),
            (
                (Some("42"), Some("2"), None),
                Some(passed(&[(3, None), (4, None)])),
            ),
            (
                (Some("42"), Some("3"), Some("ferrule.socket:stats:")),
                Some(passed(&[
                    (3, Some("ferrule.socket")),
                    (4, Some("stats")),
                    (5, Some("")),
                ])),
            ),
        ];
        for ((pid, fds, names), want) in cases {
            assert_eq!(parse(me, pid, fds, names).unwrap(), want, "{pid:?} {fds:?}");
        }
    }

    #[test]
    fn malformed_variables_are_named() {
        let cases = [
            (
                Some("x"),
                Some("1"),
                None,
                "invalid value 'x' for LISTEN_PID",
            ),
            (
                Some("0"),
                Some("1"),
                None,
                "invalid value '0' for LISTEN_PID",
            ),
            (
                Some("42"),
                Some("two"),
                None,
                "invalid value 'two' for LISTEN_FDS",
            ),
            (
                Some("42"),
                Some("-1"),
                None,
                "invalid value '-1' for LISTEN_FDS",
            ),
            (
                Some("42"),
                Some("5000"),
                None,
                "invalid value '5000' for LISTEN_FDS",
            ),
            (
                Some("42"),
                Some("2"),
                Some("app"),
                "invalid value 'app' for LISTEN_FDNAMES: 1 names for LISTEN_FDS=2",
            ),
        ];
        for (pid, fds, names, want) in cases {
            let got = parse(42, pid, fds, names).unwrap_err();
            assert!(got.starts_with(want), "{got}");
        }
    }
}
