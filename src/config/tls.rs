//! Options under "TLS and HTTP/2", and their part of the plan.
//!
//! Only the option rules live here (both `--certfile` and `--keyfile` or neither, mutual TLS
//! needs `--ca-certs`, sizes and counts in range). Reading the PEM files, checking that the key
//! belongs to the certificate and building the rustls configuration is `listen/tls.rs`'s job,
//! done before anything binds.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::parse::parse_size;
use crate::error::Error;

const HEADING: &str = "TLS and HTTP/2";

/// "TLS and HTTP/2" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct TlsOptions {
    /// PEM file with the server certificate, followed by its intermediate certificates. With
    /// `--keyfile`, every listener (TCP and Unix) speaks HTTPS; send SIGHUP to reload both
    /// files from disk without dropping connections. Default is none (plain HTTP).
    #[arg(long, value_name = "PATH", env = "FERRULE_CERTFILE", help_heading = HEADING)]
    pub certfile: Option<PathBuf>,

    /// PEM file with the private key of `--certfile`: PKCS#8 (`PRIVATE KEY`, or `ENCRYPTED
    /// PRIVATE KEY` with `--keyfile-password`), PKCS#1 RSA (`RSA PRIVATE KEY`) or SEC1 EC (`EC
    /// PRIVATE KEY`). Default is none.
    #[arg(long, value_name = "PATH", env = "FERRULE_KEYFILE", help_heading = HEADING)]
    pub keyfile: Option<PathBuf>,

    /// Password of an encrypted `--keyfile`. Prefer the environment variable: a command line
    /// is visible to every user of the machine. Default is none.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "FERRULE_KEYFILE_PASSWORD",
        hide_env_values = true,
        help_heading = HEADING
    )]
    pub keyfile_password: Option<String>,

    /// PEM file with the certificate authorities that client certificates must chain to
    /// (mutual TLS, with `--client-cert`). Reloaded on SIGHUP too. Default is none.
    #[arg(long, value_name = "PATH", env = "FERRULE_CA_CERTS", help_heading = HEADING)]
    pub ca_certs: Option<PathBuf>,

    /// Ask clients for a certificate signed by `--ca-certs`: `optional` verifies one when it
    /// is sent, `required` refuses the handshake without one. Default is none.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        default_value_t = ClientCert::None,
        env = "FERRULE_CLIENT_CERT",
        help_heading = HEADING
    )]
    pub client_cert: ClientCert,

    /// Oldest TLS version accepted: `1.2` or `1.3`. Default is 1.2.
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        default_value_t = TlsVersion::V1_2,
        env = "FERRULE_TLS_MIN",
        help_heading = HEADING
    )]
    pub tls_min: TlsVersion,

    /// HTTP versions spoken: `1` (HTTP/1.1 only), `2` (HTTP/2 only: ALPN `h2` on TLS, prior
    /// knowledge on cleartext) or `auto` (both: ALPN on TLS, the HTTP/2 connection preface
    /// detected on cleartext). Default is auto.
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        default_value_t = HttpMode::Auto,
        env = "FERRULE_HTTP",
        help_heading = HEADING
    )]
    pub http: HttpMode,

    /// Most requests (streams) a client may have open at once on one HTTP/2 connection;
    /// further ones are refused with `REFUSED_STREAM` and retried by the client. Default is 100.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        env = "FERRULE_H2_MAX_CONCURRENT_STREAMS",
        help_heading = HEADING
    )]
    pub h2_max_concurrent_streams: u32,

    /// Largest request header list on HTTP/2 (names and values, plus 32 bytes per field as
    /// RFC 9113 counts them; suffixes K, M); larger gets 431. `--limit-request-fields` and
    /// `--limit-request-field-size` apply to HTTP/2 requests too. Default is 64K.
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "64K",
        env = "FERRULE_H2_MAX_HEADER_LIST_SIZE",
        help_heading = HEADING
    )]
    pub h2_max_header_list_size: String,
}

/// `--client-cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ClientCert {
    #[default]
    None,
    Optional,
    Required,
}

/// `--tls-min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TlsVersion {
    #[default]
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

/// `--http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum HttpMode {
    #[value(name = "1")]
    One,
    #[value(name = "2")]
    Two,
    #[default]
    Auto,
}

/// A password that stays out of `Debug` output (the plan is printed in debug logs).
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The files and rules of a TLS listener; `listen/tls.rs` reads them at start-up and again
/// on SIGHUP.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certfile: PathBuf,
    pub keyfile: PathBuf,
    pub password: Option<Secret>,
    pub ca_certs: Option<PathBuf>,
    pub client_cert: ClientCert,
    pub min_version: TlsVersion,
}

/// HTTP/2 limits.
#[derive(Debug, Clone, Copy)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 64 << 10,
        }
    }
}

/// The validated "TLS and HTTP/2" options.
#[derive(Debug, Clone, Default)]
pub struct TlsPlan {
    /// `None`: every listener speaks cleartext HTTP.
    pub files: Option<TlsFiles>,
    pub http: HttpMode,
    pub h2: H2Limits,
}

