//! Options under "Statistics", and their part of the plan.
//!
//! Validation only: what a label is and how requests are recorded is `stats/`'s business;
//! the admin listener is bound with the others by `listen/`.

use std::path::PathBuf;

use clap::Args;
use regex::Regex;

use super::{parse_bind, BindAddr};
use crate::error::Error;

/// "Statistics" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct StatsOptions {
    /// Serve statistics on this separate admin address (`HOST:PORT`, `:PORT` for
    /// 127.0.0.1:PORT, or `unix:PATH`): `/metrics` (Prometheus), `/stats.json` and a dashboard
    /// at `/`, with `/healthz` and `/readyz`. They show the paths of requests in flight, view
    /// names and counts: keep it on loopback or a Unix socket, or set `--stats-token`.
    /// Statistics are recorded whether or not it is given. Default is none.
    #[arg(
        long,
        value_name = "ADDRESS",
        env = "FERRULE_STATS_BIND",
        help_heading = "Statistics"
    )]
    pub stats_bind: Option<String>,

    /// Host names the admin listener answers to over TCP, besides the address it is reached
    /// on (an IP literal) and `localhost`; compared without case, the port ignored. Other
    /// `Host` headers get 421, which stops DNS rebinding from a browser. `*` accepts any
    /// (unsafe: a web page on the machine can then read the statistics). Default is none.
    #[arg(
        long,
        value_name = "NAME",
        env = "FERRULE_STATS_HOSTS",
        value_delimiter = ',',
        help_heading = "Statistics"
    )]
    pub stats_hosts: Vec<String>,

    /// Require `Authorization: Bearer TOKEN` on the admin listener (401 otherwise), except
    /// `/healthz` and `/readyz`, which then leave out their reasons. A browser opens
    /// `/?token=TOKEN` once and gets a session cookie. At least 16 characters of letters,
    /// digits and `-._~+/` (a bearer token). Prefer the environment variable or
    /// `--stats-token-file`: a command line is visible to every user of the machine. Default
    /// is none.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FERRULE_STATS_TOKEN",
        hide_env_values = true,
        conflicts_with = "stats_token_file",
        help_heading = "Statistics"
    )]
    pub stats_token: Option<String>,

    /// Read `--stats-token` from this file (its first line), so the secret is in neither the
    /// command line nor the environment. Default is none.
    #[arg(
        long,
        value_name = "PATH",
        env = "FERRULE_STATS_TOKEN_FILE",
        help_heading = "Statistics"
    )]
    pub stats_token_file: Option<PathBuf>,

    /// For an application that is not Django: a regular expression matched against the
    /// request path whose first capture group (or whole match) labels the request in the
    /// statistics; paths it does not match are labelled `other`. Django requests are labelled
    /// with their view name instead. Default is the first path segment (`/api/users/7` →
    /// `/api`).
    #[arg(
        long,
        value_name = "REGEX",
        env = "FERRULE_STATS_LABEL",
        help_heading = "Statistics"
    )]
    pub stats_label: Option<String>,

    /// At most this many distinct labels are kept, so a scanner requesting random paths cannot
    /// grow memory: a label made from a path may be evicted for a new one (the least hit
    /// first, its counts moving into `other`); labels the application sets are never evicted,
    /// and requests that find no place are counted under `other`. Default is 200.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 200,
        env = "FERRULE_STATS_MAX_LABELS",
        help_heading = "Statistics"
    )]
    pub stats_max_labels: usize,
}

/// The statistics part of the plan.
#[derive(Debug, Clone)]
pub struct StatsPlan {
    pub bind: Option<BindAddr>,
    pub label: Option<Regex>,
    pub max_labels: usize,
    /// `--stats-hosts`, lowercased.
    pub hosts: Vec<String>,
    pub token: Option<Token>,
}

/// The `--stats-token`; its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Shortest token accepted. Arbitrary, as short as a random token should ever be: 16
/// characters of a bearer token's alphabet are about 96 bits.
const MIN_TOKEN: usize = 16;

