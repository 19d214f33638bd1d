//! The Python worker threads and the bounded job queue.
//!
//! Threads start lazily up to `--threads`, attach to the interpreter once for their whole
//! life (detaching while they wait), and exit after `--thread-idle-timeout` idle above
//! `--min-threads`. Idle threads form a stack: the most recently idle one is woken first, so
//! its caches stay warm.
//!
//! A new job wakes a thread at once only when no thread is running one. Otherwise the
//! hand-off monitor decides, from the busy threads' CPU time over short ticks and their
//! scheduler state: it adds a thread when they are blocked (I/O, a sleep, a database) —
//! below `BLOCKED_BELOW` of a core with none runnable, twice in a row — and lowers the
//! allowance when they saturate the GIL (above `CONTENDED_ABOVE` with one runnable), so
//! that the next thread to finish a job steps back. A thread that finishes a job takes the
//! next queued one without releasing the GIL. CPU-bound views then run on one hot thread
//! without bouncing the GIL, while I/O-bound views grow the pool to whatever they need, with
//! the same settings. What a thread does with a job is the WSGI layer's business (`wsgi/`);
//! the pool only calls the runner it was given.
//!
//! Each thread's slot holds the flight of the request it is running, so a forced shutdown can
//! cancel every request the pool holds, queued or running ([`Pool::cancel_all`]).
//!
//! | file | owns |
//! |---|---|
//! | `queue.rs` | [`Pool`], the job queue and the books the threads and the monitor keep |
//! | `threads.rs` | starting, waking and running the worker threads; how one finds its next job |
//! | `monitor.rs` | the `ferrule-handoff` thread: samples over a tick, acts on the policy |
//! | `policy.rs` | the hand-off policy as pure functions (grow, keep, shrink), with its table tests |
//!
//! What a thread's CPU clock and run state are read from is `platform/`'s ([`ThreadProbe`]).
//!
//! [`ThreadProbe`]: crate::platform::ThreadProbe

mod monitor;
pub mod outbox;
mod policy;
mod queue;
mod threads;

pub use queue::{Pool, Rejected, Runner};
