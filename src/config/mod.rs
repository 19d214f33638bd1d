//! Every option ferrule has, defined once, and their resolution into a [`Plan`].
//!
//! Options are clap-derive fields: the doc comment is the `--help` text, clap prints the
//! default, and each has a `FERRULE_*` environment variable. Both entry points (`ferrule APP`
//! and Django's `manage.py server [addr:]port`) parse the same [`Options`], so an option is
//! never declared twice. Parsing is stage one; [`Options::resolve`] validates and turns the raw
//! values into a [`Plan`] (stage two), naming the option and the value when one is wrong.
//! The application descriptor (`--config FILE`, Django's `settings.FERRULE`) supplies values
//! for the options argv and the environment leave unset (`load.rs`, `file.rs`).
//! Binding, importing and serving are left to `server.rs`.

pub mod access_format;
mod clients;
pub mod file;
pub mod identity;
mod load;
pub(crate) mod parse;
pub mod prefix;
mod proxy;
pub mod reload;
mod report;
mod statics;
mod stats;
mod supervise;
mod tls;
pub mod trust;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use crate::error::Error;
use access_format::Format;

pub use clients::{ClientOptions, ClientPlan};
pub use load::{load, Loaded, STARTED_IN};
pub use parse::{parse_addrport, parse_bind, parse_size};
use parse::{positive_seconds, seconds};
pub use proxy::{ForwardedHeaders, ProxyOptions, ProxyPlan};
pub use statics::{normalize_url_path, StaticMount, StaticOptions, StaticPlan, DEFAULT_MAX_AGE};
pub use stats::{StatsOptions, StatsPlan};
pub use supervise::{SuperviseOptions, SupervisePlan};
pub use tls::{ClientCert, H2Limits, HttpMode, TlsFiles, TlsOptions, TlsPlan, TlsVersion};

/// `--interface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Interface {
    #[default]
    Auto,
    Wsgi,
    Asgi,
}

/// `--loop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoopKind {
    #[default]
    Auto,
    Asyncio,
    Uvloop,
}

impl LoopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoopKind::Auto => "auto",
            LoopKind::Asyncio => "asyncio",
            LoopKind::Uvloop => "uvloop",
        }
    }
}

/// `ferrule [OPTIONS] APP`: the standalone command.
#[derive(Debug, Parser)]
#[command(
    name = "ferrule",
    version,
    about = "Serve Django or any WSGI application from a Rust core.",
    after_help = "Django: add \"ferrule\" to INSTALLED_APPS, then `python manage.py server \
                  [addr:]port` serves the project (WSGI_APPLICATION) with these options and \
                  reloads on changes, as runserver does. `ferrule mysite.wsgi` serves it too.",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,

    /// The WSGI application: `module:callable` (`module` alone means `module:application`),
    /// or `module:factory()` to call an application factory. Required unless the `--config`
    /// file names one (`app`, or `django_settings` for a Django project).
    #[arg(value_name = "APP", env = "FERRULE_APP")]
    pub app: Option<String>,

    /// A TOML file describing the application and its options: each option's long name with
    /// `_` for `-` (`keep_alive = 10`), plus `app`, `django_settings`, `python_path`, `env`
    /// and `working_dir` (see docs/configuration.md). The command line and `FERRULE_*`
    /// variables override it. `ferrule check-config FILE` validates a file and prints what it
    /// resolves to. Default is none.
    #[arg(
        long,
        value_name = "FILE",
        env = "FERRULE_CONFIG",
        help_heading = "Configuration"
    )]
    pub config: Option<PathBuf>,
}

/// `manage.py server [addr:]port [OPTIONS]`: the Django management command.
#[derive(Debug, Parser)]
#[command(
    name = "manage.py server",
    version,
    about = "Serve this Django project's WSGI application with ferrule.",
    max_term_width = 100
)]
pub struct DjangoCli {
    #[command(flatten)]
    pub options: Options,

    /// Address to serve on, as with `runserver`: `8000`, `0.0.0.0:8000`, `[::1]:8000`. Default is
    /// 127.0.0.1:8000 unless `--bind` is given.
    #[arg(value_name = "ADDRPORT")]
    pub addrport: Option<String>,
}

