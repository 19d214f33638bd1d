//! What crosses between the network core and a worker thread: a [`Job`] going in, a
//! [`Reply`] coming back.
//!
//! The http layer builds jobs (`http/queued.rs`), the pool queues them (`pool/`, through
//! [`Jobs`]), and the WSGI layer turns them into replies (`wsgi/`). Nothing here touches
//! Python.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::body::Body;
use crate::cancel::Flight;
pub use crate::listen::tls::TlsInfo;
use crate::listen::Peer;
pub use crate::response::{Chunk, Trailers};
use crate::stats::WorkerHold;

/// What the application needs to know about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: Peer,
    /// The listener's address (`None` for a Unix socket); the fallback for `SERVER_NAME`.
    pub local: Option<SocketAddr>,
    /// The listener's socket path, for a Unix socket (an ASGI scope's `server`).
    pub unix_path: Option<Arc<str>>,
    /// `"https"` on a TLS connection, else `"http"`.
    pub scheme: &'static str,
    /// The TLS session, on a TLS connection.
    pub tls: Option<TlsInfo>,
    /// `peer` is the client a PROXY protocol header named (`--proxy-protocol`): a client,
    /// never a proxy to believe, whatever `--forwarded-allow-ips` says of its address.
    pub relayed: bool,
    /// Requests of this connection in the application (`--h2-max-pending`, counted by
    /// [`InApp`]; on HTTP/1 there is never more than one).
    pub pending: AtomicUsize,
    /// What the connection holds for as long as anything serves it (a WebSocket outlives
    /// hyper's connection future): its `--max-connections` permit, its place in the
    /// connection counts, its client's `--max-connections-per-ip` slot.
    pub held: Option<Held>,
}

/// Guards dropped with the last reference to a connection's [`ConnInfo`].
pub type Held = Box<dyn std::any::Any + Send + Sync>;

/// One of a connection's requests in the application (`--h2-max-pending`): counted until
/// dropped, which for a WSGI job is when its worker is done with it, so a client resetting
/// its stream does not free the place while the view still runs.
pub struct InApp(Arc<ConnInfo>);

impl InApp {
    /// Count one more on `conn`, unless it has `limit` already.
    pub fn enter(conn: &Arc<ConnInfo>, limit: usize) -> Option<Self> {
        conn.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| InApp(Arc::clone(conn)))
    }
}

impl Drop for InApp {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How the request looks to the application once trusted proxy headers and the URL prefix are
/// applied (`http/proxy.rs` decides). Every field left `None` falls back to what the
/// connection and the request line say.
#[derive(Debug, Default)]
pub struct Origin {
    /// `REMOTE_ADDR` from `X-Forwarded-For` / `Forwarded: for=`.
    pub client: Option<String>,
    /// `REMOTE_PORT` that goes with `client`.
    pub client_port: Option<String>,
    /// `wsgi.url_scheme` from `X-Forwarded-Proto` / `Forwarded: proto=`.
    pub scheme: Option<&'static str>,
    /// `HTTP_HOST` (and `SERVER_NAME`) from `X-Forwarded-Host` / `Forwarded: host=`.
    pub host: Option<String>,
    /// `SERVER_PORT` from `X-Forwarded-Port`.
    pub port: Option<String>,
    /// `SCRIPT_NAME`: `X-Forwarded-Prefix` followed by `--prefix`; empty for none.
    pub script_name: String,
    /// `PATH_INFO` (percent-decoded) when the prefix was cut from it; `None` means the whole
    /// decoded path.
    pub path_info: Option<Vec<u8>>,
}

/// One request on its way to the application.
pub struct Job {
    pub head: http::request::Parts,
    pub body: Body,
    pub conn: Arc<ConnInfo>,
    pub origin: Origin,
    /// What the statistics follow of the request (its id, label, timings, and its flight);
    /// dropped when the worker is done with it.
    pub trace: WorkerHold,
    pub reply: oneshot::Sender<Reply>,
    /// Its place in the connection's `--h2-max-pending`, if it was counted.
    pub pending: Option<InApp>,
}

/// Why a job was not queued.
pub enum Rejected {
    /// The queue holds `--max-queue` jobs already.
    Full { depth: usize },
    /// The pool is shutting down.
    Closing,
}

/// Where jobs wait for a thread: the pool (`pool/`); a stand-in in tests. What
/// `http/queued.rs` hands a request to, so the HTTP core never names the pool.
pub trait Jobs: Send + Sync + 'static {
    /// Queue `job`, or give it back with the reason it cannot be queued.
    fn submit(&self, job: Job) -> Result<(), (Rejected, Box<Job>)>;
    /// (live threads, threads running a job), for the message of a full queue.
    fn threads(&self) -> (usize, usize);
}

impl Job {
    /// Fires when the request is cancelled; carries its async-wait time.
    pub fn flight(&self) -> &Arc<Flight> {
        &self.trace.trace().flight
    }
}

/// The application's response head and how its body will arrive.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ReplyBody,
    /// The reason phrase of a WSGI status line, when it is not the code's usual one
    /// (`419 Page Expired`); HTTP/1 sends it, HTTP/2 has none.
    pub reason: Option<hyper::ext::ReasonPhrase>,
}

pub enum ReplyBody {
    /// The whole body at once (a list returned by the app): the thread is free immediately.
    Full(Bytes),
    /// An iterator, pulled by the worker thread and pushed through a bounded channel. The
    /// flag is set when the stream ends in error; the channel closing then aborts the
    /// connection instead of ending the body cleanly. An ASGI response's trailers, if it
    /// announced any, follow the last chunk.
    Stream(mpsc::Receiver<Chunk>, Arc<AtomicBool>, Option<Trailers>),
    /// `wsgi.file_wrapper`: `len` bytes from `offset`, sent by tokio.
    File {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
}

impl Reply {
    pub fn full(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body: ReplyBody::Full(body),
            reason: None,
        }
    }

    #[must_use]
    pub fn with_reason(mut self, reason: Option<hyper::ext::ReasonPhrase>) -> Self {
        self.reason = reason;
        self
    }
}
