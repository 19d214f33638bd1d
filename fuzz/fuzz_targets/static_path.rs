//! Static path resolution: a request path → mount → checked relative path → file, against a
//! real tree with symlinks that lead out of the root.
//!
//! Invariants: no panic; a relative path that passed the checks has no empty, `.`, `..` or
//! hidden segment (but `.well-known`), no `\` and no NUL, once decoded; a file found is inside
//! the root it was found in (canonical path, symlinks resolved) and is never one of the files
//! outside the roots.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use _ferrule::fuzzing::{find, relative, under, Found, Root};
use libfuzzer_sys::fuzz_target;

/// The mounts' tree, made once: `base/root` and `base/vendor` are roots, `base/outside` is
/// not; symlinks inside the roots point both inside and out.
struct Tree {
    _base: tempfile::TempDir,
    roots: Vec<Root>,
    outside: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let base = tempfile::tempdir().expect("a temporary directory for the tree");
        let b = std::fs::canonicalize(base.path()).expect("the temporary directory exists");
        let mk = |p: &str| std::fs::create_dir_all(b.join(p)).expect("mkdir in the tree");
        let write = |p: &str, s: &str| std::fs::write(b.join(p), s).expect("write in the tree");
        let link = |to: &str, at: &str| {
            std::os::unix::fs::symlink(to, b.join(at)).expect("symlink in the tree");
        };
        for d in [
            "root/css",
            "root/sub",
            "root/.well-known",
            "root/.git",
            "vendor/js",
            "outside/dir",
        ] {
            mk(d);
        }
        write("root/a.txt", "a");
        write("root/css/app.css", "css");
        write("root/sub/index.html", "index");
        write("root/.env", "SECRET");
        write("root/.git/config", "SECRET");
        write("root/.well-known/security.txt", "contact");
        write("root/a b.txt", "space");
        write("vendor/js/lib.js", "js");
        write("outside/secret", "SECRET");
        write("outside/dir/secret", "SECRET");
        link("../outside/secret", "root/escape");
        link(
            b.join("outside").to_str().expect("a UTF-8 temp path"),
            "root/escapedir",
        );
        link("a.txt", "root/inside");
        link("../../outside", "root/css/up");
        link("../root/a.txt", "vendor/cross");
        let roots = vec![
            Root {
                dir: b.join("root"),
                prefix: Vec::new(),
            },
            Root {
                dir: b.join("vendor"),
                prefix: b"vendor/".to_vec(),
            },
        ];
        Tree {
            roots,
            outside: b.join("outside"),
            _base: base,
        }
    })
}

fn check_relative(rel: &[u8]) {
    if rel.is_empty() {
        return;
    }
    for seg in rel.split(|&b| b == b'/') {
        assert!(!seg.is_empty(), "empty segment in {rel:?}");
        assert!(seg != b"." && seg != b"..", "dot segment in {rel:?}");
        assert!(
            !seg.contains(&0) && !seg.contains(&b'\\'),
            "NUL or \\ in {rel:?}"
        );
        assert!(
            seg[0] != b'.' || seg == b".well-known",
            "hidden segment in {rel:?}"
        );
    }
}

fn inside(path: &Path, root: &Path) -> bool {
    let canonical = std::fs::canonicalize(path).expect("a file found exists");
    canonical.starts_with(root)
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let t = tree();
    for mount in ["/static/", "/"] {
        let Some(rest) = under(path, mount) else {
            continue;
        };
        assert!(path.ends_with(rest), "{rest:?} is not the end of {path:?}");
        let Ok(rel) = relative(rest) else {
            continue;
        };
        check_relative(&rel.path);
        for index in [false, true] {
            let found = find(&t.roots, &rel, index).expect("no descriptor exhaustion here");
            if let Found::File { root, path, .. } = found {
                let dir = &t.roots[root].dir;
                assert!(
                    inside(&path, dir),
                    "{path:?} is outside {dir:?} (request {rest:?})"
                );
                assert!(!path.starts_with(&t.outside), "{path:?} escaped");
                let body = std::fs::read(&path).expect("a file found is readable");
                assert_ne!(body, b"SECRET", "{path:?} served for {rest:?}");
            }
        }
    }
});