/// The options both commands share, grouped by topic in `--help`.
#[derive(Debug, Args)]
pub struct Options {
    /// Address to listen on: `HOST:PORT`, `[IPV6]:PORT` or `unix:PATH`. Repeat to listen on
    /// several. Default is 127.0.0.1:8000.
    #[arg(
        short,
        long = "bind",
        value_name = "ADDRESS",
        env = "FERRULE_BIND",
        value_delimiter = ',',
        help_heading = "Listeners"
    )]
    pub bind: Vec<String>,

    /// Permissions of Unix sockets created by `--bind unix:PATH`, in octal.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "660",
        env = "FERRULE_UNIX_SOCKET_MODE",
        help_heading = "Listeners"
    )]
    pub unix_socket_mode: String,

    /// Most connections served at once; further connections wait in the listen backlog.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 10_000,
        env = "FERRULE_MAX_CONNECTIONS",
        help_heading = "Listeners"
    )]
    pub max_connections: usize,

    /// Seconds an idle keep-alive connection is kept open waiting for its next request.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 5.0,
        env = "FERRULE_KEEP_ALIVE",
        help_heading = "HTTP"
    )]
    pub keep_alive: f64,

    /// Seconds a client has to send a complete request head before the connection is closed.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        env = "FERRULE_HEADER_TIMEOUT",
        help_heading = "HTTP"
    )]
    pub header_timeout: f64,

    /// Seconds a client may go without accepting any byte of a response (any response: a
    /// static file, a whole body, a stream); then its connection is closed, freeing the
    /// connection slot and, for a streamed response, the worker thread.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        env = "FERRULE_SEND_TIMEOUT",
        help_heading = "HTTP"
    )]
    pub send_timeout: f64,

    /// Seconds a client may pause while sending a request body; then it gets 408 and the
    /// connection is closed.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        env = "FERRULE_BODY_TIMEOUT",
        help_heading = "HTTP"
    )]
    pub body_timeout: f64,

    /// Largest request body accepted, in bytes (suffixes K, M, G); larger ones get 413.
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "1G",
        env = "FERRULE_MAX_BODY_SIZE",
        help_heading = "HTTP"
    )]
    pub max_body_size: String,

    /// Request bodies up to this size are kept in memory; larger ones are spooled to a
    /// temporary file (suffixes K, M, G).
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "1M",
        env = "FERRULE_BODY_BUFFER_SIZE",
        help_heading = "HTTP"
    )]
    pub body_buffer_size: String,

    /// Longest request line (method, target, version) in bytes; longer gets 414.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "BYTES",
        default_value_t = 4094,
        env = "FERRULE_LIMIT_REQUEST_LINE",
        help_heading = "HTTP"
    )]
    pub limit_request_line: usize,

    /// Most header fields in a request; more gets 431.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 100,
        env = "FERRULE_LIMIT_REQUEST_FIELDS",
        help_heading = "HTTP"
    )]
    pub limit_request_fields: usize,

    /// Largest header field in bytes, counted as `Name: value` plus CRLF (a field repeated on
    /// several lines counts as its joined value); larger gets 431.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "BYTES",
        default_value_t = 8190,
        env = "FERRULE_LIMIT_REQUEST_FIELD_SIZE",
        help_heading = "HTTP"
    )]
    pub limit_request_field_size: usize,

    /// Most Python threads running the application. Threads beyond the first are started only
    /// while the running ones are blocked (I/O, sleep, database), so CPU-bound views keep one
    /// hot thread and I/O-bound views get up to this many.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 32,
        env = "FERRULE_THREADS",
        help_heading = "Worker threads"
    )]
    pub threads: usize,

    /// Threads kept alive even when idle.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 1,
        env = "FERRULE_MIN_THREADS",
        help_heading = "Worker threads"
    )]
    pub min_threads: usize,

    /// Seconds an idle thread above `--min-threads` lives before it exits.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        env = "FERRULE_THREAD_IDLE_TIMEOUT",
        help_heading = "Worker threads"
    )]
    pub thread_idle_timeout: f64,

    /// Most requests waiting for a thread; beyond it clients get 503 with Retry-After.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 1024,
        env = "FERRULE_MAX_QUEUE",
        help_heading = "Worker threads"
    )]
    pub max_queue: usize,

    /// Threads running the network core (accepting, parsing, sending).
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 1,
        env = "FERRULE_IO_THREADS",
        help_heading = "Worker threads"
    )]
    pub io_threads: usize,

    /// Directory to prepend to `sys.path` before importing the application. Repeatable.
    #[arg(
        long,
        value_name = "DIR",
        env = "FERRULE_PYTHONPATH",
        value_delimiter = ',',
        help_heading = "Application"
    )]
    pub pythonpath: Vec<PathBuf>,

    /// A module of functions to run at gunicorn's hook points, with ferrule's arguments:
    /// `on_starting()`, `when_ready()`, `on_reload()` in the master, `post_worker_init()`,
    /// `worker_exit()` in each worker, `pre_request(environ)` and
    /// `post_request(environ, status, timings)` around each WSGI request. See docs/hooks.md.
    /// Default is none.
    #[arg(
        long,
        value_name = "MODULE",
        env = "FERRULE_HOOKS",
        help_heading = "Application"
    )]
    pub hooks: Option<String>,

    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT before ferrule exits
    /// anyway. A second signal exits at once.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        env = "FERRULE_GRACEFUL_TIMEOUT",
        help_heading = "Application"
    )]
    pub graceful_timeout: f64,

    /// Seconds a request may take, counted from the moment it is queued for the application
    /// (its body has arrived), before it is cancelled: a client still waiting for the response
    /// head gets 504 at once, a response already streaming is cut short, and the application
    /// sees the cancellation (see `--cancel-grace`). 0 turns it off. Default is 0 (off).
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 0.0,
        env = "FERRULE_TIMEOUT",
        help_heading = "Application"
    )]
    pub timeout: f64,

    /// Seconds a cancelled request (its client left, `--timeout`, a forced shutdown) may keep
    /// its thread before `ferrule.ClientDisconnected` or `ferrule.RequestTimeout` is raised in
    /// it; the exception lands at the next Python bytecode, not inside a blocking C call. 0
    /// never raises it. Default is 5.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 5.0,
        env = "FERRULE_CANCEL_GRACE",
        help_heading = "Application"
    )]
    pub cancel_grace: f64,

    /// The application's interface: `wsgi` (PEP 3333, on the thread pool), `asgi` (ASGI 3, on
    /// the event loop, its sync parts on the pool), or `auto`: ASGI for a coroutine function
    /// or an object whose `__call__` is one, else WSGI. `manage.py server` serves
    /// `ASGI_APPLICATION` when the setting exists, unless this is `wsgi`. Default is auto.
    #[arg(
        long,
        value_enum,
        default_value_t = Interface::Auto,
        env = "FERRULE_INTERFACE",
        help_heading = "Application"
    )]
    pub interface: Interface,

    /// The event loop: `asyncio`, `uvloop`, or `auto` (uvloop when it is installed, as
    /// uvicorn does). Default is auto.
    #[arg(
        long = "loop",
        value_enum,
        default_value_t = LoopKind::Auto,
        env = "FERRULE_LOOP",
        help_heading = "Application"
    )]
    pub event_loop: LoopKind,

    /// The largest WebSocket message an ASGI application receives (bytes; K, M and G
    /// suffixes); a bigger one closes the connection with 1009 (message too big). Default is
    /// 16M.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "16M",
        env = "FERRULE_WS_MAX_MESSAGE",
        help_heading = "WebSockets"
    )]
    pub ws_max_message: String,

    /// Seconds a WebSocket may stay quiet before the server pings it, so a client that
    /// vanished is noticed (and proxies keep the connection); 0 sends none. Default is 20.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 20.0,
        env = "FERRULE_WS_PING_INTERVAL",
        help_heading = "WebSockets"
    )]
    pub ws_ping_interval: f64,

    /// Seconds a ping may go unanswered before the WebSocket is closed (1011). Default is 20.
    #[arg(
        value_parser = crate::config::parse::seconds_value,
        long,
        value_name = "SECONDS",
        default_value_t = 20.0,
        env = "FERRULE_WS_PING_TIMEOUT",
        help_heading = "WebSockets"
    )]
    pub ws_ping_timeout: f64,

    /// Do not offer permessage-deflate compression (RFC 7692) to WebSocket clients; by
    /// default it is offered, and used when the client asks for it (browsers do).
    #[arg(long, env = "FERRULE_WS_NO_COMPRESSION", help_heading = "WebSockets")]
    pub ws_no_compression: bool,

    /// Log one line per request (Apache combined format plus the duration in microseconds)
    /// to the `ferrule.access` logger. Reloading on changes (`--reload`, `manage.py
    /// server`), a short line per request is logged anyway, as `runserver` does.
    #[arg(long, env = "FERRULE_ACCESS_LOG", help_heading = "Logging")]
    pub access_log: bool,

    /// Log no line per request, not even the short one of development reload; wins over
    /// `--access-log` and `--access-log-format`.
    #[arg(long, env = "FERRULE_NO_ACCESS_LOG", help_heading = "Logging")]
    pub no_access_log: bool,

    /// The access log line: `combined` (Apache combined plus the duration in microseconds),
    /// `json` (one object per line with the request id, view label, queue, processing and
    /// asleep times), `dev` (method, path, status, size and time, coloured by status on a
    /// terminal), or a template such as `'{client} {method} {path} {status} {duration_ms}'`
    /// (fields are listed in the README). Giving it turns the access log on. Default is
    /// combined, and dev when reloading on changes.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "FERRULE_ACCESS_LOG_FORMAT",
        help_heading = "Logging"
    )]
    pub access_log_format: Option<String>,

    /// Write server logs to this file instead of Python `logging`; the verbosity comes from
    /// `FERRULE_DEBUG` (1 error, 2 warning, 3 info, 4 debug, 5 trace; default 3).
    #[arg(
        long,
        value_name = "PATH",
        env = "FERRULE_LOG_FILE",
        help_heading = "Logging"
    )]
    pub log_file: Option<PathBuf>,

    #[command(flatten)]
    pub statics: StaticOptions,

    #[command(flatten)]
    pub clients: ClientOptions,

    #[command(flatten)]
    pub proxy: ProxyOptions,

    #[command(flatten)]
    pub tls: TlsOptions,

    #[command(flatten)]
    pub stats: StatsOptions,

    #[command(flatten)]
    pub supervise: SuperviseOptions,
}

