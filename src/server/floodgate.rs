//! HTTP/2 control-frame floods (CVE-2019-9512 PING, CVE-2019-9515 SETTINGS): [`Floodgate`]
//! reads an HTTP/2 connection's frame headers as they pass from the socket to h2, and ends the
//! connection when a client sends PING or SETTINGS frames (those that ask for an answer, not
//! the acknowledgements) faster than any real client does.
//!
//! h2 answers each such frame, holding at most one answer unsent, so a flood costs no memory,
//! but a client that reads its answers keeps an I/O thread busy answering; nothing in h2 or
//! hyper limits the rate. Only frame headers are looked at (nine bytes before each payload),
//! never payloads: h2 still parses and validates everything. Below h2 and above TLS; the
//! connection's other limits are `server.rs`'s and `streams.rs`'s.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::listen::Peer;
use crate::log_warn;
use crate::logging::throttle::{self, Throttle};

/// The client connection preface, before the first frame (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// PING and SETTINGS frames a client may send at once, and then per second. A browser sends
/// one SETTINGS and a few PINGs per connection, a gRPC client a keep-alive PING every ten
/// seconds or more; arbitrary, and far above both.
const BURST: f64 = 100.0;
const PER_SECOND: f64 = 10.0;

/// An HTTP/2 connection's reads, with the control frames counted.
pub struct Floodgate<S> {
    inner: S,
    peer: Peer,
    /// Preface bytes still to pass.
    preface: usize,
    /// The frame header being read, and how much of it is in.
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload: usize,
    bucket: Bucket,
}

impl<S> Floodgate<S> {
    pub fn new(inner: S, peer: Peer) -> Self {
        Self {
            inner,
            peer,
            preface: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            payload: 0,
            bucket: Bucket::new(Instant::now()),
        }
    }

    /// Follow the frames through `bytes`, just read: false once the client floods.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == FRAME_HEADER_LEN {
                    self.have = 0;
                    let [a, b, c, kind, flags, ..] = self.header;
                    self.payload = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    let asks = matches!(kind, PING | SETTINGS) && flags & ACK == 0;
                    if asks && !self.bucket.take(Instant::now()) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Floodgate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if !this.scan(&buf.filled()[before..]) {
                flooded(this.peer);
                return Poll::Ready(Err(io::Error::other(
                    "the client sent PING or SETTINGS frames faster than 10 a second",
                )));
            }
        }
        polled
    }
}

crate::listen::writes_through!(Floodgate, inner);

fn flooded(peer: Peer) {
    static LINES: Throttle = Throttle::new(Duration::from_secs(10));
    if let Some(n) = LINES.pass() {
        log_warn!(
            "Closed the HTTP/2 connection from {peer}: it sent PING or SETTINGS frames faster than {PER_SECOND} a second (a flood, CVE-2019-9512/9515){}",
            throttle::more(n, "")
        );
    }
}

/// A token bucket: [`BURST`] at once, refilled at [`PER_SECOND`].
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = (now - self.at).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
        f.resize(FRAME_HEADER_LEN + payload, 0xAA);
        f
    }

    #[tokio::test(start_paused = true)]
    async fn pings_past_the_burst_flood_but_acks_and_other_frames_never_do() {
        let mut gate = Floodgate::new((), Peer::Unix);
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(SETTINGS, 0, 6));
        for _ in 0..99 {
            stream.extend(frame(PING, 0, 8));
            stream.extend(frame(PING, ACK, 8));
            // A DATA frame whose payload looks like PING headers is not counted.
            stream.extend(frame(0x0, 0, 18));
        }
        // In pieces of 7 bytes: headers split across reads are followed.
        for piece in stream.chunks(7) {
            assert!(gate.scan(piece));
        }
        assert!(!gate.scan(&frame(PING, 0, 8)), "the 101st asks too much");
    }

    #[tokio::test(start_paused = true)]
    async fn ten_a_second_come_back_after_the_burst() {
        let mut gate = Floodgate::new((), Peer::Unix);
        assert!(gate.scan(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        for _ in 0..100 {
            assert!(gate.scan(&frame(PING, 0, 8)));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..10 {
            assert!(gate.scan(&frame(PING, 0, 8)), "10 a second are refilled");
        }
        assert!(!gate.scan(&frame(SETTINGS, 0, 0)));
    }
}
