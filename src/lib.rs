//! ferrule: an application server for Django and any WSGI app, with a Rust network core.
//!
//! The map (the living version is `docs/architecture.md`):
//!
//! | module | owns | Python? |
//! |---|---|---|
//! | `lib.rs` | the `ferrule._ferrule` module and `main()`: parse, load, bind, serve | yes |
//! | `config.rs` | every option (clap), validation into a `Plan` | no |
//! | `error.rs` | the start-up error type and exit codes | no |
//! | `fuzzing.rs` | with the `fuzzing` feature only: what the `fuzz/` targets call | no |
//! | `app.rs` | importing the application | yes |
//! | `listen/` | TCP and Unix listeners (bound, inherited, or systemd-activated), the write deadline, TLS (rustls), HTTP/2 preface detection | no |
//! | `server.rs` | accept loops, connections, graceful shutdown; `server/streams.rs` watches HTTP/2 streams | no |
//! | `http/` | admission, proxies and prefix, request ids, the hyper service, server-made responses, access log | no |
//! | `static_files/` | static mounts, path safety, conditional/range/precompressed responses | `django.rs` only |
//! | `stats/` | per-view statistics: recording, history rings, Prometheus/JSON/dashboard, the admin listener | no |
//! | `supervise/` | the master process (`master/`: its loop acts on `decide.rs`, a pure function of its state) and its workers; `watch.rs` watches files for `--reload`; systemd notifications (`notify.rs`) | no |
//! | `body.rs` | request bodies, buffered or spooled before dispatch | no |
//! | `bridge/` | the asyncio loop thread, `wait`/`gather`, asgiref, cancellation exceptions | yes |
//! | `cancel.rs` | per-request cancellation (`Flight`), the disconnect guard, async-wait time | no |
//! | `job.rs` | what crosses between the core and a worker thread | no |
//! | `pool/` | Python worker threads, the job queue, the hand-off monitor; its policy is pure (`policy.rs`) | yes |
//! | `wsgi/` | PEP 3333: environ, input, `start_response`, `file_wrapper`, responses | yes |
//! | `logging.rs` | server and access logs into Python `logging` or a file; `logging/facade.rs` is the `tracing`/`log` subscriber that takes our records and our dependencies' | small |
//!
//! A request: `server.rs` accepts → `http/service.rs` admits and reads the body → `pool/`
//! queues the job → a worker thread runs `wsgi/` → the reply goes back through a channel and
//! hyper sends it.

pub mod app;
pub mod body;
pub mod bridge;
pub mod cancel;
pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
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
    m.add_function(wrap_pyfunction!(run::main, m)?)?;
    m.add_class::<wsgi::FileWrapper>()?;
    m.add_function(wrap_pyfunction!(bridge::wait, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::gather, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::cancelled, m)?)?;
    Ok(())
}
