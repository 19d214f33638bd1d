//! Options under "Static files", and their part of the plan.
//!
//! Validates what can be checked before the application is imported: the shape of each
//! `--static URL_PATH=DIR` and that its directory exists. The Django mounts come from the
//! project's settings after the import (`static_files/django.rs`); serving is `static_files/`.

use std::path::PathBuf;

use clap::Args;

use crate::error::Error;

/// `--static-max-age` when not given: one hour. Files whose names carry no content hash may
/// change at the next deploy; an hour bounds how long a browser keeps a stale copy without
/// asking, while a visit's page views within the hour cost no request per asset. Hashed names
/// are cached for a year whatever this says, and Django's mounts use 0 while `DEBUG` is on.
pub const DEFAULT_MAX_AGE: u64 = 3600;

/// "Static files" options (flattened into [`super::Options`]).
// Each bool is an independent on/off option.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct StaticOptions {
    /// Serve the files under `DIR` at `URL_PATH` (e.g. `/assets/=./public`), from the network
    /// core without a Python thread. Repeat for several mounts; the same `URL_PATH` twice
    /// searches both directories in order. `URL_PATH` is matched against the whole request
    /// path, before `--prefix` is cut from it. Without any `--static`, the variable
    /// `FERRULE_STATIC` is read, several mounts separated by commas. Default is none.
    // No clap `env`: clap would split the flag's values at commas too (a directory may hold
    // one), or not split the variable's; `resolve` reads the variable itself.
    #[arg(
        long = "static",
        value_name = "URL_PATH=DIR",
        help_heading = "Static files"
    )]
    pub statics: Vec<String>,

    /// Do not serve Django's `STATIC_URL` (from `STATIC_ROOT`, and in development from the
    /// staticfiles finders); leave it to the application. Default is off: ferrule serves
    /// `STATIC_URL` when the settings give it a directory.
    #[arg(long, env = "FERRULE_NO_STATIC", help_heading = "Static files")]
    pub no_static: bool,

    /// Look for a Django static file that is not in `STATIC_ROOT` in the staticfiles finders'
    /// directories (`STATICFILES_DIRS`, apps' `static/`), as `runserver` does. Default is off,
    /// and on while `DEBUG` is on.
    #[arg(long, env = "FERRULE_STATIC_FINDERS", help_heading = "Static files")]
    pub static_finders: bool,

    /// Serve Django's `MEDIA_URL` from `MEDIA_ROOT` (user uploads), with
    /// `Content-Security-Policy: sandbox` so an uploaded page or SVG cannot run script on the
    /// site. Default is off.
    #[arg(long, env = "FERRULE_MEDIA", help_heading = "Static files")]
    pub media: bool,

    /// `Cache-Control: max-age` in seconds for static files whose names carry no content
    /// hash; names with one (Django's `ManifestStaticFilesStorage`) get a year and
    /// `immutable`. Default is 3600, or 0 for Django's mounts while `DEBUG` is on.
    #[arg(
        value_parser = crate::config::parse::whole::<u64>,
        long,
        value_name = "SECONDS",
        env = "FERRULE_STATIC_MAX_AGE",
        help_heading = "Static files"
    )]
    pub static_max_age: Option<u64>,

    /// Answer a request for a directory with the `index.html` inside it (a directory without
    /// a trailing slash is redirected to the one with). Default is off: directories give 404.
    #[arg(long, env = "FERRULE_STATIC_INDEX", help_heading = "Static files")]
    pub static_index: bool,
}

/// One `--static` mount, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// Starts and ends with `/`.
    pub url: String,
    pub dir: PathBuf,
}

/// The validated "Static files" options.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default)]
pub struct StaticPlan {
    /// `--static`, in the order given.
    pub mounts: Vec<StaticMount>,
    /// Serve Django's `STATIC_URL` (not `--no-static`).
    pub django_static: bool,
    pub finders: bool,
    pub media: bool,
    /// `--static-max-age` when given.
    pub max_age: Option<u64>,
    pub index: bool,
}

/// The variable `--static` reads when it is not given.
const STATIC_ENV: &str = "FERRULE_STATIC";

impl StaticOptions {
    pub fn resolve(&self) -> Result<StaticPlan, Error> {
        self.resolve_with(std::env::var_os(STATIC_ENV).as_deref())
    }

    /// `resolve` with the value of `FERRULE_STATIC` given (`None` when unset).
    fn resolve_with(&self, from_env: Option<&std::ffi::OsStr>) -> Result<StaticPlan, Error> {
        let mounts = if self.statics.is_empty() {
            match from_env {
                None => Vec::new(),
                Some(value) => {
                    let value = value.to_str().ok_or_else(|| {
                        Error::config(format!(
                            "invalid value '{}' for '{STATIC_ENV}': it is not valid UTF-8",
                            value.to_string_lossy()
                        ))
                    })?;
                    split_env(value)
                        .map(|v| parse_mount(v, STATIC_ENV))
                        .collect::<Result<_, _>>()?
                }
            }
        } else {
            self.statics
                .iter()
                .map(|v| parse_mount(v, "--static"))
                .collect::<Result<_, _>>()?
        };
        Ok(StaticPlan {
            mounts,
            django_static: !self.no_static,
            finders: self.static_finders,
            media: self.media,
            max_age: self.static_max_age,
            index: self.static_index,
        })
    }
}

