//! The hand-off policy, as pure functions of what the monitor sampled: [`look`] says whether
//! there is anything to measure, [`judge`] what one measured tick means for the pool (grow,
//! keep or shrink, the next allowance and the count of blocked ticks). Sampling the threads
//! is `sample.rs`'s; waiting, waking and logging are the monitor's (`monitor.rs`).

use std::time::Duration;

use crate::platform::RunState;

/// How long the monitor watches the busy threads before deciding. Short enough that an
/// I/O-bound pool reaches 32 threads in well under 100 ms; long enough that a CPU-bound
/// thread's usage is measured over many scheduler slices. Chosen by measurement (bench/).
pub(super) const TICK: Duration = Duration::from_millis(2);

/// With no room to grow, only shrinking is left to judge, and the monitor looks this many
/// times less often. 10 was chosen arbitrarily: shrinking is not urgent.
const SLOW_TICK_FACTOR: u32 = 10;

/// Busy threads that used less than this fraction of one core during a tick are blocked,
/// and the GIL has room for another thread.
const BLOCKED_BELOW: f64 = 0.75;

/// Busy threads that used more than this fraction of one core, one of them runnable, are
/// competing for a saturated GIL: the pool steps down by one thread. Well above what a pool
/// of I/O-bound threads uses (32 threads each running 0.5 ms of Python per 50 ms request use
/// about a third of a core), below what two CPU-bound threads use even when other processes
/// take some of the CPU.
const CONTENDED_ABOVE: f64 = 0.8;

/// Whether busy threads that used `load` of a core during a tick saturate it, so that
/// finished replies may wait a moment for others to be handed over with (`outbox.rs`): the
/// threads' CPU, not what they wait for, bounds the pool, and the core has time to spare.
pub(super) fn saturated(load: f64) -> bool {
    load > CONTENDED_ABOVE
}

/// Blocked ticks in a row before another thread is woken: a single one may catch the busy
/// threads waiting out a short GIL hold by another thread (logging, say) rather than blocked
/// in I/O.
const BLOCKED_TICKS: u32 = 2;

/// The same where the platform cannot say whether a thread is runnable (FreeBSD; Linux built
/// `portable`). A tick counts as blocked there when the busy threads used little CPU and no
/// thread of the process was preempted during it; but a thread that other processes starve is
/// preempted only when it runs, and on a loaded machine it can wait on a run queue for a few
/// ticks between slices. 25 ticks (50 ms) outlast such a wait: a scheduler's slice is a few
/// milliseconds, so a runnable thread runs, and is preempted, within them. 10 ticks did not:
/// with six CPU-bound processes on two cores, a CPU-bound view was taken for blocked in one
/// run of five. The cost is a slower start for I/O-bound views: a thread per 50 ms.
const BLOCKED_TICKS_UNSEEN: u32 = 25;

/// The pool's books as the monitor reads them under the lock, before a tick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Books {
    pub closing: bool,
    /// Jobs waiting.
    pub queued: usize,
    /// Threads running a job.
    pub busy: usize,
    /// Threads woken (or being started) that have not picked a job yet.
    pub waking: usize,
    /// An idle thread to wake, or room under `--threads` to start one.
    pub room: bool,
}

/// What the monitor does next, before measuring anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// The pool is closing: the monitor ends.
    Stop,
    /// Nothing to decide (no job waits, or the pool can neither grow nor shrink): wait to
    /// be told of a change.
    Wait,
    /// Jobs wait and no thread runs or is about to: wake one at once, no measuring needed.
    WakeFirst,
    /// Measure the busy threads over this long, then [`judge`].
    Measure(Duration),
}

/// Whether the monitor has anything to measure.
pub(super) fn look(books: &Books) -> Look {
    if books.closing {
        Look::Stop
    } else if books.queued == 0 || !(books.room || books.busy > 1) {
        Look::Wait
    } else if books.busy + books.waking == 0 {
        Look::WakeFirst
    } else if books.room {
        Look::Measure(TICK)
    } else {
        Look::Measure(TICK * SLOW_TICK_FACTOR)
    }
}

/// One measured tick, and the books around it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sampled {
    /// Busy threads measured (none when every thread counted busy had only been woken).
    pub measured: usize,
    /// The CPU time they used over the tick, as a fraction of one core.
    pub load: f64,
    /// At the end of the tick: `Runnable` if any of them was (running or waiting for a CPU),
    /// `Waiting` if all were in blocking calls, `Unknown` if the platform cannot tell.
    pub state: RunState,
    /// Whether a thread of the process was preempted during the tick (read only where the
    /// state is unknown).
    pub preempted: bool,
    /// Whether there was room to grow when the tick began.
    pub room: bool,
    /// Jobs waiting at the end of the tick.
    pub queued: usize,
    /// Threads running a job at the end of the tick.
    pub busy: usize,
    /// Threads woken that had not picked a job yet at the end of the tick.
    pub waking: usize,
    /// The allowance before this tick (how many threads may run jobs at once).
    pub allowed: usize,
    /// `--threads`.
    pub max_threads: usize,
    /// Blocked ticks in a row before this one.
    pub blocked_ticks: u32,
}

