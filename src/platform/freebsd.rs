//! FreeBSD's calls. Not compiled on the machines ferrule is developed on (they have no Rust
//! standard library for FreeBSD): each call was checked against the `libc` crate's definitions
//! in `src/unix/bsd/freebsdlike/` (libc 0.2.191), cited below by item and file. A thread's CPU
//! time and (absent) run state are `posix.rs`'s.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Resident memory of process `pid`: `sysctl(CTL_KERN, KERN_PROC, KERN_PROC_PID, pid)`'s
/// `kinfo_proc.ki_rssize`, in pages.
///
/// `libc`: `sysctl(name: *const c_int, namelen: c_uint, oldp: *mut c_void, oldlenp: *mut
/// size_t, newp: *const c_void, newlen: size_t) -> c_int` (`freebsdlike/mod.rs`); `CTL_KERN:
/// c_int = 1`, `KERN_PROC: c_int = 14`, `KERN_PROC_PID: c_int = 1` (`freebsdlike/freebsd/
/// mod.rs`); `struct kinfo_proc { ki_structsize: c_int, .., ki_rssize: segsz_t, .. }` in each
/// of `freebsd/freebsd1{1,2,3,4,5}/mod.rs`, with `segsz_t = isize`.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let pid = libc::c_int::try_from(pid).ok()?;
    let mut mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    // SAFETY: a plain C struct of integers and arrays, for which all-zero is valid.
    let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::kinfo_proc>();
    // SAFETY: `mib` holds the 4 names given; `info` is valid for writes of `len` bytes, which
    // the kernel updates to what it wrote.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            4,
            (&raw mut info).cast(),
            &raw mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 || len != std::mem::size_of::<libc::kinfo_proc>() {
        return None;
    }
    let pages = u64::try_from(info.ki_rssize).ok()?;
    Some(pages * super::page_size())
}

/// Bytes written to `socket` that the peer has not acknowledged (TCP) or read (Unix):
/// `ioctl(FIONWRITE)`, the send buffer's count, as Linux's `SIOCOUTQ`.
///
/// `libc`: `FIONWRITE: c_ulong = 0x40046677` (`freebsdlike/freebsd/mod.rs`); `ioctl(fd: c_int,
/// request: c_ulong, ...) -> c_int` (`unix/bsd/mod.rs`).
pub fn unacknowledged(socket: &impl AsRawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONWRITE writes one int through the pointer, which points at a live c_int;
    // the descriptor is open for as long as `socket` is.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONWRITE, &raw mut queued) };
    (rc == 0).then(|| usize::try_from(queued).unwrap_or(0))
}

/// Where the file behind `file` really is: `fcntl(F_KINFO)` (FreeBSD 13.1 and later) fills a
/// `kinfo_file` whose `kf_path` names it.
///
/// `libc`: `F_KINFO: c_int = 22`; `struct kinfo_file { kf_structsize: c_int, .., kf_path:
/// [c_char; PATH_MAX] }` (`freebsdlike/freebsd/mod.rs`). `fcntl(2)` wants `kf_structsize` set
/// to the struct's size (`KINFO_FILE_SIZE`, which `libc` defines for x86 only).
pub fn open_path(file: &File) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a plain C struct of integers and arrays, for which all-zero is valid.
    let mut info: libc::kinfo_file = unsafe { std::mem::zeroed() };
    info.kf_structsize =
        libc::c_int::try_from(std::mem::size_of::<libc::kinfo_file>()).map_err(io::Error::other)?;
    // SAFETY: F_KINFO fills the kinfo_file `info` points at, of the size it says.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_KINFO, &raw mut info) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: kf_path is a NUL-terminated string within its array (zeroed above).
    let path = unsafe { std::ffi::CStr::from_ptr(info.kf_path.as_ptr()) };
    if path.is_empty() {
        return Err(io::Error::other("the kernel did not name the file"));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(path.to_bytes())))
}

/// Name the calling thread.
///
/// `libc`: `pthread_setname_np(thread: pthread_t, name: *const c_char) -> c_int`
/// (`freebsdlike/mod.rs`).
pub fn name_this_thread(name: &std::ffi::CStr) {
    // SAFETY: the calling thread and a NUL-terminated string, which the call copies.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
}
