//! What the option definitions print about themselves: `ferrule check-config`'s report of
//! the resolved configuration, and the reference in `docs/configuration.md`.
//!
//! Both walk the clap definitions, so neither lists an option by hand; only the descriptor's
//! extra keys, which are no options, are described here.

use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

use super::file::{self, Descriptor, Extras, OptionValue};

/// Options whose value `check-config` does not print.
const SECRETS: [&str; 2] = ["keyfile_password", "stats_token"];

/// `ferrule check-config`'s report: every key with its value and where it came from, as a
/// TOML file that would give the same configuration.
pub fn resolved(
    cmd: &Command,
    matches: &ArgMatches,
    desc: Option<&Descriptor>,
    applied: &[OptionValue],
    extras: &Extras,
    app: Option<&str>,
) -> String {
    let report = Report {
        matches,
        desc,
        applied,
    };
    let mut lines: Vec<(String, String)> = Vec::new();
    match app {
        Some(app) => {
            let source = match matches.value_source("app") {
                Some(ValueSource::CommandLine) => "cli".to_owned(),
                Some(ValueSource::EnvVariable) => "env FERRULE_APP".to_owned(),
                _ => report.file_place("app"),
            };
            lines.push((format!("app = {}", quote(app)), source));
        }
        None => lines.push((
            "# app: the Django project's WSGI_APPLICATION".into(),
            String::new(),
        )),
    }
    if let Some(module) = &extras.django_settings {
        let line = format!("django_settings = {}", quote(module));
        lines.push((line, report.file_place("django_settings")));
    }
    if let Some(dir) = &extras.working_dir {
        let line = format!("working_dir = {}", quote(&dir.display().to_string()));
        lines.push((line, report.file_place("working_dir")));
    }
    let mut heading = None;
    for arg in cmd.get_arguments() {
        let Some(key) = file::key_of(arg) else {
            continue;
        };
        if arg.get_help_heading() != heading {
            heading = arg.get_help_heading();
            lines.push((String::new(), String::new()));
            lines.push((format!("# {}", heading.unwrap_or("Other")), String::new()));
        }
        lines.push(report.option(arg, &key));
    }
    if !extras.env.is_empty() {
        lines.push((String::new(), String::new()));
        lines.push(("[env]".into(), report.file_place("env")));
        for (name, value) in &extras.env {
            lines.push((format!("{name} = {}", quote(value)), String::new()));
        }
    }
    let title = desc.map_or("the configuration".to_owned(), |d| {
        format!("{} is valid; the configuration it resolves to", d.shown())
    });
    let mut out = format!("# {title}, with where each value comes from\n");
    let width = lines
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0);
    for (line, source) in lines {
        if source.is_empty() {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{line:width$}  # {source}");
        }
    }
    out
}

/// What `check-config` knows about where values came from.
struct Report<'a> {
    matches: &'a ArgMatches,
    desc: Option<&'a Descriptor>,
    applied: &'a [OptionValue],
}

