//! Request bodies, read completely by Rust before the application runs.
//!
//! A body is kept in memory up to `--body-buffer-size` and spooled to an anonymous temporary
//! file beyond it (unlinked at creation, so it disappears with the last descriptor however the
//! request ends), up to `--max-body-size`. Reading here rather than from a Python thread means
//! a slow upload never holds a thread, and hyper notices a client that went away. Presenting
//! the body to the application (`wsgi.input`) belongs to `wsgi/input.rs`.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

/// A complete request body.
#[derive(Debug)]
pub enum Body {
    Memory(Bytes),
    File { file: std::fs::File, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a body could not be read; `R` is the trailer check's refusal.
#[derive(Debug)]
pub enum BodyError<R> {
    /// More than `--max-body-size` bytes: answer 413.
    TooLarge,
    /// The client sent a broken body or went away: nothing to answer.
    Client(hyper::Error),
    /// The temporary file could not be written: answer 500.
    Spool(io::Error),
    /// The client paused longer than `--body-timeout`: answer 408.
    Timeout,
    /// The chunked body's trailer failed the caller's check (a field that belongs in a
    /// head): answer what the refusal says.
    Trailer(R),
}

/// A declared length sizes the first buffer, but only up to this much: a client must send
/// bytes, not just promise them, before it holds more memory. 64 KiB covers most form posts.
const FIRST_BUFFER: usize = 64 * 1024;

/// Read the whole body, spooling past `buffer` bytes and refusing more than `max` bytes.
/// `declared` is the Content-Length, if any: it sizes the first buffer. A pause longer than
/// `idle` between two pieces of the body ends the read. A chunked body's trailer must pass
/// `check_trailers` (the rule is admission's), and is then dropped.
pub async fn read<R>(
    mut incoming: Incoming,
    declared: Option<u64>,
    buffer: usize,
    max: u64,
    idle: Duration,
    check_trailers: impl Fn(&http::HeaderMap) -> Result<(), R>,
) -> Result<Body, BodyError<R>> {
    let expected = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let first = if expected <= buffer {
        expected.min(FIRST_BUFFER)
    } else {
        0
    };
    let mut memory = BytesMut::with_capacity(first);
    let mut spool: Option<tokio::fs::File> = None;
    let mut total: u64 = 0;
    loop {
        let Ok(frame) = tokio::time::timeout(idle, incoming.frame()).await else {
            return Err(BodyError::Timeout);
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(BodyError::Client)?;
        let data = match frame.into_data() {
            Ok(data) => data,
            // Trailers carry no body bytes; they are checked, then dropped.
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    check_trailers(trailers).map_err(BodyError::Trailer)?;
                }
                continue;
            }
        };
        total += data.len() as u64;
        if total > max {
            return Err(BodyError::TooLarge);
        }
        if let Some(file) = spool.as_mut() {
            file.write_all(&data).await.map_err(BodyError::Spool)?;
        } else if memory.len() + data.len() > buffer {
            let mut file =
                tokio::fs::File::from_std(tempfile::tempfile().map_err(BodyError::Spool)?);
            file.write_all(&memory).await.map_err(BodyError::Spool)?;
            file.write_all(&data).await.map_err(BodyError::Spool)?;
            memory = BytesMut::new();
            spool = Some(file);
        } else {
            memory.extend_from_slice(&data);
        }
    }
    match spool {
        Some(mut file) => {
            file.flush().await.map_err(BodyError::Spool)?;
            Ok(Body::File {
                file: file.into_std().await,
                len: total,
            })
        }
        None => Ok(Body::Memory(memory.freeze())),
    }
}
