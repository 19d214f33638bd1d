//! What the master does next, as a pure function of its state: [`decide`] takes the workers
//! (state, retiring, killed, started), the target, the backoff, the boot failures and the
//! master's flags (reloading, stopping, watching for changes, giving up, announced), and
//! returns the [`Action`]s to take, in order. Spawning, sending orders, logging, the hooks
//! and the stale-code bookkeeping are the loop's (`act.rs`); events are `events.rs`'s.

use std::time::{Duration, Instant};

use super::State;

/// Consecutive workers dying before they are ready, with none ready in between, after which
/// the master gives up: the application cannot start, and restarting it forever would only
/// fill the log.
pub(super) const BOOT_FAILURES: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long to wait before the next worker after `crashes` deaths soon after starting (or
/// failures to start): 100 ms, doubling, up to [`MAX_BACKOFF`].
pub(super) fn backoff(crashes: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << crashes.min(16).saturating_sub(1))
        .min(MAX_BACKOFF)
}

/// One worker as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    pub pid: u32,
    pub state: State,
    /// To be replaced once a fresh worker is ready.
    pub retiring: bool,
    /// Killed by the master; its death is on its way.
    pub killed: bool,
    pub started: Instant,
}

impl Seen {
    /// Counts towards the target: neither retiring, nor draining, nor killed.
    fn is_fresh(&self) -> bool {
        !self.retiring && self.state != State::Draining && !self.killed
    }

    fn is_serving(&self) -> bool {
        self.state == State::Ready && !self.killed
    }
}

/// The master's state, as far as deciding needs it.
#[derive(Debug, Clone)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one of the master's own flags, read as is"
)]
pub(super) struct Situation {
    pub now: Instant,
    pub workers: Vec<Seen>,
    /// Wanted workers (`--workers`, changed by SIGTTIN/SIGTTOU).
    pub target: usize,
    /// Deaths soon after starting: while there are any, workers start one at a time.
    pub crashes: u32,
    /// No worker starts before this.
    pub next_spawn: Instant,
    /// Consecutive workers that died (or could not start) before they were ready.
    pub boot_failures: u32,
    /// SIGHUP or a change in progress.
    pub reloading: bool,
    /// SIGTERM or SIGINT received.
    pub stopping: bool,
    /// `--reload`: a fix on disk may come, so the master never gives up.
    pub watching: bool,
    /// The master has said it waits for a change.
    pub waiting_for_change: bool,
    /// The master gave up: it waits for its workers to go.
    pub giving_up: bool,
    /// The first workers were announced ready.
    pub announced: bool,
}

/// How the master's loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Every worker exited after a stop.
    Stopped,
    /// Workers kept failing to start.
    BootFailed,
}

/// One thing for the loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Workers keep failing to start and nothing watches for a fix: from now on the master
    /// only waits for its workers (each gets a [`Action::Kill`]) to go, then ends.
    GiveUp,
    /// The same in reload mode: say, once, that the master keeps retrying and waits for a
    /// change.
    WaitForChange,
    /// Start this many workers, one after another; if one cannot be started, the rest are
    /// not, and the loop decides again.
    Spawn(usize),
    /// Tell a worker to finish its requests and exit.
    Stop(u32),
    /// SIGKILL a worker (one still starting has no requests to finish).
    Kill(u32),
    /// The reload is complete: this many fresh workers serve.
    ReloadComplete {
        serving: usize,
    },
    /// The first workers are ready: say so, once.
    AnnounceReady,
    End(End),
}

