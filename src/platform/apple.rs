//! macOS's calls. Not compiled on the machines ferrule is developed on (they have no Rust
//! standard library for Apple targets): each call was checked against the `libc` crate's
//! definitions in `src/unix/bsd/apple/mod.rs` (libc 0.2.191), cited below by item.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::RunState;

/// One thread's CPU time and run state, both from one `thread_info(THREAD_BASIC_INFO)` call on
/// the thread's Mach port, readable from other threads of the process.
///
/// `libc`: `pthread_mach_thread_np(thread: pthread_t) -> mach_port_t`; `thread_info(target_act:
/// thread_inspect_t, flavor: thread_flavor_t, thread_info_out: thread_info_t,
/// thread_info_outCnt: *mut mach_msg_type_number_t) -> kern_return_t`, where `thread_inspect_t`
/// is `mach_port_t` (`c_uint`), `thread_flavor_t` and `mach_msg_type_number_t` are `natural_t`
/// (`u32`) and `thread_info_t` is `*mut integer_t`; `THREAD_BASIC_INFO: c_int = 3`;
/// `THREAD_BASIC_INFO_COUNT: mach_msg_type_number_t`; `struct thread_basic_info { user_time:
/// time_value_t, system_time: time_value_t, cpu_usage, policy, run_state: integer_t, .. }` with
/// `time_value_t { seconds: integer_t, microseconds: integer_t }`; `TH_STATE_RUNNING: c_int = 1`
/// (running or on a run queue, as Linux's `R`); `KERN_SUCCESS: c_int = 0`.
pub struct ThreadProbe {
    /// The thread's Mach port, set by the thread when it starts (0, `MACH_PORT_NULL`, until
    /// then and after it has exited).
    port: AtomicU32,
}

/// `THREAD_BASIC_INFO` (a `c_int` in `libc`) as the `thread_flavor_t` `thread_info` takes.
#[allow(clippy::cast_sign_loss)] // 3
const BASIC_INFO: libc::thread_flavor_t = libc::THREAD_BASIC_INFO as libc::thread_flavor_t;

impl ThreadProbe {
    /// Whether [`Self::is_runnable`] can say anything but `Unknown`.
    pub const TELLS_RUN_STATE: bool = true;

    pub fn new() -> Self {
        Self {
            port: AtomicU32::new(0),
        }
    }

    /// Called by the thread itself when it starts.
    pub fn attach(&self) {
        // SAFETY: pthread_self is always valid for the calling thread; the port it names is
        // the thread's own and stays valid while the thread lives.
        let port = unsafe { libc::pthread_mach_thread_np(libc::pthread_self()) };
        self.port.store(port, Ordering::Relaxed);
    }

    /// Called by the thread as it exits: its port is no longer its own.
    pub fn detach(&self) {
        self.port.store(0, Ordering::Relaxed);
    }

    fn basic_info(&self) -> Option<libc::thread_basic_info> {
        let port = self.port.load(Ordering::Relaxed);
        if port == 0 {
            return None;
        }
        // SAFETY: a plain C struct of integers, for which all-zero is valid.
        let mut info: libc::thread_basic_info = unsafe { std::mem::zeroed() };
        let mut count = libc::THREAD_BASIC_INFO_COUNT;
        // SAFETY: `info` has room for THREAD_BASIC_INFO_COUNT integers, as `count` says; a
        // port of a thread that has exited only makes the call fail.
        let rc =
            unsafe { libc::thread_info(port, BASIC_INFO, (&raw mut info).cast(), &raw mut count) };
        (rc == libc::KERN_SUCCESS).then_some(info)
    }

    /// CPU time the thread has used (user and system); zero if it has not started or has
    /// exited.
    pub fn cpu_time(&self) -> Duration {
        let Some(info) = self.basic_info() else {
            return Duration::ZERO;
        };
        let time = |t: libc::time_value_t| {
            Duration::from_secs(u64::try_from(t.seconds).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.microseconds).unwrap_or(0))
        };
        time(info.user_time) + time(info.system_time)
    }

    /// Running or on a run queue, or waiting in a blocking call.
    pub fn is_runnable(&self) -> RunState {
        match self.basic_info() {
            Some(info) if info.run_state == libc::TH_STATE_RUNNING => RunState::Runnable,
            Some(_) => RunState::Waiting,
            None => RunState::Unknown,
        }
    }
}

/// Resident memory of process `pid` (`proc_pidinfo(PROC_PIDTASKINFO)`'s `pti_resident_size`).
///
/// `libc`: `proc_pidinfo(pid: c_int, flavor: c_int, arg: u64, buffer: *mut c_void, buffersize:
/// c_int) -> c_int` (the bytes written, 0 on failure); `PROC_PIDTASKINFO: c_int = 4`; `struct
/// proc_taskinfo { pti_virtual_size: u64, pti_resident_size: u64, .. }`.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let pid = libc::c_int::try_from(pid).ok()?;
    // SAFETY: a plain C struct of integers, for which all-zero is valid.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_taskinfo>()).ok()?;
    // SAFETY: `info` is valid for writes of `size` bytes.
    let wrote =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTASKINFO, 0, (&raw mut info).cast(), size) };
    (wrote == size).then_some(info.pti_resident_size)
}

/// Bytes written to `socket` that the peer has not acknowledged (TCP) or read (Unix):
/// `getsockopt(SOL_SOCKET, SO_NWRITE)`, the send buffer's count, as Linux's `SIOCOUTQ`.
///
/// `libc`: `SO_NWRITE: c_int = 0x1024`, `SOL_SOCKET: c_int = 0xffff`; `getsockopt(socket:
/// c_int, level: c_int, name: c_int, value: *mut c_void, option_len: *mut socklen_t) -> c_int`
/// in `unix/mod.rs`.
pub fn unacknowledged(socket: &impl AsRawFd) -> Option<usize> {
    let queued = super::socket_option(socket, libc::SO_NWRITE).ok()?;
    Some(usize::try_from(queued).unwrap_or(0))
}

/// Where the file behind `file` really is: `fcntl(F_GETPATH)`, into a buffer of `MAXPATHLEN`.
///
/// `libc`: `F_GETPATH: c_int = 50`; `MAXPATHLEN: c_int = PATH_MAX = 1024` in `unix/bsd/mod.rs`;
/// `fcntl(fd: c_int, cmd: c_int, ...) -> c_int` in `unix/mod.rs`.
pub fn open_path(file: &File) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = [0u8; 1024]; // MAXPATHLEN
                               // SAFETY: F_GETPATH writes a NUL-terminated path of at most MAXPATHLEN bytes into `buf`.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let path = std::ffi::CStr::from_bytes_until_nul(&buf).map_err(io::Error::other)?;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes())))
}

/// Name the calling thread (macOS names only the caller; the system keeps 63 bytes).
///
/// `libc`: `pthread_setname_np(name: *const c_char) -> c_int`.
pub fn name_this_thread(name: &std::ffi::CStr) {
    // SAFETY: a NUL-terminated string; the call copies it.
    unsafe { libc::pthread_setname_np(name.as_ptr()) };
}
