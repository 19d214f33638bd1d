//! The master's admin listener: statistics merged from every worker, per-worker rows, and
//! the health probes. The rendering and the merge are `stats/`'s; this file asks the workers
//! for their exports over their control channels and says when the master is ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::master::{lock, unix_now, Roster, Staleness, State};
use super::process::Order;
use crate::stats::{
    Cluster, Health, HealthFn, Snapshot, SnapshotFn, Stale, WorkerState, WorkerStatus,
};

/// How long a scrape waits for a worker's export; a worker that does not answer in time
/// (stuck, or exiting) is shown with what it last sent.
const ANSWER: Duration = Duration::from_secs(2);
/// How often the master collects exports between scrapes, so that a worker that dies takes
/// at most this much of its counts with it.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// Ask every serving worker for what is new in its statistics, and fold the answers in.
pub async fn collect(roster: &Roster, cluster: &Arc<Mutex<Cluster>>) {
    let asked: Vec<_> = {
        let roster = roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        roster
            .iter()
            .filter(|(_, w)| w.state != State::Starting)
            .map(|(pid, w)| (*pid, w.orders.clone()))
            .collect()
    };
    let mut answers = Vec::new();
    for (pid, orders) in asked {
        let since = lock(cluster).since(pid);
        let (tx, rx) = oneshot::channel();
        if orders.send(Order::Stats(since, tx)).await.is_ok() {
            answers.push(rx);
        }
    }
    for rx in answers {
        if let Ok(Ok(Some(export))) = tokio::time::timeout(ANSWER, rx).await {
            lock(cluster).update(*export);
        }
    }
}

/// The snapshot source of the master's admin listener.
pub fn snapshots(roster: Roster, cluster: Arc<Mutex<Cluster>>, stale: Staleness) -> SnapshotFn {
    Arc::new(move || {
        let (roster, cluster) = (Arc::clone(&roster), Arc::clone(&cluster));
        let stale = lock(&stale).clone().map(|s| Stale {
            since: s.since_unix,
            reason: s.reason,
        });
        Box::pin(async move {
            collect(&roster, &cluster).await;
            let statuses = statuses(&roster);
            let merged = Arc::clone(&cluster);
            let build = move || Snapshot {
                stale,
                ..lock(&merged).snapshot(&statuses)
            };
            match tokio::task::spawn_blocking(build).await {
                Ok(snapshot) => snapshot,
                // Building a snapshot does not panic; if it ever did, it is the server's bug.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = Snapshot> + Send>>
    })
}

/// `/readyz`: ready while a worker serves and the master is not stopping; it says so when
/// the workers run stale code.
pub fn health(
    roster: Roster,
    draining: Arc<AtomicBool>,
    announced: Arc<AtomicBool>,
    stale: Staleness,
) -> HealthFn {
    Arc::new(move || {
        if draining.load(Ordering::Relaxed) {
            return Health::NotReady("draining: the server is shutting down".into());
        }
        if !announced.load(Ordering::Relaxed) {
            return Health::NotReady(
                "starting: the worker processes are importing the application".into(),
            );
        }
        let ready = roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|w| w.state == State::Ready);
        if !ready {
            return Health::NotReady("no worker process is ready".into());
        }
        match lock(&stale).clone() {
            None => Health::Ready,
            Some(s) => Health::Stale(format!(
                "the workers run code older than the code on disk: a reload failed {}s ago ({})",
                (unix_now() - s.since_unix).max(0.0).round(),
                s.reason
            )),
        }
    })
}

fn statuses(roster: &Roster) -> Vec<WorkerStatus> {
    roster
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(pid, w)| WorkerStatus {
            pid: *pid,
            state: match w.state {
                State::Starting => WorkerState::Starting,
                State::Ready => WorkerState::Ready,
                State::Draining => WorkerState::Draining,
            },
            started_unix: w.started_unix,
            restarts: w.restarts,
            rss_bytes: Some(w.rss).filter(|r| *r > 0),
        })
        .collect()
}
