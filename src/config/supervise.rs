//! Options under "Processes" (the supervisor), and their part of the plan.
//!
//! Validation only: starting, watching and replacing worker processes is `supervise/`'s job.

use super::reload::Filter;
use std::time::Duration;

use clap::Args;

use super::parse::seconds;
use crate::error::Error;

/// "Processes" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct SuperviseOptions {
    /// Worker processes, each importing the application and serving the shared listeners.
    /// With more than one (or with `--reload`, `--max-requests`, `--max-rss`, `--user` or
    /// `--group`), a master process binds the listeners, starts the workers, restarts those
    /// that die, and reloads them on SIGHUP; it never imports the application. Default is 1:
    /// a single process, no master.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        short,
        long,
        value_name = "N",
        default_value_t = 1,
        env = "FERRULE_WORKERS",
        help_heading = "Processes"
    )]
    pub workers: usize,

    /// Replace a worker process after it has served this many requests (the new one is
    /// serving before the old one stops; with a single worker this starts a master to do
    /// it). 0 never does. Default is 0.
    #[arg(
        value_parser = crate::config::parse::whole::<u64>,
        long,
        value_name = "N",
        default_value_t = 0,
        env = "FERRULE_MAX_REQUESTS",
        help_heading = "Processes"
    )]
    pub max_requests: u64,

    /// Add a random 0..=J to each worker's `--max-requests`, so workers started together are
    /// not all replaced at once. Default is 0.
    #[arg(
        value_parser = crate::config::parse::whole::<u64>,
        long,
        value_name = "J",
        default_value_t = 0,
        env = "FERRULE_MAX_REQUESTS_JITTER",
        help_heading = "Processes"
    )]
    pub max_requests_jitter: u64,

    /// Replace a worker process whose resident memory exceeds this many megabytes (sampled
    /// twice a second; the new one is serving before the old one stops; with a single worker
    /// this starts a master to do it). 0 never does.
    /// Default is 0.
    #[arg(
        value_parser = crate::config::parse::whole::<u64>,
        long,
        value_name = "MB",
        default_value_t = 0,
        env = "FERRULE_MAX_RSS",
        help_heading = "Processes"
    )]
    pub max_rss: u64,

    /// Seconds a worker process may go without answering the master's heartbeat, or keep a
    /// request running after it was cancelled (by `--timeout`, its client leaving, a
    /// shutdown) — a thread stuck in C code that cancellation cannot interrupt. Then the
    /// worker is killed and replaced, and the requests it had in flight are logged. 0 turns
    /// it off. Default is 30.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        env = "FERRULE_WORKER_TIMEOUT",
        help_heading = "Processes"
    )]
    pub worker_timeout: f64,

    /// Restart the worker when a source file of a module it imported, or a file under the
    /// current directory matching `--reload-include`, changes. `manage.py server` reloads
    /// by default (see `--noreload`). Default is off for `ferrule APP`.
    #[arg(long, env = "FERRULE_RELOAD", help_heading = "Processes")]
    pub reload: bool,

    /// `manage.py server`: do not restart on code changes (as with `runserver`).
    #[arg(long, env = "FERRULE_NORELOAD", help_heading = "Processes")]
    pub noreload: bool,

    /// With reloading: also restart when a file under the current directory matching this
    /// glob changes (`**/*.html`). Repeatable. Default: templates (`*.html`, `*.txt`),
    /// `.env` files, translations (`*.mo`) and Python files.
    #[arg(
        long,
        value_name = "GLOB",
        env = "FERRULE_RELOAD_INCLUDE",
        help_heading = "Processes"
    )]
    pub reload_include: Vec<String>,

    /// With reloading: ignore changes to files matching this glob, even if included.
    /// Repeatable. Default: version control, virtualenvs, caches, `node_modules`.
    #[arg(
        long,
        value_name = "GLOB",
        env = "FERRULE_RELOAD_EXCLUDE",
        help_heading = "Processes"
    )]
    pub reload_exclude: Vec<String>,

    /// Write the pid of the process that owns the listeners (the master, or the one serving
    /// process) to this file once they are bound, and remove it on exit. A file naming a
    /// process that is still running stops the start (exit code 2); a stale one is replaced.
    /// Default: none.
    #[arg(
        long,
        value_name = "PATH",
        env = "FERRULE_PID",
        help_heading = "Processes"
    )]
    pub pid: Option<std::path::PathBuf>,

    /// The file mode creation mask of every ferrule process (the master and its workers), in
    /// octal: files the application creates get it (`027`: no access for others). Unix
    /// sockets keep `--unix-socket-mode`. Default: the mask ferrule was started with.
    #[arg(
        long,
        value_name = "MASK",
        env = "FERRULE_UMASK",
        help_heading = "Processes"
    )]
    pub umask: Option<String>,

    /// Run as this user (a name or a uid) once the listeners are bound, the pid file written
    /// and the TLS files checked: ferrule starts as root (to bind port 443, say), then the
    /// master and every worker run as USER with its groups. The application is never imported
    /// as root (a master always runs). Unix sockets, the pid file and the log file are given
    /// to USER first. The TLS key must be readable by USER: workers read it. Default: unchanged.
    #[arg(
        long,
        value_name = "USER",
        env = "FERRULE_USER",
        help_heading = "Processes"
    )]
    pub user: Option<String>,

    /// Run as this group (a name or a gid) once the listeners are bound, as `--user` does; its
    /// only group then. Default: the primary group of `--user`, else unchanged.
    #[arg(
        long,
        value_name = "GROUP",
        env = "FERRULE_GROUP",
        help_heading = "Processes"
    )]
    pub group: Option<String>,
}

