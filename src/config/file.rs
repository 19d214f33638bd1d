//! The application descriptor: the `--config ferrule.toml` file of `ferrule`, and the
//! `settings.FERRULE` dict of `manage.py server` (handed over as JSON).
//!
//! Neither declares an option of its own: a key is an option's long name with `_` for `-`
//! (`keep_alive` for `--keep-alive`). This file reads the keys, checks each value's type, runs
//! it through the option's own clap parser, and says which line it came from; `load.rs` makes
//! the values the options' defaults, so the command line and the `FERRULE_*` variables still
//! win. The few keys that are not options (`app`, `django_settings`, `python_path`, `env`,
//! `working_dir`) are checked here too. Nothing here touches the process or Python.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

use crate::error::Error;

/// The keys that are not options, in the order the reference lists them.
pub const EXTRA_KEYS: [&str; 5] = [
    "app",
    "django_settings",
    "python_path",
    "env",
    "working_dir",
];

/// Options that are no key: clap's own, the file itself, Django's positional.
const NOT_KEYS: [&str; 4] = ["help", "version", "config", "addrport"];

/// A value as written, before it is given to an option.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Str(String),
    Int(i64),
    Float(f64),
    List(Vec<Value>),
    Table(Vec<(String, Value)>),
    /// Never a valid value (a TOML date, a JSON null); the name of what it is.
    Other(&'static str),
}

impl Value {
    fn from_toml(v: toml::Value) -> Self {
        match v {
            toml::Value::String(s) => Value::Str(s),
            toml::Value::Integer(i) => Value::Int(i),
            toml::Value::Float(f) => Value::Float(f),
            toml::Value::Boolean(b) => Value::Bool(b),
            toml::Value::Datetime(_) => Value::Other("a date"),
            toml::Value::Array(a) => Value::List(a.into_iter().map(Value::from_toml).collect()),
            toml::Value::Table(t) => Value::Table(
                t.into_iter()
                    .map(|(k, v)| (k, Value::from_toml(v)))
                    .collect(),
            ),
        }
    }

    fn from_json(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Other("None"),
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => {
                Value::List(a.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(o) => Value::Table(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// What it is, for "expected …, found …".
    fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::List(_) => "a list",
            Value::Table(_) => "a table",
            Value::Other(what) => what,
        }
    }

    /// A string or a number, as the command line would spell it.
    fn scalar(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }
}

/// One `key = value` and the line it is on (`None` in `settings.FERRULE`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub line: Option<usize>,
}

/// Where the keys were written.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A TOML file: its path as the user gave it, and the directory it is in.
    File { shown: String, dir: PathBuf },
    /// Django's `settings.FERRULE`.
    Settings,
}

/// The keys of one file or settings dict, in the order they were written.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub origin: Origin,
    pub entries: Vec<Entry>,
}

impl Descriptor {
    /// Read the TOML file at `path` (shown in messages as `shown`).
    pub fn read(path: &Path, shown: &str) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read the configuration file '{shown}': {e}"))
        })?;
        let dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        Self::parse_toml(shown, dir, &text)
    }

    pub fn parse_toml(shown: &str, dir: PathBuf, text: &str) -> Result<Self, Error> {
        type Spanned<T> = toml::Spanned<T>;
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| {
                let at = e
                    .span()
                    .map_or(String::new(), |s| format!("{}:", line(s.start)));
                // The text the error is about, when it is short: the key of "duplicate key".
                let near = e
                    .span()
                    .and_then(|s| text.get(s))
                    .filter(|t| !t.is_empty() && t.len() <= 40 && !t.contains('\n'))
                    .map_or(String::new(), |t| format!(": {t}"));
                Error::config(format!(
                    "{shown}:{at} {}{near}",
                    e.message().trim_end().replace('\n', " ")
                ))
            })?;
        let mut entries: Vec<(usize, Entry)> = table
            .into_iter()
            .map(|(k, v)| {
                let start = k.span().start;
                let entry = Entry {
                    key: k.into_inner(),
                    value: Value::from_toml(v.into_inner()),
                    line: Some(line(start)),
                };
                (start, entry)
            })
            .collect();
        entries.sort_by_key(|(start, _)| *start);
        Ok(Descriptor {
            origin: Origin::File {
                shown: shown.to_owned(),
                dir,
            },
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// `settings.FERRULE`, which `manage.py server` hands over as a JSON object.
    pub fn from_settings_json(json: &str) -> Result<Self, Error> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::config(format!("cannot read settings.FERRULE: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::config(format!(
                "settings.FERRULE must be a dict, not {}",
                Value::from_json(value).kind()
            )));
        };
        let entries = map
            .into_iter()
            .map(|(key, v)| Entry {
                key,
                value: Value::from_json(v),
                line: None,
            })
            .collect();
        Ok(Descriptor {
            origin: Origin::Settings,
            entries,
        })
    }

    /// The prefix of a message about `entry`: `ferrule.toml:7: `, or nothing for settings.
    pub fn at(&self, entry: &Entry) -> String {
        match (&self.origin, entry.line) {
            (Origin::File { shown, .. }, Some(line)) => format!("{shown}:{line}: "),
            (Origin::File { shown, .. }, None) => format!("{shown}: "),
            (Origin::Settings, _) => String::new(),
        }
    }

    /// How a message names `key`: `'keep_alive'` or `settings.FERRULE['keep_alive']`.
    pub fn name(&self, key: &str) -> String {
        match self.origin {
            Origin::File { .. } => format!("'{key}'"),
            Origin::Settings => format!("settings.FERRULE['{key}']"),
        }
    }

    /// The file's path as the user gave it, or `settings.FERRULE`.
    pub fn shown(&self) -> &str {
        match &self.origin {
            Origin::File { shown, .. } => shown,
            Origin::Settings => "settings.FERRULE",
        }
    }

    /// Where `entry` was written, for `check-config`: `ferrule.toml:7` or `settings.FERRULE`.
    pub fn place(&self, entry: &Entry) -> String {
        match &self.origin {
            Origin::File { .. } => self.at(entry).trim_end_matches(": ").to_owned(),
            Origin::Settings => "settings.FERRULE".to_owned(),
        }
    }

    fn error(&self, entry: &Entry, what: &str) -> Error {
        Error::config(format!("{}{what}", self.at(entry)))
    }

    fn type_error(&self, entry: &Entry, expected: &str) -> Error {
        self.error(
            entry,
            &format!(
                "invalid type for {}: expected {expected}, found {}",
                self.name(&entry.key),
                entry.value.kind()
            ),
        )
    }
}

