//! Sharing a listening socket evenly between worker processes.
//!
//! Workers inherit the same listening sockets, and the kernel wakes every one of them for a
//! new connection: whichever runs first takes it. After a burst (a load balancer or a
//! benchmark opening its keep-alive pool) one worker could hold nearly all the connections,
//! and with keep-alive their load for good, while the others idle. So workers keep a
//! *board* in memory the master shares with them (a shared memory file, one [`Seat`] per worker): each
//! counts its open connections there, and a worker woken for a connection lets it wait for
//! a worker with fewer — for at most [`MAX_DEFER`], as that worker may be too busy to run
//! its accept loop — before taking it itself. A least-connections balance, decided by the
//! workers themselves, that keeps everything the shared socket gives: a connection never
//! waits for a dead or restarting worker, Unix sockets and systemd's sockets work the same,
//! and a reload needs no new sockets.
//!
//! The master hands out the seats ([`Board`]) and frees a worker's seat when the process
//! ends, however it ends; the worker ([`Share`]) takes part from its first accept to the
//! end of its accept loops.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::Peer;

/// Seats on a board: worker processes at once, counting a reload's new generation beside
/// the old one. A worker started when every seat is taken accepts without looking.
pub const SEATS: usize = 1024;

/// Longest a connection waits for a worker with fewer connections to take it.
const MAX_DEFER: Duration = Duration::from_millis(20);

/// One worker's place on the board. `pid` is 0 while no worker accepts from this seat.
#[repr(C)]
struct Seat {
    pid: AtomicU32,
    open: AtomicU32,
}

const BOARD_BYTES: usize = SEATS * std::mem::size_of::<Seat>();

/// A shared mapping of the board; unmapped on drop.
struct Mapping(NonNull<Seat>);

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: RawFd) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of an fd we hold, checked for failure; its length
        // is the shared file's size, set before any mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BOARD_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(ptr.cast::<Seat>())
            .map(Mapping)
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))
    }

    fn seats(&self) -> &[Seat] {
        // SAFETY: the mapping holds SEATS seats (zero-filled by the shared file, and all-zero is
        // a valid Seat of atomics) and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), SEATS) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; no reference to it outlives `self`.
        unsafe {
            libc::munmap(self.0.as_ptr().cast(), BOARD_BYTES);
        }
    }
}

/// The master's side: the board and which seats are handed out.
pub struct Board {
    fd: OwnedFd,
    map: Mapping,
    taken: Vec<AtomicBool>,
}

impl Board {
    pub fn create() -> io::Result<Arc<Board>> {
        let fd = crate::platform::shared_memory(BOARD_BYTES)?;
        let map = Mapping::new(fd.as_raw_fd())?;
        Ok(Arc::new(Board {
            fd,
            map,
            taken: (0..SEATS).map(|_| AtomicBool::new(false)).collect(),
        }))
    }

