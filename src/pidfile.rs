//! `--pid PATH`: a file naming the process that owns the listeners — the master, or the one
//! serving process — for init scripts and `kill -HUP $(cat PATH)`, as gunicorn's `--pid`.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The file, removed when this is dropped (the process is exiting) if it still names us.
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// The file `--pid` asks for, if it does, written (see [`PidFile::create`]).
    pub fn for_plan(plan: &crate::config::Plan) -> Result<Option<Self>, Error> {
        plan.supervise
            .pid_file
            .as_deref()
            .map(Self::create)
            .transpose()
    }

    /// Write this process's pid to `path`, once the listeners are bound. A file naming a
    /// process that is still running refuses the start: two servers would take each other's
    /// signals. One whose process is gone (a crash, a kill -9) is replaced.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let pid = std::process::id();
        if let Some(other) = read_pid(path).filter(|other| *other != pid && alive(*other)) {
            return Err(Error::listen(format!(
                "--pid {}: process {other} is running and the file names it; stop it first \
                 (or remove the file if that process is not a ferrule)",
                path.display()
            )));
        }
        // Written whole, then renamed into place: a reader never sees half a number.
        let mut staged = path.as_os_str().to_owned();
        staged.push(format!(".{pid}.tmp"));
        let staged = PathBuf::from(staged);
        let written = std::fs::write(&staged, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&staged, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staged);
            return Err(Error::listen(format!(
                "cannot write --pid {}: {e}",
                path.display()
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Not another process's: a second server started with the same file once ours was
        // stale (never while we run, see `create`), or an operator's edit.
        if read_pid(&self.path) == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` exists (ours or another user's).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_refused_while_alive_replaced_when_stale_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferrule.pid");
        let file = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        drop(file);
        assert!(!path.exists());
        // A live process (pid 1 always is) holds it.
        std::fs::write(&path, "1\n").unwrap();
        let refused = PidFile::create(&path).err().unwrap().to_string();
        assert!(refused.contains("process 1 is running"), "{refused}");
        // A pid no process has (above the kernel's pid_max) is stale.
        std::fs::write(&path, "99999999\n").unwrap();
        let file = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        // Someone else's by now: left alone.
        std::fs::write(&path, "1\n").unwrap();
        drop(file);
        assert_eq!(read_pid(&path), Some(1));
    }
}
