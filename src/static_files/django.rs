//! The static mounts a Django project's settings describe: `STATIC_URL` from `STATIC_ROOT`
//! (and the staticfiles finders' directories in development), `MEDIA_URL` from `MEDIA_ROOT`.
//!
//! Reads settings once at start-up, after the project is imported; serving is `mod.rs`'s.
//! The finders are asked for their directories, not for files: `FileSystemFinder`'s
//! `STATICFILES_DIRS` (with their `(prefix, dir)` pairs) and `AppDirectoriesFinder`'s app
//! `static/` directories, in `STATICFILES_FINDERS` order. A finder with no directory to offer
//! (one that finds files in a database, say) is named in a warning and skipped.

use std::path::PathBuf;

use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;

use super::{Mount, MountDir};
use crate::config::{normalize_url_path, StaticPlan, DEFAULT_MAX_AGE};
use crate::{log_info, log_warn};

/// The mounts for the configured Django project. `script_name` is the URL prefix
/// (`--prefix` or `FORCE_SCRIPT_NAME`) a relative `STATIC_URL` lives under.
pub fn mounts(py: Python<'_>, plan: &StaticPlan, script_name: &str) -> PyResult<Vec<Mount>> {
    let settings = py.import("django.conf")?.getattr("settings")?;
    let debug = match raw_setting(&settings, "DEBUG")? {
        Some(v) => v.is_truthy()?,
        None => false,
    };
    // As WhiteNoise does: while DEBUG is on, files change under the developer's hands.
    let max_age = plan
        .max_age
        .unwrap_or(if debug { 0 } else { DEFAULT_MAX_AGE });
    let mut mounts = Vec::new();
    if plan.django_static {
        let url = string_setting(&settings, "STATIC_URL")?
            .and_then(|u| mount_url("STATIC_URL", &u, script_name));
        if let Some(url) = url {
            let mut dirs = Vec::new();
            if let Some(root) = path_setting(&settings, "STATIC_ROOT")? {
                dirs.push(MountDir {
                    dir: root,
                    prefix: String::new(),
                    source: "STATIC_ROOT".to_owned(),
                });
            }
            if debug || plan.finders {
                dirs.extend(finder_dirs(py, plan.finders)?);
            }
            if !dirs.is_empty() {
                mounts.push(Mount {
                    url,
                    dirs,
                    max_age,
                    media: false,
                });
            }
        }
    }
    if plan.media {
        let url = string_setting(&settings, "MEDIA_URL")?;
        let root = path_setting(&settings, "MEDIA_ROOT")?;
        if let (Some(url), Some(root)) = (url, root) {
            if let Some(url) = mount_url("MEDIA_URL", &url, script_name) {
                mounts.push(Mount {
                    url,
                    dirs: vec![MountDir {
                        dir: root,
                        prefix: String::new(),
                        source: "MEDIA_ROOT".to_owned(),
                    }],
                    max_age,
                    // Uploads are named by users: a name that looks hashed is no promise,
                    // and a page or SVG among them must not run script on the site.
                    media: true,
                });
            }
        } else {
            log_warn!("--media: not serving media files, since MEDIA_URL or MEDIA_ROOT is not set in the Django settings");
        }
    }
    Ok(mounts)
}

/// Where a `STATIC_URL`-like setting is served: as is when it is an absolute path, under
/// `script_name` when relative (as Django prefixes it), nowhere when it is a full URL.
fn mount_url(setting: &str, value: &str, script_name: &str) -> Option<String> {
    if value.contains("://") || value.starts_with("//") {
        log_info!("{setting} is a full URL ('{value}'); those files are not served by ferrule");
        return None;
    }
    let path = if value.starts_with('/') {
        value.to_owned()
    } else {
        format!("{}/{value}", script_name.trim_end_matches('/'))
    };
    match normalize_url_path(&path) {
        Ok(url) => Some(url),
        Err(why) => {
            log_warn!("not serving {setting}: {why}");
            None
        }
    }
}