impl Report<'_> {
    /// `file ferrule.toml:7` for a key the descriptor gave.
    fn file_place(&self, key: &str) -> String {
        let Some(desc) = self.desc else {
            return "file".to_owned();
        };
        desc.entries
            .iter()
            .find(|e| e.key == key || (key == "pythonpath" && e.key == "python_path"))
            .map_or_else(|| "file".to_owned(), |e| format!("file {}", desc.place(e)))
    }

    /// One option's line and its source.
    fn option(&self, arg: &Arg, key: &str) -> (String, String) {
        let id = arg.get_id().as_str();
        let mut raw: Vec<String> = self
            .matches
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let mut source = match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => "cli".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "env {}",
                arg.get_env().unwrap_or_default().to_string_lossy()
            ),
            Some(ValueSource::DefaultValue) if self.applied.iter().any(|v| v.id == id) => {
                self.file_place(key)
            }
            _ => "default".to_owned(),
        };
        if id == "statics" && raw.is_empty() {
            if let Some(value) = std::env::var_os("FERRULE_STATIC") {
                let value = value.to_string_lossy();
                raw = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect();
                source = "env FERRULE_STATIC".into();
            }
        }
        if raw.is_empty() && !file::is_list(arg) {
            return (format!("# {key} ="), "not set".into());
        }
        let value = if SECRETS.contains(&key) {
            quote("********")
        } else if file::is_flag(arg) {
            raw.first().map_or("false".into(), Clone::clone)
        } else if file::is_list(arg) {
            let items: Vec<String> = raw.iter().map(|v| scalar(v)).collect();
            format!("[{}]", items.join(", "))
        } else {
            scalar(&raw[0])
        };
        (format!("{key} = {value}"), source)
    }
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A value as TOML: a number when it reads as one, else a string.
fn scalar(s: &str) -> String {
    let integer = s.parse::<i64>().is_ok_and(|i| i.to_string() == s);
    let float = s.parse::<f64>().is_ok_and(f64::is_finite)
        && s.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())
        });
    if integer || float {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// Where the reference starts in `docs/configuration.md`; everything after it is generated.
pub const REFERENCE_MARKER: &str =
    "<!-- The reference below is generated from the option definitions; \
regenerate it with `FERRULE_UPDATE_DOCS=1 cargo test --lib config_reference`. -->";

/// The extra keys: (key, command line, environment, what it is).
const EXTRAS: [(&str, &str, &str, &str); 5] = [
    (
        "app",
        "`APP` (the positional argument)",
        "`FERRULE_APP`",
        "The WSGI application: `module:callable` (`module` alone means `module:application`), \
         or `module:factory()` to call an application factory. Not in `settings.FERRULE`.",
    ),
    (
        "django_settings",
        "—",
        "—",
        "A Django settings module (`mysite.settings`): `DJANGO_SETTINGS_MODULE` is set to it \
         before the import, and without `app` ferrule serves the project's \
         `WSGI_APPLICATION`, as `manage.py server` does (without its system checks). Not in \
         `settings.FERRULE`.",
    ),
    (
        "python_path",
        "`--pythonpath`",
        "`FERRULE_PYTHONPATH`",
        "Another spelling of `pythonpath`: directories put in front of `sys.path`. A list.",
    ),
    (
        "env",
        "—",
        "—",
        "A table of environment variables set before the application is imported \
         (`[env]` then `NAME = \"value\"` lines). They replace inherited values. `FERRULE_*` \
         names are refused: set the option's key instead.",
    ),
    (
        "working_dir",
        "—",
        "—",
        "The directory to change to before the application is imported. Relative to the \
         file's directory, so `\".\"` is where the file is. Relative paths in the other \
         options are then taken from it.",
    ),
];

/// The reference part of `docs/configuration.md`: every key, grouped by the `--help`
/// headings, from the definitions of `cmd`'s options.
pub fn reference(cmd: &Command) -> String {
    let mut out = format!("{REFERENCE_MARKER}\n\n## Reference\n\n### Application\n\n");
    out.push_str(
        "Keys that are no command-line option of their own (besides `app`, the positional \
         argument).\n\n| Key | Command line | Environment | Meaning |\n|---|---|---|---|\n",
    );
    for (key, flag, env, meaning) in EXTRAS {
        let _ = writeln!(out, "| `{key}` | {flag} | {env} | {meaning} |");
    }
    let mut headings: Vec<&str> = Vec::new();
    for arg in cmd.get_arguments().filter(|a| file::key_of(a).is_some()) {
        let h = arg.get_help_heading().unwrap_or("Other");
        if !headings.contains(&h) {
            headings.push(h);
        }
    }
    for heading in headings {
        let _ = write!(out, "\n### {heading}\n");
        for arg in cmd.get_arguments() {
            let Some(key) = file::key_of(arg) else {
                continue;
            };
            if arg.get_help_heading().unwrap_or("Other") != heading {
                continue;
            }
            let _ = write!(out, "\n#### `{key}`\n\n{}\n", facts(arg, &key));
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            let help = help.trim();
            // clap drops the final period of a one-paragraph doc comment.
            let stop = if help.ends_with(['.', ')', ':']) {
                ""
            } else {
                "."
            };
            let _ = writeln!(out, "\n{help}{stop}");
        }
    }
    out
}

/// `` `key = SECONDS` · `--keep-alive` · `FERRULE_KEEP_ALIVE` · default `5` ``
fn facts(arg: &Arg, key: &str) -> String {
    let long = arg.get_long().unwrap_or_default();
    let value_name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map_or_else(|| "VALUE".to_owned(), ToString::to_string);
    let example = if file::is_flag(arg) {
        format!("{key} = true")
    } else if file::is_list(arg) {
        format!("{key} = [\"{value_name}\", …]")
    } else {
        format!("{key} = {value_name}")
    };
    let env = match arg.get_env() {
        Some(env) => format!("`{}`", env.to_string_lossy()),
        // `--static` reads its variable itself (see statics.rs).
        None if key == "static" => "`FERRULE_STATIC`".to_owned(),
        None => "—".to_owned(),
    };
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    // Without a clap default the help text says what happens when the option is not given.
    let default = if defaults.is_empty() {
        String::new()
    } else {
        format!(" · default `{}`", defaults.join(", "))
    };
    format!("`{example}` · flag `--{long}` · env {env}{default}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cli;
    use clap::CommandFactory;

    #[test]
    fn scalars_are_numbers_when_they_read_as_numbers() {
        for (value, expected) in [
            ("5", "5"),
            ("5.0", "5.0"),
            ("-1", "-1"),
            ("660", "660"),
            ("007", "\"007\""),
            ("1G", "\"1G\""),
            ("nan", "\"nan\""),
            ("1e3", "\"1e3\""),
            ("a\"b", "'a\"b'"),
        ] {
            assert_eq!(scalar(value), expected, "{value}");
        }
    }

    #[test]
    fn the_reference_lists_every_option_once() {
        let cmd = Cli::command();
        let text = reference(&cmd);
        for key in file::all_keys(&cmd) {
            assert!(text.contains(&format!("`{key}`")), "{key}");
        }
        assert!(text.contains("#### `keep_alive`\n\n`keep_alive = SECONDS` · flag `--keep-alive` · env `FERRULE_KEEP_ALIVE` · default `5`"), "{text}");
    }

    /// The committed reference matches the option definitions.
    #[test]
    fn config_reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let head = text.split(REFERENCE_MARKER).next().unwrap_or_default();
        let expected = format!("{head}{}", reference(&Cli::command()));
        if std::env::var_os("FERRULE_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &expected).expect("docs/configuration.md is writable");
            return;
        }
        assert!(
            text == expected,
            "docs/configuration.md is out of date with the option definitions; regenerate it with \
             `FERRULE_UPDATE_DOCS=1 cargo test --lib config_reference`"
        );
    }
}