/// The mounts in `FERRULE_STATIC`: comma-separated, empty items skipped. A directory whose
/// name holds a comma is given with `--static` instead.
fn split_env(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty())
}

/// Parse one `URL_PATH=DIR`, given with `option` (`--static` or the variable).
fn parse_mount(value: &str, option: &str) -> Result<StaticMount, Error> {
    let bad = |why: &str| Error::config(format!("invalid value '{value}' for '{option}': {why}"));
    let (url, dir) = value
        .split_once('=')
        .ok_or_else(|| bad("expected URL_PATH=DIR, such as /assets/=./public"))?;
    let url = normalize_url_path(url).map_err(|why| bad(&why))?;
    if dir.is_empty() {
        return Err(bad("the directory is missing after '='"));
    }
    let dir = PathBuf::from(dir);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(bad(&format!("'{}' is not a directory", dir.display()))),
        Err(e) => {
            return Err(bad(&format!(
                "cannot read directory '{}': {e}",
                dir.display()
            )))
        }
    }
    Ok(StaticMount { url, dir })
}

/// A mount's URL path as `/seg/seg/`: it must start with `/`, and may not hold `.`/`..` or
/// empty segments, or characters a request path would have to percent-encode (`%`, `?`, `#`,
/// `\`), since it is compared with the decoded request path.
pub fn normalize_url_path(url: &str) -> Result<String, String> {
    if !url.starts_with('/') {
        return Err(format!("the URL path '{url}' must start with '/'"));
    }
    if let Some(c) = url
        .chars()
        .find(|c| matches!(c, '%' | '?' | '#' | '\\') || c.is_control())
    {
        return Err(format!(
            "the URL path '{url}' may not contain {c:?}; write it as the decoded path"
        ));
    }
    let trimmed = url.trim_end_matches('/');
    if trimmed
        .split('/')
        .skip(1)
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "the URL path '{url}' has an empty, '.' or '..' segment"
        ));
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_are_normalized_or_refused() {
        for (given, want) in [
            ("/", Some("/")),
            ("/static", Some("/static/")),
            ("/static/", Some("/static/")),
            ("/a/b//", Some("/a/b/")),
            ("/my files/", Some("/my files/")),
            ("static/", None),
            ("", None),
            ("/a//b/", None),
            ("/a/../b/", None),
            ("/a/./b/", None),
            ("/a%20b/", None),
            ("/a?b", None),
            ("/a\\b/", None),
        ] {
            assert_eq!(normalize_url_path(given).ok().as_deref(), want, "{given:?}");
        }
    }

    #[test]
    fn static_mounts_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let d = dir.path().display();
        let ok = parse_mount(&format!("/assets={d}"), "--static").unwrap();
        assert_eq!(ok.url, "/assets/");
        for (value, needle) in [
            (format!("assets/={d}"), "must start with '/'"),
            ("/assets/".to_owned(), "expected URL_PATH=DIR"),
            ("/assets/=".to_owned(), "directory is missing"),
            (format!("/a/={d}/nope"), "cannot read directory"),
            (format!("/a/={}", file.display()), "is not a directory"),
        ] {
            let err = parse_mount(&value, "--static").unwrap_err().to_string();
            assert!(
                err.contains("'--static'") && err.contains(needle),
                "{value}: {err}"
            );
            assert_eq!(parse_mount(&value, "--static").unwrap_err().exit_code(), 2);
        }
    }

    fn options(statics: &[String]) -> StaticOptions {
        StaticOptions {
            statics: statics.to_vec(),
            no_static: false,
            static_finders: false,
            media: false,
            static_max_age: None,
            static_index: false,
        }
    }

    #[test]
    fn a_directory_with_a_comma_is_one_mount_on_the_command_line() {
        let base = tempfile::tempdir().unwrap();
        let comma = base.path().join("a,b");
        let other = base.path().join("c");
        std::fs::create_dir(&comma).unwrap();
        std::fs::create_dir(&other).unwrap();
        let given = vec![format!("/x/={}", comma.display())];
        let env = std::ffi::OsString::from(format!("/y/={}", other.display()));
        // The flag wins over the variable, and is not split.
        let plan = options(&given).resolve_with(Some(&env)).unwrap();
        assert_eq!(plan.mounts.len(), 1);
        assert_eq!(
            (plan.mounts[0].url.as_str(), &plan.mounts[0].dir),
            ("/x/", &comma)
        );
        // The variable holds several, comma-separated.
        let env = format!("/y/={}, /z/={},", other.display(), other.display());
        let plan = options(&[]).resolve_with(Some(env.as_ref())).unwrap();
        let urls: Vec<&str> = plan.mounts.iter().map(|m| m.url.as_str()).collect();
        assert_eq!(urls, ["/y/", "/z/"]);
        let err = options(&[]).resolve_with(Some("/y/".as_ref())).unwrap_err();
        assert!(err.to_string().contains("for 'FERRULE_STATIC'"), "{err}");
        assert!(options(&[]).resolve_with(None).unwrap().mounts.is_empty());
    }
}
