//! Request targets as clients send them: raw `"`, `<`, `>`, backtick and non-ASCII bytes in
//! an HTTP/1 request target are accepted, as gunicorn, uWSGI and nginx accept them. hyper
//! refuses them (400, through the `http` crate's URI parser; which ones depends on the part:
//! see [`needs_encoding`]) before ferrule sees the request, so [`Lenient`] percent-encodes
//! exactly those bytes in each request line on its way to
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

/// The longest header line or chunk-size line followed; longer ones end the following.
const MAX_FIELD: usize = 16 * 1024;

/// The target of a request whose line was rewritten, as the client sent it (a request
/// extension).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What hyper removes from a head before anything above it can look (a request extension,
/// for admission to refuse): `Content-Length` headers it merged (identical values) or
/// dropped (beside `Transfer-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenLengths {
    /// How many `Content-Length` headers the head had.
    pub count: u32,
    /// It had `Transfer-Encoding` too.
    pub with_transfer_encoding: bool,
}

/// What one request's head said that the application or admission needs from below hyper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The target as sent, when it had to be rewritten.
    pub target: Option<RawTarget>,
    pub lengths: Option<HiddenLengths>,
}

/// The heads seen on one connection, one per request in order, each with its target as
/// hyper has it (to check that the two still agree).
#[derive(Default, Clone)]
pub struct Originals {
    queue: Arc<Mutex<VecDeque<(Bytes, Seen)>>>,
    /// Set when a request came that was not the next one seen: the reading side then stops
    /// rewriting, for good.
    lost: Arc<AtomicBool>,
}

impl Originals {
    /// What was seen of the next request, whose target (path and query) hyper has as
    /// `target`; `None` when nothing was (the reading side stopped following) or when the
    /// two disagree, which stops the following too.
    pub fn take(&self, target: &str) -> Option<Seen> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (seen_target, seen) = queue.pop_front()?;
        if seen_target.as_ref() == target.as_bytes() {
            return Some(seen);
        }
        queue.clear();
        self.lost.store(true, Ordering::Relaxed);
        crate::log_warn!(
            "request targets: a request came that was not the next one read ({target}); raw targets are passed to hyper unchanged for the rest of this connection"
        );
        None
    }

    fn push(&self, target: Vec<u8>, seen: Seen) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back((Bytes::from(target), seen));
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Bytes hyper refuses in a target that clients send anyway: in the path, or (`in_query`)
/// in the query. The two differ: the `http` crate takes `"` in a path "for parity with
/// clients" and a backtick in a query. Only these are encoded, so that everything hyper took
/// before goes to it (and to the access log) unchanged.
fn needs_encoding(b: u8, in_query: bool) -> bool {
    match b {
        b'<' | b'>' => true,
        b'"' => in_query,
        b'`' => !in_query,
        _ => b >= 0x80,
    }
}

