//! Finding the WSGI application: `module:callable`, `module:factory()`, or Django's
//! `WSGI_APPLICATION`.
//!
//! Runs on the main thread before anything binds, so an application that cannot be imported
//! ends ferrule with exit code 2 and the import error, and no port was ever opened.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::error::Error;
use crate::log_warn;
use crate::wsgi::traceback;

/// Put the working directory and `--pythonpath` entries at the front of `sys.path`, as
/// gunicorn does, so `ferrule mysite.wsgi` finds `mysite` wherever the script lives.
pub fn extend_sys_path(py: Python<'_>, extra: &[PathBuf]) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?;
    let sys_path = sys_path.cast::<PyList>()?;
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut front: Vec<String> = extra.iter().map(|p| p.display().to_string()).collect();
    front.push(cwd);
    for entry in front.into_iter().rev() {
        if !sys_path.contains(&entry)? {
            sys_path.insert(0, entry)?;
        }
    }
    Ok(())
}

/// An application that could not be loaded: the error to report, and the Python exception
/// behind it when there is one (development reload serves a page describing it).
pub struct Failure {
    pub error: Error,
    pub exception: Option<PyErr>,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            exception: None,
        }
    }
}

impl Failure {
    pub fn raised(py: Python<'_>, what: String, e: PyErr) -> Self {
        Failure {
            error: Error::app(format!("{what}:\n{}", traceback(py, &e))),
            exception: Some(e),
        }
    }

    /// The error in one line, for the master's log and `/readyz`: the message's first line
    /// and the exception (`cannot import …: SyntaxError: invalid syntax (views.py, line 5)`).
    pub fn summary(&self, py: Python<'_>) -> String {
        let message = self.error.to_string();
        let first = message
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches(':');
        let Some(e) = &self.exception else {
            return first.to_owned();
        };
        let kind = e
            .get_type(py)
            .name()
            .map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
        format!("{first}: {kind}: {}", e.value(py))
    }
}

/// Import `spec` and return the application callable.
pub fn load(py: Python<'_>, spec: &str) -> Result<Py<PyAny>, Failure> {
    let (module, attr) = spec.split_once(':').unwrap_or((spec, "application"));
    if module.is_empty() || attr.is_empty() {
        return Err(Failure::from(Error::app(format!(
            "invalid application '{spec}': expected module:callable"
        ))));
    }
    let (attr, call) = match attr.strip_suffix(')') {
        Some(rest) => match rest.strip_suffix('(') {
            Some(name) => (name, true),
            None => {
                return Err(Failure::from(Error::app(format!(
                    "invalid application '{spec}': a factory is called without arguments (name()); \
                     wrap calls with arguments in a function of your own"
                ))))
            }
        },
        None => (attr, false),
    };
    let mut obj = py.import(module).map(Bound::into_any).map_err(|e| {
        Failure::raised(
            py,
            format!("cannot import '{module}' for application '{spec}'"),
            e,
        )
    })?;
    for part in attr.split('.') {
        obj = obj.getattr(part).map_err(|_| {
            Failure::from(Error::app(format!(
                "cannot find '{attr}' in module '{module}' for application '{spec}'"
            )))
        })?;
    }
    if call {
        obj = obj
            .call0()
            .map_err(|e| Failure::raised(py, format!("application factory '{spec}' failed"), e))?;
    }
    if !obj.is_callable() {
        return Err(Failure::from(Error::app(format!(
            "application '{spec}' is not callable (got {})",
            type_name(&obj)
        ))));
    }
    Ok(obj.unbind())
}

