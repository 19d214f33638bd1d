//! `/`: the dashboard, one self-contained HTML page built from a [`Snapshot`].
//!
//! Owns what the page shows and in which order: the gauges, the worker processes (with
//! `--workers`), the timelines (last 15 minutes from `seconds`, last 24 hours from
//! `minutes`), thread-pool utilization, a latency histogram per busy view, the slowest-views
//! and in-flight tables, and how counts read ("1 request"). The charts themselves (geometry,
//! colours, escaping) are `svg.rs`'s; the columns they sit in are `dashboard.css`'s; serving
//! the page is `admin.rs`'s.
//!
//! No script, no external asset: the page refreshes itself every 5 seconds and works
//! offline. Labels and paths come from clients, so every string from the snapshot is escaped;
//! the admin listener also sends a Content-Security-Policy that forbids scripts.

use std::fmt::Write;

use super::snapshot::{Point, Snapshot, View};
use super::svg::{colour, duration, escape, number, BarChart, LineChart, Series, Unit};

/// How many views get a histogram: the busiest ones (arbitrary; two rows at 1280 px).
const HISTOGRAM_VIEWS: usize = 8;
/// Rows of the slowest-views table (arbitrary; the JSON has them all).
const SLOWEST_ROWS: usize = 25;
/// Rows of the in-flight table (arbitrary; the JSON has them all).
const IN_FLIGHT_ROWS: usize = 50;
/// Paths longer than this are cut in the in-flight table.
const PATH_CHARS: usize = 160;

// Layout and colours; the file says how the columns are chosen.
const STYLE: &str = include_str!("dashboard.css");

/// The page for `/`.
pub fn render(s: &Snapshot) -> String {
    let mut page = String::with_capacity(96 * 1024);
    let _ = write!(
        page,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5"><meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,"><title>ferrule statistics</title><style>{STYLE}</style></head><body><header><h1>ferrule statistics</h1><span>version {}</span><span>pid {}</span><span>at {} UTC, refreshed every 5 s</span></header><main>"#,
        escape(s.version),
        s.pid,
        clock(s.time)
    );
    stale(&mut page, s);
    gauges(&mut page, s);
    workers(&mut page, s);
    timelines(&mut page, s);
    histograms(&mut page, s);
    slowest(&mut page, s);
    in_flight(&mut page, s);
    page.push_str("</main></body></html>\n");
    page
}

/// A banner over everything when the workers run code older than the code on disk: the
/// deploy the operator believes done did not happen.
fn stale(page: &mut String, s: &Snapshot) {
    if let Some(stale) = &s.stale {
        let _ = write!(
            page,
            r#"<p class="stale" role="alert"><b>The worker processes run code older than the code on disk.</b> The reload at {} UTC was abandoned because the new workers kept failing to start: {}. They go on serving the code they loaded; fix the error and reload again.</p>"#,
            clock(stale.since),
            escape(&stale.reason)
        );
    }
}

/// What the work : sleep gauge shows when nothing waited: there is no ratio, and a dash
/// would not say why.
const NO_WAITS: &str = "no async waits";

