//! The watcher against a real temporary directory and real inotify events.
//!
//! "Nothing happened" is never waited for: a test that expects a change to be ignored makes
//! it, then changes a sentinel file, and checks that the next batch names only the sentinel.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::*;

/// A batch that does not come within this long is a failure, not a slow machine.
const PATIENCE: Duration = Duration::from_secs(10);

struct Site {
    dir: TempDir,
    watcher: Watcher,
}

impl Site {
    fn new(files: &[&str]) -> Site {
        Site::with(files, &[], &[])
    }

    fn with(files: &[&str], include: &[&str], exclude: &[&str]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            write(&dir.path().join(file), "x = 1\n");
        }
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let watcher = Watcher::new(
            dir.path(),
            Filter::new(&owned(include), &owned(exclude)).unwrap(),
        )
        .unwrap();
        Site { dir, watcher }
    }

    /// `rel` under the (canonical) root.
    fn path(&self, rel: &str) -> PathBuf {
        self.watcher.root().join(rel)
    }

    async fn batch(&mut self) -> Vec<PathBuf> {
        tokio::time::timeout(PATIENCE, self.watcher.changed())
            .await
            .expect("no batch within 10 s")
    }

    /// Touch the sentinel and return the next batch, which must end with it.
    async fn batch_after_sentinel(&mut self) -> Vec<PathBuf> {
        write(&self.path("sentinel.py"), "# sentinel\n");
        let batch = self.batch().await;
        assert!(batch.contains(&self.path("sentinel.py")), "{batch:?}");
        batch
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_write_to_a_watched_file_is_one_batch_naming_it() {
    let mut site = Site::new(&["app/views.py"]);
    write(&site.path("app/views.py"), "x = 2\n");
    assert_eq!(site.batch().await, vec![site.path("app/views.py")]);
}

#[tokio::test]
async fn touch_create_rename_and_delete_are_changes() {
    let mut site = Site::new(&["a.py", "b.py", "templates/page.html"]);
    // touch: only the modification time changes.
    let file = fs::File::options()
        .append(true)
        .open(site.path("a.py"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(file);
    assert_eq!(site.batch().await, vec![site.path("a.py")]);

    write(&site.path("templates/new.html"), "<p>\n");
    assert_eq!(site.batch().await, vec![site.path("templates/new.html")]);

    fs::rename(site.path("b.py"), site.path("c.py")).unwrap();
    assert_eq!(
        site.batch().await,
        vec![site.path("b.py"), site.path("c.py")]
    );

    fs::remove_file(site.path("templates/page.html")).unwrap();
    assert_eq!(site.batch().await, vec![site.path("templates/page.html")]);
}

#[tokio::test]
async fn excluded_files_are_ignored() {
    let mut site = Site::new(&[".git/HEAD", "app/__pycache__/m.cpython-311.pyc", "app/m.py"]);
    write(&site.path(".git/HEAD"), "ref: refs/heads/other\n");
    write(&site.path(".git/x.py"), "x\n");
    write(&site.path("app/__pycache__/m.cpython-311.pyc"), "\0");
    write(&site.path("app/m.py~"), "backup\n");
    write(&site.path("app/.m.py.swp"), "swap\n");
    write(&site.path("app/static.js"), "js\n");
    assert_eq!(
        site.batch_after_sentinel().await,
        vec![site.path("sentinel.py")]
    );
}

#[tokio::test]
async fn reading_a_file_is_not_a_change() {
    let mut site = Site::new(&["app/m.py"]);
    fs::read(site.path("app/m.py")).unwrap();
    assert_eq!(
        site.batch_after_sentinel().await,
        vec![site.path("sentinel.py")]
    );
}

#[tokio::test]
async fn virtualenvs_are_not_watched_whatever_their_name() {
    let mut site = Site::new(&["env/pyvenv.cfg", "env/lib/site.py", "app.py"]);
    assert!(!site.watcher.dirs.contains(&site.path("env")));
    write(&site.path("env/lib/site.py"), "x = 2\n");
    assert_eq!(
        site.batch_after_sentinel().await,
        vec![site.path("sentinel.py")]
    );
}

#[tokio::test]
async fn a_burst_of_writes_is_one_batch() {
    let mut site = Site::new(&["m.py", "n.py"]);
    for i in 0..20 {
        write(
            &site.path(if i % 2 == 0 { "m.py" } else { "n.py" }),
            &format!("x = {i}\n"),
        );
    }
    assert_eq!(
        site.batch().await,
        vec![site.path("m.py"), site.path("n.py")]
    );
    // No second batch left over from the burst.
    assert_eq!(
        site.batch_after_sentinel().await,
        vec![site.path("sentinel.py")]
    );
}

#[tokio::test]
async fn an_editor_save_by_rename_is_a_change() {
    let mut site = Site::new(&["app/views.py"]);
    // vim's default: probe the directory, move the original to a backup, write anew, drop
    // the backup. Others write a temporary file and rename it over the original.
    write(&site.path("app/4913"), "");
    fs::remove_file(site.path("app/4913")).unwrap();
    fs::rename(site.path("app/views.py"), site.path("app/views.py~")).unwrap();
    write(&site.path("app/views.py"), "x = 2\n");
    fs::remove_file(site.path("app/views.py~")).unwrap();
    assert_eq!(site.batch().await, vec![site.path("app/views.py")]);

    write(&site.path("app/.views.py.tmp123"), "x = 3\n");
    fs::rename(site.path("app/.views.py.tmp123"), site.path("app/views.py")).unwrap();
    assert_eq!(site.batch().await, vec![site.path("app/views.py")]);
}

#[tokio::test]
async fn files_given_outside_the_root_are_watched() {
    let mut site = Site::new(&["app.py"]);
    let outside = tempfile::tempdir().unwrap();
    let lib = outside.path().canonicalize().unwrap().join("lib.py");
    let other = lib.with_file_name("other.py");
    write(&lib, "x = 1\n");
    assert_eq!(site.watcher.watch_files(std::slice::from_ref(&lib)), 1);
    assert_eq!(site.watcher.watch_files(std::slice::from_ref(&lib)), 0);

    write(&other, "not given\n");
    write(&lib, "x = 2\n");
    assert_eq!(site.batch().await, vec![lib.clone()]);

    // Saved by renaming a new file over it: the directory watch still sees it.
    write(&lib.with_file_name("lib.py.new"), "x = 3\n");
    fs::rename(lib.with_file_name("lib.py.new"), &lib).unwrap();
    assert_eq!(site.batch().await, vec![lib]);
}

#[tokio::test]
async fn a_new_directory_is_watched_with_what_is_already_in_it() {
    let mut site = Site::new(&["app.py"]);
    write(&site.path("pkg/sub/mod.py"), "x = 1\n");
    let batch = site.batch().await;
    assert!(batch.contains(&site.path("pkg/sub/mod.py")), "{batch:?}");
    write(&site.path("pkg/sub/mod.py"), "x = 2\n");
    assert_eq!(site.batch().await, vec![site.path("pkg/sub/mod.py")]);
}

#[tokio::test]
async fn a_removed_package_is_a_change_and_can_come_back() {
    let mut site = Site::new(&["pkg/__init__.py", "app.py"]);
    fs::rename(site.path("pkg"), site.dir.path().join("old_pkg")).unwrap();
    let batch = site.batch().await;
    assert!(batch.contains(&site.path("pkg")), "{batch:?}");
    // Watched again under its new name.
    write(&site.path("old_pkg/__init__.py"), "x = 2\n");
    assert_eq!(site.batch().await, vec![site.path("old_pkg/__init__.py")]);
}

#[tokio::test]
async fn a_cancelled_wait_keeps_its_events() {
    let mut site = Site::new(&["m.py"]);
    write(&site.path("m.py"), "x = 2\n");
    // Cancelled before the burst is quiet (the write's events are read, then dropped with
    // the future), then waited for again.
    let early = tokio::time::timeout(Duration::from_millis(1), site.watcher.changed()).await;
    let batch = match early {
        Ok(batch) => batch,
        Err(_) => site.batch().await,
    };
    assert_eq!(batch, vec![site.path("m.py")]);
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let err = Watcher::new(
        Path::new("/nonexistent/ferrule"),
        Filter::new(&[], &[]).unwrap(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("cannot watch '/nonexistent/ferrule' for reloading"),
        "{err}"
    );
}

/// The delay from a write to its batch, over 20 writes: `cargo test --lib -- --ignored
/// --nocapture reload_latency`. Recorded in `bench/reload_latency.md`.
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn reload_latency() {
    let mut site = Site::new(&["m.py"]);
    let mut took = Vec::new();
    for i in 0..20 {
        let start = std::time::Instant::now();
        write(&site.path("m.py"), &format!("x = {i}\n"));
        assert_eq!(site.batch().await, vec![site.path("m.py")]);
        took.push(start.elapsed());
    }
    took.sort();
    println!(
        "write -> batch over 20 writes (QUIET = {QUIET:?}): min {:?}, median {:?}, max {:?}",
        took[0], took[10], took[19]
    );
}

/// What watching a tree costs at start-up: `FERRULE_WATCH_ROOT=demo cargo test --lib --
/// --ignored --nocapture watch_setup_cost` (default: the repository).
#[test]
#[ignore = "a measurement, not a test"]
fn watch_setup_cost() {
    let root = std::env::var("FERRULE_WATCH_ROOT").unwrap_or_else(|_| ".".to_owned());
    let start = std::time::Instant::now();
    let watcher = Watcher::new(Path::new(&root), Filter::new(&[], &[]).unwrap()).unwrap();
    println!(
        "watching {}: {} directories in {:?}",
        watcher.root().display(),
        watcher.dirs.len(),
        start.elapsed()
    );
}

#[test]
fn a_watcher_can_move_into_a_task() {
    fn send<T: Send + 'static>() {}
    send::<Watcher>();
}
