//! What crosses between the network core and a worker thread: a [`Job`] going in, a
//! [`Reply`] coming back.
//!
//! The http layer builds jobs (`http/service.rs`), the pool queues them (`pool.rs`), and the
//! WSGI layer turns them into replies (`wsgi/`). Nothing here touches Python.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};

use crate::body::Body;
use crate::listen::Peer;

/// What the application needs to know about the connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: Peer,
    /// The listener's address (`None` for a Unix socket); the fallback for `SERVER_NAME`.
    pub local: Option<SocketAddr>,
    pub scheme: &'static str,
}

/// One request on its way to the application.
pub struct Job {
    pub head: http::request::Parts,
    pub body: Body,
    pub conn: Arc<ConnInfo>,
    pub reply: oneshot::Sender<Reply>,
    pub queued_at: Instant,
}

/// The application's response head and how its body will arrive.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ReplyBody,
}

/// A chunk of a streamed body, or the error that ends it early (the connection is then
/// aborted so the client cannot mistake a truncated body for a complete one).
pub type Chunk = Result<Bytes, io::Error>;

pub enum ReplyBody {
    /// The whole body at once (a list returned by the app): the thread is free immediately.
    Full(Bytes),
    /// An iterator, pulled by the worker thread and pushed through a bounded channel. The
    /// flag is set when the stream ends in error; the channel closing then aborts the
    /// connection instead of ending the body cleanly.
    Stream(mpsc::Receiver<Chunk>, Arc<AtomicBool>),
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
        }
    }
}
