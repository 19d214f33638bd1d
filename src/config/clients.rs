//! Options under "Limits per client", and their part of the plan.
//!
//! Validation only: the spool's accounting is `body.rs`'s, the connection count per address
//! `listen/per_ip.rs`'s, the transfer rates `body.rs`'s and `listen/deadline.rs`'s.

use std::path::PathBuf;

use clap::Args;

use super::parse_size;
use crate::error::Error;

/// "Limits per client" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct ClientOptions {
    /// Most connections one client address may hold at once (a client a PROXY protocol header
    /// names counts as itself). Connections from `--forwarded-allow-ips` proxies and over Unix
    /// sockets are not counted: behind a trusted proxy, the limit applies instead to the
    /// requests in flight from each forwarded client, which get 429 beyond it. A connection
    /// over the limit is closed at once. Shared out among `--workers`. 0 turns it off. Default
    /// is a quarter of `--max-connections`.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        env = "FERRULE_MAX_CONNECTIONS_PER_IP",
        help_heading = "Limits per client"
    )]
    pub max_connections_per_ip: Option<usize>,

    /// Slowest transfer accepted, in bytes a second: a request body must arrive at least this
    /// fast on average over each `--body-timeout`, and a response the client has kept waiting
    /// for `--send-timeout` must have been taken at least this fast meanwhile; a slower
    /// client gets 408 (body) or is disconnected (response). 0 turns it off. Default is 500,
    /// Apache `mod_reqtimeout`'s `MinRate`.
    #[arg(
        value_parser = crate::config::parse::whole::<u64>,
        long,
        value_name = "BYTES",
        default_value_t = 500,
        env = "FERRULE_MIN_RATE",
        help_heading = "Limits per client"
    )]
    pub min_rate: u64,

    /// Most requests of one HTTP/2 connection waiting for or running in the application at
    /// once; further ones get 503 with `Retry-After` at once, so one connection cannot fill
    /// the queue. Connections from `--forwarded-allow-ips` proxies and Unix-socket peers,
    /// which carry many clients, are not limited. Default is 32.
    #[arg(
        value_parser = crate::config::parse::whole::<usize>,
        long,
        value_name = "N",
        default_value_t = 32,
        env = "FERRULE_H2_MAX_PENDING",
        help_heading = "Limits per client"
    )]
    pub h2_max_pending: usize,

    /// Most bytes of request bodies spooled to disk at once (suffixes K, M, G), shared out
    /// evenly among `--workers`. A body takes room as its bytes arrive; one whose declared
    /// length does not fit now gets 503 with `Retry-After` before it is read (a chunked one
    /// as it passes the cap), one larger than a worker's whole share 413, and the log says
    /// why. Default is half the free space of `--spool-dir` at start-up.
    #[arg(
        long,
        value_name = "BYTES",
        env = "FERRULE_MAX_SPOOL_SIZE",
        help_heading = "Limits per client"
    )]
    pub max_spool_size: Option<String>,

    /// Directory for spooled request bodies (unlinked files, gone with the request). Default
    /// is `$TMPDIR`, else /tmp.
    #[arg(
        long,
        value_name = "DIR",
        env = "FERRULE_SPOOL_DIR",
        help_heading = "Limits per client"
    )]
    pub spool_dir: Option<PathBuf>,
}

/// The validated "Limits per client" options.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// `--max-connections-per-ip` for the whole server; `None` when off.
    pub per_ip: Option<usize>,
    /// `--min-rate`, bytes a second; `None` when off.
    pub min_rate: Option<u64>,
    /// `--h2-max-pending`.
    pub h2_max_pending: usize,
    /// `--max-spool-size` for the whole server; `None` for the default (from the free space).
    pub max_spool: Option<u64>,
    /// `--spool-dir`, or the system's temporary directory.
    pub spool_dir: PathBuf,
}

impl ClientOptions {
    pub fn resolve(&self, max_connections: usize) -> Result<ClientPlan, Error> {
        let per_ip = self
            .max_connections_per_ip
            .unwrap_or_else(|| (max_connections / 4).max(1));
        if self.h2_max_pending == 0 {
            return Err(Error::config(
                "invalid value '0' for '--h2-max-pending': at least 1 is needed",
            ));
        }
        let max_spool = match &self.max_spool_size {
            None => None,
            Some(size) => Some(parse_size("--max-spool-size", size)?),
        };
        let spool_dir = self.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        if !spool_dir.is_dir() {
            return Err(Error::config(format!(
                "invalid value '{}' for '--spool-dir': not a directory",
                spool_dir.display()
            )));
        }
        Ok(ClientPlan {
            per_ip: Some(per_ip).filter(|n| *n > 0),
            min_rate: Some(self.min_rate).filter(|r| *r > 0),
            h2_max_pending: self.h2_max_pending,
            max_spool,
            spool_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Cli;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<super::ClientPlan, String> {
        let command_line = [&["ferrule"], args, &["a:b"]].concat();
        let cli = Cli::try_parse_from(command_line).map_err(|e| e.to_string())?;
        cli.options
            .resolve(None)
            .map(|p| p.clients)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_a_quarter_of_the_slots_per_address_and_500_bytes_a_second() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.per_ip, Some(2500));
        assert_eq!(p.min_rate, Some(500));
        assert_eq!(p.h2_max_pending, 32);
        assert_eq!(p.max_spool, None);
        assert_eq!(plan(&["--max-connections", "50"]).unwrap().per_ip, Some(12));
        assert_eq!(plan(&["--max-connections", "2"]).unwrap().per_ip, Some(1));
    }

    #[test]
    fn zero_turns_the_per_address_limit_and_the_rate_off() {
        let p = plan(&["--max-connections-per-ip", "0", "--min-rate", "0"]).unwrap();
        assert_eq!((p.per_ip, p.min_rate), (None, None));
        assert_eq!(plan(&["--max-spool-size", "0"]).unwrap().max_spool, Some(0));
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
            (&["--h2-max-pending", "0"][..], "--h2-max-pending"),
            (&["--max-spool-size", "lots"][..], "--max-spool-size"),
            (&["--spool-dir", "/nonexistent/spool"][..], "--spool-dir"),
        ] {
            let err = plan(args).unwrap_err();
            assert!(err.contains(option), "{err}");
        }
    }
}
