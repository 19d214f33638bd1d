//! Unix-domain listeners: the stale-socket check, the mode, and unlinking on exit (only for
//! sockets ferrule bound; an inherited one, from `adopt.rs`, belongs to whoever made it).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The path of a Unix listener. For a socket ferrule created, it is removed when dropped, if
/// it is still ours.
pub struct UnixSocketFile {
    path: PathBuf,
    /// The inode of the socket file we made; `None` for a socket someone else made (systemd,
    /// the master process), which is theirs to remove.
    inode: Option<u64>,
}

impl UnixSocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a socket this process did not create: dropping it leaves the file alone.
    /// An abstract socket's path is shown as `@name`.
    pub fn not_owned(path: PathBuf) -> Self {
        Self { path, inode: None }
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let Some(inode) = self.inode else {
            return;
        };
        // Another process may have replaced the file since (a new server started on the same
        // path during a reload); only remove the socket we made.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == inode) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, UnixSocketFile), Error> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A server still answering on it owns it; a socket nobody answers on is stale.
            if UnixStream::connect(path).is_ok() {
                return Err(Error::listen(format!(
                    "cannot listen on unix:{shown}: another server is listening on it"
                )));
            }
            fs::remove_file(path).map_err(|e| {
                Error::listen(format!("cannot remove stale socket unix:{shown}: {e}"))
            })?;
        }
        Ok(_) => {
            return Err(Error::listen(format!(
                "cannot listen on unix:{shown}: the path exists and is not a socket; remove it or choose another path"
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::listen(format!("cannot listen on unix:{shown}: {e}"))),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::listen(format!("cannot listen on unix:{shown}: {e}")))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::listen(format!("cannot set mode {mode:o} on unix:{shown}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::listen(format!("cannot listen on unix:{shown}: {e}")))?;
    let inode = fs::symlink_metadata(path).map_or(0, |m| m.ino());
    Ok((
        listener,
        UnixSocketFile {
            path: path.to_owned(),
            inode: Some(inode),
        },
    ))
}