/// Bring the workers towards what is wanted: start the missing fresh ones (one at a time
/// while backing off, none before `next_spawn`), stop the newest fresh ones beyond the
/// target (SIGTTOU), stop retiring ones only as fresh ones are ready to take their place,
/// complete a reload once no retiring one is left, announce readiness once. Workers that
/// keep failing to start make the master give up, or wait for a change with a watcher.
/// Stopping or giving up, the master only waits for its workers to go.
pub(super) fn decide(s: &Situation) -> Vec<Action> {
    let mut workers = s.workers.clone();
    workers.sort_by_key(|w| w.pid);
    if s.giving_up {
        return ended_when_empty(&workers, End::BootFailed);
    }
    if s.stopping {
        return ended_when_empty(&workers, End::Stopped);
    }
    let mut actions = Vec::new();
    if s.boot_failures >= BOOT_FAILURES && !workers.iter().any(|w| w.state == State::Ready) {
        if !s.watching {
            // Workers still importing would outlive the master, holding the listeners.
            actions.push(Action::GiveUp);
            actions.extend(workers.iter().map(|w| Action::Kill(w.pid)));
            actions.extend(ended_when_empty(&workers, End::BootFailed));
            return actions;
        }
        if !s.waiting_for_change {
            actions.push(Action::WaitForChange);
        }
    }
    // Oldest first; a worker still starting counts as newer than any serving one.
    let mut fresh: Vec<&Seen> = workers.iter().filter(|w| w.is_fresh()).collect();
    fresh.sort_by_key(|w| (w.state == State::Starting, w.started));
    let fresh: Vec<u32> = fresh.iter().map(|w| w.pid).collect();
    // Too few: start more (one at a time while backing off).
    if fresh.len() < s.target && s.now >= s.next_spawn {
        let wanted = if s.crashes > 0 {
            1
        } else {
            s.target - fresh.len()
        };
        actions.push(Action::Spawn(wanted));
    }
    // Too many (SIGTTOU): stop the newest.
    if fresh.len() > s.target {
        for pid in fresh.iter().rev().take(fresh.len() - s.target) {
            stop(&mut workers, *pid, &mut actions);
        }
    }
    // Retiring workers go once enough fresh ones are ready to take their place.
    let fresh_ready = workers
        .iter()
        .filter(|w| w.is_serving() && !w.retiring)
        .count();
    let mut retiring: Vec<u32> = workers
        .iter()
        .filter(|w| w.retiring && w.state != State::Draining)
        .map(|w| w.pid)
        .collect();
    let mut serving = fresh_ready + retiring.len();
    while serving > s.target.max(fresh_ready) {
        let Some(pid) = retiring.pop() else { break };
        stop(&mut workers, pid, &mut actions);
        serving -= 1;
    }
    // A reload is complete once fresh workers serve and no retiring one is left.
    if s.reloading
        && fresh_ready > 0
        && !workers
            .iter()
            .any(|w| w.retiring && w.state != State::Draining)
    {
        actions.push(Action::ReloadComplete {
            serving: fresh_ready,
        });
    }
    if !s.announced && fresh_ready >= s.target {
        actions.push(Action::AnnounceReady);
    }
    actions
}

fn ended_when_empty(workers: &[Seen], end: End) -> Vec<Action> {
    if workers.is_empty() {
        vec![Action::End(end)]
    } else {
        Vec::new()
    }
}

