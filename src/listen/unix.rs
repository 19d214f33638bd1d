//! Unix-domain listeners: the stale-socket check, the mode, and unlinking on exit.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The socket file ferrule created; removed when dropped, if it is still ours.
pub struct UnixSocketFile {
    path: PathBuf,
    inode: u64,
}

impl UnixSocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        // Another process may have replaced the file since (a new server started on the same
        // path during a reload); only remove the socket we made.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
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
            inode,
        },
    ))
}
