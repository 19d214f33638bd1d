//! A static URL's representations — the file and its precompressed siblings — with their
//! validators, and their bytes when small.
//!
//! [`load`] finds the file (`resolve.rs`), its `.br`/`.zst`/`.gz` siblings beside it in the
//! same root, and reads files up to [`SMALL_FILE`] into memory so `cache.rs` can send them as
//! one `Bytes` without touching the disk. Larger files are reopened for each response
//! ([`Rep::open`]), which checks that the file is still the one described. Choosing a
//! representation and building the response is `mod.rs`'s and `response.rs`'s.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderValue;

use super::conditional;
use super::encoding::Encoding;
use super::mime;
use super::resolve::{self, Entry, Found, RelPath, Root};

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
    fn new(coding: Option<Encoding>, path: PathBuf, mut file: File, meta: &Metadata) -> Self {
        let mut id = FileId::of(meta);
        let content = (id.len <= SMALL_FILE).then(|| {
            let mut buf = Vec::with_capacity(id.len as usize);
            // A read error leaves the file to be streamed (and fail) at send time.
            file.read_to_end(&mut buf).ok().map(|_| Bytes::from(buf))
        });
        let content = content.flatten();
        if let Some(c) = &content {
            // The file changed size between fstat and read; describe what was read.
            id.len = c.len() as u64;
        }
        let modified = u64::try_from(meta.mtime()).unwrap_or(0);
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
    let mut found = vec![(None, path, file, meta)];
    for coding in Encoding::ALL {
        let mut sibling = name.clone();
        sibling.extend_from_slice(coding.suffix().as_bytes());
        if let Entry::File { path, file, meta } = resolve::open_beneath(&roots[root].dir, &sibling)?
        {
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