/// What a tick means for the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The busy threads are blocked: wake (or start) another thread.
    Grow,
    /// Nothing to change.
    Keep,
    /// The busy threads compete for the GIL: the next one to finish a job steps back.
    Shrink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    pub step: Step,
    /// The allowance from now on.
    pub allowed: usize,
    /// Blocked ticks in a row, this one included, for the next call.
    pub blocked_ticks: u32,
}

/// What a measured tick means: grow when the busy threads were blocked (below
/// [`BLOCKED_BELOW`] of a core, none runnable) for [`BLOCKED_TICKS`] ticks in a row and there
/// is room; shrink when they saturate a core (from [`CONTENDED_ABOVE`], one runnable) and
/// more than one is busy; keep otherwise. Where the state is unknown, a tick in which a thread
/// of the process was preempted is not blocked, [`BLOCKED_TICKS_UNSEEN`] blocked ticks are
/// needed, and contended needs no runnable thread. A runnable thread is never blocked, however
/// little
/// CPU it got: it is starved by other processes, not waiting on I/O.
pub(super) fn judge(s: &Sampled) -> Decision {
    let keep = |blocked_ticks| Decision {
        step: Step::Keep,
        allowed: s.allowed,
        blocked_ticks,
    };
    if s.measured == 0 || s.queued == 0 || s.waking > 0 {
        // Nothing measured, nothing waits any more, or a thread is already on its way: no
        // verdict, and the count of blocked ticks stands.
        return keep(s.blocked_ticks);
    }
    let (blocked, needed) = match s.state {
        RunState::Waiting => (s.load < BLOCKED_BELOW, BLOCKED_TICKS),
        RunState::Unknown => (s.load < BLOCKED_BELOW && !s.preempted, BLOCKED_TICKS_UNSEEN),
        RunState::Runnable => (false, BLOCKED_TICKS),
    };
    if blocked {
        let blocked_ticks = s.blocked_ticks + 1;
        if s.room && blocked_ticks >= needed {
            return Decision {
                step: Step::Grow,
                allowed: (s.busy + 1).min(s.max_threads).max(s.allowed),
                blocked_ticks: 0,
            };
        }
        return keep(blocked_ticks);
    }
    if s.load >= CONTENDED_ABOVE && s.state != RunState::Waiting && s.busy > 1 {
        return Decision {
            step: Step::Shrink,
            allowed: s.busy - 1,
            blocked_ticks: 0,
        };
    }
    keep(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(queued: usize, busy: usize, waking: usize, room: bool) -> Books {
        Books {
            closing: false,
            queued,
            busy,
            waking,
            room,
        }
    }

    #[test]
    fn look_table() {
        let closing = Books {
            closing: true,
            ..books(3, 1, 0, true)
        };
        let rows: &[(&str, Books, Look)] = &[
            ("closing ends the monitor", closing, Look::Stop),
            ("no job waits", books(0, 2, 0, true), Look::Wait),
            (
                "no room and one busy: nothing to grow or shrink",
                books(3, 1, 0, false),
                Look::Wait,
            ),
            ("no room, none busy", books(3, 0, 0, false), Look::Wait),
            (
                "jobs wait, no thread runs or wakes",
                books(1, 0, 0, true),
                Look::WakeFirst,
            ),
            (
                "no room but two busy: shrinking to judge",
                books(1, 2, 0, false),
                Look::Measure(TICK * 10),
            ),
            (
                "a thread is waking: measure the busy ones",
                books(1, 0, 1, true),
                Look::Measure(TICK),
            ),
            (
                "jobs wait behind a busy thread",
                books(1, 1, 0, true),
                Look::Measure(TICK),
            ),
        ];
        for (rule, books, want) in rows {
            assert_eq!(look(books), *want, "{rule}");
        }
    }

    /// A measured tick: two busy threads sampled, a job still waiting, no thread waking,
    /// `--threads 8`.
    fn tick(
        load: f64,
        state: RunState,
        room: bool,
        busy: usize,
        allowed: usize,
        blocked_ticks: u32,
    ) -> Sampled {
        Sampled {
            measured: 2,
            load,
            state,
            preempted: false,
            room,
            queued: 1,
            busy,
            waking: 0,
            allowed,
            max_threads: 8,
            blocked_ticks,
        }
    }

    /// (load, run state, room, busy, allowed, blocked ticks before)
    type Given = (f64, RunState, bool, usize, usize, u32);
    /// (step, allowed, blocked ticks after)
    type Want = (Step, usize, u32);

    #[test]
    fn judge_table() {
        use RunState::{Runnable as R, Waiting as W};
        use Step::{Grow, Keep, Shrink};
        #[rustfmt::skip]
        let rows: &[(&str, Given, Want)] = &[
            // rule                                                     (load, state, room, busy, allowed, ticks) (step, allowed, ticks)
            ("blocked once: wait for a second look",                     (0.1,  W, true,  2, 2, 0), (Keep,   2, 1)),
            ("blocked twice in a row: grow",                             (0.1,  W, true,  2, 2, 1), (Grow,   3, 0)),
            ("no growth without room",                                   (0.1,  W, false, 2, 2, 1), (Keep,   2, 2)),
            ("blocked again without room: keep counting",                (0.1,  W, false, 2, 2, 2), (Keep,   2, 3)),
            ("growth stops at --threads",                                (0.1,  W, true,  8, 8, 1), (Grow,   8, 0)),
            ("growth never lowers the allowance",                        (0.1,  W, true,  2, 5, 1), (Grow,   5, 0)),
            ("just under the blocked line",                              (0.74, W, true,  2, 2, 1), (Grow,   3, 0)),
            ("at the blocked line: not blocked, the streak ends",        (0.75, W, true,  2, 2, 1), (Keep,   2, 0)),
            ("a CPU-starved runnable thread is not blocked",             (0.1,  R, true,  2, 2, 1), (Keep,   2, 0)),
            ("contended, one runnable, two busy: shrink",                (0.95, R, true,  2, 2, 0), (Shrink, 1, 0)),
            ("at the contended line: shrink",                            (0.8,  R, true,  2, 2, 0), (Shrink, 1, 0)),
            ("contended without room: shrink all the same",              (0.95, R, false, 3, 3, 0), (Shrink, 2, 0)),
            ("shrinking sets the allowance one below the busy",          (1.9,  R, true,  4, 2, 0), (Shrink, 3, 0)),
            ("contended with one busy: keep the one",                    (1.0,  R, true,  1, 1, 0), (Keep,   1, 0)),
            ("saturated but none runnable: keep",                        (0.95, W, true,  2, 2, 0), (Keep,   2, 0)),
            ("between the lines: keep, and a blocked streak ends",       (0.78, R, true,  2, 2, 1), (Keep,   2, 0)),
        ];
        for &(rule, given, want) in rows {
            let (load, state, room, busy, allowed_before, ticks_before) = given;
            check(
                rule,
                &tick(load, state, room, busy, allowed_before, ticks_before),
                want,
            );
        }
    }

    /// `judge` of `sampled` is `want`, or the failure names `rule`.
    fn check(rule: &str, sampled: &Sampled, (step, allowed, blocked_ticks): Want) {
        let want = Decision {
            step,
            allowed,
            blocked_ticks,
        };
        assert_eq!(judge(sampled), want, "{rule}");
    }

    #[test]
    fn judge_without_a_run_state() {
        use Step::{Grow, Keep, Shrink};
        let unseen = |load, preempted, blocked_ticks| Sampled {
            preempted,
            ..tick(load, RunState::Unknown, true, 2, 2, blocked_ticks)
        };
        let rows: &[(&str, Sampled, Want)] = &[
            (
                "a stopped clock: one more blocked tick",
                unseen(0.1, false, 1),
                (Keep, 2, 2),
            ),
            (
                "a stopped clock for 25 ticks: grow",
                unseen(0.1, false, 24),
                (Grow, 3, 0),
            ),
            (
                "preempted: starved, not blocked",
                unseen(0.1, true, 24),
                (Keep, 2, 0),
            ),
            ("at the blocked line", unseen(0.75, false, 24), (Keep, 2, 0)),
            (
                "contended, two busy: shrink",
                unseen(0.95, false, 0),
                (Shrink, 1, 0),
            ),
            (
                "contended and preempted: shrink",
                unseen(0.95, true, 0),
                (Shrink, 1, 0),
            ),
        ];
        for &(rule, sampled, want) in rows {
            check(rule, &sampled, want);
        }
    }

    #[test]
    fn judge_keeps_the_streak_when_the_tick_says_nothing() {
        let blocked_again = tick(0.1, RunState::Waiting, true, 2, 2, 1);
        let rows: &[(&str, Sampled)] = &[
            (
                "nothing measured (only woken threads were busy)",
                Sampled {
                    measured: 0,
                    load: 0.0,
                    ..blocked_again
                },
            ),
            (
                "the queue emptied during the tick",
                Sampled {
                    queued: 0,
                    ..blocked_again
                },
            ),
            (
                "a thread was woken during the tick",
                Sampled {
                    waking: 1,
                    ..blocked_again
                },
            ),
        ];
        for (rule, sampled) in rows {
            let want = Decision {
                step: Step::Keep,
                allowed: 2,
                blocked_ticks: 1,
            };
            assert_eq!(judge(sampled), want, "{rule}: keep, and the streak stands");
        }
    }
}
