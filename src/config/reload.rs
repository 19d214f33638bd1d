//! Which paths under the project root the reload watcher cares about: the include and exclude
//! globs of `--reload-include`/`--reload-exclude`, added to the defaults, compiled when the
//! options are resolved (a bad glob stops ferrule before anything binds).
//!
//! Globs are matched against paths relative to the root with `globset`'s defaults: `*` also
//! matches `/`, so `*.html` matches at any depth, like `**/*.html`. An exclude glob that
//! matches a directory prunes it: it is not watched at all (which keeps `node_modules` from
//! eating the inotify watch limit). Walking and watching are `supervise/watch.rs`'s job.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::Error;

/// What changes reload by default: Python modules, templates (Django's `*.html` and `*.txt`),
/// compiled translations (`*.mo`; Django reads those, not the `.po`) and `.env` files.
pub const DEFAULT_INCLUDE: &[&str] = &[
    "**/*.py",
    "**/*.html",
    "**/*.txt",
    "**/*.mo",
    "**/.env",
    "**/.env.*",
    "**/*.env",
];

/// What never reloads: version control, bytecode, virtualenvs and installed packages, tool
/// caches, JavaScript dependencies, and editors' swap, backup and lock files (vim writes a
/// `4913` to test the directory). A directory with a `pyvenv.cfg` is skipped too, whatever
/// its name.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "**/.git",
    "**/.hg",
    "**/.svn",
    "**/__pycache__",
    "**/*.py[co]",
    "**/.venv",
    "**/venv",
    "**/site-packages",
    "**/node_modules",
    "**/.tox",
    "**/.nox",
    "**/.mypy_cache",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/*.sw[a-p]",
    "**/*.swx",
    "**/*~",
    "**/4913",
    "**/.#*",
    "**/#*#",
];

/// Compiled include and exclude globs.
#[derive(Debug, Clone)]
pub struct Filter {
    include: GlobSet,
    exclude: GlobSet,
}

impl Filter {
    /// The defaults plus `include` and `exclude`. An include glob written exactly like a
    /// default exclude glob takes it out (`--reload-include '**/venv'` watches `venv/`).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, Error> {
        let includes = DEFAULT_INCLUDE
            .iter()
            .copied()
            .chain(include.iter().map(String::as_str));
        let excludes = DEFAULT_EXCLUDE
            .iter()
            .copied()
            .filter(|g| !include.iter().any(|i| i == g))
            .chain(exclude.iter().map(String::as_str));
        Ok(Filter {
            include: build("--reload-include", includes)?,
            exclude: build("--reload-exclude", excludes)?,
        })
    }

    /// Whether a change to the file at `rel` (relative to the root) reloads: it matches an
    /// include glob, and neither it nor a directory above it matches an exclude glob.
    pub fn wants(&self, rel: &Path) -> bool {
        self.include.is_match(rel)
            && !rel
                .ancestors()
                .any(|p| !p.as_os_str().is_empty() && self.exclude.is_match(p))
    }

    /// Whether the directory at `rel` (relative to the root) is left unwatched.
    pub fn prunes(&self, rel: &Path) -> bool {
        !rel.as_os_str().is_empty() && self.exclude.is_match(rel)
    }
}

fn build<'a>(option: &str, globs: impl Iterator<Item = &'a str>) -> Result<GlobSet, Error> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        // `./templates/**` means `templates/**`: paths are matched relative to the root.
        let pattern = glob.strip_prefix("./").unwrap_or(glob);
        let parsed = Glob::new(pattern).map_err(|e| {
            Error::config(format!(
                "invalid value '{glob}' for '{option}': {}",
                e.kind()
            ))
        })?;
        set.add(parsed);
    }
    set.build()
        .map_err(|e| Error::config(format!("invalid '{option}' globs: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Filter::new(&owned(include), &owned(exclude)).unwrap()
    }

    #[test]
    fn defaults_want_sources_templates_translations_and_env_files() {
        let f = filter(&[], &[]);
        for (path, wanted) in [
            ("app.py", true),
            ("pkg/sub/views.py", true),
            ("pkg/templates/base.html", true),
            ("pkg/templates/mail.txt", true),
            ("locale/fr/LC_MESSAGES/django.mo", true),
            ("locale/fr/LC_MESSAGES/django.po", false),
            (".env", true),
            ("config/.env.local", true),
            ("prod.env", true),
            ("static/app.js", false),
            ("db.sqlite3", false),
            ("pkg/__pycache__/views.cpython-311.pyc", false),
            ("views.pyc", false),
            (".git/HEAD", false),
            (".git/hooks/pre-commit.py", false),
            (
                ".venv/lib/python3.11/site-packages/django/__init__.py",
                false,
            ),
            ("venv/lib/x.py", false),
            ("node_modules/x/index.html", false),
            (".tox/py311/x.py", false),
            ("pkg/.views.py.swp", false),
            ("pkg/.views.py.swo", false),
            ("pkg/views.py~", false),
            ("pkg/4913", false),
            ("pkg/.#views.py", false),
            ("pkg/#views.py#", false),
        ] {
            assert_eq!(f.wants(Path::new(path)), wanted, "{path}");
        }
    }

    #[test]
    fn excluded_directories_are_pruned() {
        let f = filter(&[], &["static/**", "**/migrations"]);
        for (dir, pruned) in [
            ("", false),
            ("pkg", false),
            (".git", true),
            ("pkg/__pycache__", true),
            ("a/b/node_modules", true),
            ("app/migrations", true),
            // `static/**` excludes what is inside, so the directory itself stays watched.
            ("static", false),
        ] {
            assert_eq!(f.prunes(Path::new(dir)), pruned, "{dir:?}");
        }
        assert!(!f.wants(Path::new("static/x.html")));
        assert!(!f.wants(Path::new("app/migrations/0001_initial.py")));
        assert!(f.wants(Path::new("app/models.py")));
    }

    #[test]
    fn user_globs_add_to_the_defaults() {
        let f = filter(&["*.css", "./conf/*.toml"], &["*/local_settings.py"]);
        assert!(f.wants(Path::new("static/app.css")));
        assert!(f.wants(Path::new("conf/ferrule.toml")));
        assert!(f.wants(Path::new("app.py")));
        assert!(!f.wants(Path::new("site/local_settings.py")));
    }

    #[test]
    fn an_include_equal_to_a_default_exclude_takes_it_out() {
        let f = filter(&["**/venv"], &[]);
        assert!(!f.prunes(Path::new("venv")));
        assert!(f.wants(Path::new("venv/tool.py")));
    }

    #[test]
    fn a_bad_glob_names_the_option_and_the_value() {
        let owned = vec!["a[".to_owned()];
        let err = Filter::new(&[], &owned).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid value 'a[' for '--reload-exclude': "),
            "{err}"
        );
    }
}
