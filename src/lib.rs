//! ferrule: an application server for Django and any WSGI app, with a Rust network core.
//!
//! The map (the living version, with a "where does X live" table, is
//! `docs/architecture.md`). Each module depends only on those listed below it, except `run/`
//! and `supervise/`, which put the rest together.
//!
//! | module | owns | Python? |
//! |---|---|---|
//! | `lib.rs` | this map; the `ferrule._ferrule` module | yes |
//! | `run/` | `main()`: argv to exit code; loading the app, its routes (`routes.rs`), serving and draining (`serve.rs`), a serving process's signals (`signals.rs`) | yes |
//! | `supervise/` | the master (`master/`, its decisions pure in `decide.rs`), worker processes, the control channel, the reload watcher, systemd notifications | argv only |
//! | `process.rs` | what every process sets up about itself: signals, logging, environment, glibc's mmap threshold, `--user`/`--group` | small |
//! | `pidfile.rs` | `--pid`: the file naming the process that owns the listeners | small |
//! | `hooks.rs` | `--hooks`: the user's functions at gunicorn's points, run by `run/`, `supervise/` and `wsgi/` | yes |
//! | `app.rs` | importing the application (`module:callable`, a factory, Django's) | yes |
//! | `asgi/` | ASGI 3 on the loop: the `Dispatch` for ASGI apps, `receive`/`send`, the inbox (a queue and a doorbell fd), scopes, WebSockets (`websocket.rs`, yawc), the leased pool thread for sync code (`executor.rs`), lifespan | yes |
//! | `wsgi/` | PEP 3333: environ, input, `start_response` (its rules pure in `head.rs`), `file_wrapper`, responses | yes |
//! | `bridge/` | the asyncio loop thread, `wait`/`gather`, asgiref on the shared loop | yes |
//! | `pool/` | Python worker threads, the job queue, the hand-off monitor (its policy pure in `policy.rs`) | yes |
//! | `server.rs` | accept loops, connections, HTTP/1.1 and HTTP/2, graceful shutdown | no |
//! | `http/` | the hyper service: admission, proxies and prefix, request ids, the access log, and the `Dispatch` seam (`dispatch.rs`; the pool's side is `queued.rs`) | no |
//! | `static_files/` | static mounts, path safety, conditional/range/precompressed responses | `django.rs` only |
//! | `job.rs` | what crosses between the core and a worker thread, and the `Jobs` queue it goes on | no |
//! | `stats/` | per-view statistics: recording, history rings, Prometheus/JSON/dashboard, the admin listener | no |
//! | `response/` | the response body type, and the responses the server makes itself | no |
//! | `body.rs` | request bodies, buffered or spooled before dispatch | no |
//! | `listen/` | binding, inheriting and accepting (`accept.rs`), the PROXY protocol header (`proxy_protocol.rs`), raw request targets (`target.rs`), the write deadline, TLS, HTTP/2 preface detection, the workers' connection board | no |
//! | `cancel.rs` | per-request cancellation (`Flight`), the disconnect guard, async-wait time | no |
//! | `config/` | every option (clap), validated into a `Plan` (`identity.rs`: `--user`/`--group` looked up); the TOML file and `settings.FERRULE` | `load.rs` only |
//! | `logging.rs` | server and access logs into Python `logging` or a file; the `tracing` facade | small |
//! | `platform/` | what ferrule asks of the OS beyond POSIX, per platform (Linux, macOS, FreeBSD; the `portable` feature) | no |
//! | `html.rs` | escaping text for HTML | no |
//! | `error.rs` | the start-up error type and exit codes | no |
//! | `fuzzing.rs` | with the `fuzzing` feature only: what the `fuzz/` targets call | no |
//!
//! A request: `listen/accept.rs` accepts → `server.rs` serves the connection →
//! `http/service.rs` admits it (or `static_files/` answers) → `http/queued.rs` reads the body
//! and queues a job on `pool/` → a worker thread runs `wsgi/` → the reply goes back through a
//! channel, becomes a `response::OutBody`, and hyper sends it. For an ASGI application the
//! `Dispatch` is `asgi/`'s: the request becomes a task on the loop, its sync code runs on a
//! pool thread leased for it, and a WebSocket is handed to a socket task after the handshake.

pub mod app;
pub mod asgi;
pub mod body;
pub mod bridge;
pub mod cancel;
pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hooks;
pub mod html;
pub mod http;
pub mod job;
pub mod listen;
pub mod logging;
pub mod pool;
pub mod response;
pub mod server;
pub mod static_files;
pub mod stats;
pub mod supervise;
pub mod wsgi;

mod pidfile;
mod platform;
mod process;
mod run;

// The server's log macros: `tracing`'s, under the names the call sites use (logging/facade.rs).
pub use logging::facade::{log_debug, log_error, log_info, log_warn};

use pyo3::prelude::*;

#[pymodule]
fn _ferrule(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // First, so that every record from here on has somewhere to go.
    logging::facade::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PLATFORM_PATHS", platform::PATHS)?;
    m.add_function(wrap_pyfunction!(run::main, m)?)?;
    m.add_class::<wsgi::FileWrapper>()?;
    m.add_class::<asgi::Executor>()?;
    m.add_class::<asgi::Ready>()?;
    m.add_function(wrap_pyfunction!(bridge::wait, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::cost::worker_costs, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::gather, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::cancelled, m)?)?;
    Ok(())
}
