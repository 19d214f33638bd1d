//! Telling systemd how the service is doing (`sd_notify(3)`): READY, RELOADING, STOPPING,
//! STATUS and the watchdog keep-alive, as datagrams to `NOTIFY_SOCKET`.
//!
//! Owns reading `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (and removing them from the
//! environment, so processes we start do not speak for the service), the message formats, and
//! the task that sends STATUS and WATCHDOG=1 periodically. When to say what is the caller's:
//! the single-process server (`run/`) or the master process. Without `NOTIFY_SOCKET` every
//! call is a no-op; a failed send is logged at debug level and never stops the server.
//!
//! The messages and the monotonic clock are the `sd-notify` crate's ([`NotifyState`]). Its
//! `notify()` is not used: it reads `NOTIFY_SOCKET` at every call (we remove it at start-up so
//! workers and the application never see it), cannot reach an abstract `@name` socket (which
//! `sd_notify(3)` accepts), and sends on a blocking socket, which would stall a network thread
//! when the manager stops reading. Nor is its `watchdog_enabled()`: it turns the watchdog on
//! for `WATCHDOG_USEC=0` and for a `WATCHDOG_PID` that is not a number, where
//! `sd_watchdog_enabled(3)` refuses both.

#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::{log_debug, log_warn};

/// The variables read, removed once read.
pub const VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// How often STATUS= is sent. Arbitrary: often enough for `systemctl status` to look live,
/// rare enough to cost nothing.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The service manager's notification socket, or nothing.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (an absolute path, or `@name` for an abstract socket) and
    /// `WATCHDOG_USEC`/`WATCHDOG_PID`, which are then removed from the environment. A
    /// malformed value is logged and ignored: systemd's protocol is optional to a server.
    pub fn from_env() -> Self {
        let [socket, usec, pid] = VARIABLES.map(std::env::var_os);
        for name in VARIABLES {
            // Read at start-up, before our threads run; none of ours reads the environment.
            std::env::remove_var(name);
        }
        let target = socket.and_then(|value| match open(value.as_bytes()) {
            Ok(target) => Some(target),
            Err(e) => {
                log_warn!(
                    "not notifying systemd: NOTIFY_SOCKET='{}': {e}",
                    value.to_string_lossy()
                );
                None
            }
        });
        let watchdog = target.as_ref().and_then(|_| {
            watchdog_interval(
                usec.as_ref().and_then(|v| v.to_str()),
                pid.as_ref().and_then(|v| v.to_str()),
                std::process::id(),
            )
        });
        Self { target, watchdog }
    }

    /// A notifier that sends nothing.
    pub fn none() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// Whether there is a service manager to tell anything.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The service is up: every listener accepts (`READY=1`). Sent again after a reload.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// A reload began (`Type=notify-reload` wants the monotonic time with it); `ready()` ends
    /// it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            // CLOCK_MONOTONIC cannot fail on Linux; systemd before 253 takes RELOADING=1 alone.
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// The service is shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, status: &str) {
        // A newline would end the field and start a bogus assignment.
        self.send(&[NotifyState::Status(&status.replace('\n', " "))]);
    }

    /// The keep-alive of `WatchdogSec=`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// How often systemd expects `watchdog()` (`WATCHDOG_USEC`), when it does.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send STATUS=`status()` every [`STATUS_EVERY`] and WATCHDOG=1 at half the watchdog
    /// interval, from a task on the current runtime, until the runtime stops. Nothing is
    /// spawned when there is no notification socket. The watchdog being fed from the network
    /// runtime means a stalled runtime gets the service restarted.
    pub fn spawn_heartbeat(self: &Arc<Self>, status: impl Fn() -> String + Send + 'static) {
        if !self.is_enabled() {
            return;
        }
        let notifier = Arc::clone(self);
        tokio::spawn(async move {
            let mut status_tick = tokio::time::interval(STATUS_EVERY);
            // Without a watchdog this one never fires: an interval of a day stands for never.
            let mut watchdog_tick = tokio::time::interval(
                notifier
                    .watchdog
                    .map_or(Duration::from_secs(86_400), |w| w / 2),
            );
            loop {
                tokio::select! {
                    _ = status_tick.tick() => notifier.status(&status()),
                    _ = watchdog_tick.tick(), if notifier.watchdog.is_some() => notifier.watchdog(),
                }
            }
        });
    }

    /// One datagram: the assignments, one a line.
    fn send(&self, states: &[NotifyState]) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        let message = states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            log_debug!("cannot notify systemd of '{message}': {e}");
        }
    }
}

/// The socket to send from and the address to send to, for a `NOTIFY_SOCKET` value.
fn open(value: &[u8]) -> Result<(UnixDatagram, SocketAddr), String> {
    let addr = address(value)?;
    let socket = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    // A manager that stopped reading must not block a network thread: drop the message.
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok((socket, addr))
}

fn address(value: &[u8]) -> Result<SocketAddr, String> {
    match value {
        #[cfg(target_os = "linux")]
        [b'@', name @ ..] if !name.is_empty() => {
            SocketAddr::from_abstract_name(name).map_err(|e| e.to_string())
        }
        [b'/', ..] => {
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value)).map_err(|e| e.to_string())
        }
        _ if cfg!(target_os = "linux") => Err("expected an absolute path or @name".to_owned()),
        _ => Err("expected an absolute path (abstract @names are Linux's)".to_owned()),
    }
}

/// The watchdog interval from `WATCHDOG_USEC`, if it is for process `me` (`WATCHDOG_PID`, when
/// set, must name it) and valid.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec = usec?;
    match usec.parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_micros(n)),
        _ => {
            log_warn!("ignoring WATCHDOG_USEC='{usec}': not a positive number of microseconds");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_values() {
        let ok = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            ok.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        #[cfg(target_os = "linux")]
        {
            let abstract_ = address(b"@/org/freedesktop/systemd1/notify/1").unwrap();
            assert_eq!(
                abstract_.as_abstract_name(),
                Some(&b"/org/freedesktop/systemd1/notify/1"[..])
            );
        }
        #[cfg(not(target_os = "linux"))]
        assert!(address(b"@/org/freedesktop/systemd1/notify/1").is_err());
        for bad in [&b""[..], b"@", b"relative/path", b"notify"] {
            assert!(address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn watchdog_variables() {
        let me = 7;
        let cases = [
            (None, None, None),
            (Some("2000000"), None, Some(Duration::from_secs(2))),
            (Some("2000000"), Some("7"), Some(Duration::from_secs(2))),
            // For another process (the master's, seen by a worker): not ours.
            (Some("2000000"), Some("8"), None),
            (Some("2000000"), Some("x"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("7"), None),
        ];
        for (usec, pid, want) in cases {
            assert_eq!(watchdog_interval(usec, pid, me), want, "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(open(path.as_os_str().as_bytes()).unwrap()),
            watchdog: None,
        };
        notifier.ready();
        notifier.status("3.0 requests/s\nREADY=1");
        notifier.reloading();
        let mut buf = [0; 256];
        let mut next = || {
            let n = manager.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        assert_eq!(next(), "READY=1");
        assert_eq!(next(), "STATUS=3.0 requests/s READY=1");
        let reloading = next();
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading}"
        );
        // The manager gone: sending is quietly dropped.
        drop(manager);
        notifier.stopping();
        Notifier::none().ready();
    }
}
