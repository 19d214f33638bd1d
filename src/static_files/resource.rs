//! A static URL's representations — the file and its precompressed siblings — with their
//! validators, and their bytes when small.
//!
//! [`load`] finds the file (`resolve.rs`), its `.br`/`.zst`/`.gz` siblings beside it in the
//! same root (skipping one older than the file), and reads files up to [`SMALL_FILE`] into
//! memory so `cache.rs` can send them as one `Bytes` without touching the disk. Larger files
//! are reopened for each response ([`Rep::open`]), which checks that the file is still the one
//! described. [`load`] blocks on the file system; `mod.rs` runs it on a look-up thread.
//! Choosing a representation and building the response is `mod.rs`'s and `response.rs`'s.

use std::collections::HashSet;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use bytes::Bytes;
use http::HeaderValue;

use super::conditional;
use super::encoding::Encoding;
use super::mime;
use super::resolve::{self, Entry, Found, RelPath, Root};
use crate::log_warn;

/// Files up to this size are kept in memory (64 KiB: the CSS, JS, icons and fonts that make
/// most static requests; larger files are sent from disk by tokio, where the copy into memory
/// would buy little).
pub const SMALL_FILE: u64 = 64 * 1024;

/// `Cache-Control` for names that carry a content hash: they never change, so a year (the
/// longest RFC 9111 suggests) and `immutable` (no revalidation on reload).
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// How a mount answers, beyond where its files are.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `--static-index`.
    pub index: bool,
    /// `Cache-Control` for names without a content hash.
    pub cache_control: HeaderValue,
    /// Names with a content hash get [`IMMUTABLE`] (static files; not media uploads, whose
    /// names a user picks).
    pub hashed_immutable: bool,
    /// Responses carry `Content-Security-Policy: sandbox` (media uploads: an uploaded page
    /// or SVG must not run script on the site's origin).
    pub sandbox: bool,
}

/// What identifies one version of a file: if any of it changes, so does the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Whole seconds since the epoch of a modification time in nanoseconds (0 before the epoch).
fn secs(mtime_ns: i128) -> u64 {
    u64::try_from(mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0)
}

/// One representation: the file itself (`coding: None`) or a precompressed sibling.
#[derive(Debug)]
pub struct Rep {
    pub coding: Option<Encoding>,
    /// Canonical path, to reopen a file that is not in memory.
    path: PathBuf,
    id: FileId,
    pub len: u64,
    /// `len` as a header value, made once.
    pub content_length: HeaderValue,
    /// `Last-Modified`, seconds since the epoch.
    pub modified: u64,
    pub etag: HeaderValue,
    pub last_modified: HeaderValue,
    /// The whole file, when it is at most [`SMALL_FILE`].
    pub content: Option<Bytes>,
}

impl Rep {
    fn new(coding: Option<Encoding>, path: PathBuf, file: File, meta: &Metadata) -> Self {
        let mut id = FileId::of(meta);
        let mut content = None;
        if id.len <= SMALL_FILE {
            // At most one byte more than a small file may hold: a file growing while it is
            // read is not followed without limit.
            let mut buf = Vec::with_capacity(id.len as usize);
            let read = (&file).take(SMALL_FILE + 1).read_to_end(&mut buf);
            // The file may have changed since `fstat`: describe it as it is after the read, and
            // keep the bytes only if they are all of that: a file that grew past SMALL_FILE, or
            // changed mid-read, is streamed instead (until it changes again). A read error
            // leaves the file to be streamed (and fail) at send time.
            let after = file.metadata().map(|m| FileId::of(&m));
            if let Ok(after) = after {
                id = after;
            }
            let whole = read.is_ok() && buf.len() as u64 == id.len;
            if whole && after.is_ok_and(|a| a == FileId::of(meta)) {
                content = Some(Bytes::from(buf));
            }
        }
        let modified = secs(id.mtime_ns);
        let etag = conditional::etag(id.mtime_ns, id.len, coding.map(Encoding::token));
        Self {
            coding,
            path,
            len: id.len,
            content_length: HeaderValue::from(id.len),
            modified,
            // Both are ASCII we formatted ourselves.
            etag: HeaderValue::from_str(&etag).expect("an entity tag is visible ASCII"),
            last_modified: HeaderValue::from_str(&conditional::http_date(modified))
                .expect("an HTTP date is visible ASCII"),
            content,
            id,
        }
    }

