//! Options under "Proxies and URL prefix", and their part of the plan.
//!
//! Validation only: the prefix's normal form and the allow-list's syntax belong to
//! `prefix.rs` and `trust.rs`, and applying them to requests to `http/proxy.rs`.

use clap::{Args, ValueEnum};

use super::prefix;
use super::trust::AllowList;
use crate::error::Error;

/// "Proxies and URL prefix" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct ProxyOptions {
    /// Serve the application under this URL path: `/app/notes/` reaches it with
    /// `SCRIPT_NAME=/app` and `PATH_INFO=/notes/`, so Django's `reverse()` and redirects carry
    /// the prefix; other paths get a 404 page linking to the prefixed URL. A Django project's
    /// `FORCE_SCRIPT_NAME` is used when this is not given. Default is none.
    #[arg(
        long,
        value_name = "PATH",
        env = "FERRULE_PREFIX",
        help_heading = "Proxies and URL prefix"
    )]
    pub prefix: Option<String>,

    /// Answer a request outside `--prefix` with a 308 redirect to the same URL under it,
    /// instead of a 404 page. Default is off.
    #[arg(
        long,
        env = "FERRULE_PREFIX_REDIRECT",
        help_heading = "Proxies and URL prefix"
    )]
    pub prefix_redirect: bool,

    /// Peers trusted to send `X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`, `-Ssl`
    /// and `Forwarded`: addresses and CIDR blocks (`10.0.0.0/8`, `fd00::/8`), comma-separated,
    /// or `*` for any. Unix-socket peers are always trusted. From anyone else these headers are
    /// removed before the application sees them. Default is `127.0.0.1,::1`.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "127.0.0.1,::1",
        env = "FERRULE_FORWARDED_ALLOW_IPS",
        help_heading = "Proxies and URL prefix"
    )]
    pub forwarded_allow_ips: String,

    /// Which forwarding headers a trusted proxy writes, and so which ones are read:
    /// `x-forwarded` (`X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`, `-Ssl`: nginx,
    /// Apache, Traefik, Caddy, cloud load balancers, haproxy `option forwardfor`), `forwarded`
    /// (RFC 7239 `Forwarded`: haproxy `option forwarded`) or `both` (where both name the
    /// client, scheme or host they must agree, or the request gets 400). The headers
    /// not read are removed even from a trusted proxy, so a client cannot pass its own through a
    /// proxy that only writes the others. Default is x-forwarded.
    #[arg(
        long,
        value_enum,
        value_name = "WHICH",
        default_value_t = ForwardedHeaders::XForwarded,
        env = "FERRULE_FORWARDED_HEADERS",
        help_heading = "Proxies and URL prefix"
    )]
    pub forwarded_headers: ForwardedHeaders,

    /// Every connection to the `--bind` listeners starts with a PROXY protocol header (version
    /// 1 or 2: haproxy `send-proxy`/`send-proxy-v2`, AWS and GCP network load balancers), and
    /// the client it names is the request's `REMOTE_ADDR` and the access log's. Accepted only
    /// from `--forwarded-allow-ips` peers (and Unix-socket peers); a connection from anyone
    /// else, or without a valid header, is closed. Default is off.
    #[arg(
        long,
        env = "FERRULE_PROXY_PROTOCOL",
        help_heading = "Proxies and URL prefix"
    )]
    pub proxy_protocol: bool,
}

/// `--forwarded-headers`: the header family a trusted proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ForwardedHeaders {
    #[default]
    #[value(name = "x-forwarded")]
    XForwarded,
    #[value(name = "forwarded")]
    Forwarded,
    #[value(name = "both")]
    Both,
}

/// The validated "Proxies and URL prefix" options.
#[derive(Debug, Clone, Default)]
pub struct ProxyPlan {
    /// `--prefix` in normal form; `None` when not given (Django's `FORCE_SCRIPT_NAME` may
    /// then apply), `Some("")` when given as `/`.
    pub prefix: Option<String>,
    pub prefix_redirect: bool,
    pub allow: AllowList,
    pub headers: ForwardedHeaders,
    /// `--proxy-protocol`.
    pub protocol: bool,
}