    /// The fd workers inherit.
    pub fn fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// A free seat for a new worker, or `None` if all are taken.
    pub fn take_seat(&self) -> Option<usize> {
        self.taken.iter().position(|t| {
            t.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// The worker on `seat` has ended: whatever it left on the board is wiped.
    pub fn free_seat(&self, seat: usize) {
        if let (Some(s), Some(t)) = (self.map.seats().get(seat), self.taken.get(seat)) {
            s.pid.store(0, Ordering::Release);
            s.open.store(0, Ordering::Release);
            t.store(false, Ordering::Release);
        }
    }
}

/// A worker's side: its seat on the board the master shared.
pub struct Share {
    map: Mapping,
    seat: usize,
    pid: u32,
}

impl Share {
    /// Map the board the master passed as `fd` (closing the fd) and sit on `seat`.
    pub fn join(fd: RawFd, seat: usize) -> io::Result<Arc<Share>> {
        if seat >= SEATS {
            return Err(io::Error::other(format!("seat {seat} is not on the board")));
        }
        // SAFETY: the master passed this fd open for this process alone; the worker's spec is
        // read once, so nothing else owns it. The mapping outlives the fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let map = Mapping::new(fd.as_raw_fd())?;
        Ok(Self::sit(map, seat, std::process::id()))
    }

    fn sit(map: Mapping, seat: usize, pid: u32) -> Arc<Share> {
        let share = Share { map, seat, pid };
        share.mine().open.store(0, Ordering::Relaxed);
        share.mine().pid.store(pid, Ordering::Release);
        Arc::new(share)
    }

    fn mine(&self) -> &Seat {
        &self.map.seats()[self.seat]
    }

    /// Stop taking part: called when the accept loops end, so connections are no longer
    /// left for this worker.
    pub fn leave(&self) {
        let _ = self
            .mine()
            .pid
            .compare_exchange(self.pid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Count a connection as open on this worker until the guard is dropped.
    pub fn opened(self: &Arc<Self>) -> Opened {
        self.mine().open.fetch_add(1, Ordering::Relaxed);
        Opened(Arc::clone(self))
    }

    /// Whether another accepting worker has fewer connections open than this one.
    fn others_have_fewer(&self) -> bool {
        let mine = self.mine().open.load(Ordering::Relaxed);
        mine > 0
            && self.map.seats().iter().enumerate().any(|(i, s)| {
                i != self.seat
                    && s.pid.load(Ordering::Acquire) != 0
                    && s.open.load(Ordering::Relaxed) < mine
            })
    }

    /// Accept the next connection, leaving it first to a worker with fewer (see the module
    /// documentation).
    ///
    /// A deferring worker sleeps until its deadline and no longer: the socket stays readable
    /// while the connection waits (readiness is cleared only when an accept finds the queue
    /// empty), so waiting on readiness would return at once, and nothing announces another
    /// worker taking the connection. At the deadline it accepts what is still there; if
    /// another worker took it, the accept finds the queue empty and it waits for the next.
    pub async fn accept<L: Accept>(&self, listener: &AsyncFd<L>) -> io::Result<L::Accepted> {
        let mut deferred: Option<Instant> = None;
        loop {
            let mut ready = listener.readable().await?;
            if self.others_have_fewer() {
                let until = *deferred.get_or_insert_with(|| Instant::now() + MAX_DEFER);
                if Instant::now() < until {
                    drop(ready);
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            }
            match ready.try_io(|l| l.get_ref().accept_one()) {
                Ok(accepted) => return accepted,
                // Another worker took it first: readiness is cleared, wait for the next.
                Err(_would_block) => deferred = None,
            }
        }
    }
}

/// An open connection as the board counts it.
pub struct Opened(Arc<Share>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.mine().open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Register a listener (non-blocking) with the runtime, for [`Share::accept`].
pub fn register<L: Accept>(listener: L) -> io::Result<AsyncFd<L>> {
    // SAFETY: `L` is a std listener that owns its fd: it stays open, the same socket, until
    // the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// A non-blocking std listener whose accepted sockets become tokio streams.
pub trait Accept: AsRawFd {
    type Accepted;
    fn accept_one(&self) -> io::Result<Self::Accepted>;
}

impl Accept for std::net::TcpListener {
    type Accepted = (tokio::net::TcpStream, Peer);
    fn accept_one(&self) -> io::Result<Self::Accepted> {
        let (s, peer) = self.accept()?;
        s.set_nonblocking(true)?;
        Ok((tokio::net::TcpStream::from_std(s)?, Peer::Tcp(peer)))
    }
}

impl Accept for std::os::unix::net::UnixListener {
    type Accepted = (tokio::net::UnixStream, Peer);
    fn accept_one(&self) -> io::Result<Self::Accepted> {
        let (s, _) = self.accept()?;
        s.set_nonblocking(true)?;
        Ok((tokio::net::UnixStream::from_std(s)?, Peer::Unix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's share as `join` makes it, with a pid of the test's choosing: two
    /// "workers" in one process.
    fn share_on(board: &Board, seat: usize, pid: u32) -> Arc<Share> {
        Share::sit(Mapping::new(board.fd()).unwrap(), seat, pid)
    }

    #[test]
    fn seats_are_handed_out_and_freed() {
        let board = Board::create().unwrap();
        let a = board.take_seat().unwrap();
        let b = board.take_seat().unwrap();
        assert_ne!(a, b);
        board.free_seat(a);
        assert_eq!(board.take_seat(), Some(a));
    }

    #[test]
    fn a_worker_defers_only_to_one_with_fewer_connections() {
        let board = Board::create().unwrap();
        let (sa, sb) = (board.take_seat().unwrap(), board.take_seat().unwrap());
        let a = share_on(&board, sa, 101);
        let b = share_on(&board, sb, 102);
        assert!(!a.others_have_fewer(), "both empty: take it");
        let one = a.opened();
        assert!(a.others_have_fewer(), "1 against 0");
        assert!(!b.others_have_fewer());
        let _two = b.opened();
        assert!(!a.others_have_fewer(), "1 against 1");
        drop(one);
        assert!(!a.others_have_fewer());
        let _again = a.opened();
        let _more = a.opened();
        assert!(a.others_have_fewer(), "2 against 1");
        // A worker that stopped accepting, or died (the master wipes its seat), is not
        // waited for.
        b.leave();
        assert!(!a.others_have_fewer());
        board.free_seat(sb);
        assert!(!a.others_have_fewer());
    }

    #[tokio::test]
    async fn a_deferred_connection_is_taken_after_the_limit() {
        let board = Board::create().unwrap();
        let (sa, sb) = (board.take_seat().unwrap(), board.take_seat().unwrap());
        let a = share_on(&board, sa, 201);
        let _b = share_on(&board, sb, 202);
        let _held = a.opened();
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let addr = std.local_addr().unwrap();
        let listener = register(std).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        // B (no connections) never accepts here: A takes it once MAX_DEFER has passed.
        let (_stream, peer) = a.accept(&listener).await.unwrap();
        assert!(matches!(peer, Peer::Tcp(_)));
        assert!(started.elapsed() >= MAX_DEFER);
    }
}
