//! From argv to a [`Plan`]: the command line, the `FERRULE_*` variables, and the descriptor
//! (`--config FILE` or `settings.FERRULE`), in that order of precedence; and
//! `ferrule check-config FILE`.
//!
//! argv is parsed once to learn which options the command line and the environment set and
//! where the file is; the file's values then become the defaults of the other options and
//! argv is parsed again, so every value goes through the option's own clap parser and the
//! result depends on argv, the environment and the file only: each worker process the
//! supervisor starts with the same argv reaches the same plan. Reading and checking the
//! keys is `file.rs`'s, printing `check-config`'s report `report.rs`'s.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use pyo3::prelude::*;

use super::file::{self, Descriptor, Extras, OptionValue};
use super::{report, Cli, DjangoCli, Plan};
use crate::error::Error;

/// Set in the environment when `working_dir` changes the directory, to the directory ferrule
/// started in: a worker process started in `working_dir` finds a relative `--config` there.
pub const STARTED_IN: &str = "FERRULE_STARTED_IN";

/// The variable `--static` reads itself (it has no clap `env`, see `statics.rs`).
const STATIC_ENV: &str = "FERRULE_STATIC";

/// What `main()` does next.
pub enum Loaded {
    /// Serve `plan`. `app` is `module:callable`, or `None` for the Django project's
    /// `WSGI_APPLICATION` (`manage.py server`, or `django_settings` in the file).
    Serve {
        plan: Box<Plan>,
        app: Option<String>,
    },
    /// Exit with this code; what there was to say (help, version, a report) is printed.
    Exit(i32),
}

/// Parse `argv` (`ferrule …`, or `manage.py server …` when `django`, with `settings` the
/// JSON of `settings.FERRULE`), apply the descriptor's `env`, `django_settings` and
/// `working_dir`, and resolve the plan. Imports nothing.
pub fn load(
    py: Python<'_>,
    argv: &[String],
    django: bool,
    settings: Option<&str>,
) -> Result<Loaded, Error> {
    if !django && argv.get(1).map(String::as_str) == Some("config-reference") {
        // Hidden: the generated part of docs/configuration.md.
        print!("{}", report::reference(&Cli::command()));
        return Ok(Loaded::Exit(0));
    }
    let check_only = !django && argv.get(1).map(String::as_str) == Some("check-config");
    let argv = if check_only {
        check_config_argv(argv)?
    } else {
        argv.to_vec()
    };
    let cmd = if django {
        DjangoCli::command()
    } else {
        Cli::command()
    };
    let first = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return Ok(Loaded::Exit(e.exit_code()));
        }
    };
    let desc = if django {
        settings.map(Descriptor::from_settings_json).transpose()?
    } else {
        first
            .get_one::<PathBuf>("config")
            .map(|p| read(p))
            .transpose()?
    };
    let (values, extras) = match &desc {
        Some(d) => file::check(d, &cmd)?,
        None => (Vec::new(), Extras::default()),
    };
    let applied: Vec<OptionValue> = values
        .into_iter()
        .filter(|v| file_wins(&first, v, django))
        .collect();
    let merged = applied.iter().fold(cmd.clone(), |cmd, v| {
        cmd.mut_arg(&v.id, |a| a.default_values(&v.values))
    });
    // The values passed their parsers one by one in `file::check`; this parse cannot fail on
    // them, only on a combination, which clap words itself.
    let matches = merged
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| Error::config(file::clap_message(&e, "", "")))?;
    let (options, addrport, app) = if django {
        let c = DjangoCli::from_arg_matches(&matches).map_err(|e| from_clap(&e))?;
        (c.options, c.addrport, None)
    } else {
        let c = Cli::from_arg_matches(&matches).map_err(|e| from_clap(&e))?;
        let app = c.app.or_else(|| extras.app.clone());
        if app.is_none() && extras.django_settings.is_none() {
            let e = cmd.clone().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                no_application(Path::new(".")),
            );
            let _ = e.print();
            return Ok(Loaded::Exit(e.exit_code()));
        }
        (c.options, None, app)
    };
    apply(py, &extras)?;
    let plan = options
        .resolve_for(addrport.as_deref(), django)
        .map_err(|e| match &desc {
            Some(d) => blame(&e, d, &applied),
            None => e,
        })?;
    if check_only {
        print!(
            "{}",
            report::resolved(
                &cmd,
                &matches,
                desc.as_ref(),
                &applied,
                &extras,
                app.as_deref()
            )
        );
        return Ok(Loaded::Exit(0));
    }
    Ok(Loaded::Serve {
        plan: Box::new(plan),
        app,
    })
}

