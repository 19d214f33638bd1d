//! The development-reload watcher: which files changed, in debounced batches.
//!
//! [`Watcher`] puts an inotify watch (through the `notify` crate, no polling) on every
//! directory under the project root that the exclude globs do not prune, plus the directory
//! of each file given to [`Watcher::watch_files`] (the source files of the modules a worker
//! imported, wherever they live). Events are filtered by [`Filter`] (`config/reload.rs`) and
//! gathered until the burst has been quiet for [`QUIET`], then handed out as one batch by
//! [`Watcher::changed`]. Deciding what a batch means (restarting the worker) is the master's
//! job; which modules a worker imported is `python/ferrule/_reload.py`'s.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant;

pub use crate::config::reload::{Filter, DEFAULT_EXCLUDE, DEFAULT_INCLUDE};

use crate::error::Error;
use crate::{log_debug, log_warn};

/// A batch is handed out once no relevant event has arrived for this long. Editors save in
/// bursts (vim: write `4913`, rename the original to `file~`, write the file, chmod, delete
/// the backup) that take a few milliseconds; a `git checkout` takes longer but rarely pauses
/// for 100 ms. 100 ms is the figure the issue suggested; it is most of the delay between a save
/// and the batch (see `bench/reload_latency.md`).
pub const QUIET: Duration = Duration::from_millis(100);

/// A batch is handed out at the latest this long after its first event, even if events keep
/// coming (a file rewritten in a loop would otherwise hold back every reload). 1 s was chosen
/// arbitrarily: long enough for most `git checkout`s to land in one batch.
pub const LONGEST: Duration = Duration::from_secs(1);

/// Watches a project directory and individual files, and yields debounced batches of changed
/// paths.
pub struct Watcher {
    // The inotify instance and its thread; dropping it stops the watch.
    inner: RecommendedWatcher,
    events: UnboundedReceiver<notify::Result<Event>>,
    /// The canonical project root.
    root: PathBuf,
    filter: Filter,
    /// Directories holding an inotify watch (canonical paths).
    dirs: HashSet<PathBuf>,
    /// Files given to `watch_files`: canonical directory joined with the file name.
    files: HashSet<PathBuf>,
    pending: BTreeSet<PathBuf>,
    first: Option<Instant>,
    last: Option<Instant>,
    // The inotify limit is logged once, not once per directory.
    warned_limit: bool,
    warned_error: bool,
}

/// How to get more watches: inotify's own limit on Linux; elsewhere (kqueue on FreeBSD keeps an
/// open file per watched directory) the open-files limit.
const RAISE_THE_LIMIT: &str = if cfg!(target_os = "linux") {
    "raise it with `sysctl fs.inotify.max_user_watches=524288`"
} else {
    "raise the open-files limit (`ulimit -n`)"
};