/// `target` with the bytes hyper refuses percent-encoded, or `None` if it has none.
fn encoded(target: &[u8]) -> Option<Vec<u8>> {
    let query_at = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let refused = |(i, &b): (usize, &u8)| needs_encoding(b, i > query_at);
    if !target.iter().enumerate().any(refused) {
        return None;
    }
    let mut out = Vec::with_capacity(target.len() * 2);
    for (i, &b) in target.iter().enumerate() {
        if refused((i, &b)) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    Some(out)
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
    /// `Content-Length` headers, identical or not.
    lengths: u32,
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
    /// The current head's target as hyper gets it, and as sent when that differs.
    pending: Option<(Vec<u8>, Option<Vec<u8>>)>,
    /// The longest request line held back (`--limit-request-line` and its line ending): a
    /// longer one is refused anyway (414), so it goes on as it is.
    max_line: usize,
}

impl<S> Lenient<S> {
    pub fn new(inner: S, originals: Originals, request_line_limit: usize) -> Self {
        Self {
            inner,
            state: State::Line,
            line: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            originals,
            pending: None,
            max_line: request_line_limit.saturating_add(2),
        }
    }

    /// Follow `data` through the framing, appending what hyper should read to `self.out`.
    fn feed(&mut self, mut data: &[u8]) {
        if self.originals.lost() && self.line.is_empty() {
            self.state = State::Through;
        }
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
                    } else if self.line.len() > self.max_line {
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
        if text.is_empty() {
            // An empty line before a request line, which hyper (httparse) skips too.
            self.out.extend_from_slice(line);
            return;
        }
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
        let rewritten = encoded(before_fragment)
            .or_else(|| (before_fragment.len() < target.len()).then(|| before_fragment.to_vec()));
        if let Some(rewritten) = rewritten {
            self.out.extend_from_slice(&line[..=first]);
            self.out.extend_from_slice(&rewritten);
            self.out.extend_from_slice(&line[last..]);
            self.pending = Some((rewritten, Some(target.to_vec())));
        } else {
            self.out.extend_from_slice(line);
            self.pending = Some((target.to_vec(), None));
        }
        self.state = State::Headers {
            framing: Framing::default(),
        };
    }

    /// The head is over (its last line not yet handed to hyper): note what it said for the
    /// service. Returns its framing.
    fn head_done(&mut self, framing: Framing) -> Framing {
        let Some((target, sent)) = self.pending.take() else {
            return framing;
        };
        let hidden = framing.lengths > 1 || (framing.lengths > 0 && framing.chunked);
        let lengths = hidden.then_some(HiddenLengths {
            count: framing.lengths,
            with_transfer_encoding: framing.chunked,
        });
        let seen = Seen {
            target: sent.map(|t| RawTarget(Bytes::from(t))),
            lengths,
        };
        self.originals.push(target, seen);
        framing
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
        if matches!(self.state, State::ChunkSize | State::Trailers) && !line.ends_with(b"\r\n") {
            // hyper's chunked decoder ends these lines at CRLF only (a bare LF is an error in
            // a size line and content in a trailer): not followed further.
            self.state = State::Through;
            return;
        }
        self.state = match std::mem::replace(&mut self.state, State::Through) {
            State::Headers { mut framing } if !text.is_empty() => {
                header(&mut framing, text);
                State::Headers { framing }
            }
            State::Headers { framing } => match self.head_done(framing) {
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
        framing.lengths += 1;
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
                    // The end: a request line cut short goes on as it is, for hyper to judge
                    // (any other line's bytes went on as they came).
                    let line = std::mem::take(&mut this.line);
                    if line.is_empty() || this.state != State::Line {
                        this.state = State::Through;
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

crate::listen::writes_through!(Lenient, inner);

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper would read from `wire` fed in pieces of `step` bytes, and the originals.
    fn through(wire: &[u8], step: usize) -> (Vec<u8>, Vec<(Bytes, Seen)>) {
        let originals = Originals::default();
        let mut lenient = Lenient::new(tokio::io::empty(), originals.clone(), 8190);
        for piece in wire.chunks(step) {
            lenient.feed(piece);
        }
        let seen = lenient.out.clone();
        let queue = originals.queue.lock().unwrap().iter().cloned().collect();
        (seen, queue)
    }

    #[test]
    fn raw_bytes_in_targets_are_encoded_and_remembered() {
        let wire = b"GET /caf\xc3\xa9/\"x\"?q=\"a%20b\"&t=`<1>` HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 3, 7, wire.len()] {
            let (seen, queue) = through(wire, step);
            let expected = b"GET /caf%C3%A9/\"x\"?q=%22a%20b%22&t=`%3C1%3E` HTTP/1.1\r\n";
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
            let rewritten = entry("/c?%22q%22", Some("/c?\"q\""), None);
            let plain = |t| entry(t, None, None);
            assert_eq!(queue, vec![plain("/a"), plain("/b"), rewritten]);
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
        ] {
            let mut wire = head.to_vec();
            wire.extend_from_slice(b"GET /\"x\" HTTP/1.1\r\n\r\n");
            let (seen, queue) = through(&wire, 4);
            assert_eq!(seen, wire, "{}", String::from_utf8_lossy(head));
            // Nothing rewritten (the lengths of the first two are told, for admission).
            assert!(queue.iter().all(|(_, s)| s.target.is_none()), "{queue:?}");
        }
    }

    #[test]
    fn empty_lines_before_a_request_line_are_skipped_as_hyper_skips_them() {
        let wire = b"\r\n\nGET /\"x\"?\"y\" HTTP/1.1\r\n\r\n";
        let (seen, queue) = through(wire, 2);
        assert_eq!(seen, b"\r\n\nGET /\"x\"?%22y%22 HTTP/1.1\r\n\r\n");
        assert_eq!(queue.len(), 1);
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
        assert_eq!(queue, vec![entry("/a?b=1", Some("/a?b=1#frag\"x"), None)]);
    }

    #[test]
    fn originals_are_taken_in_order_and_a_mismatch_stops_the_following() {
        let originals = Originals::default();
        let (plain, plain_seen) = entry("/plain", None, None);
        let (target, seen) = entry("/a%22", Some("/a\""), None);
        originals.push(plain.to_vec(), plain_seen.clone());
        originals.push(target.to_vec(), seen.clone());
        assert_eq!(originals.take("/plain"), Some(plain_seen));
        assert_eq!(originals.take("/a%22"), Some(seen.clone()));
        assert!(originals.take("/a%22").is_none() && !originals.lost());
        // A request that is not the next one read: nothing more is trusted.
        originals.push(target.to_vec(), seen);
        assert!(originals.take("/other").is_none() && originals.lost());
    }

    #[test]
    fn bare_line_feeds_in_chunked_framing_stop_the_following() {
        for body in [
            &b"0\r\n\n"[..],
            b"0\r\nX-T: 1\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
        ] {
            let mut wire = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend_from_slice(body);
            wire.extend_from_slice(b"GET /\"x\"?\"y\" HTTP/1.1\r\n\r\n");
            let (seen, queue) = through(&wire, 3);
            assert_eq!(seen, wire, "{}", String::from_utf8_lossy(body));
            assert_eq!(queue.len(), 1, "{queue:?}");
        }
    }

    #[test]
    fn lengths_hyper_would_merge_or_drop_are_told() {
        for (head, count, te) in [
            (
                &b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"[..],
                2,
                false,
            ),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                1,
                true,
            ),
        ] {
            let (_, queue) = through(head, 3);
            let lengths = HiddenLengths {
                count,
                with_transfer_encoding: te,
            };
            assert_eq!(queue, vec![entry("/a", None, Some(lengths))]);
        }
        let (_, queue) = through(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 3);
        assert_eq!(queue, vec![entry("/a", None, None)]);
    }

    fn entry(target: &str, sent: Option<&str>, lengths: Option<HiddenLengths>) -> (Bytes, Seen) {
        let target_sent = sent.map(|t| RawTarget(Bytes::from(t.to_owned())));
        (
            Bytes::from(target.to_owned()),
            Seen {
                target: target_sent,
                lengths,
            },
        )
    }
}
