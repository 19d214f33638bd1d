//! From a request path to a file inside one of a mount's roots, without ever leaving the root.
//!
//! Two steps. [`under`] and [`relative`] work on the URL alone: is the path under the mount,
//! and is what follows a plain relative path once percent-decoded — no `.`/`..` or empty
//! segments (so no absolute path either), no encoded `/`, no `\`, no NUL, no dotfiles (except
//! `.well-known`). [`find`] then looks in each root in turn, and [`open_beneath`] accepts a
//! file only if its canonical path (symlinks resolved) is still inside the canonical root, and
//! then only if the file it actually opened is (see [`opened_inside`]).
//! Everything refused here is a 404 to the client; building responses is `response.rs`'s.
//!
//! The file system calls here block: `mod.rs` runs them on its look-up threads
//! (`lookups.rs`).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use percent_encoding::percent_decode;

use crate::{log_debug, log_warn};

/// One directory of a mount, with the sub-path it answers for (Django's
/// `STATICFILES_DIRS = [("vendor", dir)]` serves `STATIC_URL/vendor/…` from `dir`).
#[derive(Debug, Clone)]
pub struct Root {
    /// Canonical (absolute, symlinks resolved).
    pub dir: PathBuf,
    /// Empty, or decoded segments each followed by `/`.
    pub prefix: Vec<u8>,
}

/// The raw (still percent-encoded) rest of `raw_path` after `mount_url` (which starts and ends
/// with `/`), or `None` when the path is not under the mount. Segments are compared decoded,
/// so `/st%61tic/x` is under `/static/` and `/static%2Fx` is not.
pub fn under<'a>(raw_path: &'a str, mount_url: &str) -> Option<&'a str> {
    if let Some(rest) = raw_path.strip_prefix(mount_url) {
        return Some(rest);
    }
    if !raw_path.contains('%') {
        return None;
    }
    let mut rest = raw_path.strip_prefix('/')?;
    for want in mount_url[1..].split_terminator('/') {
        let (seg, after) = rest.split_once('/')?;
        if !percent_decode(seg.as_bytes()).eq(want.bytes()) {
            return None;
        }
        rest = after;
    }
    Some(rest)
}

/// A checked path relative to a mount: decoded segments joined by `/`.
#[derive(Debug, PartialEq, Eq)]
pub struct RelPath<'a> {
    /// Without the trailing `/` of a directory request; empty for the mount itself.
    pub path: Cow<'a, [u8]>,
    /// The request ended with `/` (or named the mount itself): a directory is wanted.
    pub dir: bool,
}

/// Decode and check what follows the mount; the error says why it was refused (for the
/// debug log only).
pub fn relative(raw: &str) -> Result<RelPath<'_>, &'static str> {
    let (body, dir) = match raw.strip_suffix('/') {
        Some(b) => (b, true),
        None => (raw, raw.is_empty()),
    };
    let escaped = body.contains('%');
    let mut decoded = Vec::new();
    for (i, seg) in body.split('/').enumerate() {
        if body.is_empty() {
            break;
        }
        let seg: Cow<'_, [u8]> = percent_decode(seg.as_bytes()).into();
        check_segment(&seg)?;
        if escaped {
            if i > 0 {
                decoded.push(b'/');
            }
            decoded.extend_from_slice(&seg);
        }
    }
    let path = if escaped {
        Cow::Owned(decoded)
    } else {
        Cow::Borrowed(body.as_bytes())
    };
    Ok(RelPath { path, dir })
}

fn check_segment(seg: &[u8]) -> Result<(), &'static str> {
    if seg.is_empty() {
        return Err("an empty path segment (an absolute path?)");
    }
    if seg == b"." || seg == b".." {
        return Err("a '.' or '..' path segment");
    }
    if seg.contains(&b'/') {
        return Err("an encoded '/' in a path segment");
    }
    if seg.contains(&b'\\') {
        return Err("a backslash in the path");
    }
    if seg.contains(&0) {
        return Err("a NUL byte in the path");
    }
    if seg[0] == b'.' && seg != b".well-known" {
        return Err("a hidden file or directory (a name starting with '.')");
    }
    Ok(())
}

