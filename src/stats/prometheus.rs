//! `/metrics`: a [`Snapshot`] in the Prometheus text exposition format, version 0.0.4.
//!
//! Owns the metric names, their help texts, label escaping and number formatting; the output
//! passes `promtool check metrics` (its lints included: `_total` on counters, base units,
//! HELP and TYPE for every family). Every sample of a family is written together, so families
//! are the outer loop and views the inner one. Serving the text is `admin.rs`'s business.
//!
//! Per (view, method) seen, every status class and cancellation reason is written, zeros
//! included, so `rate()` and ratios of them never miss a series: an error ratio is 0, not
//! "no data", for a view that has never failed.

use std::fmt::Write;

use super::snapshot::{
    Histogram, MethodStats, Snapshot, View, WorkerRow, WorkerState, CANCEL_REASONS, PROM_BUCKETS,
    STATUS_CLASSES,
};

/// The three latency histograms: (name, help, which one of a [`MethodStats`]).
type HistogramOf = fn(&MethodStats) -> &Histogram;
const HISTOGRAMS: [(&str, &str, HistogramOf); 3] = [
    (
        "ferrule_request_queue_seconds",
        "Time from admission until a worker thread started the request.",
        |m| &m.queue,
    ),
    (
        "ferrule_request_processing_seconds",
        "Time from a worker thread starting the request until its response was complete.",
        |m| &m.processing,
    ),
    (
        "ferrule_request_asleep_seconds",
        "Time a request's worker thread spent asleep in ferrule.wait, gather or async_to_sync.",
        |m| &m.asleep,
    ),
];

/// The text for `/metrics`.
pub fn render(s: &Snapshot) -> String {
    // About 80 bytes a line, ~60 lines per (view, method) with three histograms.
    let pairs: usize = s.views.iter().map(|v| v.methods.len()).sum();
    let mut out = Out(String::with_capacity(4096 + pairs * 5000));
    per_view(&mut out, s);
    process(&mut out, s);
    if !s.workers.is_empty() {
        workers(&mut out, s);
    }
    out.0
}

/// With `--workers`: how many workers are in each state, and per worker (label `worker`, its
/// pid) what tells one apart from the others. The per-view families above are the sum over
/// every worker, those retired included.
fn workers(out: &mut Out, s: &Snapshot) {
    type Of = fn(&WorkerRow) -> String;
    out.family(
        "ferrule_workers",
        "Worker processes, by state (starting, ready, draining).",
        "gauge",
    );
    for state in WorkerState::ALL {
        let n = s.workers.iter().filter(|w| w.state == state).count();
        out.sample("ferrule_workers", &[("state", state.name())], n);
    }
    let families: [(&str, &str, &str, Of); 5] = [
        (
            "ferrule_worker_requests_total",
            "Requests a worker process finished since it started.",
            "counter",
            |w| w.requests.to_string(),
        ),
        (
            "ferrule_worker_threads",
            "A worker process's live worker threads.",
            "gauge",
            |w| w.threads.to_string(),
        ),
        (
            "ferrule_worker_threads_busy",
            "A worker process's worker threads running a request.",
            "gauge",
            |w| w.busy_threads.to_string(),
        ),
        (
            "ferrule_worker_resident_memory_bytes",
            "A worker process's resident memory size in bytes.",
            "gauge",
            |w| w.rss_bytes.to_string(),
        ),
        (
            "ferrule_worker_start_time_seconds",
            "Start time of a worker process since unix epoch in seconds.",
            "gauge",
            |w| Float(w.started_unix).to_string(),
        ),
    ];
    for (name, help, kind, value) in families {
        out.family(name, help, kind);
        for w in &s.workers {
            out.sample(name, &[("worker", &w.pid.to_string())], value(w));
        }
    }
}

