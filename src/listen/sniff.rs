//! Telling HTTP/2 with prior knowledge from HTTP/1 on a connection without ALPN.
//!
//! An h2c client opens with the 24-byte connection preface (RFC 9113 §3.4); an HTTP/1 request
//! line differs from it by the first byte for every method except `PRI`. [`sniff`] reads until
//! the bytes either leave the preface or complete it, and hands back a [`Rewind`] stream that
//! replays them, so the chosen protocol reads the connection from its first byte. Bounding the
//! wait in time is the caller's job.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream that first replays bytes already read from it.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// A stream with nothing to replay.
    pub fn new(inner: S) -> Self {
        Self {
            prefix: Vec::new(),
            pos: 0,
            inner,
        }
    }
}

/// Read the start of the connection: `true` if it is the HTTP/2 preface. End of stream
/// before a decision counts as HTTP/1 (hyper then sees the short read and closes).
pub async fn sniff<S: AsyncRead + Unpin>(mut inner: S) -> io::Result<(bool, Rewind<S>)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut n = 0;
    while n < buf.len() {
        let got = inner.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n] != PREFACE[..n] {
            break;
        }
    }
    let h2 = n == PREFACE.len() && buf == *PREFACE;
    Ok((
        h2,
        Rewind {
            prefix: buf[..n].to_vec(),
            pos: 0,
            inner,
        },
    ))
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

crate::listen::writes_through!(Rewind, inner);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(input: &[u8]) -> (bool, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(input).await.unwrap();
        drop(client);
        let (h2, mut stream) = sniff(server).await.unwrap();
        let mut replay = Vec::new();
        stream.read_to_end(&mut replay).await.unwrap();
        (h2, replay)
    }

    #[tokio::test]
    async fn the_preface_is_h2_and_everything_is_replayed() {
        let cases: &[(&[u8], bool)] = &[
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", true),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            (b"PRI * HTTP/1.1\r\nHost: x\r\n\r\n", false),
            (b"PRI", false),
            (b"", false),
        ];
        for (input, want) in cases {
            let (h2, replay) = sniffed(input).await;
            assert_eq!(h2, *want, "{input:?}");
            assert_eq!(replay, *input, "{input:?}");
        }
    }
}