/// The key of a clap argument: its long name with `_` for `-`; `None` for no key.
pub fn key_of(arg: &Arg) -> Option<String> {
    let long = arg.get_long()?;
    (!NOT_KEYS.contains(&arg.get_id().as_str())).then(|| long.replace('-', "_"))
}

/// Every key, options first (in `--help` order), then the extra keys.
pub fn all_keys(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(key_of)
        .chain(EXTRA_KEYS.iter().map(|k| (*k).to_owned()))
        .collect()
}

/// Whether the option is an on/off flag, written `true`/`false`.
pub fn is_flag(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Whether the option may be repeated, written as a list.
pub fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// One option's value from the descriptor, checked by its clap parser.
#[derive(Debug, Clone)]
pub struct OptionValue {
    /// The clap id.
    pub id: String,
    pub key: String,
    /// As the command line would give them; a flag's is `true` or `false`.
    pub values: Vec<String>,
    pub entry: Entry,
}

/// What the descriptor says beyond the options.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub app: Option<String>,
    pub django_settings: Option<String>,
    pub env: Vec<(String, String)>,
    /// Made absolute against the file's directory.
    pub working_dir: Option<PathBuf>,
}

/// Check every key of `desc` against the options of `cmd`: the options' values, and the
/// extra keys. The first unknown key, wrong type or bad value is the error.
pub fn check(desc: &Descriptor, cmd: &Command) -> Result<(Vec<OptionValue>, Extras), Error> {
    let settings = matches!(desc.origin, Origin::Settings);
    let keys = all_keys(cmd);
    let mut options: Vec<OptionValue> = Vec::new();
    let mut extras = Extras::default();
    for entry in &desc.entries {
        // `python_path` is the descriptor's spelling of `--pythonpath`.
        let key = if entry.key == "python_path" {
            "pythonpath"
        } else {
            entry.key.as_str()
        };
        if let Some(arg) = cmd
            .get_arguments()
            .find(|a| key_of(a).as_deref() == Some(key))
        {
            if options.iter().any(|o| o.key == key) {
                return Err(desc.error(
                    entry,
                    &format!(
                        "{} and {} are the same option; give one",
                        desc.name("pythonpath"),
                        desc.name("python_path")
                    ),
                ));
            }
            let values = option_values(desc, entry, arg)?;
            options.push(OptionValue {
                id: arg.get_id().to_string(),
                key: key.to_owned(),
                values,
                entry: entry.clone(),
            });
            continue;
        }
        match key {
            "app" | "django_settings" if settings => {
                return Err(desc.error(
                    entry,
                    &format!(
                        "{} has no place in settings.FERRULE: manage.py server serves this project's WSGI_APPLICATION",
                        desc.name(key)
                    ),
                ))
            }
            "app" => extras.app = Some(non_empty(desc, entry)?),
            "django_settings" => extras.django_settings = Some(non_empty(desc, entry)?),
            "env" => extras.env = env_table(desc, entry)?,
            "working_dir" => extras.working_dir = Some(working_dir(desc, entry)?),
            _ => {
                return Err(desc.error(
                    entry,
                    &format!("unknown key {}{}", desc.name(key), suggest(key, &keys)),
                ))
            }
        }
    }
    Ok((options, extras))
}