impl Watcher {
    /// Watch `root` recursively for files matching `include` but not `exclude` (globs relative
    /// to `root`, `--reload-include`/`--reload-exclude` syntax; both are added to the defaults).
    pub fn new(root: &Path, filter: Filter) -> Result<Watcher, Error> {
        let root = root.canonicalize().map_err(|e| {
            Error::config(format!(
                "cannot watch '{}' for reloading: {e}",
                root.display()
            ))
        })?;
        let (tx, events) = unbounded_channel();
        // The handler runs on notify's thread; a send only fails once `events` is dropped,
        // which is when nobody wants the events any more.
        let inner = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| {
            Error::runtime(if cfg!(target_os = "linux") {
                format!(
                    "cannot start the reload watcher: {e}; if too many inotify instances are \
                     open, raise `sysctl fs.inotify.max_user_instances`"
                )
            } else {
                format!("cannot start the reload watcher: {e}")
            })
        })?;
        let mut watcher = Watcher {
            inner,
            events,
            root: root.clone(),
            filter,
            dirs: HashSet::new(),
            files: HashSet::new(),
            pending: BTreeSet::new(),
            first: None,
            last: None,
            warned_limit: false,
            warned_error: false,
        };
        watcher.add_tree(&root, false);
        log_debug!(
            "watching {} directories under {} for reloading",
            watcher.dirs.len(),
            root.display()
        );
        Ok(watcher)
    }

    /// The canonical project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Also watch these files, inside the root or not, even where the globs would not. Their
    /// directories are watched (not the files themselves), so an editor that saves by writing
    /// a new file and renaming it over the old one is seen. Relative paths are taken from the
    /// current directory; files whose directory does not exist are skipped. Returns how many
    /// files were not watched before.
    pub fn watch_files(&mut self, files: &[PathBuf]) -> usize {
        let mut added = 0;
        for file in files {
            let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
                continue;
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let Ok(dir) = dir.canonicalize() else {
                log_debug!("not watching {}: its directory is gone", file.display());
                continue;
            };
            if self.files.insert(dir.join(name)) {
                added += 1;
            }
            if !self.dirs.contains(&dir) {
                self.add_dir(&dir);
            }
        }
        added
    }

    /// The next batch of changed paths (sorted, canonical directories), once events have been
    /// quiet for [`QUIET`]. Cancel-safe: events seen by a cancelled call stay in the next batch.
    pub async fn changed(&mut self) -> Vec<PathBuf> {
        loop {
            let deadline = self.deadline();
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return self.take();
            }
            let quiet = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.absorb(event),
                    // notify's thread is gone (it panicked): nothing more will come.
                    None if self.pending.is_empty() => std::future::pending::<()>().await,
                    None => return self.take(),
                },
                () = quiet => return self.take(),
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        Some((self.last? + QUIET).min(self.first? + LONGEST))
    }

    fn take(&mut self) -> Vec<PathBuf> {
        self.first = None;
        self.last = None;
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    fn mark(&mut self, path: PathBuf) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.pending.insert(path);
    }

    fn absorb(&mut self, event: notify::Result<Event>) {
        let event = match event {
            Ok(event) => event,
            Err(e) => return self.warn(&e),
        };
        if event.need_rescan() {
            // The kernel's queue overflowed: something changed, we cannot tell what.
            let root = self.root.clone();
            return self.mark(root);
        }
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            // Reads (the worker importing a module) must not reload it, and a rename's `Both`
            // is also reported as a `From` and a `To`, with one path each.
            EventKind::Access(_) | EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                return;
            }
            _ => {}
        }
        let dir_event = matches!(event.kind, EventKind::Create(CreateKind::Folder))
            || matches!(
                event.kind,
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any))
            );
        let gone = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
        );
        for path in event.paths {
            if gone && self.forget_dirs(&path) {
                // A directory of the project went away (notify already dropped its watches):
                // the modules in it did too.
                self.mark(path);
            } else if dir_event && path.is_dir() {
                if self
                    .under_root(&path)
                    .is_some_and(|rel| !self.prunes(&path, &rel))
                {
                    self.add_tree(&path, true);
                }
            } else if self.wants(&path) {
                self.mark(path);
            }
        }
    }

    /// Whether a file event at `path` belongs in a batch.
    fn wants(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self
                .under_root(path)
                .is_some_and(|rel| self.filter.wants(&rel))
    }

    fn under_root(&self, path: &Path) -> Option<PathBuf> {
        path.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }

    fn prunes(&self, dir: &Path, rel: &Path) -> bool {
        self.filter.prunes(rel) || is_virtualenv(dir)
    }

    /// Stop tracking `path` and the directories under it; true if it was a watched directory
    /// under the root.
    fn forget_dirs(&mut self, path: &Path) -> bool {
        let before = self.dirs.len();
        self.dirs.retain(|d| !d.starts_with(path));
        before != self.dirs.len() && path.starts_with(&self.root)
    }

    /// Watch `top` and every directory under it that is not pruned. `fresh`: the tree appeared
    /// while running, so files already in it were created before their watch and are changes.
    fn add_tree(&mut self, top: &Path, fresh: bool) {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !self.add_dir(&dir) {
                continue;
            }
            // An unreadable directory is watched but not entered; nothing in it can be loaded.
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                // Symbolic links are not followed: a link to a parent would loop, and a link
                // into a virtualenv would watch it.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    let rel = self.under_root(&path).unwrap_or_default();
                    if !self.prunes(&path, &rel) {
                        stack.push(path);
                    }
                } else if fresh && self.wants(&path) {
                    self.mark(path);
                }
            }
        }
    }

    /// Put a non-recursive inotify watch on `dir`; false if that failed.
    fn add_dir(&mut self, dir: &Path) -> bool {
        match self.inner.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_path_buf());
                true
            }
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    if !self.warned_limit {
                        self.warned_limit = true;
                        log_warn!(
                            "cannot watch {} for reloading: the watch limit is reached, so \
                             changes there and in other directories will not reload the worker; \
                             {RAISE_THE_LIMIT}, or exclude big directories with --reload-exclude",
                            dir.display()
                        );
                    }
                } else {
                    // Mostly a directory removed between listing and watching.
                    log_debug!("cannot watch {} for reloading: {e}", dir.display());
                }
                false
            }
        }
    }

    fn warn(&mut self, e: &notify::Error) {
        if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
            if !self.warned_limit {
                self.warned_limit = true;
                log_warn!(
                    "the watch limit is reached: new directories will not be watched for \
                     reloading; {RAISE_THE_LIMIT}"
                );
            }
        } else if !self.warned_error {
            self.warned_error = true;
            log_warn!("the reload watcher reported an error (reloading goes on): {e}");
        }
    }
}

/// A directory with a `pyvenv.cfg` is a virtualenv, whatever its name (`env`, `.venv-3.12`).
fn is_virtualenv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

#[cfg(test)]
mod tests;
