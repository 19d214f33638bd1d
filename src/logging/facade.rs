//! The `tracing` subscriber (and, through tracing-log, the `log` logger) of the whole process:
//! ferrule's own records and its dependencies' go to the sinks of `logging.rs`.
//!
//! Owns the rule for what is kept, applied before anything is formatted: ferrule's records
//! (target `_ferrule::…`) at the `ferrule` logger's level; a dependency's (rustls, h2, mio,
//! globset, notify) only while that level is DEBUG or TRACE, so that a scanner's failed
//! handshakes or h2's chatter never fill a production log at INFO. The level lives in
//! `logging.rs`; [`level_changed`] hands it to `tracing` and `log`, whose macros then compare
//! against it with one atomic load. Also owns turning an event into one line: the message,
//! then the other fields as ` key=value`, and for a dependency its target in front
//! (`rustls::check: Received a ClientHello handshake message …`); `logging.rs` gives a
//! dependency's line to the child logger `ferrule.<crate>` (`ferrule.rustls`, `ferrule.h2`).
//!
//! hyper itself logs only when built with `--cfg hyper_unstable_tracing`, which we do not set;
//! its HTTP/2 half, h2, logs. tokio logs only under `tokio_unstable`.
//!
//! Spans are not recorded: nothing reads them, and refusing their callsites makes h2's spans
//! free.

// `tracing` rather than `log` as the facade: h2 (and hyper, when it logs) speak `tracing`
// and rustls, mio, globset and notify speak `log`; tracing-log's bridge turns `log` records
// into events without loss, while the opposite bridge (tracing's `log` feature) only works
// as long as no subscriber is ever set, and it logs span entries as records of their own.
// The style guide's structured fields are `tracing`'s too.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Metadata};
use tracing_log::NormalizeEvent;

use super::Level;

/// The server's log macros, under the names the call sites have always used. Plain
/// `tracing::info!` works as well: it is the same event.
pub use tracing::{debug as log_debug, error as log_error, info as log_info, warn as log_warn};

/// ferrule's own target prefix (the library is `_ferrule`, after the Python module).
const OWN: &str = env!("CARGO_CRATE_NAME");

/// Make [`Forward`] the process's `tracing` subscriber and `log` logger. Called when the
/// Python module is imported; before `init_python`/`init_file` the records go to stderr.
pub fn install() {
    // Both fail only when something set them before: an earlier call, nothing else in this
    // library.
    let _ = tracing::subscriber::set_global_default(Forward);
    let _ = tracing_log::LogTracer::init();
    level_changed();
}