/// The values of `entry` for the option `arg`, as the command line would spell them, after
/// the option's own parser accepted them.
fn option_values(desc: &Descriptor, entry: &Entry, arg: &Arg) -> Result<Vec<String>, Error> {
    if is_flag(arg) {
        return match entry.value {
            Value::Bool(b) => Ok(vec![b.to_string()]),
            _ => Err(desc.type_error(entry, "true or false")),
        };
    }
    let values: Vec<String> = match (&entry.value, is_list(arg)) {
        (Value::List(items), true) => items
            .iter()
            .map(Value::scalar)
            .collect::<Option<_>>()
            .ok_or_else(|| desc.type_error(entry, "a list of strings"))?,
        (Value::List(_), false) => return Err(desc.type_error(entry, "a string or a number")),
        (v, list) => vec![v.scalar().ok_or_else(|| {
            desc.type_error(
                entry,
                if list {
                    "a string or a list of strings"
                } else {
                    "a string or a number"
                },
            )
        })?],
    };
    // The option alone in a command of its own, so clap's parser for it (a number, a
    // choice, a path) is the judge, and its error is reworded to name the key.
    let long = arg.get_long().unwrap_or_default();
    let probe = Command::new("ferrule")
        .no_binary_name(true)
        .arg(arg.clone().env(None::<&str>).required(false));
    let argv = values.iter().map(|v| format!("--{long}={v}"));
    if let Err(e) = probe.try_get_matches_from(argv) {
        let why = clap_message(&e, long, &desc.name(&entry.key));
        return Err(desc.error(entry, &why));
    }
    Ok(values)
}

/// A clap error about `--long` on one line, naming `name` instead.
pub fn clap_message(e: &clap::Error, long: &str, name: &str) -> String {
    let rendered = e.render().to_string();
    let text = rendered
        .trim()
        .trim_start_matches("error: ")
        .split("\n\nFor more information")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    rename_option(&text, long, name)
}

/// Replace `'--long'` or `'--long <VALUE>'` in `message` with `name`.
pub fn rename_option(message: &str, long: &str, name: &str) -> String {
    let needle = format!("'--{long}");
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        // `'--keep-alive'` or `'--keep-alive <SECONDS>'`, not `'--keep-alive-x'`.
        let Some(end) = after.find('\'').filter(|&e| {
            after[..e].is_empty() || after[..e].starts_with(' ') || after[..e].starts_with('=')
        }) else {
            out.push_str(&rest[..i + needle.len()]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..i]);
        out.push_str(name);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn non_empty(desc: &Descriptor, entry: &Entry) -> Result<String, Error> {
    match &entry.value {
        Value::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Value::Str(_) => Err(desc.error(
            entry,
            &format!(
                "invalid value '' for {}: it is empty",
                desc.name(&entry.key)
            ),
        )),
        _ => Err(desc.type_error(entry, "a string")),
    }
}

fn env_table(desc: &Descriptor, entry: &Entry) -> Result<Vec<(String, String)>, Error> {
    let Value::Table(vars) = &entry.value else {
        return Err(desc.type_error(entry, "a table of variable names and strings"));
    };
    let mut env = Vec::new();
    for (name, value) in vars {
        let bad = |why: &str| {
            desc.error(
                entry,
                &format!("invalid variable '{name}' in {}: {why}", desc.name("env")),
            )
        };
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(bad("a variable name cannot be empty or hold '=' or NUL"));
        }
        if let Some(option) = name.strip_prefix("FERRULE_") {
            return Err(bad(&format!(
                "it is read before this file; set the option with its key instead ({})",
                option.to_ascii_lowercase()
            )));
        }
        let value = match value {
            Value::Bool(b) => b.to_string(),
            v => v
                .scalar()
                .ok_or_else(|| bad(&format!("expected a string, found {}", v.kind())))?,
        };
        if value.contains('\0') {
            return Err(bad("the value holds NUL"));
        }
        env.push((name.clone(), value));
    }
    Ok(env)
}

fn working_dir(desc: &Descriptor, entry: &Entry) -> Result<PathBuf, Error> {
    let dir = PathBuf::from(non_empty(desc, entry)?);
    // Relative to the file, so `working_dir = "."` is the directory the file is in.
    let dir = match &desc.origin {
        Origin::File { dir: base, .. } => base.join(dir),
        Origin::Settings => dir,
    };
    if !dir.is_dir() {
        return Err(desc.error(
            entry,
            &format!(
                "invalid value '{}' for {}: it is not a directory",
                dir.display(),
                desc.name(&entry.key)
            ),
        ));
    }
    Ok(dir)
}

/// ` (did you mean 'keep_alive'?)` when a known key is close to `key`, else nothing.
pub fn suggest(key: &str, keys: &[String]) -> String {
    let normal = key.to_ascii_lowercase().replace('-', "_");
    if keys.contains(&normal) {
        return format!(" (did you mean '{normal}'? keys are written with '_' for '-')");
    }
    // 3 edits: a missing `_` plus a typo or two; further than that is a different word.
    keys.iter()
        .map(|k| (strsim::levenshtein(&normal, k), k))
        .filter(|(d, k)| *d <= 3 && *d < k.len() / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map_or_else(String::new, |(_, k)| format!(" (did you mean '{k}'?)"))
}

#[cfg(test)]
mod tests;
