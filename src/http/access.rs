//! Access log lines: Apache combined format plus the request duration in microseconds.
//!
//! A [`Pending`] line is captured from the request head only when the `ferrule.access` logger
//! would keep it, and completed when the response body is finished (`out_body.rs`). The host
//! field is the client a trusted proxy named (`service.rs` passes it on once `proxy.rs` has
//! read the forwarding headers), else the peer's address (`-` on a Unix socket).

use std::fmt::Write;
use std::time::Instant;

use http::header::{REFERER, USER_AGENT};
use http::request::Parts;

use crate::listen::Peer;
use crate::logging::{self, Level, Target};

pub struct Pending {
    started: Instant,
    host: String,
    request_line: String,
    referer: String,
    user_agent: String,
}

impl Pending {
    /// Capture what the line needs, or None when access logging is off.
    pub fn capture(parts: &Parts, peer: Peer, started: Instant) -> Option<Self> {
        if !logging::enabled(Target::Access, Level::Info) {
            return None;
        }
        let header = |name| {
            parts.headers.get(name).map_or_else(
                || "-".to_owned(),
                |v| escape(&String::from_utf8_lossy(v.as_bytes())),
            )
        };
        Some(Self {
            started,
            host: match peer {
                Peer::Tcp(addr) => addr.ip().to_string(),
                Peer::Unix => "-".to_owned(),
            },
            request_line: escape(&format!(
                "{} {} {:?}",
                parts.method,
                super::admission::request_target_of(parts),
                parts.version
            )),
            referer: header(REFERER),
            user_agent: header(USER_AGENT),
        })
    }

    /// Log `client`, the address a trusted proxy forwarded, instead of the peer's.
    pub fn forwarded_for(&mut self, client: &str) {
        client.clone_into(&mut self.host);
    }

    /// Log the line for a response with `status` whose body had `bytes` bytes.
    pub fn finish(self, status: u16, bytes: u64) {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, mo, d, h, mi, s) = logging::utc_parts(std::time::SystemTime::now());
        let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
        let size = if bytes == 0 {
            "-".to_owned()
        } else {
            bytes.to_string()
        };
        let micros = self.started.elapsed().as_micros();
        logging::emit(
            Target::Access,
            Level::Info,
            format!(
                "{} - - [{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"{}\" {status} {size} \"{}\" \"{}\" {micros}",
                self.host, self.request_line, self.referer, self.user_agent
            ),
        );
    }
}

/// Quote-safe: a `"` or a control character in a header cannot forge a log field.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_neutralizes_quotes_and_controls() {
        assert_eq!(super::escape("a\"b\\c\n"), "a\\\"b\\\\c\\x0a");
    }
}
