//! Configuration parsing: the `--config` TOML file and `settings.FERRULE` (JSON), each checked
//! key by key against the options' own clap parsers; and `parse_size` on the raw text.
//!
//! Invariants: no panic; an error is a configuration error (exit code 2) with a message.
//! Resolving a plan is left out: it resolves host names.
#![no_main]

use std::sync::OnceLock;

use _ferrule::fuzzing::{check_descriptor, parse_size, Cli, Descriptor, DjangoCli};
use clap::{Command, CommandFactory};
use libfuzzer_sys::fuzz_target;

fn commands() -> &'static (Command, Command) {
    static COMMANDS: OnceLock<(Command, Command)> = OnceLock::new();
    COMMANDS.get_or_init(|| (Cli::command(), DjangoCli::command()))
}

fn assert_config_error(e: &_ferrule::error::Error) {
    let message = e.to_string();
    assert!(!message.trim().is_empty(), "an empty message: {e:?}");
    assert_eq!(e.exit_code(), 2, "{message}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (cli, django) = commands();
    match Descriptor::parse_toml("f.toml", std::env::temp_dir(), text) {
        Ok(desc) => {
            if let Err(e) = check_descriptor(&desc, cli) {
                assert_config_error(&e);
            }
        }
        Err(e) => assert_config_error(&e),
    }
    match Descriptor::from_settings_json(text) {
        Ok(desc) => {
            if let Err(e) = check_descriptor(&desc, django) {
                assert_config_error(&e);
            }
        }
        Err(e) => assert_config_error(&e),
    }
    if let Err(e) = parse_size("--max-body-size", text) {
        assert_config_error(&e);
    }
});
