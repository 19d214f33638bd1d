//! Request targets as clients send them: raw `"`, `<`, `>`, backtick and non-ASCII bytes in
//! an HTTP/1 request target are accepted, as gunicorn, uWSGI and nginx accept them. hyper
//! refuses them (400, through the `http` crate's URI parser) before ferrule sees the request,
//! so [`Lenient`] percent-encodes exactly those bytes in each request line on its way to
//! hyper, and records the target as sent ([`Originals`]); the service gives it back to the
//! application through [`RawTarget`] (`RAW_URI`, `QUERY_STRING`, ASGI `raw_path` and
//! `query_string`), byte for byte. `PATH_INFO` is the same either way: it is decoded. A
//! `#fragment`, which hyper's parser drops, is kept the same way for `RAW_URI` only.
//!
//! To find each request line, the stream's HTTP/1 framing is followed as hyper follows it: a
//! head to its empty line, then `Content-Length` bytes or chunks. Only the request line is
//! ever held back (until its end arrives: hyper needs all of it too); every other byte is
//! passed on as it comes. At the first thing it does not follow with certainty (a framing
//! header it cannot read, an upgrade, CONNECT, a request line it would not rewrite safely),
//! it stops rewriting for the rest of the connection and passes bytes through untouched, so
//! hyper's own checks stay the ones that decide: anything refused before is refused still.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request line held back to be rewritten; a longer one passes untouched (and
/// meets hyper's and `--limit-request-line`'s limits).
const MAX_LINE: usize = 16 * 1024;
/// The longest header line or chunk-size line followed; longer ones end the following.
const MAX_FIELD: usize = 16 * 1024;

/// The target of a request whose line was rewritten, as the client sent it (a request
/// extension).
#[derive(Debug, Clone)]
pub struct RawTarget(pub Bytes);

impl RawTarget {
    /// The target a request was sent with, when it was rewritten: (path, query).
    pub fn of(parts: &http::request::Parts) -> Option<(&[u8], &[u8])> {
        let sent = &parts.extensions.get::<RawTarget>()?.0;
        let sent = sent.split(|&b| b == b'#').next().unwrap_or_default();
        Some(match sent.iter().position(|&b| b == b'?') {
            Some(i) => (&sent[..i], &sent[i + 1..]),
            None => (sent, &b""[..]),
        })
    }
}

/// The targets rewritten on one connection, oldest first: (as rewritten, as sent).
#[derive(Default, Clone)]
pub struct Originals(Arc<Mutex<VecDeque<(Bytes, Bytes)>>>);

impl Originals {
    /// The target as sent for a request whose target (path and query) is `rewritten`, if its
    /// line was rewritten. Requests come in order; one that needed no rewrite takes nothing.
    pub fn take(&self, rewritten: &str) -> Option<RawTarget> {
        let mut queue = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match queue.front() {
            Some((r, _)) if r.as_ref() == rewritten.as_bytes() => {
                queue.pop_front().map(|(_, sent)| RawTarget(sent))
            }
            _ => None,
        }
    }

    fn push(&self, rewritten: Vec<u8>, sent: Vec<u8>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back((Bytes::from(rewritten), Bytes::from(sent)));
    }
}