/// The supervisor part of the plan.
#[derive(Debug, Clone)]
pub struct SupervisePlan {
    pub workers: usize,
    /// `--max-requests`; `None` when off.
    pub max_requests: Option<u64>,
    pub max_requests_jitter: u64,
    /// `--max-rss` in bytes; `None` when off.
    pub max_rss: Option<u64>,
    /// `--worker-timeout`; `None` when off.
    pub worker_timeout: Option<Duration>,
    pub reload: bool,
    /// `--reload-include` and `--reload-exclude` with the defaults.
    pub reload_filter: Filter,
    /// `--pid`.
    pub pid_file: Option<std::path::PathBuf>,
    /// `--umask`.
    pub umask: Option<u32>,
    /// `--user` and `--group`.
    pub identity: Option<super::identity::Identity>,
}

impl SupervisePlan {
    /// Whether a master process runs the workers (rather than one process serving alone):
    /// several workers, reloading, recycling (which replaces the one worker), or another
    /// identity (so that the application is never imported before the switch).
    pub fn master(&self) -> bool {
        self.workers > 1
            || self.reload
            || self.max_requests.is_some()
            || self.max_rss.is_some()
            || self.identity.is_some()
    }
}

impl SuperviseOptions {
    /// `django`: `manage.py server`, which reloads unless `--noreload`.
    pub fn resolve(&self, django: bool) -> Result<SupervisePlan, Error> {
        if self.workers == 0 {
            return Err(Error::config(
                "invalid value '0' for '--workers': at least 1 worker process is needed",
            ));
        }
        let umask = match &self.umask {
            None => None,
            Some(text) => Some(
                u32::from_str_radix(text, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        Error::config(format!(
                            "invalid value '{text}' for '--umask': expected an octal mask such as 027"
                        ))
                    })?,
            ),
        };
        // Compiled here so a bad glob stops ferrule before anything binds.
        let reload_filter = Filter::new(&self.reload_include, &self.reload_exclude)?;
        if self.reload && self.noreload {
            return Err(Error::config(
                "'--reload' and '--noreload' cannot be used together",
            ));
        }
        Ok(SupervisePlan {
            workers: self.workers,
            max_requests: Some(self.max_requests).filter(|n| *n > 0),
            max_requests_jitter: self.max_requests_jitter,
            max_rss: Some(self.max_rss)
                .filter(|n| *n > 0)
                .map(|mb| mb.saturating_mul(1 << 20)),
            worker_timeout: Some(seconds("--worker-timeout", self.worker_timeout)?)
                .filter(|d| !d.is_zero()),
            reload: self.reload || (django && !self.noreload),
            reload_filter,
            pid_file: self.pid.clone(),
            umask,
            identity: super::identity::resolve(self.user.as_deref(), self.group.as_deref())?,
        })
    }
}
