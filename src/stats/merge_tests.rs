//! The merge of worker processes' statistics, tested against one process that saw every
//! request: two workers' exports must add up to exactly its numbers (counters, histograms,
//! windows and their percentiles, the timeline), incremental exports to the full ones, and a
//! retired worker's counters must stay.

use std::sync::Arc;
use std::time::Duration;

use super::export::Export;
use super::snapshot::{Snapshot, WorkerState};
use super::{Cluster, Finished, PoolGauges, Since, Stats, WorkerStatus};
use crate::cancel::Reason;
use crate::config::StatsPlan;

fn stats(threads: usize) -> Arc<Stats> {
    stats_with(threads, 50)
}

fn stats_with(threads: usize, max_labels: usize) -> Arc<Stats> {
    let plan = StatsPlan {
        bind: None,
        label: None,
        max_labels,
        hosts: Vec::new(),
        token: None,
    };
    let stats = Arc::new(Stats::new(&plan, false));
    stats.set_pool(Box::new(move || PoolGauges {
        threads,
        busy: threads / 2,
        max_threads: threads,
        queue_depth: threads / 4,
        busy_time: Duration::ZERO,
    }));
    stats
}

/// The `i`-th request of the simulation: spread over labels, methods, statuses, cancellations
/// and latencies from 30 µs to 40 s.
fn record(into: &Stats, i: u64) {
    let methods = [http::Method::GET, http::Method::POST, http::Method::PATCH];
    let labels = ["/api", "/users", "checkout", "static"];
    let status = [200, 200, 201, 304, 404, 500, 503, 499][(i % 8) as usize];
    let cancelled = match status {
        499 => Some(Reason::Disconnected),
        503 => Some(Reason::Shutdown),
        _ => None,
    };
    into.record(&Finished {
        label: labels[(i % 4) as usize],
        method: &methods[(i % 3) as usize],
        status,
        cancelled,
        queue: Duration::from_micros(i * 37 % 5_000),
        processing: Duration::from_micros(30 + i * i * 7919 % 40_000_000),
        asleep: Duration::from_micros(i * 13 % 90_000),
        bytes_in: i % 5 * 100,
        bytes_out: 1000 + i,
        from_path: false,
    });
}

/// One process seeing every request, and two workers (4 threads each) sharing them, ticked on
/// the same simulated seconds: `seconds` of them, ending at `end`, with requests in most.
struct Simulation {
    one: Arc<Stats>,
    workers: [Arc<Stats>; 2],
    next: u64,
}

impl Simulation {
    fn new() -> Self {
        Self {
            one: stats(8),
            workers: [stats(4), stats(4)],
            next: 0,
        }
    }

    fn run(&mut self, from: i64, seconds: i64) {
        for t in from..from + seconds {
            // Some seconds without requests, some with many.
            for _ in 0..(t * 7).rem_euclid(11) {
                let i = self.next;
                self.next += 1;
                record(&self.one, i);
                // Not strictly alternating: one worker takes more than the other.
                record(&self.workers[usize::from(i % 3 == 0)], i);
            }
            self.one.tick(t);
            for w in &self.workers {
                w.tick(t);
            }
        }
    }
}

/// The export of `stats` as of `time`, from process `pid`.
fn export(stats: &Stats, since: &Since, pid: u32, time: f64) -> Export {
    let mut e = stats.export(since);
    e.pid = pid;
    e.time = time;
    e.started = time - 100.0;
    for r in &mut e.in_flight {
        r.pid = pid;
    }
    e
}

/// Everything but what is process-wide in a test binary (the asleep total is a global of
/// `cancel`) and the float sums, which may round differently.
fn assert_same(merged: &Snapshot, one: &Snapshot) {
    assert_eq!(merged.totals.requests, one.totals.requests);
    assert_eq!(merged.gauges.threads, one.gauges.threads);
    assert_eq!(merged.gauges.busy_threads, one.gauges.busy_threads);
    assert_eq!(merged.gauges.max_threads, one.gauges.max_threads);
    assert_eq!(merged.views.len(), one.views.len());
    for (m, o) in merged.views.iter().zip(&one.views) {
        assert_eq!(m.label, o.label);
        assert_eq!(m.windows, o.windows, "{}", m.label);
        assert_eq!(m.histogram, o.histogram, "{}", m.label);
        assert_eq!(m.methods.len(), o.methods.len(), "{}", m.label);
        for (mm, om) in m.methods.iter().zip(&o.methods) {
            assert_eq!(
                (
                    mm.method,
                    mm.status,
                    mm.cancelled,
                    mm.bytes_in,
                    mm.bytes_out
                ),
                (
                    om.method,
                    om.status,
                    om.cancelled,
                    om.bytes_in,
                    om.bytes_out
                )
            );
            for (a, b) in [
                (&mm.queue, &om.queue),
                (&mm.processing, &om.processing),
                (&mm.asleep, &om.asleep),
            ] {
                assert_eq!((a.buckets, a.count), (b.buckets, b.count), "{}", m.label);
                assert!(
                    (a.sum - b.sum).abs() < 1e-6,
                    "{} {} {}",
                    m.label,
                    a.sum,
                    b.sum
                );
            }
        }
    }
    let strip = |points: &[super::snapshot::Point]| -> Vec<super::snapshot::Point> {
        points
            .iter()
            .map(|p| super::snapshot::Point { asleep: 0.0, ..*p })
            .collect()
    };
    assert_eq!(strip(&merged.seconds), strip(&one.seconds));
    assert_eq!(strip(&merged.minutes), strip(&one.minutes));
}