/// A setting as it is written, before `LazySettings` adds the script prefix to
/// `STATIC_URL`/`MEDIA_URL` (which would bake in whatever prefix was current at start-up).
/// `None` when unset or `None`.
fn raw_setting<'py>(
    settings: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    // `LazySettings.__getattr__` both prefixes and caches `STATIC_URL`/`MEDIA_URL`, so reading
    // them through it here would also fix the URLs Django itself builds to the start-up
    // prefix ("/"). The wrapped settings object holds the values as written; reading
    // `DEBUG` first makes sure it exists (`LazySettings` sets itself up on first access).
    settings.getattr("DEBUG")?;
    let wrapped = settings.getattr("_wrapped")?;
    match wrapped.getattr(name) {
        Ok(v) if v.is_none() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyAttributeError>(settings.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A non-empty string setting of the configured Django project, read as written (see
/// [`raw_setting`]).
pub fn setting(py: Python<'_>, name: &str) -> PyResult<Option<String>> {
    string_setting(&py.import("django.conf")?.getattr("settings")?, name)
}

/// A non-empty string setting.
fn string_setting(settings: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<String>> {
    Ok(raw_setting(settings, name)?
        .map(|v| v.str().map(|s| s.to_string()))
        .transpose()?
        .filter(|s| !s.is_empty()))
}

/// A non-empty path setting (`str` or `PathLike`).
fn path_setting(settings: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<PathBuf>> {
    Ok(raw_setting(settings, name)?
        .map(|v| v.extract::<PathBuf>())
        .transpose()?
        .filter(|p| !p.as_os_str().is_empty()))
}

/// The directories of the staticfiles finders, in `STATICFILES_FINDERS` order. Nothing
/// (with a warning if `--static-finders` asked for it) when `django.contrib.staticfiles` is
/// not installed, as `runserver` serves nothing then either.
fn finder_dirs(py: Python<'_>, asked: bool) -> PyResult<Vec<MountDir>> {
    let apps = py.import("django.apps")?.getattr("apps")?;
    if !apps
        .call_method1("is_installed", ("django.contrib.staticfiles",))?
        .is_truthy()?
    {
        if asked {
            log_warn!("--static-finders: django.contrib.staticfiles is not in INSTALLED_APPS, so there are no finders to look in");
        }
        return Ok(Vec::new());
    }
    let finders = py
        .import("django.contrib.staticfiles.finders")?
        .call_method0("get_finders")?;
    let mut dirs = Vec::new();
    for finder in finders.try_iter()? {
        let finder = finder?;
        let class = finder.get_type().name()?.to_string();
        if finder.hasattr("locations")? {
            // FileSystemFinder: STATICFILES_DIRS as (prefix, root) pairs.
            for location in finder.getattr("locations")?.try_iter()? {
                let (prefix, dir): (String, PathBuf) = location?.extract()?;
                dirs.push(MountDir {
                    dir,
                    prefix,
                    source: "STATICFILES_DIRS".to_owned(),
                });
            }
        } else if finder.hasattr("apps")? && finder.hasattr("storages")? {
            // AppDirectoriesFinder: each app's `static/`, in INSTALLED_APPS order.
            let storages = finder.getattr("storages")?;
            for app in finder.getattr("apps")?.try_iter()? {
                let app = app?;
                let dir: PathBuf = storages.get_item(&app)?.getattr("location")?.extract()?;
                dirs.push(MountDir {
                    dir,
                    prefix: String::new(),
                    source: format!("app {}", app.str()?),
                });
            }
        } else if let Ok(dir) = finder
            .getattr("storage")
            .and_then(|s| s.getattr("location"))
            .and_then(|l| l.extract::<PathBuf>())
        {
            // A BaseStorageFinder over a file system storage.
            dirs.push(MountDir {
                dir,
                prefix: String::new(),
                source: class,
            });
        } else {
            log_warn!("static files found by {class} are not served by ferrule: it has no directory to serve them from");
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::mount_url;

    #[test]
    fn static_url_placement() {
        for (value, script, want) in [
            ("static/", "", Some("/static/")),
            ("static/", "/app", Some("/app/static/")),
            ("static/", "/app/", Some("/app/static/")),
            ("/static/", "/app", Some("/static/")),
            ("/static", "", Some("/static/")),
            ("assets/v2/", "/a/b", Some("/a/b/assets/v2/")),
            ("https://cdn.example.com/static/", "", None),
            ("//cdn.example.com/static/", "", None),
            ("/a/../b/", "", None),
        ] {
            assert_eq!(
                mount_url("STATIC_URL", value, script).as_deref(),
                want,
                "{value} {script}"
            );
        }
    }
}