impl ProxyOptions {
    pub fn resolve(&self) -> Result<ProxyPlan, Error> {
        let prefix = match &self.prefix {
            None => None,
            Some(p) => Some(
                prefix::normalize(p)
                    .map_err(|why| {
                        Error::config(format!("invalid value '{p}' for '--prefix': {why}"))
                    })?
                    .to_owned(),
            ),
        };
        let allow = AllowList::parse(self.forwarded_allow_ips.split(',')).map_err(|(entry, why)| {
            Error::config(format!(
                "invalid value '{entry}' for '--forwarded-allow-ips': {why}; give IP addresses or CIDR blocks such as 10.0.0.0/8, separated by commas, or '*'"
            ))
        })?;
        Ok(ProxyPlan {
            prefix,
            prefix_redirect: self.prefix_redirect,
            allow,
            headers: self.forwarded_headers,
            protocol: self.proxy_protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Cli;
    use clap::Parser;

    fn resolve(args: &[&str]) -> Result<super::ProxyPlan, String> {
        let mut command_line = vec!["ferrule"];
        command_line.extend_from_slice(args);
        command_line.push("app:app");
        let cli = Cli::try_parse_from(command_line).map_err(|e| e.to_string())?;
        cli.options.proxy.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let plan = resolve(&[]).unwrap();
        assert_eq!(plan.prefix, None);
        assert!(!plan.prefix_redirect);
        assert!(plan.allow.contains("127.0.0.1".parse().unwrap()));
        assert!(plan.allow.contains("::1".parse().unwrap()));
        assert!(!plan.allow.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(plan.headers, super::ForwardedHeaders::XForwarded);
    }

    #[test]
    fn forwarded_headers_values() {
        use super::ForwardedHeaders as F;
        for (arg, want) in [
            ("x-forwarded", F::XForwarded),
            ("forwarded", F::Forwarded),
            ("both", F::Both),
        ] {
            assert_eq!(
                resolve(&["--forwarded-headers", arg]).unwrap().headers,
                want
            );
        }
        let err = resolve(&["--forwarded-headers", "x-forwarded-for"]).unwrap_err();
        assert!(
            err.contains("invalid value 'x-forwarded-for' for '--forwarded-headers"),
            "{err}"
        );
    }

    #[test]
    fn prefix_is_normalized_or_refused() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("/app", Ok("/app")),
            ("/app/", Ok("/app")),
            ("/", Ok("")),
            ("app", Err("invalid value 'app' for '--prefix': it must start with '/'")),
            (
                "/a/../b",
                Err("invalid value '/a/../b' for '--prefix': it must not contain '.' or '..' segments"),
            ),
            (
                "/a%2Fb",
                Err("invalid value '/a%2Fb' for '--prefix': it must not be percent-encoded; write the characters themselves"),
            ),
        ];
        for (arg, want) in cases {
            let got = resolve(&["--prefix", arg]).map(|p| p.prefix.unwrap());
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                want.map_err(|e| e),
                "{arg}"
            );
        }
    }

    #[test]
    fn allow_list_entries() {
        let plan = resolve(&["--forwarded-allow-ips", "10.0.0.0/8, 192.0.2.7"]).unwrap();
        assert!(plan.allow.contains("10.1.1.1".parse().unwrap()));
        assert!(plan.allow.contains("192.0.2.7".parse().unwrap()));
        assert!(!plan.allow.contains("127.0.0.1".parse().unwrap()));
        assert!(resolve(&["--forwarded-allow-ips", "*"])
            .unwrap()
            .allow
            .is_any());
        let err = resolve(&["--forwarded-allow-ips", "10.0.0.1,proxy.local"]).unwrap_err();
        assert!(
            err.starts_with(
                "invalid value 'proxy.local' for '--forwarded-allow-ips': not an IP address"
            ),
            "{err}"
        );
        let err = resolve(&["--forwarded-allow-ips", "10.0.0.0/40"]).unwrap_err();
        assert!(
            err.starts_with("invalid value '10.0.0.0/40' for '--forwarded-allow-ips'"),
            "{err}"
        );
    }
}