const START: i64 = 1_800_000_000;

#[test]
fn two_workers_add_up_to_one_process() {
    let mut sim = Simulation::new();
    sim.run(START, 30 * 60);
    let end = START + 30 * 60;
    let time = end as f64 + 0.5;
    let one = export(&sim.one, &Since::ALL, 1, time).snapshot(vec![]);
    let mut sum = export(&sim.workers[0], &Since::ALL, 2, time);
    sum.absorb(&export(&sim.workers[1], &Since::ALL, 3, time));
    let merged = sum.snapshot(vec![]);
    assert!(one.totals.requests > 5000 && one.minutes.len() == 30);
    assert!(one.views.iter().all(|v| v.windows[2].requests > 0));
    // 404s go to `/api`, 499s to `static`: the windows compared below count them.
    let client_errors = |label: &str| {
        let view = one.views.iter().find(|v| v.label == label);
        view.map_or(0, |v| v.windows[2].client_errors)
    };
    assert!(client_errors("/api") > 0 && client_errors("static") > 0);
    assert_same(&merged, &one);
    // Absorbing in the other order, or into an empty sum, changes nothing.
    let mut other = Export {
        time,
        ..Export::default()
    };
    other.absorb(&export(&sim.workers[1], &Since::ALL, 3, time));
    other.absorb(&export(&sim.workers[0], &Since::ALL, 2, time));
    assert_same(&other.snapshot(vec![]), &one);
}

#[test]
fn incremental_exports_add_up_to_a_full_one() {
    let mut sim = Simulation::new();
    let w = &Arc::clone(&sim.workers[0]);
    let mut held: Option<Export> = None;
    let mut from = START;
    // Scrapes at uneven intervals, some twice at the same instant, some an hour apart.
    for (seconds, repeat) in [
        (5, 1),
        (1, 2),
        (59, 1),
        (10, 1),
        (3600, 1),
        (7, 3),
        (601, 1),
    ] {
        sim.run(from, seconds);
        from += seconds;
        for _ in 0..repeat {
            let since = held.as_ref().map_or(Since::ALL, Export::since);
            // As in a server: half a second after the last tick.
            let next = export(w, &since, 2, from as f64 - 0.5);
            match &mut held {
                Some(h) => h.update(next),
                None => held = Some(next),
            }
        }
    }
    let held = held.unwrap();
    let full = export(w, &Since::ALL, 2, from as f64 - 0.5);
    assert_eq!(held.snapshot(vec![]).views, full.snapshot(vec![]).views);
    let span = |e: &Export| {
        (
            e.seconds.len(),
            e.seconds.first().map(|i| i.time),
            e.seconds.last().map(|i| i.time),
        )
    };
    assert_eq!(span(&held), span(&full));
    assert!(held.seconds == full.seconds);
    assert_eq!(held.minutes, full.minutes);
    // The next increment is small: only what one second added.
    sim.run(from, 1);
    let next = export(w, &held.since(), 2, from as f64 + 0.5);
    assert_eq!(next.seconds.len(), 1);
    assert!(next.minutes.len() <= 1);
    assert!(next.views.iter().all(|v| v.slots.len() <= 1));
    // An older answer arriving late does not take counters back.
    let mut newer = held.clone();
    newer.update(next.clone());
    let before = newer.requests();
    newer.update(export(w, &Since::ALL, 2, from as f64 - 5.0));
    assert_eq!(newer.requests(), before);
}

