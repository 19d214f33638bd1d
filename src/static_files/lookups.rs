//! The threads that look files up on disk, so that a tokio thread never waits for the file
//! system: a cache miss, a 404 or a revalidation is handed to them and awaited.
//!
//! [`THREADS`] threads share one queue. Under load a thread takes the next look-up as soon as
//! it is done with one, without sleeping, so a burst of misses costs little more than the
//! look-ups themselves. (tokio's blocking pool wakes or starts a thread for each task: under a
//! flood of 404s for made-up names it ran one thread per connection and cost about twice the
//! CPU per request.) What is looked up, and caching the answer, is `mod.rs`'s.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

/// Look-ups at once: enough to overlap a few that wait for a disk; when the files' metadata is
/// in the kernel's cache (the usual case) one thread per core is all that helps, and more only
/// contend for the queue. 4 is a judgement, not a measurement of any one machine.
pub const THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// The queue to the look-up threads; they end when it is dropped.
pub struct Lookups {
    queue: mpsc::Sender<Job>,
}

impl Lookups {
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("ferrule-static-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for a job, not while running it.
                    let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = next else { return };
                    // A panic is that look-up's failure (its caller gets no answer), not the
                    // thread's.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                })?;
        }
        Ok(Self { queue })
    }

    /// Run `f` on a look-up thread and wait for its result; `None` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .send(Box::new(move || {
                // The caller may have gone (its connection closed); the result is then dropped.
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_come_back_and_a_panic_spares_the_threads() {
        let lookups = Lookups::start(1).unwrap();
        let name = lookups
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name, Some(Some("ferrule-static-0".to_owned())));
        let panicked: Option<()> = lookups.run(|| panic!("a failed look-up")).await;
        assert_eq!(panicked, None);
        assert_eq!(lookups.run(|| 42).await, Some(42));
    }
}