/// Where one listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "{addr}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Request-head limits enforced before the application runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_line: usize,
    pub fields: usize,
    pub field_size: usize,
    pub max_body: u64,
    pub body_buffer: usize,
}

/// Worker pool sizing.
#[derive(Debug, Clone, Copy)]
pub struct PoolPlan {
    pub max_threads: usize,
    pub min_threads: usize,
    pub idle_timeout: Duration,
    pub max_queue: usize,
}

/// WebSockets of ASGI applications.
#[derive(Debug, Clone)]
pub struct WsPlan {
    /// `--ws-max-message`, bytes.
    pub max_message: usize,
    /// `--ws-ping-interval`; `None` sends no pings.
    pub ping_interval: Option<Duration>,
    /// `--ws-ping-timeout`.
    pub ping_timeout: Duration,
    /// permessage-deflate offered (`--ws-no-compression` unset).
    pub compression: bool,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Plan {
    pub binds: Vec<BindAddr>,
    pub unix_socket_mode: u32,
    pub max_connections: usize,
    pub keep_alive: Duration,
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    pub body_timeout: Duration,
    pub limits: Limits,
    pub pool: PoolPlan,
    pub io_threads: usize,
    pub pythonpath: Vec<PathBuf>,
    /// `--hooks`.
    pub hooks: Option<String>,
    pub graceful_timeout: Duration,
    /// `--timeout`; `None` when off.
    pub timeout: Option<Duration>,
    /// `--cancel-grace`; `None` when exceptions are never raised in a cancelled request.
    pub cancel_grace: Option<Duration>,
    /// `--interface`.
    pub interface: Interface,
    /// `--loop`.
    pub event_loop: LoopKind,
    pub websocket: WsPlan,
    pub access_log: bool,
    /// `--access-log-format`.
    pub access_log_format: Format,
    pub log_file: Option<PathBuf>,
    pub statics: StaticPlan,
    pub clients: ClientPlan,
    pub proxy: ProxyPlan,
    pub tls: TlsPlan,
    pub stats: StatsPlan,
    pub supervise: SupervisePlan,
}

const DEFAULT_BIND: &str = "127.0.0.1:8000";

impl Options {
    /// Validate the raw options. `extra_bind` is Django's positional `[addr:]port`.
    pub fn resolve(&self, extra_bind: Option<&str>) -> Result<Plan, Error> {
        self.resolve_for(extra_bind, false)
    }