impl StatsOptions {
    pub fn resolve(&self) -> Result<StatsPlan, Error> {
        let bind = match &self.stats_bind {
            None => None,
            // `:PORT` is loopback here, not every interface as for `--bind`: the statistics
            // are not for everyone.
            Some(b) => Some(
                parse_bind(
                    &b.strip_prefix(':')
                        .map_or_else(|| b.clone(), |port| format!("127.0.0.1:{port}")),
                )
                .map_err(|e| {
                    Error::config(
                        e.to_string()
                            .replace("'--bind'", "'--stats-bind'")
                            .replace("'127.0.0.1:", "':"),
                    )
                })?,
            ),
        };
        let label = match &self.stats_label {
            None => None,
            Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
                Error::config(format!(
                    "invalid value '{pattern}' for '--stats-label': {}",
                    e.to_string()
                        .lines()
                        .last()
                        .unwrap_or("not a regular expression")
                ))
            })?),
        };
        if self.stats_max_labels == 0 {
            return Err(Error::config(
                "invalid value '0' for '--stats-max-labels': at least 1 is needed",
            ));
        }
        let hosts = self
            .stats_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Ok(StatsPlan {
            bind,
            label,
            max_labels: self.stats_max_labels,
            hosts,
            token: self.token()?,
        })
    }

    /// `--stats-token`, or the first line of `--stats-token-file`, checked. Errors name the
    /// option, never the token.
    fn token(&self) -> Result<Option<Token>, Error> {
        let (token, option) = match (&self.stats_token, &self.stats_token_file) {
            (Some(token), _) => (token.clone(), "'--stats-token'".to_owned()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!(
                        "cannot read '{}' for '--stats-token-file': {e}",
                        path.display()
                    ))
                })?;
                let first = text.lines().next().unwrap_or_default().trim().to_owned();
                (
                    first,
                    format!("the token in '{}' ('--stats-token-file')", path.display()),
                )
            }
            (None, None) => return Ok(None),
        };
        if token.len() < MIN_TOKEN {
            return Err(Error::config(format!(
                "{option} is too short: at least {MIN_TOKEN} characters are needed (try `openssl rand -hex 32`)"
            )));
        }
        let bearer = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
        let body = token.trim_end_matches('=');
        if !body.chars().all(bearer) {
            return Err(Error::config(format!(
                "{option} has a character a bearer token cannot hold: use letters, digits and -._~+/ (try `openssl rand -hex 32`)"
            )));
        }
        Ok(Some(Token(token)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{BindAddr, Cli};

    fn resolve(options: &[&str]) -> Result<super::StatsPlan, String> {
        let argv = [&["ferrule"], options, &["app:app"]].concat();
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.options.stats.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let plan = resolve(&[]).unwrap();
        assert!(plan.bind.is_none() && plan.label.is_none());
        assert_eq!(plan.max_labels, 200);
        let plan = resolve(&["--stats-bind", "unix:/tmp/admin.sock"]).unwrap();
        assert_eq!(plan.bind, Some(BindAddr::Unix("/tmp/admin.sock".into())));
        assert!(plan.hosts.is_empty() && plan.token.is_none());
    }

    #[test]
    fn a_bare_port_is_loopback() {
        let plan = resolve(&["--stats-bind", ":9100"]).unwrap();
        assert_eq!(
            plan.bind,
            Some(BindAddr::Tcp("127.0.0.1:9100".parse().unwrap()))
        );
        let plan = resolve(&["--stats-bind", "0.0.0.0:9100"]).unwrap();
        assert_eq!(
            plan.bind,
            Some(BindAddr::Tcp("0.0.0.0:9100".parse().unwrap()))
        );
        let err = resolve(&["--stats-bind", ":99999"]).unwrap_err();
        assert!(err.contains("':99999' for '--stats-bind'"), "{err}");
    }

    #[test]
    fn hosts_and_tokens() {
        let plan = resolve(&[
            "--stats-hosts",
            "Stats.Example.com, admin",
            "--stats-token",
            "abcdefghijklmnop",
        ])
        .unwrap();
        assert_eq!(plan.hosts, ["stats.example.com", "admin"]);
        assert_eq!(plan.token.unwrap().expose(), "abcdefghijklmnop");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123==\n").unwrap();
        let plan = resolve(&["--stats-token-file", file.to_str().unwrap()]).unwrap();
        let token = plan.token.unwrap();
        assert_eq!(token.expose(), "0123456789abcdef0123==");
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    #[test]
    fn bad_tokens_name_the_option_and_not_the_token() {
        for (args, says) in [
            (&["--stats-token", "short"][..], "too short"),
            (
                &["--stats-token", "has a space in it, sadly"][..],
                "a bearer token cannot hold",
            ),
            (
                &["--stats-token-file", "/nonexistent/token"][..],
                "cannot read",
            ),
        ] {
            let err = resolve(args).unwrap_err();
            assert!(err.contains("--stats-token") && err.contains(says), "{err}");
            assert!(!err.contains("sadly") && !err.contains("'short'"), "{err}");
        }
        assert!(resolve(&[
            "--stats-token",
            "abcdefghijklmnop",
            "--stats-token-file",
            "/x"
        ])
        .is_err());
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
            (&["--stats-bind", "nowhere"][..], "--stats-bind"),
            (&["--stats-label", "(unclosed"][..], "--stats-label"),
            (&["--stats-max-labels", "0"][..], "--stats-max-labels"),
        ] {
            let err = resolve(args).unwrap_err();
            assert!(err.contains(option), "{err}");
        }
    }
}
