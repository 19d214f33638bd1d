//! Options under "Statistics", and their part of the plan.
//!
//! Validation only: what a label is and how requests are recorded is `stats/`'s business;
//! the admin listener is bound with the others by `listen/`.

use clap::Args;
use regex::Regex;

use super::{parse_bind, BindAddr};
use crate::error::Error;

/// "Statistics" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct StatsOptions {
    /// Serve statistics on this separate admin address (`HOST:PORT` or `unix:PATH`):
    /// `/metrics` (Prometheus), `/stats.json` and a dashboard at `/`. Statistics are recorded
    /// whether or not it is given; keep it off the public network. Default is none.
    #[arg(
        long,
        value_name = "ADDRESS",
        env = "FERRULE_STATS_BIND",
        help_heading = "Statistics"
    )]
    pub stats_bind: Option<String>,

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
}

impl StatsOptions {
    pub fn resolve(&self) -> Result<StatsPlan, Error> {
        let bind =
            match &self.stats_bind {
                None => None,
                Some(b) => Some(parse_bind(b).map_err(|e| {
                    Error::config(e.to_string().replace("'--bind'", "'--stats-bind'"))
                })?),
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
        Ok(StatsPlan {
            bind,
            label,
            max_labels: self.stats_max_labels,
        })
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