/// The Django project's application and whether it is ASGI: `ASGI_APPLICATION` when the
/// setting exists and `interface` allows it (as daphne's `runserver` serves it), else
/// `WSGI_APPLICATION` as `runserver` finds it. `--interface asgi` without the setting is an
/// error: serving WSGI instead would not be what was asked.
pub fn load_django(
    py: Python<'_>,
    interface: crate::config::Interface,
) -> Result<(Py<PyAny>, bool), Failure> {
    use crate::config::Interface;
    if interface != Interface::Wsgi {
        let path: Option<String> = py
            .import("ferrule._django")
            .and_then(|m| m.call_method0("asgi_application_setting"))
            .and_then(|s| s.extract())
            .map_err(|e| Failure::raised(py, "cannot read ASGI_APPLICATION".to_owned(), e))?;
        if let Some(path) = path {
            return py
                .import("django.utils.module_loading")
                .and_then(|m| m.call_method1("import_string", (path.as_str(),)))
                .map(|app| (app.unbind(), true))
                .map_err(|e| {
                    Failure::raised(
                        py,
                        format!(
                            "cannot load the Django ASGI application '{path}' (ASGI_APPLICATION)"
                        ),
                        e,
                    )
                });
        }
        if interface == Interface::Asgi {
            return Err(Failure::from(Error::app(
                "--interface asgi, but the Django settings have no ASGI_APPLICATION: set it to your ASGI application (for example \"mysite.asgi.application\"), or drop --interface asgi to serve WSGI_APPLICATION",
            )));
        }
    }
    py.import("django.core.servers.basehttp")
        .and_then(|m| m.call_method0("get_internal_wsgi_application"))
        .map(|app| (app.unbind(), false))
        .map_err(|e| Failure::raised(py, "cannot load the Django WSGI application".to_owned(), e))
}

/// For a Django project, import its `URLconf` (and so its views) now, as Django's system
/// checks do: an error there then stops the start (or, reloading, is served as the error
/// page) instead of failing every request with an error Django cannot even render, since its
/// debug page resolves the URL again.
pub fn import_urlconf(py: Python<'_>) -> Result<(), Failure> {
    if !django_configured(py) {
        return Ok(());
    }
    py.import("ferrule._django")
        .and_then(|m| m.call_method0("import_urlconf"))
        .map(drop)
        .map_err(|e| {
            Failure::raised(
                py,
                "cannot import the Django project's URLconf".to_owned(),
                e,
            )
        })
}

/// Development reload: what a worker whose application failed to import serves instead
/// (every request 500, Django's debug page when DEBUG is on), and the files to watch for
/// the fix: those imported so far and those the error names.
pub fn stand_in(py: Python<'_>, failure: &Failure) -> PyResult<(Py<PyAny>, Vec<String>)> {
    let reload = py.import("ferrule._reload")?;
    let mut files: Vec<String> = reload.call_method0("module_files")?.extract()?;
    let exc = if let Some(e) = &failure.exception {
        e.value(py).clone().into_any()
    } else {
        let message = failure.error.to_string();
        py.import("builtins")?
            .getattr("RuntimeError")?
            .call1((message,))?
    };
    let named: Vec<String> = reload.call_method1("error_files", (&exc,))?.extract()?;
    files.extend(named);
    let app = reload.call_method1("error_app", (&exc,))?;
    Ok((app.unbind(), files))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}

/// Whether the loaded application is a Django project: Django was imported and its settings
/// configured (`ferrule mysite.wsgi` as much as `manage.py server`).
pub fn django_configured(py: Python<'_>) -> bool {
    let Ok(modules) = py.import("sys").and_then(|sys| sys.getattr("modules")) else {
        return false;
    };
    // A KeyError: Django was never imported.
    let Ok(conf) = modules.get_item("django.conf") else {
        return false;
    };
    conf.getattr("settings")
        .and_then(|s| s.getattr("configured"))
        .and_then(|c| c.is_truthy())
        .unwrap_or(false)
}

/// The source files of the modules imported so far, for the master's reload watcher.
pub fn module_files(py: Python<'_>) -> Vec<String> {
    py.import("ferrule._reload")
        .and_then(|m| m.call_method0("module_files"))
        .and_then(|files| files.extract())
        .unwrap_or_else(|e| {
            log_warn!("cannot list the imported modules for the reload watcher: {e}");
            Vec::new()
        })
}