/// What to say when no application was given; in a Django project's directory, the two
/// commands that would serve it.
fn no_application(dir: &Path) -> String {
    let general = "no application: give APP (module:callable), or 'app' or 'django_settings' in the --config file";
    let Ok(manage) = std::fs::read_to_string(dir.join("manage.py")) else {
        return general.to_owned();
    };
    // manage.py names its settings: os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    let project = manage
        .split("DJANGO_SETTINGS_MODULE")
        .nth(1)
        .and_then(|rest| rest.split(['"', '\'']).nth(2))
        .and_then(|settings| settings.rsplit_once('.'))
        .map(|(package, _)| package.to_owned());
    let wsgi = project.map_or_else(
        || "ferrule PROJECT.wsgi".to_owned(),
        |p| format!("ferrule {p}.wsgi"),
    );
    format!(
        "no application given; this directory holds a Django project (manage.py). Serve it with\n\n  \
         python manage.py server       (add \"ferrule\" to INSTALLED_APPS first; reloads on changes)\n  \
         {wsgi}{}(any WSGI application: module:callable)",
        " ".repeat(30usize.saturating_sub(wsgi.len()).max(1))
    )
}

/// `ferrule check-config FILE [OPTIONS]` as `ferrule --config FILE [OPTIONS]`.
fn check_config_argv(argv: &[String]) -> Result<Vec<String>, Error> {
    match argv.get(2) {
        Some(path) if !path.starts_with('-') => {
            let mut out = vec![argv[0].clone(), "--config".to_owned(), path.clone()];
            out.extend_from_slice(&argv[3..]);
            Ok(out)
        }
        _ => Err(Error::config(
            "usage: ferrule check-config FILE [OPTIONS]: validate FILE (with OPTIONS) and print \
             the configuration it resolves to, without importing the application",
        )),
    }
}

/// Read the file `--config` names; a relative path is taken from where ferrule started,
/// which a worker process whose master changed to `working_dir` learns from [`STARTED_IN`].
fn read(path: &Path) -> Result<Descriptor, Error> {
    let shown = path.display().to_string();
    let full = match std::env::var_os(STARTED_IN) {
        Some(base) if path.is_relative() => PathBuf::from(base).join(path),
        _ => path.to_path_buf(),
    };
    Descriptor::read(&full, &shown)
}

