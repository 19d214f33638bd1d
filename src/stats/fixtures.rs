//! Snapshots for the exports' tests: one full of data (with every character that needs
//! escaping), one of a server that has just started, one of a master with three workers, and
//! one of a master whose last reload failed; and a finished request to count.

use super::snapshot::{
    Gauges, Histogram, InFlight, MethodStats, Point, Quantiles, Snapshot, Stale, Totals, View,
    Window, WorkerRow, WorkerState,
};

fn histogram(buckets: &[(usize, u64)], sum: f64) -> Histogram {
    let mut h = Histogram::default();
    for &(i, n) in buckets {
        h.buckets[i] = n;
        h.count += n;
    }
    h.sum = sum;
    h
}

fn method(method: &'static str, n: u64) -> MethodStats {
    MethodStats {
        method,
        queue: histogram(&[(0, n)], 0.0001 * n as f64),
        // 0.01 s bound is index 4, 0.1 is 7, past 60 s is 16.
        processing: histogram(&[(4, n), (7, 2), (16, 1)], 0.05 * n as f64 + 70.2),
        asleep: histogram(&[(5, 1)], 0.03),
        status: [0, n, 1, 2, 3],
        cancelled: [2, 1, 0],
        bytes_in: 100,
        bytes_out: 4096,
    }
}

fn quantiles(scale: f64) -> Quantiles {
    Quantiles {
        p50: 0.01 * scale,
        p90: 0.04 * scale,
        p99: 0.09 * scale,
        max: 0.2 * scale,
    }
}

fn view(label: &str, n: u64) -> View {
    let window = |minutes| Window {
        minutes,
        requests: n * u64::from(minutes),
        client_errors: 4,
        errors: 3,
        cancelled: 3,
        queue: quantiles(0.1),
        processing: quantiles(1.0),
        asleep: quantiles(0.5),
    };
    View {
        label: label.into(),
        methods: vec![method("GET", n), method("POST", 1)],
        windows: [window(1), window(5), window(15)],
        histogram: vec![(0.001, 3), (0.012, n), (0.09, 4), (2.0, 1)],
    }
}

/// A snapshot with two views (one with every character that needs escaping), two
/// requests in flight and a few minutes of timeline.
pub fn filled() -> Snapshot {
    let time = 1_700_000_000.0;
    let seconds = (0..300)
        .map(|i| Point {
            time: 1_700_000_000 - 300 + i,
            requests: (i % 17) as u64,
            errors: u64::from(i % 50 == 0),
            cancelled: 0,
            processing: quantiles(1.0 + (i % 7) as f64),
            queue_p99: 0.002,
            busy: (i % 5) as f64,
            asleep: (i % 3) as f64 * 0.5,
            threads: 8,
            queue_depth: (i % 11) as usize / 5,
        })
        .collect();
    let minutes = (0..90)
        .map(|i| Point {
            time: 1_700_000_000 - 5400 + i * 60,
            requests: 600 + (i as u64 % 13) * 20,
            processing: quantiles(2.0),
            busy: 3.0,
            threads: 8,
            ..Point::default()
        })
        .collect();
    Snapshot {
        version: "0.1.0",
        pid: 4242,
        time,
        uptime: 5500.5,
        rss_bytes: 52_428_800,
        gauges: Gauges {
            threads: 8,
            busy_threads: 3,
            max_threads: 8,
            queue_depth: 2,
            connections: 17,
            websockets: 3,
            in_flight: 5,
            work_sleep_ratio: Some(2.5),
        },
        totals: Totals {
            requests: 12345,
            busy_seconds: 321.5,
            asleep_seconds: 12.25,
            labels_overflowed: 7,
            labels_evicted: 3,
            other_requests: 9,
            websocket: {
                let chat = crate::stats::websocket::WsRouteTotals {
                    open: 3,
                    opened: 9,
                    messages_in: 120,
                    messages_out: 240,
                    bytes_in: 4096,
                    bytes_out: 8192,
                    closes: [(1000, 5), (1006, 1)].into_iter().collect(),
                };
                crate::stats::websocket::WsTotals {
                    all: chat.clone(),
                    routes: [("/chat".to_owned(), chat)].into_iter().collect(),
                }
            },
        },
        views: vec![
            view("api:users", 40),
            view("evil\\ \"quoted\"\n<script>alert(1)</script>&", 5),
            view("static", 300),
        ],
        in_flight: vec![
            InFlight {
                pid: 4243,
                id: "abc123".into(),
                label: "api:users".into(),
                method: "GET".into(),
                path: "/api/users/7".into(),
                state: "asleep",
                elapsed: 1.25,
                asleep: 0.75,
            },
            InFlight {
                pid: 4243,
                id: "<b>id</b>".into(),
                label: "<script>alert(2)</script>".into(),
                method: "P\"OST".into(),
                path: "/x?<img src=x onerror=alert(3)>".into(),
                state: "queued",
                elapsed: 0.002,
                asleep: 0.0,
            },
        ],
        seconds,
        minutes,
        workers: vec![],
        stale: None,
    }
}

/// A server that has just started: nothing recorded, no timeline yet.
pub fn empty() -> Snapshot {
    Snapshot {
        version: "0.1.0",
        pid: 1,
        time: 1_700_000_000.0,
        uptime: 0.0,
        rss_bytes: 0,
        gauges: Gauges::default(),
        totals: Totals::default(),
        views: vec![],
        in_flight: vec![],
        seconds: vec![],
        minutes: vec![],
        workers: vec![],
        stale: None,
    }
}

/// A master's: `filled()`'s numbers, and three workers, one in each state.
pub fn with_workers() -> Snapshot {
    let row = |pid, state, requests, rss_bytes| WorkerRow {
        pid,
        state,
        started_unix: 1_699_990_000.5,
        requests,
        requests_per_second: requests as f64 / 1000.0,
        busy_threads: 3,
        threads: 8,
        rss_bytes,
        restarts: u32::from(pid == 103),
    };
    Snapshot {
        workers: vec![
            row(101, WorkerState::Ready, 9000, 62_914_560),
            row(102, WorkerState::Draining, 3345, 73_400_320),
            row(103, WorkerState::Starting, 0, 20_971_520),
        ],
        ..filled()
    }
}

/// A master whose last reload failed: its workers run stale code. The reason comes from an
/// exception message, so it may hold anything.
pub fn stale() -> Snapshot {
    Snapshot {
        stale: Some(Stale {
            since: 1_699_999_400.0,
            reason: "cannot import 'site.wsgi': SyntaxError: <script>alert(4)</script>".into(),
        }),
        ..with_workers()
    }
}

/// A request of 1 ms answered 200 with `GET`, as `labels.rs`'s tests count them.
pub fn finished(label: &str) -> super::Finished<'_> {
    static GET: http::Method = http::Method::GET;
    super::Finished {
        label,
        method: &GET,
        status: 200,
        cancelled: None,
        queue: std::time::Duration::ZERO,
        processing: std::time::Duration::from_millis(1),
        asleep: std::time::Duration::ZERO,
        bytes_in: 0,
        bytes_out: 10,
        from_path: true,
    }
}