fn gauges(page: &mut String, s: &Snapshot) {
    let g = &s.gauges;
    let (ratio, ratio_note) = g.work_sleep_ratio.map_or_else(
        || (NO_WAITS.into(), "in the last minute"),
        |r| (number(r), "last minute"),
    );
    let t = &s.totals;
    let overflowed = if t.other_requests > 0 || t.labels_evicted > 0 {
        format!(
            "{} under other, {} {} evicted",
            t.other_requests,
            t.labels_evicted,
            noun(t.labels_evicted, "label", "labels")
        )
    } else {
        "since start".into()
    };
    let memory = if s.workers.is_empty() {
        ("memory", bytes(s.rss_bytes), "resident".into())
    } else {
        let all = s.rss_bytes + s.workers.iter().map(|w| w.rss_bytes).sum::<u64>();
        let processes = s.workers.len() + 1;
        (
            "memory",
            bytes(all),
            format!(
                "resident, {processes} {}",
                noun(processes, "process", "processes")
            ),
        )
    };
    page.push_str(r#"<section class="gauges" id="gauges">"#);
    for (name, value, note) in [
        (
            "threads busy",
            format!("{} / {}", g.busy_threads, g.threads),
            format!("at most {}", g.max_threads),
        ),
        (
            "queue",
            g.queue_depth.to_string(),
            "waiting for a thread".into(),
        ),
        (
            "in flight",
            g.in_flight.to_string(),
            noun(g.in_flight, "request", "requests").into(),
        ),
        ("connections", g.connections.to_string(), "open".into()),
        (
            "websockets",
            g.websockets.to_string(),
            format!(
                "open; {} messages in, {} out",
                s.totals.websocket.all.messages_in, s.totals.websocket.all.messages_out
            ),
        ),
        ("work : sleep", ratio, ratio_note.into()),
        ("requests", s.totals.requests.to_string(), overflowed),
        ("uptime", uptime(s.uptime), String::new()),
        memory,
    ] {
        // A WSGI application has no WebSockets to show.
        if name == "websockets" && s.totals.websocket.all.opened == 0 {
            continue;
        }
        // Words where a number goes are greyed, so they do not read as one.
        let class = if value == NO_WAITS {
            r#" class="none""#
        } else {
            ""
        };
        let _ = write!(
            page,
            r#"<div class="gauge"><small>{name}</small><b{class}>{}</b><small>{}</small></div>"#,
            escape(&value),
            escape(&note)
        );
    }
    page.push_str("</section>");
}

/// With `--workers`: a row per worker process.
fn workers(page: &mut String, s: &Snapshot) {
    if s.workers.is_empty() {
        return;
    }
    page.push_str(r#"<h2>Workers</h2><div class="scroll"><table id="workers"><tr><th>pid</th><th class="l">state</th><th>up</th><th>requests</th><th>requests/s</th><th>threads busy</th><th>memory</th><th>restarts</th></tr>"#);
    for w in &s.workers {
        let _ = write!(
            page,
            r#"<tr><td>{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>"#,
            w.pid,
            w.state.name(),
            uptime(s.time - w.started_unix),
            w.requests,
            number(w.requests_per_second),
            w.busy_threads,
            w.threads,
            bytes(w.rss_bytes),
            w.restarts,
        );
    }
    page.push_str("</table></div>");
}

/// The 15-minute and 24-hour timelines and the thread-pool chart.
fn timelines(page: &mut String, s: &Snapshot) {
    let now = s.time;
    let quarter = (now - 900.0, now);
    let quarter_ticks = [
        (now - 900.0, "−15 min"),
        (now - 600.0, "−10 min"),
        (now - 300.0, "−5 min"),
        (now, "now"),
    ];
    let secs = &s.seconds;
    page.push_str(r#"<h2>Last 15 minutes</h2><section class="charts">"#);
    page.push_str(
        &LineChart {
            id: "rate-15m",
            title: "Requests per second",
            unit: Unit::Rate,
            x: quarter,
            x_ticks: &quarter_ticks,
            series: rate_series(secs, 1.0),
        }
        .render(),
    );
    page.push_str(
        &LineChart {
            id: "latency-15m",
            title: "Processing time",
            unit: Unit::Seconds,
            x: quarter,
            x_ticks: &quarter_ticks,
            series: latency_series(secs, 1.0, true),
        }
        .render(),
    );
    let threads = |name, class, colour, dashed, f: fn(&Point) -> f64| Series {
        name,
        class,
        colour,
        dashed,
        points: timeline(secs, 1.0, |p| Some(f(p))),
    };
    page.push_str(
        &LineChart {
            id: "threads-15m",
            title: "Worker threads",
            unit: Unit::Count,
            x: quarter,
            x_ticks: &quarter_ticks,
            series: vec![
                threads("live", "threads", colour::THREADS, true, |p| {
                    p.threads as f64
                }),
                threads("busy", "busy", colour::BUSY, false, |p| p.busy),
                threads("asleep", "asleep", colour::ASLEEP, false, |p| p.asleep),
                threads("queued requests", "queue", colour::QUEUE, false, |p| {
                    p.queue_depth as f64
                }),
            ],
        }
        .render(),
    );
    page.push_str("</section>");

    let day = (now - 86_400.0, now);
    let day_ticks = [
        (now - 86_400.0, "−24 h"),
        (now - 64_800.0, "−18 h"),
        (now - 43_200.0, "−12 h"),
        (now - 21_600.0, "−6 h"),
        (now, "now"),
    ];
    page.push_str(r#"<h2>Last 24 hours</h2><section class="charts">"#);
    page.push_str(
        &LineChart {
            id: "rate-24h",
            title: "Requests per second, by minute",
            unit: Unit::Rate,
            x: day,
            x_ticks: &day_ticks,
            series: rate_series(&s.minutes, 60.0),
        }
        .render(),
    );
    page.push_str(
        &LineChart {
            id: "latency-24h",
            title: "Processing time, by minute",
            unit: Unit::Seconds,
            x: day,
            x_ticks: &day_ticks,
            series: latency_series(&s.minutes, 60.0, false),
        }
        .render(),
    );
    page.push_str("</section>");
}

fn rate_series(points: &[Point], interval: f64) -> Vec<Series> {
    vec![
        Series {
            name: "requests",
            class: "rate",
            colour: colour::RATE,
            dashed: false,
            points: timeline(points, interval, |p| Some(p.requests as f64 / interval)),
        },
        Series {
            name: "5xx",
            class: "errors",
            colour: colour::ERRORS,
            dashed: false,
            points: timeline(points, interval, |p| Some(p.errors as f64 / interval)),
        },
    ]
}

/// p50, p90 (if `p90`) and p99 of processing; intervals without requests are gaps, not 0.
fn latency_series(points: &[Point], interval: f64, p90: bool) -> Vec<Series> {
    let quantile = |name, class, colour, f: fn(&Point) -> f64| Series {
        name,
        class,
        colour,
        dashed: false,
        points: timeline(points, interval, move |p| (p.requests > 0).then(|| f(p))),
    };
    let mut series = vec![quantile("p50", "p50", colour::P50, |p| p.processing.p50)];
    if p90 {
        series.push(quantile("p90", "p90", colour::P90, |p| p.processing.p90));
    }
    series.push(quantile("p99", "p99", colour::P99, |p| p.processing.p99));
    series
}

/// Points placed at the end of their interval (so the newest is at "now"), with a gap where
/// the timeline skips intervals.
fn timeline(
    points: &[Point],
    interval: f64,
    value: impl Fn(&Point) -> Option<f64>,
) -> Vec<Option<(f64, f64)>> {
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut previous: Option<i64> = None;
    for p in points {
        if previous.is_some_and(|t| (p.time - t) as f64 > interval * 1.5) {
            out.push(None);
        }
        previous = Some(p.time);
        out.push(value(p).map(|v| (p.time as f64 + interval, v)));
    }
    out
}

// The histogram display bins: four per decade from 100 µs to 100 s, 24 in all. The snapshot's
// bins are finer and may change; each is added to the display bin holding its upper bound,
// the first and last bins take everything below and above.
const BINS_PER_DECADE: f64 = 4.0;
const LOWEST_DECADE: f64 = -4.0;
const BINS: usize = 24;

fn display_bin(upper: f64) -> usize {
    if upper.is_nan() || upper <= 0.0 {
        return 0;
    }
    let i = (BINS_PER_DECADE * (upper.log10() - LOWEST_DECADE)).ceil() - 1.0;
    i.clamp(0.0, (BINS - 1) as f64) as usize
}

/// A latency histogram for each of the busiest views over the last 15 minutes.
fn histograms(page: &mut String, s: &Snapshot) {
    let total = |v: &View| v.histogram.iter().map(|b| b.1).sum::<u64>();
    let mut views: Vec<(&View, u64)> = s
        .views
        .iter()
        .map(|v| (v, total(v)))
        .filter(|v| v.1 > 0)
        .collect();
    views.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.label.cmp(&b.0.label)));
    page.push_str(r#"<h2>Processing time by view, last 15 minutes</h2><section class="charts views" id="histograms">"#);
    if views.is_empty() {
        page.push_str(r#"<p class="empty">No requests in the last 15 minutes.</p>"#);
    }
    let ticks = [
        (4, "1 ms"),
        (8, "10 ms"),
        (12, "100 ms"),
        (16, "1 s"),
        (20, "10 s"),
    ];
    for &(view, count) in views.iter().take(HISTOGRAM_VIEWS) {
        let mut bars = [0u64; BINS];
        for &(upper, n) in &view.histogram {
            bars[display_bin(upper)] += n;
        }
        let q = view.windows[2].processing;
        let note = format!(
            "{count} {} · p50 {} · p99 {}",
            noun(count, "request", "requests"),
            duration(q.p50),
            duration(q.p99)
        );
        page.push_str(
            &BarChart {
                title: &view.label,
                note: &note,
                bars: &bars,
                x_ticks: &ticks,
            }
            .render(),
        );
    }
    page.push_str("</section>");
}

/// Views by their 99th percentile over the last 5 minutes, slowest first.
fn slowest(page: &mut String, s: &Snapshot) {
    let mut views: Vec<&View> = s
        .views
        .iter()
        .filter(|v| v.windows[1].requests > 0)
        .collect();
    views.sort_by(|a, b| {
        let p99 = |v: &View| v.windows[1].processing.p99;
        p99(b)
            .total_cmp(&p99(a))
            .then_with(|| a.label.cmp(&b.label))
    });
    page.push_str("<h2>Slowest views, last 5 minutes</h2>");
    if views.is_empty() {
        page.push_str(r#"<p class="empty" id="slowest">No requests in the last 5 minutes.</p>"#);
        return;
    }
    page.push_str(r#"<div class="scroll"><table id="slowest"><tr><th class="l">view</th><th>requests</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>4xx</th><th>5xx</th><th>cancelled</th><th>queue p99</th><th>asleep p99</th></tr>"#);
    for v in views.iter().take(SLOWEST_ROWS) {
        let w = &v.windows[1];
        let label = escape(&v.label);
        let _ = write!(
            page,
            r#"<tr><td class="l" title="{label}">{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            w.requests,
            duration(w.processing.p50),
            duration(w.processing.p90),
            duration(w.processing.p99),
            duration(w.processing.max),
            w.client_errors,
            w.errors,
            w.cancelled,
            duration(w.queue.p99),
            duration(w.asleep.p99),
        );
    }
    page.push_str("</table></div>");
    more(page, views.len(), SLOWEST_ROWS, ("view", "views"));
}

fn in_flight(page: &mut String, s: &Snapshot) {
    page.push_str("<h2>In flight</h2>");
    if s.in_flight.is_empty() {
        page.push_str(r#"<p class="empty" id="in-flight">No requests in flight.</p>"#);
        return;
    }
    let by_worker = !s.workers.is_empty();
    page.push_str(r#"<div class="scroll"><table id="in-flight"><tr><th class="l">id</th>"#);
    if by_worker {
        page.push_str("<th>worker</th>");
    }
    page.push_str(r#"<th class="l">view</th><th class="l">method</th><th class="l">path</th><th class="l">state</th><th>elapsed</th><th>asleep</th></tr>"#);
    for r in s.in_flight.iter().take(IN_FLIGHT_ROWS) {
        let path: String = r.path.chars().take(PATH_CHARS).collect();
        let cut = if path.len() < r.path.len() { "…" } else { "" };
        let path = escape(&path);
        let _ = write!(
            page,
            r#"<tr><td class="l">{}</td>{}<td class="l">{}</td><td class="l">{}</td><td class="l" title="{path}">{path}{cut}</td><td class="l">{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&r.id),
            if by_worker {
                format!("<td>{}</td>", r.pid)
            } else {
                String::new()
            },
            escape(&r.label),
            escape(&r.method),
            escape(r.state),
            duration(r.elapsed),
            duration(r.asleep),
        );
    }
    page.push_str("</table></div>");
    more(
        page,
        s.in_flight.len(),
        IN_FLIGHT_ROWS,
        ("request", "requests"),
    );
}

fn more(page: &mut String, len: usize, shown: usize, (one, many): (&str, &str)) {
    if len > shown {
        let left = len - shown;
        let _ = write!(
            page,
            r#"<p class="more">{left} more {} in /stats.json.</p>"#,
            noun(left, one, many)
        );
    }
}

/// `one` or `many`, as a count of `n` takes: "1 request", "0 requests", "2 requests".
fn noun<'a>(n: impl TryInto<u64>, one: &'a str, many: &'a str) -> &'a str {
    if n.try_into().is_ok_and(|n| n == 1) {
        one
    } else {
        many
    }
}

/// `HH:MM:SS` of a Unix time.
fn clock(time: f64) -> String {
    let secs = if time.is_finite() { time as i64 } else { 0 };
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

fn uptime(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0) as u64
    } else {
        0
    };
    match s {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    match n as f64 {
        b if b >= 1024.0 * MIB => format!("{} GiB", number(b / 1024.0 / MIB)),
        b => format!("{} MiB", number(b / MIB)),
    }
}

#[cfg(test)]
mod tests;
