//! Access log lines: Apache combined (plus the duration in microseconds), JSON, or a template
//! of named fields (`--access-log-format`, parsed in `access/format.rs`).
//!
//! A [`Pending`] line is captured from the request head only when the `ferrule.access` logger
//! would keep it, and completed when the response body is finished (`exchange.rs` calls
//! [`Pending::finish`] with the request's [`Outcome`]). The client field is the one a trusted
//! proxy named (`service.rs` passes it on once `proxy.rs` has read the forwarding headers),
//! else the peer's address (`-` on a Unix socket).

use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime};

use http::header::{REFERER, USER_AGENT};
use http::request::Parts;

pub use crate::config::access_format::Format;
use crate::config::access_format::{Field, Piece};

use crate::cancel::Reason;
use crate::listen::Peer;
use crate::logging::{self, Level, Target};

/// What the line needs from the request head.
pub struct Pending {
    started: Instant,
    client: String,
    method: String,
    target: String,
    path: String,
    query: String,
    protocol: String,
    referer: String,
    user_agent: String,
}

/// How the request ended, for the line.
pub struct Outcome<'a> {
    /// The status sent, or for a cancelled request 499/504/503.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queue: Duration,
    pub processing: Duration,
    pub asleep: Duration,
    pub request_id: &'a str,
    pub label: &'a str,
    pub cancelled: Option<Reason>,
    /// Why the server refused the request itself (a malformed head, a limit), if it did.
    pub refused: Option<&'a str>,
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
                |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        };
        Some(Self {
            started,
            client: client(peer),
            method: parts.method.to_string(),
            target: super::admission::request_target_of(parts).to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            protocol: format!("{:?}", parts.version),
            referer: header(REFERER),
            user_agent: header(USER_AGENT),
        })
    }

    /// For a request head refused before it was parsed: nothing of it is known.
    fn unparsed(peer: Peer) -> Option<Self> {
        if !logging::enabled(Target::Access, Level::Info) {
            return None;
        }
        let unknown = || "-".to_owned();
        Some(Self {
            started: Instant::now(),
            client: client(peer),
            method: unknown(),
            target: unknown(),
            path: unknown(),
            query: String::new(),
            protocol: unknown(),
            referer: unknown(),
            user_agent: unknown(),
        })
    }

    /// Log `client`, the address a trusted proxy forwarded, instead of the peer's.
    pub fn forwarded_for(&mut self, client: &str) {
        client.clone_into(&mut self.client);
    }

    /// Log the line.
    pub fn finish(self, format: &Format, outcome: &Outcome<'_>) {
        let line = match format {
            Format::Combined => self.combined(outcome),
            Format::Json => self.json(outcome),
            Format::Dev => self.dev(outcome),
            Format::Template(pieces) => {
                let mut line = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => line.push_str(text),
                        Piece::Field(field) => {
                            line.push_str(&escape(&self.field(*field, outcome)));
                        }
                    }
                }
                line
            }
        };
        logging::emit_access(outcome.status, line);
    }

    /// `GET /notes/?page=2 200 1.2 KB 3.1 ms`: what a developer watches for (the time of day
    /// and the colour by status are the log handler's, `ferrule/_logging.py`).
    fn dev(&self, o: &Outcome<'_>) -> String {
        let mut line = format!(
            "{} {}{}{} {} {} {}",
            self.method,
            escape(&self.path),
            if self.query.is_empty() { "" } else { "?" },
            escape(&self.query),
            o.status,
            human_bytes(o.bytes_out),
            human_duration(self.started.elapsed())
        );
        if let Some(reason) = o.cancelled {
            let _ = write!(line, " (cancelled: {})", reason.as_str());
        }
        if let Some(why) = o.refused {
            let _ = write!(line, " (refused: {why})");
        }
        line
    }

    fn combined(&self, o: &Outcome<'_>) -> String {
        let size = if o.bytes_out == 0 {
            "-".to_owned()
        } else {
            o.bytes_out.to_string()
        };
        format!(
            "{} - - [{}] \"{}\" {} {size} \"{}\" \"{}\" {}",
            self.client,
            clf_time(SystemTime::now()),
            escape(&self.request_line()),
            o.status,
            escape(&self.referer),
            escape(&self.user_agent),
            self.started.elapsed().as_micros()
        )
    }

    /// `GET /notes/ HTTP/1.1`, or `-` when the head could not be parsed (as Apache logs it).
    fn request_line(&self) -> String {
        if self.method == "-" {
            return "-".to_owned();
        }
        format!("{} {} {}", self.method, self.target, self.protocol)
    }

    fn json(&self, o: &Outcome<'_>) -> String {
        let optional = |s: &str| (s != "-").then(|| s.to_owned());
        let mut line = serde_json::json!({
            "time": iso_time(SystemTime::now()),
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "protocol": self.protocol,
            "status": o.status,
            "bytes_in": o.bytes_in,
            "bytes_out": o.bytes_out,
            "duration_ms": millis(self.started.elapsed()),
            "queue_ms": millis(o.queue),
            "processing_ms": millis(o.processing),
            "asleep_ms": millis(o.asleep),
            "request_id": o.request_id,
            "label": o.label,
            "cancelled": o.cancelled.map(Reason::as_str),
            "referer": optional(&self.referer),
            "user_agent": optional(&self.user_agent),
        });
        if let Some(why) = o.refused {
            line["refused"] = why.into();
        }
        line.to_string()
    }

    fn field(&self, field: Field, o: &Outcome<'_>) -> String {
        match field {
            Field::Client => self.client.clone(),
            Field::Time => iso_time(SystemTime::now()),
            Field::Request => self.request_line(),
            Field::Method => self.method.clone(),
            Field::Path => self.path.clone(),
            Field::Query => self.query.clone(),
            Field::Protocol => self.protocol.clone(),
            Field::Status => o.status.to_string(),
            Field::BytesIn => o.bytes_in.to_string(),
            Field::BytesOut => o.bytes_out.to_string(),
            Field::DurationMs => format!("{:.3}", millis(self.started.elapsed())),
            Field::DurationUs => self.started.elapsed().as_micros().to_string(),
            Field::QueueMs => format!("{:.3}", millis(o.queue)),
            Field::ProcessingMs => format!("{:.3}", millis(o.processing)),
            Field::AsleepMs => format!("{:.3}", millis(o.asleep)),
            Field::RequestId => o.request_id.to_owned(),
            Field::Label => o.label.to_owned(),
            Field::Cancelled => o.cancelled.map_or("-", Reason::as_str).to_owned(),
            Field::Referer => self.referer.clone(),
            Field::UserAgent => self.user_agent.clone(),
        }
    }
}