/// Stop a worker, or kill it if it is still starting; later rules see it draining.
fn stop(workers: &mut [Seen], pid: u32, actions: &mut Vec<Action>) {
    let Some(w) = workers.iter_mut().find(|w| w.pid == pid) else {
        return;
    };
    if w.state == State::Starting {
        w.killed = true;
        actions.push(Action::Kill(pid));
    } else {
        actions.push(Action::Stop(pid));
    }
    w.state = State::Draining;
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::Action::{
        AnnounceReady, End as Ended, GiveUp, Kill, ReloadComplete, Spawn, Stop, WaitForChange,
    };
    use super::*;

    static T0: LazyLock<Instant> = LazyLock::new(Instant::now);

    /// A worker started `pid` seconds after T0, so higher pids are newer.
    fn worker(pid: u32, state: State) -> Seen {
        Seen {
            pid,
            state,
            retiring: false,
            killed: false,
            started: *T0 + Duration::from_secs(pid.into()),
        }
    }
    fn ready(pid: u32) -> Seen {
        worker(pid, State::Ready)
    }
    fn starting(pid: u32) -> Seen {
        worker(pid, State::Starting)
    }
    fn draining(pid: u32) -> Seen {
        worker(pid, State::Draining)
    }
    fn retiring(w: Seen) -> Seen {
        Seen {
            retiring: true,
            ..w
        }
    }
    fn killed(w: Seen) -> Seen {
        Seen { killed: true, ..w }
    }

    /// Two workers wanted, spawning allowed now, no crash, already announced, nothing in
    /// progress: each row sets what its rule is about.
    fn with(workers: Vec<Seen>) -> Situation {
        let now = *T0 + Duration::from_secs(100);
        Situation {
            now,
            workers,
            target: 2,
            crashes: 0,
            next_spawn: now,
            boot_failures: 0,
            reloading: false,
            stopping: false,
            watching: false,
            waiting_for_change: false,
            giving_up: false,
            announced: true,
        }
    }

    fn check(rows: Vec<(&str, Situation, Vec<Action>)>) {
        for (rule, situation, want) in rows {
            assert_eq!(decide(&situation), want, "{rule}");
        }
    }

    #[test]
    fn spawning_table() {
        let later = *T0 + Duration::from_secs(101);
        #[rustfmt::skip]
        check(vec![
            ("none yet: start the target at once", with(vec![]), vec![Spawn(2)]),
            ("one short: start one", with(vec![ready(1)]), vec![Spawn(1)]),
            ("backing off: one at a time",
                Situation { crashes: 1, ..with(vec![]) }, vec![Spawn(1)]),
            ("none before next_spawn",
                Situation { next_spawn: later, ..with(vec![ready(1)]) }, vec![]),
            ("a worker still starting counts", with(vec![ready(1), starting(2)]), vec![]),
            ("a killed worker does not count",
                with(vec![ready(1), killed(ready(2))]), vec![Spawn(1)]),
            ("a draining worker does not count", with(vec![ready(1), draining(2)]), vec![Spawn(1)]),
            ("a retiring worker does not count: its replacement starts",
                with(vec![retiring(ready(1)), ready(2)]), vec![Spawn(1)]),
            ("enough: nothing to do", with(vec![ready(1), ready(2)]), vec![]),
        ]);
    }

    #[test]
    fn stopping_and_reloading_table() {
        let reloading = |workers: Vec<Seen>| Situation {
            reloading: true,
            target: 1,
            ..with(workers)
        };
        #[rustfmt::skip]
        check(vec![
            ("too many (SIGTTOU): stop the newest",
                Situation { target: 1, ..with(vec![ready(1), ready(2)]) }, vec![Stop(2)]),
            ("too many by two: the two newest",
                Situation { target: 1, ..with(vec![ready(1), ready(2), ready(3)]) }, vec![Stop(3), Stop(2)]),
            ("a starting worker is newer than any serving one, and is killed",
                Situation { target: 1, ..with(vec![starting(1), ready(2)]) }, vec![Kill(1)]),
            ("retiring workers serve until a fresh one is ready",
                reloading(vec![retiring(ready(1)), starting(2)]), vec![]),
            ("a fresh one ready: the retiring one stops, the reload completes",
                reloading(vec![retiring(ready(1)), ready(2)]), vec![Stop(1), ReloadComplete { serving: 1 }]),
            ("one retiring stops per fresh one ready, newest first",
                Situation { target: 2, ..reloading(vec![retiring(ready(1)), retiring(ready(2)), ready(3), starting(4)]) }, vec![Stop(2)]),
            ("a killed fresh worker is not ready to take over",
                reloading(vec![retiring(ready(1)), killed(ready(2))]), vec![Spawn(1)]),
            ("a retiring worker still starting is killed",
                reloading(vec![retiring(starting(1)), ready(2)]), vec![Kill(1), ReloadComplete { serving: 1 }]),
            ("recycled, not reloading: stopped, no reload to complete",
                Situation { target: 1, ..with(vec![retiring(ready(1)), ready(2)]) }, vec![Stop(1)]),
            ("the reload completes once no retiring one is left",
                reloading(vec![draining(1), ready(2)]), vec![ReloadComplete { serving: 1 }]),
            ("no reload completes with no fresh one ready",
                reloading(vec![draining(1), starting(2)]), vec![]),
            ("a fresh worker stopped as one too many does not count as serving",
                Situation { target: 2, ..reloading(vec![ready(2), ready(3), ready(4)]) }, vec![Stop(4), ReloadComplete { serving: 2 }]),
        ]);
    }

    #[test]
    fn announcing_and_ending_table() {
        let failing = |workers: Vec<Seen>| Situation {
            boot_failures: BOOT_FAILURES,
            crashes: 5,
            ..with(workers)
        };
        #[rustfmt::skip]
        check(vec![
            ("announce once the target is ready",
                Situation { announced: false, ..with(vec![ready(1), ready(2)]) }, vec![AnnounceReady]),
            ("no announcement short of the target",
                Situation { announced: false, ..with(vec![ready(1), starting(2)]) }, vec![]),
            ("announced once only", with(vec![ready(1), ready(2)]), vec![]),
            ("stopping: wait for the workers to go, start none",
                Situation { stopping: true, ..with(vec![draining(1)]) }, vec![]),
            ("stopping, none left: end",
                Situation { stopping: true, ..with(vec![]) }, vec![Ended(End::Stopped)]),
            ("giving up: wait for the workers to go",
                Situation { giving_up: true, ..with(vec![draining(1)]) }, vec![]),
            ("giving up, none left: end",
                Situation { giving_up: true, ..with(vec![]) }, vec![Ended(End::BootFailed)]),
            ("giving up comes before stopping",
                Situation { giving_up: true, stopping: true, ..with(vec![]) }, vec![Ended(End::BootFailed)]),
            ("failing to start, no watcher: give up, kill the rest",
                failing(vec![starting(1), draining(2)]), vec![GiveUp, Kill(1), Kill(2)]),
            ("failing to start, no watcher, none left: give up and end",
                failing(vec![]), vec![GiveUp, Ended(End::BootFailed)]),
            ("one failure short: keep trying, one at a time",
                Situation { boot_failures: BOOT_FAILURES - 1, ..failing(vec![]) }, vec![Spawn(1)]),
            ("failing, but one worker is ready: keep trying",
                failing(vec![ready(1)]), vec![Spawn(1)]),
            ("failing with a watcher: say it waits for a change, keep trying",
                Situation { watching: true, ..failing(vec![]) }, vec![WaitForChange, Spawn(1)]),
            ("waiting for a change already: said once",
                Situation { watching: true, waiting_for_change: true, ..failing(vec![]) }, vec![Spawn(1)]),
        ]);
    }

    #[test]
    fn backoff_table() {
        let ms = Duration::from_millis;
        let rows = [
            (1, ms(100)),
            (2, ms(200)),
            (3, ms(400)),
            (7, ms(6400)),
            (8, MAX_BACKOFF),
            (17, MAX_BACKOFF),
            (u32::MAX, MAX_BACKOFF),
        ];
        for (crashes, want) in rows {
            assert_eq!(backoff(crashes), want, "after {crashes} crash(es)");
        }
    }
}