/// What a name in a root turned out to be.
// Short-lived return values: boxing the big variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Entry {
    /// A regular file inside the root, opened; `path` is its canonical path.
    File {
        path: PathBuf,
        file: File,
        meta: Metadata,
    },
    Dir,
    /// Absent, outside the root, unreadable, or not a regular file or directory.
    Missing,
}

/// Open `rel` (checked by [`relative`]) under the canonical `root`, refusing anything whose
/// canonical path leaves it. `Err` only for failures that are not about this one file (out of
/// file descriptors, say).
pub fn open_beneath(root: &Path, rel: &[u8]) -> io::Result<Entry> {
    let candidate = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    };
    let canonical = match std::fs::canonicalize(&candidate) {
        Ok(p) => p,
        Err(e) if is_about_this_file(&e) => return Ok(Entry::Missing),
        Err(e) => return Err(e),
    };
    if !canonical.starts_with(root) {
        log_debug!(
            "refused static file '{}': it resolves to '{}', outside '{}'",
            candidate.display(),
            canonical.display(),
            root.display()
        );
        return Ok(Entry::Missing);
    }
    open_checked(root, canonical)
}

/// Open `path`, a canonical path inside `root` when it was resolved, and check that the file
/// opened is still inside `root`.
fn open_checked(root: &Path, path: PathBuf) -> io::Result<Entry> {
    // O_NOFOLLOW refuses a last component swapped for a symlink since `canonicalize`;
    // `opened_inside` catches a directory above it swapped for one. O_NONBLOCK keeps a FIFO
    // from blocking the open (it is then refused as not a regular file); it changes nothing
    // for reading regular files.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if is_about_this_file(&e) => return Ok(Entry::Missing),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Ok(Entry::Dir);
    }
    if !meta.is_file() {
        return Ok(Entry::Missing);
    }
    if !opened_inside(&file, root) {
        log_warn!(
            "refused static file '{}': the file opened is outside '{}' (a directory on the way was replaced by a symlink while it was being opened)",
            path.display(),
            root.display()
        );
        return Ok(Entry::Missing);
    }
    Ok(Entry::File { path, file, meta })
}

/// Is the file behind `file` inside `root`? `canonicalize` then `open` is a race: a directory
/// on the path can be replaced by a symlink in between, and `O_NOFOLLOW` only guards the last
/// component. The kernel's own name for the open descriptor (`/proc/self/fd/N` on Linux,
/// `fcntl(F_GETPATH)` on macOS, `fcntl(F_KINFO)` on FreeBSD: `platform::open_path`) says
/// where the file really is. (`openat2` with `RESOLVE_BENEATH` would close the race in the kernel,
/// but refuses absolute symlinks that stay inside the root, which are allowed here.)
///
/// Where the kernel cannot say (Linux without `/proc`, FreeBSD before 13.1) the check cannot
/// be made: a warning says so once and files are accepted on the canonical path alone, as
/// before the check existed.
fn opened_inside(file: &File, root: &Path) -> bool {
    match crate::platform::open_path(file) {
        Ok(real) => real.starts_with(root),
        Err(e) => {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                log_warn!("cannot check where opened static files really are ({e}); on Linux, mount /proc so that a directory replaced by a symlink mid-request cannot expose a file outside a static directory");
            });
            true
        }
    }
}

fn is_about_this_file(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::PermissionDenied
    ) || matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENAMETOOLONG | libc::ENXIO)
    )
}