/// Bytes hyper refuses in a target that clients send anyway.
fn needs_encoding(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`') || b >= 0x80
}

/// Where the byte stream is, in HTTP/1 request framing.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Gathering a request line (held back).
    Line,
    /// Following header lines (passed on): the current line so far, and what framing the
    /// ones before said.
    Headers { framing: Framing },
    /// So many body bytes to pass on.
    Body(u64),
    /// Chunked body: a chunk-size line.
    ChunkSize,
    /// Chunk data, then its CRLF (so many bytes in all).
    ChunkData(u64),
    /// The trailer section after the last chunk.
    Trailers,
    /// Not following any more: every byte passes untouched.
    Through,
}

#[derive(Debug, PartialEq, Eq, Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
    /// Something this does not follow with certainty: stop after this head.
    unsure: bool,
}

/// An HTTP/1 connection's read side with lenient request targets (see the module's doc).
pub struct Lenient<S> {
    inner: S,
    state: State,
    /// The line being gathered (the request line, a header line, a chunk-size line).
    line: Vec<u8>,
    /// Rewritten bytes not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
    originals: Originals,
}

impl<S> Lenient<S> {
    pub fn new(inner: S, originals: Originals) -> Self {
        Self {
            inner,
            state: State::Line,
            line: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            originals,
        }
    }

    /// Follow `data` through the framing, appending what hyper should read to `self.out`.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Through => {
                    self.out.extend_from_slice(data);
                    return;
                }
                State::Body(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    self.out.extend_from_slice(&data[..n]);
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Line;
                    }
                    data = &data[n..];
                }
                State::ChunkData(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                    self.out.extend_from_slice(&data[..n]);
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::ChunkSize;
                    }
                    data = &data[n..];
                }
                State::Line => {
                    let (taken, done) = take_line(&mut self.line, data);
                    data = &data[taken..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        self.request_line(&line);
                    } else if self.line.len() > MAX_LINE {
                        self.give_up_with_line();
                    }
                }
                State::Headers { .. } | State::ChunkSize | State::Trailers => {
                    let (taken, done) = take_line(&mut self.line, data);
                    self.out.extend_from_slice(&data[..taken]);
                    data = &data[taken..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        self.line_done(&line);
                    } else if self.line.len() > MAX_FIELD {
                        self.line.clear();
                        self.state = State::Through;
                    }
                }
            }
        }
    }

    /// A whole request line (with its line ending): rewritten if it needs it, then passed on.
    fn request_line(&mut self, line: &[u8]) {
        let text = trim_eol(line);
        let first = text.iter().position(|&b| b == b' ');
        let last = text.iter().rposition(|&b| b == b' ');
        let (Some(first), Some(last)) = (first, last) else {
            return self.pass_line_and_stop(line);
        };
        if first == last {
            return self.pass_line_and_stop(line);
        }
        let (method, target) = (&text[..first], &text[first + 1..last]);
        if method == b"CONNECT"
            || !target.starts_with(b"/")
            || target.iter().any(|&b| b <= b' ' || b == 0x7F)
        {
            // Not an origin-form target this would rewrite safely (or an empty line, or a
            // tunnel): hyper decides, and the rest of the connection is not followed.
            return self.pass_line_and_stop(line);
        }
        // hyper drops a `#fragment` (the URI parser cuts it): kept here for RAW_URI.
        let before_fragment = target.split(|&b| b == b'#').next().unwrap_or_default();
        if before_fragment.len() < target.len() || target.iter().any(|&b| needs_encoding(b)) {
            let mut rewritten = Vec::with_capacity(target.len() * 2);
            for &b in before_fragment {
                if needs_encoding(b) {
                    rewritten.extend_from_slice(format!("%{b:02X}").as_bytes());
                } else {
                    rewritten.push(b);
                }
            }
            self.out.extend_from_slice(&line[..=first]);
            self.out.extend_from_slice(&rewritten);
            self.out.extend_from_slice(&line[last..]);
            self.originals.push(rewritten, target.to_vec());
        } else {
            self.out.extend_from_slice(line);
        }
        self.state = State::Headers {
            framing: Framing::default(),
        };
    }

    fn pass_line_and_stop(&mut self, line: &[u8]) {
        self.out.extend_from_slice(line);
        self.state = State::Through;
    }

    /// A request line longer than this holds back: passed on as it is.
    fn give_up_with_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.pass_line_and_stop(&line);
    }

    /// A whole header, chunk-size or trailer line (already passed on).
    fn line_done(&mut self, line: &[u8]) {
        let text = trim_eol(line);
        self.state = match std::mem::replace(&mut self.state, State::Through) {
            State::Headers { mut framing } if !text.is_empty() => {
                header(&mut framing, text);
                State::Headers { framing }
            }
            State::Headers { framing } => match framing {
                Framing { unsure: true, .. } => State::Through,
                Framing { chunked: true, .. } => State::ChunkSize,
                Framing {
                    length: Some(n), ..
                } if n > 0 => State::Body(n),
                Framing { .. } => State::Line,
            },
            State::ChunkSize => {
                let size = text.split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|s| u64::from_str_radix(s, 16).ok());
                match size {
                    Some(0) => State::Trailers,
                    // The data and the CRLF after it.
                    Some(n) => n.checked_add(2).map_or(State::Through, State::ChunkData),
                    None => State::Through,
                }
            }
            State::Trailers if text.is_empty() => State::Line,
            State::Trailers => State::Trailers,
            _ => State::Through,
        };
    }
}

/// Note what one header line says about the body's framing.
fn header(framing: &mut Framing, line: &[u8]) {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        framing.unsure = true;
        return;
    };
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    if name.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        framing.unsure = true; // obsolete line folding
    } else if name.eq_ignore_ascii_case(b"content-length") {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match (n, framing.length) {
            (Some(n), None) => framing.length = Some(n),
            (Some(n), Some(m)) if n == m => {}
            _ => framing.unsure = true,
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        if framing.chunked || !value.eq_ignore_ascii_case(b"chunked") {
            framing.unsure = true;
        }
        framing.chunked = true;
    } else if name.eq_ignore_ascii_case(b"upgrade") {
        framing.unsure = true;
    }
    if framing.chunked && framing.length.is_some() {
        framing.unsure = true;
    }
}