#[test]
fn the_cluster_keeps_what_retired_workers_counted() {
    let mut sim = Simulation::new();
    sim.run(START, 120);
    let mut cluster = Cluster::new();
    let status = |pid| WorkerStatus {
        pid,
        state: WorkerState::Ready,
        started_unix: START as f64,
        restarts: 0,
        rss_bytes: None,
    };
    // Real pids are unique; these stand for two workers.
    for (pid, w) in [(11, &sim.workers[0]), (12, &sim.workers[1])] {
        cluster.update(export(w, &cluster.since(pid), pid, (START + 120) as f64));
    }
    let before = cluster.snapshot(&[status(11), status(12)]);
    let one = export(&sim.one, &Since::ALL, 1, (START + 120) as f64).snapshot(vec![]);
    assert_eq!(before.totals.requests, one.totals.requests);
    assert_eq!(before.gauges.threads, 8);
    assert_eq!(before.workers.len(), 2);
    let rows: u64 = before.workers.iter().map(|r| r.requests).sum();
    assert_eq!(rows, one.totals.requests);
    assert_eq!(
        (before.workers[0].threads, before.workers[0].busy_threads),
        (4, 2)
    );

    cluster.retire(11);
    cluster.retire(11);
    cluster.retire(99);
    let after = cluster.snapshot(&[status(12)]);
    assert_eq!(after.totals.requests, before.totals.requests);
    assert_eq!(after.gauges.threads, 4);
    assert_eq!(after.workers.len(), 1);
    for (a, b) in after.views.iter().zip(&before.views) {
        assert_eq!(a.methods, b.methods);
    }
    // A new worker in the retired one's place adds on top.
    cluster.update(export(
        &sim.workers[0],
        &Since::ALL,
        13,
        (START + 120) as f64,
    ));
    let replaced = cluster.snapshot(&[status(12), status(13)]);
    assert_eq!(
        replaced.totals.requests,
        one.totals.requests + before.workers[0].requests
    );
    assert_eq!(cluster.live().collect::<Vec<_>>(), [12, 13]);
}

/// A request on a label made from its path, as a non-Django application's are.
fn hit(into: &Stats, label: &str) {
    into.record(&crate::stats::fixtures::finished(label));
}

#[test]
fn a_label_evicted_in_a_worker_leaves_the_masters_sum_and_its_requests_stay_in_other() {
    let worker = stats_with(2, 2);
    for label in ["/real", "/real", "/scan1"] {
        hit(&worker, label);
    }
    let mut cluster = Cluster::new();
    cluster.update(export(&worker, &cluster.since(7), 7, (START + 1) as f64));
    // The table is full: /scan2 takes the one-hit /scan1's place.
    hit(&worker, "/scan2");
    worker.tick(START + 2);
    cluster.update(export(&worker, &cluster.since(7), 7, (START + 2) as f64));
    let status = WorkerStatus {
        pid: 7,
        state: WorkerState::Ready,
        started_unix: START as f64,
        restarts: 0,
        rss_bytes: None,
    };
    let merged = cluster.snapshot(&[status]);
    let labels: Vec<&str> = merged.views.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(labels, ["/real", "/scan2", "other"]);
    assert_eq!(merged.totals.requests, 4);
    assert_eq!(merged.totals.other_requests, 1);
    assert_eq!(merged.totals.labels_evicted, 1);
    let one = worker.snapshot();
    assert_eq!(one.totals.requests, 4);
    assert_eq!(one.totals.other_requests, 1);
    // Retired, the worker's last labels stay in the sum as they were.
    cluster.retire(7);
    let after = cluster.snapshot(&[]);
    assert_eq!(after.totals.requests, 4);
    assert_eq!(after.views.len(), 3);
}

#[test]
fn an_export_survives_a_json_round_trip() {
    let mut sim = Simulation::new();
    sim.run(START, 200);
    let e = export(&sim.workers[0], &Since::ALL, 7, (START + 200) as f64 + 0.25);
    let text = serde_json::to_string(&e).unwrap();
    let back: Export = serde_json::from_str(&text).unwrap();
    assert_eq!(back, e);
    // Empty parts are left out: a worker that served nothing says little.
    let idle = export(&stats(2), &Since::ALL, 8, 1.0);
    let text = serde_json::to_string(&idle).unwrap();
    assert!(text.len() < 300, "{text}");
    assert_eq!(serde_json::from_str::<Export>(&text).unwrap(), idle);
}

#[test]
fn a_scrape_moves_only_what_changed() {
    // An hour of traffic on 4 labels × 3 methods, then a scrape every 5 s (the
    // dashboard's refresh): each answer carries 5 seconds of points and at most one closed
    // slot per view, whatever the history holds.
    let mut sim = Simulation::new();
    sim.run(START, 3600);
    let w = Arc::clone(&sim.workers[0]);
    let full = export(&w, &Since::ALL, 2, 0.0);
    let full_bytes = serde_json::to_string(&full).unwrap().len();
    let mut held = full;
    let mut from = START + 3600;
    let mut largest = 0;
    for _ in 0..12 {
        sim.run(from, 5);
        from += 5;
        let next = export(&w, &held.since(), 2, from as f64 - 0.5);
        largest = largest.max(serde_json::to_string(&next).unwrap().len());
        held.update(next);
    }
    eprintln!("full export {full_bytes} bytes, a 5-second increment at most {largest} bytes");
    assert!(largest < full_bytes / 20, "{largest} of {full_bytes}");
    assert!(largest < 24 * 1024, "{largest}");
}