impl TlsOptions {
    pub fn resolve(&self) -> Result<TlsPlan, Error> {
        let files = match (&self.certfile, &self.keyfile) {
            (Some(certfile), Some(keyfile)) => Some(TlsFiles {
                certfile: certfile.clone(),
                keyfile: keyfile.clone(),
                password: self.keyfile_password.clone().map(Secret),
                ca_certs: self.ca_certs.clone(),
                client_cert: self.client_cert,
                min_version: self.tls_min,
            }),
            (Some(_), None) => {
                return Err(Error::config(
                    "'--certfile' needs '--keyfile': give the certificate's private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "'--keyfile' needs '--certfile': give the certificate the key belongs to",
                ))
            }
            (None, None) => None,
        };
        if files.is_none() {
            if self.ca_certs.is_some() || self.client_cert != ClientCert::None {
                return Err(Error::config(
                    "'--ca-certs' and '--client-cert' need '--certfile' and '--keyfile': client certificates exist only on TLS",
                ));
            }
            if self.keyfile_password.is_some() {
                return Err(Error::config(
                    "'--keyfile-password' (or FERRULE_KEYFILE_PASSWORD) is set but there is no '--keyfile'",
                ));
            }
        }
        // A CA without --client-cert would look like mutual TLS and check nothing; say so.
        match (&self.ca_certs, self.client_cert) {
            (None, ClientCert::Optional | ClientCert::Required) => {
                let when = if self.client_cert == ClientCert::Optional {
                    "optional"
                } else {
                    "required"
                };
                return Err(Error::config(format!(
                    "invalid value '{when}' for '--client-cert': it needs '--ca-certs', the authorities client certificates must chain to"
                )));
            }
            (Some(_), ClientCert::None) => {
                return Err(Error::config(
                    "'--ca-certs' is given but '--client-cert' is none, so no client certificate would be checked: add '--client-cert optional' or '--client-cert required'",
                ));
            }
            _ => {}
        }
        if self.h2_max_concurrent_streams == 0 {
            return Err(Error::config(
                "invalid value '0' for '--h2-max-concurrent-streams': at least 1 is needed",
            ));
        }
        let list = parse_size("--h2-max-header-list-size", &self.h2_max_header_list_size)?;
        // 1 KiB: below that not even a browser's ordinary headers fit.
        let max_header_list_size =
            u32::try_from(list)
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    Error::config(format!(
                    "invalid value '{}' for '--h2-max-header-list-size': expected from 1K to 4G-1",
                    self.h2_max_header_list_size
                ))
                })?;
        Ok(TlsPlan {
            files,
            http: self.http,
            h2: H2Limits {
                max_concurrent_streams: self.h2_max_concurrent_streams,
                max_header_list_size,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Cli;
    use clap::Parser;

    use super::*;

    fn resolve(args: &[&str]) -> Result<TlsPlan, String> {
        let command_line = std::iter::once("ferrule")
            .chain(args.iter().copied())
            .chain(std::iter::once("app:app"));
        let cli = Cli::try_parse_from(command_line).map_err(|e| e.to_string())?;
        cli.options.tls.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn option_rules() {
        let cases: &[(&[&str], Result<(), &str>)] = &[
            (&[], Ok(())),
            (&["--certfile", "c", "--keyfile", "k"], Ok(())),
            (&["--certfile", "c"], Err("'--certfile' needs '--keyfile'")),
            (&["--keyfile", "k"], Err("'--keyfile' needs '--certfile'")),
            (&["--ca-certs", "ca"], Err("need '--certfile'")),
            (&["--keyfile-password", "p"], Err("there is no '--keyfile'")),
            (
                &[
                    "--certfile",
                    "c",
                    "--keyfile",
                    "k",
                    "--client-cert",
                    "required",
                ],
                Err("'--client-cert': it needs '--ca-certs'"),
            ),
            (
                &["--certfile", "c", "--keyfile", "k", "--ca-certs", "ca"],
                Err("'--client-cert' is none"),
            ),
            (
                &[
                    "--certfile",
                    "c",
                    "--keyfile",
                    "k",
                    "--ca-certs",
                    "ca",
                    "--client-cert",
                    "optional",
                ],
                Ok(()),
            ),
            (
                &["--h2-max-concurrent-streams", "0"],
                Err("'--h2-max-concurrent-streams'"),
            ),
            (
                &["--h2-max-header-list-size", "100"],
                Err("'--h2-max-header-list-size'"),
            ),
            (
                &["--h2-max-header-list-size", "4G"],
                Err("'--h2-max-header-list-size'"),
            ),
            (&["--tls-min", "1.1"], Err("'--tls-min <VERSION>'")),
            (&["--http", "3"], Err("'--http <VERSION>'")),
        ];
        for (args, want) in cases {
            match (resolve(args), want) {
                (Ok(_), Ok(())) => {}
                (Err(got), Err(want)) => assert!(got.contains(want), "{args:?}: {got}"),
                (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn defaults() {
        let plan = resolve(&[]).unwrap();
        assert!(plan.files.is_none());
        assert_eq!(plan.http, HttpMode::Auto);
        assert_eq!(plan.h2.max_concurrent_streams, 100);
        assert_eq!(plan.h2.max_header_list_size, 65536);
        let plan = resolve(&["--certfile", "c", "--keyfile", "k", "--tls-min", "1.3"]).unwrap();
        let files = plan.files.unwrap();
        assert_eq!(files.min_version, TlsVersion::V1_3);
        assert!(!format!("{files:?}").contains("password: Some(\""));
    }
}