    /// [`Options::resolve`], saying whether this is `manage.py server` (`django`), whose
    /// defaults differ (it reloads unless `--noreload`).
    fn ws_plan(&self) -> Result<WsPlan, Error> {
        Ok(WsPlan {
            max_message: usize::try_from(parse_size("--ws-max-message", &self.ws_max_message)?)
                .unwrap_or(usize::MAX)
                .max(1),
            ping_interval: Some(seconds("--ws-ping-interval", self.ws_ping_interval)?)
                .filter(|d| !d.is_zero()),
            ping_timeout: positive_seconds("--ws-ping-timeout", self.ws_ping_timeout)?,
            compression: !self.ws_no_compression,
        })
    }

    pub fn resolve_for(&self, extra_bind: Option<&str>, django: bool) -> Result<Plan, Error> {
        let supervise = self.supervise.resolve(django)?;
        let mut binds = Vec::new();
        if let Some(addrport) = extra_bind {
            binds.push(parse_addrport(addrport)?);
        }
        for b in &self.bind {
            binds.push(parse_bind(b)?);
        }
        if binds.is_empty() {
            binds.push(parse_bind(DEFAULT_BIND)?);
        }
        let unix_socket_mode = u32::from_str_radix(&self.unix_socket_mode, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                Error::config(format!(
                    "invalid value '{}' for '--unix-socket-mode': expected an octal mode such as 660",
                    self.unix_socket_mode
                ))
            })?;
        if self.threads == 0 {
            return Err(Error::config(
                "invalid value '0' for '--threads': at least 1 thread is needed",
            ));
        }
        if self.min_threads > self.threads {
            return Err(Error::config(format!(
                "invalid value '{}' for '--min-threads': it exceeds --threads ({})",
                self.min_threads, self.threads
            )));
        }
        if self.max_connections == 0 {
            return Err(Error::config(
                "invalid value '0' for '--max-connections': at least 1 is needed",
            ));
        }
        if self.max_queue == 0 {
            return Err(Error::config(
                "invalid value '0' for '--max-queue': every request waits in the queue, if only briefly; at least 1 is needed",
            ));
        }
        if self.io_threads == 0 {
            return Err(Error::config(
                "invalid value '0' for '--io-threads': at least 1 is needed",
            ));
        }
        let max_body = parse_size("--max-body-size", &self.max_body_size)?;
        let body_buffer = parse_size("--body-buffer-size", &self.body_buffer_size)?;
        Ok(Plan {
            binds,
            unix_socket_mode,
            max_connections: self.max_connections,
            keep_alive: seconds("--keep-alive", self.keep_alive)?,
            header_timeout: positive_seconds("--header-timeout", self.header_timeout)?,
            send_timeout: positive_seconds("--send-timeout", self.send_timeout)?,
            body_timeout: positive_seconds("--body-timeout", self.body_timeout)?,
            limits: Limits {
                request_line: self.limit_request_line,
                fields: self.limit_request_fields,
                field_size: self.limit_request_field_size,
                max_body,
                body_buffer: usize::try_from(body_buffer).unwrap_or(usize::MAX),
            },
            pool: PoolPlan {
                max_threads: self.threads,
                min_threads: self.min_threads,
                idle_timeout: seconds("--thread-idle-timeout", self.thread_idle_timeout)?,
                max_queue: self.max_queue,
            },
            io_threads: self.io_threads,
            pythonpath: self.pythonpath.clone(),
            hooks: self.hooks.clone().filter(|m| !m.is_empty()),
            graceful_timeout: seconds("--graceful-timeout", self.graceful_timeout)?,
            timeout: Some(seconds("--timeout", self.timeout)?).filter(|d| !d.is_zero()),
            interface: self.interface,
            event_loop: self.event_loop,
            websocket: self.ws_plan()?,
            cancel_grace: Some(seconds("--cancel-grace", self.cancel_grace)?)
                .filter(|d| !d.is_zero()),
            access_log: !self.no_access_log
                && (self.access_log || self.access_log_format.is_some() || supervise.reload),
            access_log_format: match (&self.access_log_format, self.access_log) {
                // Development reload, and no line asked for: runserver's kind of line.
                (None, false) if supervise.reload => Format::Dev,
                (format, _) => Format::parse(format.as_deref()).map_err(|why| {
                    Error::config(format!(
                        "invalid value '{}' for '--access-log-format': {why}",
                        format.as_deref().unwrap_or_default()
                    ))
                })?,
            },
            log_file: self.log_file.clone(),
            statics: self.statics.resolve()?,
            clients: self.clients.resolve(self.max_connections)?,
            proxy: self.proxy.resolve()?,
            tls: self.tls.resolve()?,
            stats: self.stats.resolve()?,
            supervise,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn resolve_rejects_bad_values_naming_the_option() {
        let cli = Cli::try_parse_from(["ferrule", "--unix-socket-mode", "999", "app:app"]).unwrap();
        let err = cli.options.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--unix-socket-mode"), "{err}");
        let cli = Cli::try_parse_from(["ferrule", "--min-threads", "5", "--threads", "2", "a:b"])
            .unwrap();
        assert!(cli
            .options
            .resolve(None)
            .unwrap_err()
            .to_string()
            .contains("--min-threads"));
        let cli = Cli::try_parse_from(["ferrule", "a:b"]).unwrap();
        let plan = cli.options.resolve(None).unwrap();
        assert_eq!(
            plan.binds,
            vec![BindAddr::Tcp("127.0.0.1:8000".parse().unwrap())]
        );
        assert_eq!(plan.unix_socket_mode, 0o660);
        assert_eq!(plan.limits.max_body, 1 << 30);
    }

    #[test]
    fn timeout_and_cancel_grace_zero_mean_off() {
        let plan = |args: &[&str]| {
            let argv = [&["ferrule"], args, &["a:b"]].concat();
            Cli::try_parse_from(argv).unwrap().options.resolve(None)
        };
        let defaults = plan(&[]).unwrap();
        assert_eq!(defaults.timeout, None);
        assert_eq!(defaults.cancel_grace, Some(Duration::from_secs(5)));
        let set = plan(&["--timeout", "1.5", "--cancel-grace", "0"]).unwrap();
        assert_eq!(set.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(set.cancel_grace, None);
        for (option, value) in [("--timeout", "-1"), ("--cancel-grace", "nan")] {
            let err = plan(&[&format!("{option}={value}")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(option) && err.to_lowercase().contains(value),
                "{err}"
            );
        }
    }

    #[test]
    fn django_positional_and_bind_combine() {
        let cli = DjangoCli::try_parse_from(["server", "--bind", "unix:/tmp/s", "9000"]).unwrap();
        let plan = cli.options.resolve(cli.addrport.as_deref()).unwrap();
        assert_eq!(plan.binds.len(), 2);
        let cli = DjangoCli::try_parse_from(["server", "--bind", "unix:/tmp/s"]).unwrap();
        assert_eq!(
            cli.options
                .resolve(cli.addrport.as_deref())
                .unwrap()
                .binds
                .len(),
            1
        );
    }
}