/// The histograms and counters by view and method.
fn per_view(out: &mut Out, s: &Snapshot) {
    // The `le` values, formatted once rather than on each of thousands of lines.
    let les: Vec<String> = PROM_BUCKETS
        .iter()
        .map(f64::to_string)
        .chain(std::iter::once("+Inf".into()))
        .collect();
    for (name, help, of) in HISTOGRAMS {
        out.family(name, help, "histogram");
        for (view, m) in pairs_of(s) {
            out.histogram(name, &les, view, m, of(m));
        }
    }

    out.family(
        "ferrule_requests_total",
        "Requests finished, by status class of the response (a cancelled request counts with the status its access log line shows: 499, 503 or 504).",
        "counter",
    );
    for (view, m) in pairs_of(s) {
        for (class, n) in STATUS_CLASSES.iter().zip(m.status) {
            out.sample(
                "ferrule_requests_total",
                &[("view", &view.label), ("method", m.method), ("code", class)],
                n,
            );
        }
    }
    out.family(
        "ferrule_requests_cancelled_total",
        "Requests cancelled before their response was complete, by reason.",
        "counter",
    );
    for (view, m) in pairs_of(s) {
        for (reason, n) in CANCEL_REASONS.iter().zip(m.cancelled) {
            out.sample(
                "ferrule_requests_cancelled_total",
                &[
                    ("view", &view.label),
                    ("method", m.method),
                    ("reason", reason),
                ],
                n,
            );
        }
    }
    for (name, help, bytes) in [
        (
            "ferrule_request_bytes_total",
            "Bytes of request bodies received.",
            (|m| m.bytes_in) as fn(&MethodStats) -> u64,
        ),
        (
            "ferrule_response_bytes_total",
            "Bytes of response bodies sent.",
            |m| m.bytes_out,
        ),
    ] {
        out.family(name, help, "counter");
        for (view, m) in pairs_of(s) {
            out.sample(
                name,
                &[("view", &view.label), ("method", m.method)],
                bytes(m),
            );
        }
    }
}

/// The gauges and the process-wide counters.
/// Which pair of a route's counters (in, out) a family shows.
type Pick = fn(&super::websocket::WsRouteTotals) -> (u64, u64);

/// The WebSocket counters (an ASGI application's), by route.
fn websockets(out: &mut Out, s: &Snapshot) {
    let routes = &s.totals.websocket.routes;
    out.family(
        "ferrule_websockets_open",
        "Open WebSockets (ASGI applications), by route.",
        "gauge",
    );
    for (name, w) in routes {
        out.sample("ferrule_websockets_open", &[("route", name)], w.open);
    }
    out.family(
        "ferrule_websockets_opened_total",
        "WebSockets accepted since start, by route.",
        "counter",
    );
    for (name, w) in routes {
        out.sample(
            "ferrule_websockets_opened_total",
            &[("route", name)],
            w.opened,
        );
    }
    let families: [(&str, &str, Pick); 2] = [
        (
            "ferrule_websocket_messages_total",
            "WebSocket messages, by route and direction (in: from clients).",
            |w| (w.messages_in, w.messages_out),
        ),
        (
            "ferrule_websocket_bytes_total",
            "WebSocket message payload bytes (uncompressed), by route and direction (in: from clients).",
            |w| (w.bytes_in, w.bytes_out),
        ),
    ];
    for (family, help, pick) in families {
        out.family(family, help, "counter");
        for (name, w) in routes {
            let (inbound, outbound) = pick(w);
            out.sample(family, &[("route", name), ("direction", "in")], inbound);
            out.sample(family, &[("route", name), ("direction", "out")], outbound);
        }
    }
    out.family(
        "ferrule_websocket_closes_total",
        "WebSockets closed since start, by route and close code (1006: the connection dropped without one).",
        "counter",
    );
    for (name, w) in routes {
        for (code, n) in &w.closes {
            out.sample(
                "ferrule_websocket_closes_total",
                &[("route", name), ("code", &code.to_string())],
                n,
            );
        }
    }
}

/// What `--stats-max-labels` did: requests turned away to `other`, labels evicted.
fn label_cap(out: &mut Out, t: &super::snapshot::Totals) {
    for (name, help, value) in [
        (
            "ferrule_stats_labels_overflowed_total",
            "Requests counted under other because no label place could be had under --stats-max-labels.",
            t.labels_overflowed,
        ),
        (
            "ferrule_stats_labels_evicted_total",
            "Labels made from paths evicted for a new one under --stats-max-labels; their requests moved into other.",
            t.labels_evicted,
        ),
    ] {
        out.family(name, help, "counter");
        out.sample(name, &[], value);
    }
}

