//! How the network core reaches the event loop without taking the GIL: a queue of [`Event`]s
//! and a doorbell fd the loop watches (`loop.add_reader`; an `eventfd` on Linux, a pipe
//! elsewhere: `platform/`). Any thread posts; the first post
//! after the loop last drained writes the fd once, so a burst of completions costs one
//! wake-up, and the loop drains the whole queue in one callback with the GIL it already holds.
//! What the events mean is `call.rs`'s.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::platform::Doorbell;

use super::call::Call;
use super::endpoint::Endpoint;
use super::websocket::WsCall;

/// Something the loop has to do for a request.
pub enum Event {
    /// A new request: call the application.
    Start(Arc<Call>),
    /// Something changed for a request or a WebSocket (a body chunk or a message came, the
    /// client left, a send went through): wake what waits on it.
    Ready(Arc<dyn Endpoint>),
    /// The request was cancelled `--cancel-grace` ago and its task still runs: cancel it.
    Cancel(Arc<Call>),
    /// A new WebSocket: call the application.
    StartWs(Arc<WsCall>),
}

/// The queue and the fd that wakes the loop for it.
pub struct Inbox {
    queue: Mutex<Vec<Event>>,
    /// The fd was written and the loop has not drained since.
    signalled: AtomicBool,
    bell: Doorbell,
}

impl Inbox {
    pub fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            queue: Mutex::new(Vec::with_capacity(64)),
            signalled: AtomicBool::new(false),
            bell: Doorbell::new()?,
        }))
    }

    /// The fd the loop reads when it becomes readable.
    pub fn fd(&self) -> RawFd {
        self.bell.fd()
    }

    /// Queue `event` and wake the loop if it is not woken already. Never blocks for long:
    /// the lock is held for a push.
    pub fn post(&self, event: Event) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.bell.ring();
        }
    }

    /// Everything posted since the last call, in order. Called by the loop when the fd is
    /// readable; clears it first, so a post that races with the drain wakes the loop again.
    pub fn take(&self) -> Vec<Event> {
        self.bell.clear();
        self.signalled.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