/// Move bytes of `data` up to and including the next LF into `line`: (how many were taken,
/// whether the line is complete).
fn take_line(line: &mut Vec<u8>, data: &[u8]) -> (usize, bool) {
    if let Some(i) = data.iter().position(|&b| b == b'\n') {
        line.extend_from_slice(&data[..=i]);
        (i + 1, true)
    } else {
        line.extend_from_slice(data);
        (data.len(), false)
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<S: AsyncRead + Unpin> AsyncRead for Lenient<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Through && this.line.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if let State::Body(left) | State::ChunkData(left) = &mut this.state {
                // A body goes straight into hyper's buffer, never copied here.
                let limit = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(buf.remaining());
                let mut part = buf.take(limit);
                let before = part.filled().len();
                let polled = Pin::new(&mut this.inner).poll_read(cx, &mut part);
                let n = part.filled().len() - before;
                if let Poll::Ready(Ok(())) = polled {
                    // SAFETY: the inner read initialized and filled these n bytes of `buf`'s
                    // unfilled part, which `part` was.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    *left -= n as u64;
                    if *left == 0 {
                        this.state = match this.state {
                            State::Body(_) => State::Line,
                            _ => State::ChunkSize,
                        };
                    }
                }
                return polled;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // The end: a request line cut short goes on as it is, for hyper to judge.
                    let line = std::mem::take(&mut this.line);
                    if line.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.pass_line_and_stop(&line);
                }
                Poll::Ready(Ok(())) => {
                    let filled = read.filled().to_vec();
                    this.feed(&filled);
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lenient<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper would read from `wire` fed in pieces of `step` bytes, and the originals.
    fn through(wire: &[u8], step: usize) -> (Vec<u8>, Vec<(Bytes, Bytes)>) {
        let originals = Originals::default();
        let mut lenient = Lenient::new(tokio::io::empty(), originals.clone());
        for piece in wire.chunks(step) {
            lenient.feed(piece);
        }
        let seen = lenient.out.clone();
        let queue = originals.0.lock().unwrap().iter().cloned().collect();
        (seen, queue)
    }

    #[test]
    fn raw_bytes_in_targets_are_encoded_and_remembered() {
        let wire = b"GET /caf\xc3\xa9/\"x\"?q=\"a%20b\"&t=`<1>` HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 3, 7, wire.len()] {
            let (seen, queue) = through(wire, step);
            let expected = b"GET /caf%C3%A9/%22x%22?q=%22a%20b%22&t=%60%3C1%3E%60 HTTP/1.1\r\n";
            assert_eq!(seen[..expected.len()], expected[..], "step {step}");
            assert_eq!(queue.len(), 1);
        }
    }

    #[test]
    fn bodies_and_chunks_pass_untouched_and_the_next_line_is_found() {
        let body = b"GET /\"inside the body\" HTTP/1.1\r\n";
        let mut wire =
            format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        wire.extend_from_slice(b"5;ext=1\r\nGET /\r\n0\r\nX-T: \"t\"\r\n\r\n");
        wire.extend_from_slice(b"GET /c?\"q\" HTTP/1.1\r\n\r\n");
        for step in [1, 2, 5, wire.len()] {
            let (seen, queue) = through(&wire, step);
            let expected = String::from_utf8_lossy(&wire).replace("/c?\"q\"", "/c?%22q%22");
            assert_eq!(String::from_utf8_lossy(&seen), expected, "step {step}");
            assert_eq!(
                queue,
                vec![(Bytes::from("/c?%22q%22"), Bytes::from("/c?\"q\""))]
            );
        }
    }

    #[test]
    fn anything_unsure_stops_the_rewriting() {
        for head in [
            &b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
            b"GET http://x/a HTTP/1.1\r\n\r\n",
            b"\r\nGET /a HTTP/1.1\r\n\r\n",
        ] {
            let mut wire = head.to_vec();
            wire.extend_from_slice(b"GET /\"x\" HTTP/1.1\r\n\r\n");
            let (seen, queue) = through(&wire, 4);
            assert_eq!(seen, wire, "{}", String::from_utf8_lossy(head));
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn control_bytes_and_spaces_are_left_for_hyper_to_refuse() {
        for wire in [
            &b"GET /a\x01\"b HTTP/1.1\r\n\r\n"[..],
            b"GET /a \"b HTTP/1.1\r\n\r\n",
            b"GET /\"only-two-parts\r\n\r\n",
        ] {
            let (seen, queue) = through(wire, wire.len());
            assert_eq!(seen, wire);
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn a_fragment_is_cut_for_hyper_and_kept_for_raw_uri() {
        let (seen, queue) = through(b"GET /a?b=1#frag\"x HTTP/1.1\r\n\r\n", 5);
        assert_eq!(seen, b"GET /a?b=1 HTTP/1.1\r\n\r\n");
        assert_eq!(
            queue,
            vec![(Bytes::from("/a?b=1"), Bytes::from("/a?b=1#frag\"x"))]
        );
    }

    #[test]
    fn originals_are_taken_in_order_by_the_requests_that_match() {
        let originals = Originals::default();
        originals.push(b"/a%22".to_vec(), b"/a\"".to_vec());
        assert!(originals.take("/plain").is_none());
        assert_eq!(originals.take("/a%22").unwrap().0, Bytes::from("/a\""));
        assert!(originals.take("/a%22").is_none());
    }
}
