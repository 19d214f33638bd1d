//! The config file's tests: keys become the options' command-line values, and every error
//! names the key (or `settings.FERRULE` entry), its line and the option.

use super::*;
use crate::config::Cli;
use clap::CommandFactory;

fn file(text: &str) -> Result<(Vec<OptionValue>, Extras), Error> {
    let desc = Descriptor::parse_toml("f.toml", std::env::temp_dir(), text)?;
    check(&desc, &Cli::command())
}

fn error(text: &str) -> String {
    file(text).unwrap_err().to_string()
}

#[test]
fn keys_become_command_line_values() {
    let (options, extras) = file(
        "app = 'hello:app'\nkeep_alive = 2.5\nthreads = 4\nbind = ['127.0.0.1:0', 'unix:/tmp/x']\n\
         access_log = true\nmax_body_size = '10M'\npython_path = ['a', 'b']\n[env]\nA = 'x'\nB = 2\n",
    )
    .unwrap();
    let got: Vec<(&str, Vec<&str>)> = options
        .iter()
        .map(|o| {
            (
                o.key.as_str(),
                o.values.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("keep_alive", vec!["2.5"]),
            ("threads", vec!["4"]),
            ("bind", vec!["127.0.0.1:0", "unix:/tmp/x"]),
            ("access_log", vec!["true"]),
            ("max_body_size", vec!["10M"]),
            ("pythonpath", vec!["a", "b"]),
        ]
    );
    assert_eq!(options[2].entry.line, Some(4));
    assert_eq!(extras.app.as_deref(), Some("hello:app"));
    assert_eq!(
        extras.env,
        vec![("A".into(), "x".into()), ("B".into(), "2".into())]
    );
    // A repeatable option takes a single value too.
    assert_eq!(
        file("bind = 'unix:/tmp/y'").unwrap().0[0].values,
        ["unix:/tmp/y"]
    );
}

#[test]
fn errors_name_the_key_and_the_line() {
    for (text, expected) in [
        (
            "threads = 2\n\nkeepalive = 5\n",
            "f.toml:3: unknown key 'keepalive' (did you mean 'keep_alive'?)",
        ),
        (
            "keep-alive = 5",
            "f.toml:1: unknown key 'keep-alive' (did you mean 'keep_alive'? keys are written with '_' for '-')",
        ),
        ("nonsense = 1", "f.toml:1: unknown key 'nonsense'"),
        (
            "\nthreads = 'many'",
            "f.toml:2: invalid value 'many' for 'threads': expected a whole number, such as 8",
        ),
        (
            "threads = [1]",
            "f.toml:1: invalid type for 'threads': expected a string or a number, found a list",
        ),
        (
            "access_log = 'yes'",
            "f.toml:1: invalid type for 'access_log': expected true or false, found a string",
        ),
        (
            "bind = [{a = 1}]",
            "f.toml:1: invalid type for 'bind': expected a list of strings, found a list",
        ),
        (
            "http = 'h3'",
            "f.toml:1: invalid value 'h3' for 'http'",
        ),
        (
            "python_path = 'a'\npythonpath = 'b'",
            "f.toml:2: 'pythonpath' and 'python_path' are the same option; give one",
        ),
        (
            "[env]\nFERRULE_THREADS = '4'",
            "f.toml:1: invalid variable 'FERRULE_THREADS' in 'env'",
        ),
        ("env = 'A=1'", "f.toml:1: invalid type for 'env'"),
        ("working_dir = '/nonexistent/x'", "f.toml:1: invalid value '/nonexistent/x' for 'working_dir'"),
        ("config = 'x.toml'", "f.toml:1: unknown key 'config'"),
        ("threads = 2\nthreads = 3", "f.toml:2:"),
        ("threads = ", "f.toml:1:"),
    ] {
        let got = error(text);
        assert!(got.starts_with(expected), "{text:?}: {got}");
    }
}

#[test]
fn settings_errors_name_the_setting() {
    let check_json = |json: &str| {
        Descriptor::from_settings_json(json)
            .and_then(|d| check(&d, &Cli::command()))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        check_json(r#"{"threads": "x"}"#),
        "invalid value 'x' for settings.FERRULE['threads']: expected a whole number, such as 8"
    );
    assert!(check_json(r#"{"keepalive": 1}"#)
        .starts_with("unknown key settings.FERRULE['keepalive'] (did you mean"));
    assert!(check_json(r#"{"app": "x:y"}"#).contains("settings.FERRULE['app'] has no place"));
    assert!(check_json(r#"{"threads": null}"#).contains("found None"));
    assert_eq!(
        check_json("[1]"),
        "settings.FERRULE must be a dict, not a list"
    );
}

#[test]
fn renaming_options_in_messages() {
    for (message, expected) in [
        (
            "invalid value 'x' for '--keep-alive <SECONDS>': no",
            "invalid value 'x' for K: no",
        ),
        (
            "invalid value '-1' for '--keep-alive': no",
            "invalid value '-1' for K: no",
        ),
        ("'--keep-alive-x' stays", "'--keep-alive-x' stays"),
    ] {
        assert_eq!(rename_option(message, "keep-alive", "K"), expected);
    }
}
