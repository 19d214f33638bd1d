//! Replies a busy worker thread holds back for a moment, to wake the network core once for
//! several of them.
//!
//! Handing a reply to the core wakes its I/O thread, which usually sleeps between replies.
//! Waking a sleeping thread on another core is a system call and an inter-processor
//! interrupt, paid by the thread that wakes: `perf` put a tenth of the worker thread's time on
//! a plain Django view in that one `eventfd` write, on the 2-core VM the benchmarks run on
//! (`bench/RESULTS.md`). When jobs queue behind a thread that runs one after
//! another (a saturated CPU-bound pool), the core does not need each reply at once: every
//! waiting request already waits for several whole requests. The thread then keeps up to
//! [`HOLD_AT_MOST`] finished replies and hands them over together; waking tokio for the first
//! of a batch wakes it for all of them.
//!
//! A reply is held only when the thread took its job while at least [`HOLD_DEPTH`] others
//! waited behind it, and the monitor saw the busy threads use more than `CONTENDED_ABOVE` of
//! a core during its last tick: the threads' CPU, not what they wait for, bounds the pool.
//! An I/O-bound pool never holds one. A held reply is delivered at the first of:
//! - the thread's next look at the queue after a job, if fewer than [`HOLD_DEPTH`] jobs wait
//!   or it holds [`HOLD_AT_MOST`] replies;
//! - the thread going idle or stepping back;
//! - the monitor's next tick (`TICK`, 2 ms): a long job started behind held replies does
//!   not hold them up for longer. When the monitor stops ticking or sees the threads no
//!   longer saturate a core, it takes everything held in the same hold of the pool lock in
//!   which it forbids holding, so no reply is left without someone due to deliver it. It
//!   delivers them, as at each tick, with the lock let go.
//!
//! A reply whose client has gone is refused at once, as an unheld one is.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::threads::Slot;
use crate::job::Reply;

/// Jobs that must wait behind the one a thread takes for its reply to be held. Below it the
/// core may run short of work to queue while replies wait: each held reply is a connection
/// that cannot send its next request.
pub(super) const HOLD_DEPTH: usize = 8;

/// Replies held at most. The monitor's tick bounds how long any is held (2 ms, about a dozen
/// /plain requests on the benchmark machine), so this mostly bounds how many wait together.
/// Measured with `bench/run.py --cost` on /plain at 64 connections: 4 took back about half of
/// what 8 did, and 16 cut ferrule's own time per request from 12.9 to 8.7 µs over 8, with the
/// same p99 (`bench/RESULTS.md`).
pub(super) const HOLD_AT_MOST: usize = 16;

/// A finished reply and the channel it goes back on.
pub(super) type Held = (oneshot::Sender<Reply>, Reply);

/// One worker thread's held replies, reachable by the monitor through the thread's slot.
#[derive(Default)]
pub(super) struct Outbox {
    held: Mutex<Vec<Held>>,
}

impl Outbox {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn len(&self) -> usize {
        self.held().len()
    }

    /// Everything held, to deliver (outside the pool lock when the caller can).
    pub(super) fn take(&self) -> Vec<Held> {
        std::mem::take(&mut *self.held())
    }
}

thread_local! {
    /// This worker thread's slot, whose outbox holds its replies (set once, when it starts).
    static SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
    /// Whether the reply of the job the thread runs may be held: read on every reply without
    /// borrowing `SLOT`.
    static MAY_HOLD: Cell<bool> = const { Cell::new(false) };
}

/// The client of a reply has gone: nobody waits for it.
#[derive(Debug)]
pub struct Gone;

/// Hand `reply` to the core, or hold it if this thread's current job allows.
pub fn send(tx: oneshot::Sender<Reply>, reply: Reply) -> Result<(), Gone> {
    if MAY_HOLD.get() && !tx.is_closed() {
        SLOT.with_borrow(|slot| match slot {
            Some(slot) => {
                slot.outbox.held().push((tx, reply));
                Ok(())
            }
            None => tx.send(reply).map_err(|_| Gone),
        })
    } else {
        tx.send(reply).map_err(|_| Gone)
    }
}

/// The calling thread is the worker of `slot`: its replies may be held in `slot`'s outbox.
pub(super) fn install(slot: &Arc<Slot>) {
    SLOT.set(Some(Arc::clone(slot)));
}

/// Whether the reply of the job this thread is about to run may be held.
pub(super) fn hold(may: bool) {
    MAY_HOLD.set(may);
}

/// Hand held replies to the core. A client that went away meanwhile finds nobody reading,
/// as it would had it left just after an unheld reply.
pub(super) fn deliver(held: Vec<Held>) {
    for (tx, reply) in held {
        let _ = tx.send(reply);
    }
}

/// Everything the threads of `slots` hold.
pub(super) fn take_all(slots: &[Arc<Slot>]) -> Vec<Held> {
    let mut all = Vec::new();
    for slot in slots {
        all.append(&mut slot.outbox.take());
    }
    all
}