/// Whether the descriptor's value for an option applies: neither the command line nor the
/// environment gave one.
fn file_wins(first: &ArgMatches, value: &OptionValue, django: bool) -> bool {
    let set = matches!(
        first.value_source(&value.id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let static_env = value.id == "statics" && std::env::var_os(STATIC_ENV).is_some();
    // `manage.py server 9000` replaces the settings' addresses as `--bind` would.
    let addrport = django && value.id == "bind" && first.contains_id("addrport");
    !(set || static_env || addrport)
}

/// A resolution error about an option whose value came from the descriptor, reworded to
/// name the key and its line instead of the flag.
fn blame(e: &Error, desc: &Descriptor, applied: &[OptionValue]) -> Error {
    let message = e.to_string();
    let culprit = applied
        .iter()
        .filter_map(|v| {
            let long = v.id_long();
            let at = message.find(&format!("'--{long}'"))?;
            Some((at, long, v))
        })
        .min_by_key(|(at, _, _)| *at);
    match culprit {
        Some((_, long, v)) => Error::config(format!(
            "{}{}",
            desc.at(&v.entry),
            file::rename_option(&message, &long, &desc.name(&v.key))
        )),
        None => Error::config(message),
    }
}

fn from_clap(e: &clap::Error) -> Error {
    Error::config(file::clap_message(e, "", ""))
}

/// Set the descriptor's environment variables (and `DJANGO_SETTINGS_MODULE`) in
/// `os.environ`, which also sets them for the process, and change to `working_dir`.
fn apply(py: Python<'_>, extras: &Extras) -> Result<(), Error> {
    let fail = |e: PyErr| Error::runtime(format!("cannot set the environment: {e}"));
    let environ = py
        .import("os")
        .and_then(|os| os.getattr("environ"))
        .map_err(fail)?;
    for (name, value) in &extras.env {
        environ.set_item(name, value).map_err(fail)?;
    }
    if let Some(module) = &extras.django_settings {
        environ
            .set_item("DJANGO_SETTINGS_MODULE", module)
            .map_err(fail)?;
    }
    if let Some(dir) = &extras.working_dir {
        if std::env::var_os(STARTED_IN).is_none() {
            let here = std::env::current_dir()
                .map_err(|e| Error::runtime(format!("cannot read the current directory: {e}")))?;
            environ
                .set_item(STARTED_IN, here.as_os_str())
                .map_err(fail)?;
        }
        std::env::set_current_dir(dir).map_err(|e| {
            Error::config(format!(
                "cannot change to working_dir '{}': {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

impl OptionValue {
    /// The option's long name (`keep-alive`).
    fn id_long(&self) -> String {
        self.key.replace('_', "-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_values(text: &str) -> (Descriptor, Vec<OptionValue>) {
        let desc = Descriptor::parse_toml("f.toml", std::env::temp_dir(), text).unwrap();
        let (values, _) = file::check(&desc, &Cli::command()).unwrap();
        (desc, values)
    }

    #[test]
    fn no_application_in_a_django_project_says_what_to_type() {
        let dir = tempfile::tempdir().unwrap();
        assert!(no_application(dir.path()).starts_with("no application: give APP"));
        std::fs::write(
            dir.path().join("manage.py"),
            "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n",
        )
        .unwrap();
        let said = no_application(dir.path());
        assert!(said.contains("python manage.py server"), "{said}");
        assert!(said.contains("\"ferrule\" to INSTALLED_APPS"), "{said}");
        assert!(said.contains("ferrule mysite.wsgi "), "{said}");
        std::fs::write(dir.path().join("manage.py"), "print('custom')\n").unwrap();
        assert!(no_application(dir.path()).contains("ferrule PROJECT.wsgi"));
    }

    #[test]
    fn the_command_line_and_the_environment_win_over_the_file() {
        let (_, values) = file_values("threads = 2\nkeep_alive = 3\nmax_queue = 4\n");
        let argv = ["ferrule", "--threads", "5", "a:b"];
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let wins: Vec<&str> = values
            .iter()
            .filter(|v| file_wins(&matches, v, false))
            .map(|v| v.key.as_str())
            .collect();
        assert_eq!(wins, ["keep_alive", "max_queue"]);
        // `manage.py server ADDRPORT` replaces the settings' `bind`.
        let (_, values) = file_values("bind = ['unix:/tmp/x']");
        let with = DjangoCli::command()
            .try_get_matches_from(["server", "9000"])
            .unwrap();
        let without = DjangoCli::command()
            .try_get_matches_from(["server"])
            .unwrap();
        assert!(!file_wins(&with, &values[0], true));
        assert!(file_wins(&without, &values[0], true));
    }

    #[test]
    fn resolution_errors_blame_the_line_that_gave_the_value() {
        let (desc, values) = file_values("threads = 2\n\nmin_threads = 3\n");
        let e = Error::config("invalid value '3' for '--min-threads': it exceeds --threads (2)");
        assert_eq!(
            blame(&e, &desc, &values).to_string(),
            "f.toml:3: invalid value '3' for 'min_threads': it exceeds --threads (2)"
        );
        // A value from elsewhere keeps its message.
        let e = Error::config("invalid value '0' for '--workers': at least 1");
        assert_eq!(blame(&e, &desc, &values).to_string(), e.to_string());
    }

    #[test]
    fn check_config_takes_a_file_and_options() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            check_config_argv(&argv(&[
                "ferrule",
                "check-config",
                "f.toml",
                "--threads",
                "2"
            ]))
            .unwrap(),
            argv(&["ferrule", "--config", "f.toml", "--threads", "2"])
        );
        assert!(check_config_argv(&argv(&["ferrule", "check-config"])).is_err());
        assert!(check_config_argv(&argv(&["ferrule", "check-config", "--threads"])).is_err());
    }
}