fn process(out: &mut Out, s: &Snapshot) {
    let g = &s.gauges;
    for (name, help, value) in [
        ("ferrule_threads", "Live worker threads.", g.threads),
        (
            "ferrule_threads_busy",
            "Worker threads running a request.",
            g.busy_threads,
        ),
        (
            "ferrule_threads_max",
            "The --threads setting.",
            g.max_threads,
        ),
        (
            "ferrule_queue_depth",
            "Requests waiting for a worker thread.",
            g.queue_depth,
        ),
        (
            "ferrule_connections",
            "Open client connections.",
            g.connections,
        ),
        (
            "ferrule_requests_in_flight",
            "Application requests admitted and not finished (queued, running or being sent).",
            g.in_flight,
        ),
    ] {
        out.family(name, help, "gauge");
        out.sample(name, &[], value);
    }
    out.family(
        "ferrule_work_sleep_ratio",
        "Over the last minute, time worker threads spent working on requests divided by the time they spent asleep in async waits; absent when they did not sleep.",
        "gauge",
    );
    if let Some(ratio) = g.work_sleep_ratio {
        out.sample("ferrule_work_sleep_ratio", &[], Float(ratio));
    }
    out.family(
        "ferrule_uptime_seconds",
        "Seconds since the server started.",
        "gauge",
    );
    out.sample("ferrule_uptime_seconds", &[], Float(s.uptime));
    out.family(
        "ferrule_code_stale",
        "1 while the worker processes run code older than the code on disk because the last reload failed, else 0.",
        "gauge",
    );
    out.sample("ferrule_code_stale", &[], usize::from(s.stale.is_some()));

    let t = &s.totals;
    for (name, help, value) in [
        (
            "ferrule_thread_busy_seconds_total",
            "Seconds worker threads spent holding a request (running it, or asleep in it).",
            t.busy_seconds,
        ),
        (
            "ferrule_thread_asleep_seconds_total",
            "Seconds worker threads spent asleep in ferrule.wait, gather or async_to_sync.",
            t.asleep_seconds,
        ),
    ] {
        out.family(name, help, "counter");
        out.sample(name, &[], Float(value));
    }
    label_cap(out, t);
    websockets(out, s);
    out.family("ferrule_info", "The ferrule version; always 1.", "gauge");
    out.sample("ferrule_info", &[("version", s.version)], 1);

    out.family(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        "gauge",
    );
    out.sample("process_resident_memory_bytes", &[], s.rss_bytes);
    out.family(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
    );
    out.sample(
        "process_start_time_seconds",
        &[],
        Float((s.time - s.uptime).max(0.0)),
    );
}