    /// Open the file to send it; `Ok(None)` when it is no longer the file this describes
    /// (replaced, or changed since it was loaded).
    pub fn open(&self) -> io::Result<Option<File>> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        Ok((meta.is_file() && FileId::of(&meta) == self.id).then_some(file))
    }
}

/// Everything a static URL can answer with.
#[derive(Debug)]
pub struct Resource {
    /// The file itself first, then its siblings in [`Encoding::ALL`] order.
    pub reps: Vec<Rep>,
    codings: Vec<Encoding>,
    pub content_type: &'static str,
    pub cache_control: HeaderValue,
    /// When the files were last checked, in the cache's milliseconds.
    checked: AtomicU64,
    /// When this was last served, in the cache's milliseconds (for eviction).
    used: AtomicU64,
}

impl Resource {
    /// The codings of the siblings.
    pub fn codings(&self) -> &[Encoding] {
        &self.codings
    }

    pub fn rep(&self, coding: Option<Encoding>) -> &Rep {
        self.reps
            .iter()
            .find(|r| r.coding == coding)
            .unwrap_or(&self.reps[0])
    }

    /// There are precompressed siblings, so responses vary with `Accept-Encoding`.
    pub fn varies(&self) -> bool {
        self.reps.len() > 1
    }

    /// Bytes this holds, counted against the cache's budget: the contents plus a rough
    /// allowance for the rest (512 bytes a representation, an estimate of the struct, its
    /// path and header values).
    pub fn cost(&self) -> usize {
        self.reps
            .iter()
            .map(|r| 512 + r.path.as_os_str().len() + r.content.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// Claim the revalidation due at `now` (true for one caller only).
    pub fn claim_check(&self, last: u64, now: u64) -> bool {
        self.checked
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn touch(&self, now: u64) {
        if self.used.load(Ordering::Relaxed) != now {
            self.used.store(now, Ordering::Relaxed);
        }
    }

    fn ids(&self) -> impl Iterator<Item = (Option<Encoding>, FileId)> + '_ {
        self.reps.iter().map(|r| (r.coding, r.id))
    }
}

/// Siblings already named in a warning, so each is named once (while it stays stale; the
/// set is emptied when it reaches 4096 names, an arbitrary bound on its memory).
static STALE_WARNED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Mutex::default);

/// A sibling at least this much older than its file (one second, in nanoseconds) may hold an
/// old version of it, and is not served.
// Not any older: files copied without their times (`cp` without `-p`) get times a moment
// apart in whatever order they were copied, and must not be taken for stale. A second is the
// resolution of `Last-Modified`. (`gzip -k`, `brotli` and `zstd` give the output the input's
// time.)
const STALE_NS: i128 = 1_000_000_000;

fn warn_stale(sibling: &Path, original: &Path) {
    let mut warned = STALE_WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned.contains(sibling) {
        return;
    }
    if warned.len() >= 4096 {
        warned.clear();
    }
    warned.insert(sibling.to_path_buf());
    log_warn!(
        "not serving '{}': it is older than '{}', so it may hold an old version of it; compress the file again, or if the sibling is current give it the file's time (touch -r '{}' '{}')",
        sibling.display(),
        original.display(),
        original.display(),
        sibling.display()
    );
}

/// What a look-up of a mount's path found.
pub enum Loaded {
    Resource(Resource),
    /// Same files as `previous`: nothing was read.
    Unchanged,
    /// A directory asked for without its trailing `/` (with `--static-index`).
    AddSlash,
    Missing,
}

/// Find `rel` in `roots` and load it. With `previous` (a cached resource being revalidated),
/// files are only read when something changed.
pub fn load(
    roots: &[Root],
    rel: &RelPath<'_>,
    policy: &Policy,
    previous: Option<&Resource>,
    now: u64,
) -> io::Result<Loaded> {
    let (root, name, path, file, meta) = match resolve::find(roots, rel, policy.index)? {
        Found::File {
            root,
            name,
            path,
            file,
            meta,
        } => (root, name, path, file, meta),
        Found::AddSlash => return Ok(Loaded::AddSlash),
        Found::Missing => return Ok(Loaded::Missing),
    };
    let modified_ns = FileId::of(&meta).mtime_ns;
    let mut found = vec![(None, path, file, meta)];
    for coding in Encoding::ALL {
        let mut sibling = name.clone();
        sibling.extend_from_slice(coding.suffix().as_bytes());
        if let Entry::File { path, file, meta } = resolve::open_beneath(&roots[root].dir, &sibling)?
        {
            if FileId::of(&meta).mtime_ns <= modified_ns - STALE_NS {
                warn_stale(&path, &found[0].1);
                continue;
            }
            found.push((Some(coding), path, file, meta));
        }
    }
    if let Some(prev) = previous {
        if prev
            .ids()
            .eq(found.iter().map(|(c, _, _, m)| (*c, FileId::of(m))))
        {
            return Ok(Loaded::Unchanged);
        }
    }
    let file_name = name.rsplit(|&b| b == b'/').next().unwrap_or(&name);
    let cache_control = if policy.hashed_immutable && mime::is_hashed_name(file_name) {
        IMMUTABLE
    } else {
        policy.cache_control.clone()
    };
    let reps: Vec<Rep> = found
        .into_iter()
        .map(|(coding, path, file, meta)| Rep::new(coding, path, file, &meta))
        .collect();
    Ok(Loaded::Resource(Resource {
        codings: reps.iter().filter_map(|r| r.coding).collect(),
        reps,
        content_type: mime::content_type(file_name),
        cache_control,
        checked: AtomicU64::new(now),
        used: AtomicU64::new(now),
    }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, SystemTime};

    use super::super::resolve::relative;
    use super::*;

    fn policy() -> Policy {
        Policy {
            index: false,
            cache_control: HeaderValue::from_static("public, max-age=1"),
            hashed_immutable: true,
            sandbox: false,
        }
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_sibling_older_than_its_file_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (name, mtime) in [
            ("app.css", t),
            // Less than a second older (a copy a moment apart): current.
            ("app.css.br", t - Duration::from_millis(999)),
            // A second or more older: stale.
            ("app.css.gz", t - Duration::from_secs(1)),
            ("app.css.zst", t + Duration::from_secs(60)),
        ] {
            std::fs::write(root.join(name), name).unwrap();
            set_mtime(&root.join(name), mtime);
        }
        let roots = [Root {
            dir: root,
            prefix: Vec::new(),
        }];
        let rel = relative("app.css").unwrap();
        let Loaded::Resource(res) = load(&roots, &rel, &policy(), None, 0).unwrap() else {
            panic!("app.css not loaded");
        };
        assert_eq!(res.codings(), [Encoding::Br, Encoding::Zstd]);
        // Revalidation sees the same files (the stale one still left out).
        assert!(matches!(
            load(&roots, &rel, &policy(), Some(&res), 1).unwrap(),
            Loaded::Unchanged
        ));
    }

    #[test]
    fn a_small_file_that_grew_past_the_limit_is_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing.log");
        std::fs::write(&path, b"small").unwrap();
        let file = File::open(&path).unwrap();
        let small = file.metadata().unwrap();
        // It grows between the fstat and the read.
        let mut w = File::options().append(true).open(&path).unwrap();
        w.write_all(&vec![b'x'; SMALL_FILE as usize * 2]).unwrap();
        let rep = Rep::new(None, path.clone(), file, &small);
        assert!(rep.content.is_none());
        assert_eq!(rep.len, SMALL_FILE * 2 + 5);
        // The file as described now is the one a response opens.
        assert!(rep.open().unwrap().is_some());
        // A file that does not change is held in memory.
        let file = File::open(&path).unwrap();
        std::fs::write(&path, b"small again").unwrap();
        let meta = file.metadata().unwrap();
        let rep = Rep::new(None, path, file, &meta);
        assert_eq!(rep.content.as_deref(), Some(&b"small again"[..]));
    }
}