/// Where a request for a mount's `rel` leads.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Found {
    /// A file in `roots[root]`, reached as `name` under it (`rel`, or `rel/index.html`).
    File {
        root: usize,
        name: Vec<u8>,
        path: PathBuf,
        file: File,
        meta: Metadata,
    },
    /// A directory asked for without its trailing `/`, with `--static-index` on.
    AddSlash,
    Missing,
}

/// Look for `rel` in each root in order; the first regular file wins. A directory gives its
/// `index.html` when `index` is on and the request ended with `/`.
pub fn find(roots: &[Root], rel: &RelPath<'_>, index: bool) -> io::Result<Found> {
    if rel.dir && !index {
        return Ok(Found::Missing);
    }
    let mut saw_dir = false;
    for (i, root) in roots.iter().enumerate() {
        let sub: &[u8] = if root.prefix.is_empty() {
            &rel.path
        } else if root.prefix.strip_suffix(b"/") == Some(&*rel.path) {
            b""
        } else if let Some(s) = rel.path.strip_prefix(root.prefix.as_slice()) {
            s
        } else {
            continue;
        };
        let name = if rel.dir {
            let mut n = sub.to_vec();
            if !n.is_empty() {
                n.push(b'/');
            }
            n.extend_from_slice(b"index.html");
            n
        } else if sub.is_empty() {
            // The root's prefix itself without a trailing slash: a directory.
            saw_dir = true;
            continue;
        } else {
            sub.to_vec()
        };
        match open_beneath(&root.dir, &name)? {
            Entry::File { path, file, meta } => {
                return Ok(Found::File {
                    root: i,
                    name,
                    path,
                    file,
                    meta,
                })
            }
            Entry::Dir => saw_dir = true,
            Entry::Missing => {}
        }
    }
    Ok(if saw_dir && index && !rel.dir {
        Found::AddSlash
    } else {
        Found::Missing
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_mount() {
        for (path, mount, want) in [
            ("/static/app.css", "/static/", Some("app.css")),
            ("/static/", "/static/", Some("")),
            ("/static", "/static/", None),
            ("/staticx/a", "/static/", None),
            ("/other/a", "/static/", None),
            ("/st%61tic/a", "/static/", Some("a")),
            ("/static%2Fa", "/static/", None),
            ("/static%2fa/b", "/static/", None),
            ("/a/b/c", "/a/b/", Some("c")),
            ("/a/%62/c", "/a/b/", Some("c")),
            ("/anything", "/", Some("anything")),
            ("/my%20files/x", "/my files/", Some("x")),
            ("*", "/", None),
        ] {
            assert_eq!(under(path, mount), want, "{path} under {mount}");
        }
    }

    fn rel(raw: &str) -> Result<(String, bool), &'static str> {
        relative(raw).map(|r| (String::from_utf8_lossy(&r.path).into_owned(), r.dir))
    }

    #[test]
    fn relative_paths_accepted() {
        for (raw, path, dir) in [
            ("app.css", "app.css", false),
            ("css/app.css", "css/app.css", false),
            ("", "", true),
            ("css/", "css", true),
            ("a%20b.css", "a b.css", false),
            ("%63ss/app.css", "css/app.css", false),
            (
                ".well-known/security.txt",
                ".well-known/security.txt",
                false,
            ),
            ("caf%C3%A9.txt", "café.txt", false),
            ("a..b", "a..b", false),
            ("x.", "x.", false),
        ] {
            assert_eq!(rel(raw), Ok((path.to_owned(), dir)), "{raw}");
        }
    }

    #[test]
    fn traversal_and_oddities_refused() {
        for raw in [
            "../etc/passwd",
            "css/../../etc/passwd",
            "..",
            ".",
            "./app.css",
            "%2e%2e/etc/passwd",
            "%2E%2E%2Fetc%2Fpasswd",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "..%2f..%2fetc%2fpasswd",
            "css%2fapp.css",
            "/etc/passwd",
            "//etc/passwd",
            "css//app.css",
            "..\\..\\etc\\passwd",
            "css%5capp.css",
            "app.css%00.png",
            "app%00",
            ".env",
            ".git/config",
            "css/.hidden",
            "%2eenv",
            ".well-known/../.env",
        ] {
            assert!(relative(raw).is_err(), "{raw} should be refused");
        }
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let other = base.path().join("other");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("sub/index.html"), b"index").unwrap();
        std::fs::write(other.join("secret"), b"secret").unwrap();
        std::fs::write(other.join("b.txt"), b"b").unwrap();
        std::os::unix::fs::symlink(other.join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(&other, root.join("escapedir")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("inside")).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("relative")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let other = std::fs::canonicalize(other).unwrap();
        (base, root, other)
    }

    fn kind(e: &Entry) -> &'static str {
        match e {
            Entry::File { .. } => "file",
            Entry::Dir => "dir",
            Entry::Missing => "missing",
        }
    }

    #[test]
    fn symlinks_may_not_leave_the_root() {
        let (_base, root, _) = tree();
        for (rel, want) in [
            ("a.txt", "file"),
            ("inside", "file"),
            ("relative", "file"),
            ("sub", "dir"),
            ("", "dir"),
            ("escape", "missing"),
            ("escapedir/b.txt", "missing"),
            ("nope", "missing"),
            ("a.txt/x", "missing"),
        ] {
            let got = open_beneath(&root, rel.as_bytes()).unwrap();
            assert_eq!(kind(&got), want, "{rel}");
        }
    }

    #[test]
    fn a_file_opened_outside_the_root_is_refused() {
        // What `open_beneath` opens after a directory on the canonical path was swapped for a
        // symlink: a path that passes through a link to outside the root.
        let (_base, root, other) = tree();
        let swapped = root.join("escapedir").join("b.txt");
        assert_eq!(kind(&open_checked(&root, swapped).unwrap()), "missing");
        // The same file opened as part of its own root is fine.
        let direct = other.join("b.txt");
        assert_eq!(kind(&open_checked(&other, direct).unwrap()), "file");
        let file = File::open(other.join("secret")).unwrap();
        assert!(!opened_inside(&file, &root));
        assert!(opened_inside(&file, &other));
        assert_eq!(
            crate::platform::open_path(&file).unwrap(),
            other.join("secret")
        );
    }

    #[test]
    fn roots_are_searched_in_order_with_prefixes() {
        let (_base, root, other) = tree();
        let roots = [
            Root {
                dir: root.clone(),
                prefix: Vec::new(),
            },
            Root {
                dir: other.clone(),
                prefix: b"vendor/".to_vec(),
            },
        ];
        let look = |raw: &str, index: bool| {
            let r = relative(raw).unwrap();
            match find(&roots, &r, index).unwrap() {
                Found::File { root, name, .. } => {
                    format!("{root}:{}", String::from_utf8_lossy(&name))
                }
                Found::AddSlash => "add-slash".to_owned(),
                Found::Missing => "missing".to_owned(),
            }
        };
        assert_eq!(look("a.txt", false), "0:a.txt");
        assert_eq!(look("vendor/b.txt", false), "1:b.txt");
        assert_eq!(look("b.txt", false), "missing");
        assert_eq!(look("vendor/secret", false), "1:secret");
        assert_eq!(look("sub", false), "missing");
        assert_eq!(look("sub/", false), "missing");
        assert_eq!(look("sub", true), "add-slash");
        assert_eq!(look("sub/", true), "0:sub/index.html");
        assert_eq!(look("", true), "missing");
        assert_eq!(look("vendor", true), "add-slash");
        assert_eq!(look("vendor", false), "missing");
        assert_eq!(look("vendorb.txt", false), "missing");
        assert_eq!(look("a.txt/", true), "missing");
    }

    #[test]
    fn fifos_are_not_files() {
        let (_base, root, _) = tree();
        let fifo = root.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(kind(&open_beneath(&root, b"pipe").unwrap()), "missing");
    }
}