/// Every (view, method) pair, in snapshot order (labels sorted, methods in `METHODS` order).
fn pairs_of(s: &Snapshot) -> impl Iterator<Item = (&View, &MethodStats)> {
    s.views
        .iter()
        .flat_map(|v| v.methods.iter().map(move |m| (v, m)))
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        // HELP text escapes only `\` and newline; ours have neither, but stay correct.
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.0, " {value}");
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (key, value)) in all.enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(key);
            self.0.push_str("=\"");
            escape_into(&mut self.0, value);
            self.0.push('"');
        }
        self.0.push('}');
    }

    /// `_bucket` samples with cumulative counts (the snapshot's are per bucket), `+Inf`
    /// last, then `_sum` and `_count`.
    fn histogram(
        &mut self,
        name: &str,
        les: &[String],
        view: &View,
        m: &MethodStats,
        h: &Histogram,
    ) {
        let labels = [("view", view.label.as_str()), ("method", m.method)];
        let mut cumulative = 0u64;
        for (n, le) in h.buckets.iter().zip(les) {
            cumulative += n;
            self.0.push_str(name);
            self.0.push_str("_bucket");
            self.labels(&labels, Some(le));
            let _ = writeln!(self.0, " {cumulative}");
        }
        // `count` and the `+Inf` bucket must agree; they are read from different atomics, so
        // a request recorded between the two reads could make them differ by one.
        let _ = write!(self.0, "{name}_sum");
        self.labels(&labels, None);
        let _ = writeln!(self.0, " {}", Float(h.sum));
        let _ = write!(self.0, "{name}_count");
        self.labels(&labels, None);
        let _ = writeln!(self.0, " {cumulative}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: Rust prints infinities as `inf`, Prometheus reads `+Inf`.
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render;
    use crate::stats::fixtures::{empty, filled, with_workers};

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let text = render(&filled());
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("ferrule_request_processing_seconds")
                    && l.contains("view=\"api:users\",method=\"GET\"")
            })
            .collect();
        let expected = [
            r#"_bucket{view="api:users",method="GET",le="0.0005"} 0"#,
            r#"_bucket{view="api:users",method="GET",le="0.001"} 0"#,
            r#"_bucket{view="api:users",method="GET",le="0.0025"} 0"#,
            r#"_bucket{view="api:users",method="GET",le="0.005"} 0"#,
            r#"_bucket{view="api:users",method="GET",le="0.01"} 40"#,
            r#"_bucket{view="api:users",method="GET",le="0.025"} 40"#,
            r#"_bucket{view="api:users",method="GET",le="0.05"} 40"#,
            r#"_bucket{view="api:users",method="GET",le="0.1"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="0.25"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="0.5"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="1"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="2.5"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="5"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="10"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="30"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="60"} 42"#,
            r#"_bucket{view="api:users",method="GET",le="+Inf"} 43"#,
            r#"_sum{view="api:users",method="GET"} 72.2"#,
            r#"_count{view="api:users",method="GET"} 43"#,
        ]
        .map(|l| format!("ferrule_request_processing_seconds{l}"));
        assert_eq!(lines, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&filled());
        assert!(text.contains(
            r#"ferrule_requests_total{view="evil\\ \"quoted\"\n<script>alert(1)</script>&",method="GET",code="5xx"} 3"#
        ), "{text}");
        // Only the HELP/TYPE lines and samples: an unescaped newline would start a line
        // with something else.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("ferrule_")
                    || line.starts_with("process_"),
                "{line}"
            );
        }
    }

    #[test]
    fn gauges_counters_and_optional_samples() {
        let text = render(&filled());
        for line in [
            "ferrule_threads 8",
            "ferrule_threads_busy 3",
            "ferrule_threads_max 8",
            "ferrule_queue_depth 2",
            "ferrule_connections 17",
            "ferrule_requests_in_flight 5",
            "ferrule_work_sleep_ratio 2.5",
            "ferrule_uptime_seconds 5500.5",
            "ferrule_code_stale 0",
            "ferrule_thread_busy_seconds_total 321.5",
            "ferrule_thread_asleep_seconds_total 12.25",
            "ferrule_stats_labels_overflowed_total 7",
            "ferrule_stats_labels_evicted_total 3",
            r#"ferrule_websockets_open{route="/chat"} 3"#,
            r#"ferrule_websockets_opened_total{route="/chat"} 9"#,
            r#"ferrule_websocket_messages_total{route="/chat",direction="in"} 120"#,
            r#"ferrule_websocket_bytes_total{route="/chat",direction="out"} 8192"#,
            r#"ferrule_websocket_closes_total{route="/chat",code="1006"} 1"#,
            r#"ferrule_info{version="0.1.0"} 1"#,
            "process_resident_memory_bytes 52428800",
            "process_start_time_seconds 1699994499.5",
            r#"ferrule_requests_cancelled_total{view="api:users",method="POST",reason="timeout"} 1"#,
            r#"ferrule_requests_total{view="static",method="GET",code="1xx"} 0"#,
            r#"ferrule_response_bytes_total{view="static",method="POST"} 4096"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
        assert!(render(&crate::stats::fixtures::stale())
            .lines()
            .any(|l| l == "ferrule_code_stale 1"));
        let text = render(&empty());
        assert!(!text.contains("\nferrule_work_sleep_ratio "));
        assert!(text.contains("# TYPE ferrule_work_sleep_ratio gauge"));
        assert!(!text.contains("_bucket"));
    }

    #[test]
    fn floats_prometheus_reads() {
        assert_eq!(super::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(super::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(super::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(super::Float(0.25).to_string(), "0.25");
        assert_eq!(super::Float(3.0).to_string(), "3");
    }

    #[test]
    fn worker_rows_only_with_workers() {
        assert!(!render(&filled()).contains("ferrule_worker"));
        let text = render(&with_workers());
        for line in [
            r#"ferrule_workers{state="starting"} 1"#,
            r#"ferrule_workers{state="ready"} 1"#,
            r#"ferrule_workers{state="draining"} 1"#,
            r#"ferrule_worker_requests_total{worker="101"} 9000"#,
            r#"ferrule_worker_requests_total{worker="103"} 0"#,
            r#"ferrule_worker_threads{worker="102"} 8"#,
            r#"ferrule_worker_threads_busy{worker="101"} 3"#,
            r#"ferrule_worker_resident_memory_bytes{worker="102"} 73400320"#,
            r#"ferrule_worker_start_time_seconds{worker="101"} 1699990000.5"#,
            "# TYPE ferrule_worker_requests_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
    }

    /// `promtool check metrics` (Debian's prometheus package; `.ci/run` installs it) accepts
    /// the text and finds nothing to lint. Skipped where promtool is not installed.
    #[test]
    fn promtool_accepts_the_text() {
        use std::io::Write;
        use std::process::{Command, Stdio};

        for snapshot in [filled(), empty(), with_workers()] {
            let child = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let Ok(mut child) = child else {
                eprintln!("SKIPPED: promtool is not installed");
                return;
            };
            let text = render(&snapshot);
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