/// Tell `tracing` and `log` that the `ferrule` logger's level changed, so that their macros
/// filter against it. Takes a lock over every callsite: call it only on a change.
pub(super) fn level_changed() {
    // Calls back `max_level_hint`, which reads the new level.
    tracing_core::callsite::rebuild_interest_cache();
    // Only dependencies speak `log`.
    log::set_max_level(match filter(super::server_threshold(), true) {
        LevelFilter::TRACE => log::LevelFilter::Trace,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::ERROR => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
}

/// Whether a record at `level` is kept when the `ferrule` logger's threshold is `threshold`
/// (a Python level; `u8::MAX` is off).
#[inline]
fn keeps(threshold: u8, level: Level, dependency: bool) -> bool {
    level as u8 >= threshold && (!dependency || threshold <= Level::Debug as u8)
}

/// The most verbose level [`keeps`] lets through at `threshold`, as `tracing` counts.
fn filter(threshold: u8, dependency: bool) -> LevelFilter {
    let most_verbose = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ]
    .into_iter()
    .find(|&level| keeps(threshold, level, dependency));
    match most_verbose {
        Some(Level::Trace) => LevelFilter::TRACE,
        Some(Level::Debug) => LevelFilter::DEBUG,
        Some(Level::Info) => LevelFilter::INFO,
        Some(Level::Warn) => LevelFilter::WARN,
        Some(Level::Error) => LevelFilter::ERROR,
        None => LevelFilter::OFF,
    }
}

fn level_of(level: tracing::Level) -> Level {
    match level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

fn is_dependency(target: &str) -> bool {
    !(target == OWN
        || target
            .strip_prefix(OWN)
            .is_some_and(|t| t.starts_with("::")))
}

/// The subscriber: keeps what [`keeps`] says, and hands the line to `logging.rs`.
struct Forward;

impl Subscriber for Forward {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.is_span() {
            Interest::never()
        } else {
            // The level changes at run time; `enabled` decides per record, after the max
            // level (one atomic load in the macro) has let it through.
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // Our records are always at least as verbose as a dependency's.
        Some(filter(super::server_threshold(), false))
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // A `log` record is asked about with its own target (tracing-log's `as_trace`).
        metadata.is_event()
            && keeps(
                super::server_threshold(),
                level_of(*metadata.level()),
                is_dependency(metadata.target()),
            )
    }

    fn event(&self, event: &Event<'_>) {
        // A `log` record arrives as an event of tracing-log's; its own target is a field.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let level = level_of(*metadata.level());
        let target = metadata.target();
        if is_dependency(target) {
            let krate = target.split("::").next().unwrap_or(target);
            super::emit_dependency(krate, level, line(Some(target), event));
        } else {
            super::emit(super::Target::Server, level, line(None, event));
        }
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called: span callsites are `Interest::never()`. 0 is not a valid id.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// `target: message key=value …` (no target for ferrule's own records).
fn line(target: Option<&str>, event: &Event<'_>) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut line = String::with_capacity(fields.message.len() + fields.rest.len() + 32);
    if let Some(target) = target {
        line.push_str(target);
        line.push_str(": ");
    }
    line.push_str(&fields.message);
    line.push_str(&fields.rest);
    line
}

#[derive(Default)]
struct Fields {
    message: String,
    /// ` key=value` for each field but the message.
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // Formatting into a String cannot fail.
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            // tracing-log's copies of the record's metadata, already in the line's target.
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn dependencies_are_kept_only_at_debug_and_below() {
        let (trace, debug, info, warn, error, off) = (5, 10, 20, 30, 40, u8::MAX);
        // (threshold, level, from a dependency, kept)
        let cases = [
            (info, Level::Info, false, true),
            (info, Level::Debug, false, false),
            (info, Level::Error, true, false),
            (info, Level::Warn, true, false),
            (warn, Level::Warn, false, true),
            (error, Level::Warn, false, false),
            (debug, Level::Debug, true, true),
            (debug, Level::Warn, true, true),
            (debug, Level::Trace, true, false),
            (trace, Level::Trace, true, true),
            (trace, Level::Trace, false, true),
            (off, Level::Error, false, false),
        ];
        for (threshold, level, dependency, kept) in cases {
            assert_eq!(
                keeps(threshold, level, dependency),
                kept,
                "{threshold} {level:?} {dependency}"
            );
        }
        assert_eq!(filter(info, false), LevelFilter::INFO);
        assert_eq!(filter(info, true), LevelFilter::OFF);
        assert_eq!(filter(debug, true), LevelFilter::DEBUG);
        assert_eq!(filter(off, false), LevelFilter::OFF);
    }

    #[test]
    fn own_targets_are_ours() {
        assert!(!is_dependency("_ferrule"));
        assert!(!is_dependency("_ferrule::http::service"));
        assert!(is_dependency("_ferrule_other::x"));
        assert!(is_dependency("rustls::common_state"));
        assert!(is_dependency("h2"));
    }

    /// Keeps the lines a scoped subscriber formats.
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl Subscriber for Lines {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let target = is_dependency(event.metadata().target()).then_some("h2::proto");
            self.0.lock().unwrap().push(line(target, event));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn an_event_is_its_message_then_its_fields() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Lines(Arc::clone(&lines)), || {
            let peer = "127.0.0.1:5";
            log_debug!("TLS handshake with {peer} failed: {}", "eof");
            tracing::debug!(target: "h2::proto", error = ?"reset", id = 3, "stream closed");
        });
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "TLS handshake with 127.0.0.1:5 failed: eof",
                "h2::proto: stream closed error=\"reset\" id=3",
            ]
        );
    }
}