fn client(peer: Peer) -> String {
    match peer {
        Peer::Tcp(addr) => addr.ip().to_string(),
        Peer::Unix => "-".to_owned(),
    }
}

/// The line for a request head that hyper refused (answering `status` itself) before the
/// service saw it: a malformed request line or field, a head over the limits.
pub fn refused_head(format: &Format, peer: Peer, status: u16, why: &str) {
    if let Some(line) = Pending::unparsed(peer) {
        line.finish(
            format,
            &Outcome {
                status,
                bytes_in: 0,
                bytes_out: 0,
                queue: Duration::ZERO,
                processing: Duration::ZERO,
                asleep: Duration::ZERO,
                request_id: "-",
                label: crate::stats::SERVER,
                cancelled: None,
                refused: Some(why),
            },
        );
    }
}

/// `512 B`, `1.2 KB`, `3.4 MB` (powers of 1024, as file managers show sizes).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `850 µs`, `3.1 ms`, `42 ms`, `1.25 s`.
fn human_duration(d: Duration) -> String {
    let micros = d.as_micros();
    match micros {
        0..=999 => format!("{micros} µs"),
        1_000..=9_999 => format!("{:.1} ms", micros as f64 / 1e3),
        10_000..=999_999 => format!("{} ms", micros / 1_000),
        _ => format!("{:.2} s", d.as_secs_f64()),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// `26/Nov/2026:20:08:00 +0000`, as Apache writes it.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, hour, minute, second) = logging::utc_parts(t);
    let month = MONTHS[(month as usize).saturating_sub(1) % 12];
    format!("{day:02}/{month}/{year}:{hour:02}:{minute:02}:{second:02} +0000")
}

/// `2026-11-26T20:08:00.123Z`.
fn iso_time(t: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = logging::utc_parts(t);
    let millis = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
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
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn escape_neutralizes_quotes_and_controls() {
        assert_eq!(super::escape("a\"b\\c\n"), "a\\\"b\\\\c\\x0a");
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_704_736_042);
        assert_eq!(super::clf_time(t), "26/Nov/2026:14:52:16 +0000");
        assert_eq!(super::iso_time(t), "2026-11-26T14:52:16.042Z");
    }

    #[test]
    fn sizes_and_durations_read_as_a_person_would_say_them() {
        let sizes = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KB"),
            (1280, "1.2 KB"),
            (200_000, "195 KB"),
            (3 << 20, "3.0 MB"),
            (5 << 40, "5.0 TB"),
        ];
        for (n, want) in sizes {
            assert_eq!(super::human_bytes(n), want, "{n} bytes");
        }
        let durations = [
            (Duration::from_micros(850), "850 µs"),
            (Duration::from_micros(3_140), "3.1 ms"),
            (Duration::from_micros(42_900), "42 ms"),
            (Duration::from_millis(1_250), "1.25 s"),
        ];
        for (d, want) in durations {
            assert_eq!(super::human_duration(d), want, "{d:?}");
        }
    }
}
