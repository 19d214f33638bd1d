//! Who may read the admin listener: the `Host` a request names, against DNS rebinding, and the
//! `--stats-token` it carries (a header, a `?token=` once, or the session cookie that gives a
//! browser).
//!
//! Decisions only, from a request's head and how its connection arrived ([`Access::check`]);
//! the responses they become are `admin.rs`'s. A web page a browser on the same machine loads
//! can make the browser ask a name that resolves to 127.0.0.1 (DNS rebinding): the request then
//! carries the page's host name, which is neither the address the listener was reached on,
//! nor `localhost`, nor a name given with `--stats-hosts`.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, Uri, Version};

use crate::config::StatsPlan;

/// The cookie a browser is given after `/?token=TOKEN`.
pub const SESSION_COOKIE: &str = "ferrule_stats_session";

/// How a connection reached the admin listener.
#[derive(Debug, Clone, Copy)]
pub enum Arrival {
    /// Over TCP, at this local address (the accepted socket's, never a wildcard).
    Tcp(SocketAddr),
    /// Over a Unix socket: no browser can connect to one, so any `Host` is fine.
    Unix,
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it. `authenticated`: no token is required, or it was given; a probe without it
    /// is answered without its reasons.
    Allow { authenticated: bool },
    /// The dashboard with the right `?token=`: give the session cookie and send the browser
    /// to `location`, the same page without the token in its address.
    StartSession { location: String },
    /// 421: the `Host` names neither this listener nor a `--stats-hosts` name.
    Misdirected,
    /// 401: a token is required, and this request has no right one.
    Unauthorized,
}

/// The admin listener's rules, from `--stats-hosts` and `--stats-token`.
pub struct Access {
    /// Lowercased, without a port.
    hosts: Vec<String>,
    any_host: bool,
    token: Option<String>,
    /// The session cookie's value: random, made at start, valid until the process ends; the
    /// token itself is never stored in a browser. `None` if no random bytes could be read
    /// (then `?token=` authenticates one request, and gives no session).
    session: Option<String>,
}

impl Access {
    pub fn new(plan: &StatsPlan) -> Self {
        let token = plan.token.as_ref().map(|t| t.expose().to_owned());
        let session = token.as_ref().and_then(|_| random_hex(32));
        Self {
            any_host: plan.hosts.iter().any(|h| h == "*"),
            hosts: plan
                .hosts
                .iter()
                .filter_map(|h| hostname(h))
                .map(str::to_ascii_lowercase)
                .collect(),
            token,
            session,
        }
    }

    /// No token, no extra host names.
    pub fn open() -> Self {
        Self {
            hosts: Vec::new(),
            any_host: false,
            token: None,
            session: None,
        }
    }

    /// What to say in the log about a TCP listener bound to `addr`.
    pub fn warnings(&self, addr: SocketAddr) -> Vec<String> {
        let mut out = Vec::new();
        if self.token.is_none() && !addr.ip().is_loopback() {
            out.push(format!(
                "the statistics at {addr} are readable by anyone who can reach that address: they show the paths of requests in flight and the views' counts; set --stats-token, or bind --stats-bind to 127.0.0.1 or a Unix socket"
            ));
        }
        if self.any_host && self.token.is_none() {
            out.push(
                "--stats-hosts '*' answers any Host: a web page opened on this machine can read the statistics through DNS rebinding; name the hosts, or set --stats-token".to_owned(),
            );
        }
        out
    }

    /// The `Set-Cookie` value that starts a session, if sessions can be had.
    pub fn session_cookie(&self) -> Option<String> {
        self.session
            .as_ref()
            .map(|s| format!("{SESSION_COOKIE}={s}; Path=/; HttpOnly; SameSite=Strict"))
    }

    /// Decide for a request. `probe`: `/healthz` or `/readyz`, which need no token.
    pub fn check(
        &self,
        arrival: Arrival,
        version: Version,
        headers: &HeaderMap,
        uri: &Uri,
        probe: bool,
    ) -> Verdict {
        if let Arrival::Tcp(local) = arrival {
            if !self.any_host
                && !host_allowed(named_host(headers, uri), version, local, &self.hosts)
            {
                return Verdict::Misdirected;
            }
        }
        let Some(token) = &self.token else {
            return Verdict::Allow {
                authenticated: true,
            };
        };
        let by_header = bearer(headers).is_some_and(|given| same(given, token));
        let by_cookie = self
            .session
            .as_ref()
            .is_some_and(|s| cookie(headers, SESSION_COOKIE).is_some_and(|given| same(given, s)));
        if by_header || by_cookie {
            return Verdict::Allow {
                authenticated: true,
            };
        }
        if query_token(uri).is_some_and(|given| same(&given, token)) {
            if uri.path() == "/" && self.session.is_some() {
                return Verdict::StartSession {
                    location: without_token(uri),
                };
            }
            return Verdict::Allow {
                authenticated: true,
            };
        }
        if probe {
            Verdict::Allow {
                authenticated: false,
            }
        } else {
            Verdict::Unauthorized
        }
    }
}

/// The host a request names: its one `Host` header, else the host of an absolute-form target;
/// `Ok(None)` for none, `Err` for a repeated or unreadable `Host`.
fn named_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Result<Option<&'a str>, ()> {
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(()),
        (Some(host), None) => host.to_str().map(Some).map_err(|_| ()),
        (None, _) => Ok(uri.host()),
    }
}

/// Whether a request naming `named` may be answered on a TCP connection that arrived at
/// `local`.
fn host_allowed(
    named: Result<Option<&str>, ()>,
    version: Version,
    local: SocketAddr,
    hosts: &[String],
) -> bool {
    let host = match named {
        Err(()) => return false,
        // A browser always sends one; HTTP/1.0 health checks (HAProxy's `httpchk`) may not.
        Ok(None) => return version < Version::HTTP_11,
        Ok(Some(host)) => host,
    };
    let Some(name) = hostname(host) else {
        return false;
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        // A dual-stack socket sees an IPv4 client's address as `::ffff:a.b.c.d`.
        return ip.to_canonical() == local.ip().to_canonical();
    }
    hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A `Host` value without its port, and an IPv6 literal without its brackets; `None` if it is
/// not `name[:port]` or `[ipv6][:port]`.
fn hostname(host: &str) -> Option<&str> {
    let is_port = |p: &str| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then_some(ip);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty() && !name.contains(':')).then_some(name)
}

/// The credentials of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// `token=` of the query, percent-decoded (`+` stays `+`: it is a bearer token character).
fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok())
        .map(std::borrow::Cow::into_owned)
}

/// The target without its `token=` parameter.
fn without_token(uri: &Uri) -> String {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("token="))
        .collect();
    if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

/// Compare a secret in time that depends on its length only, not on how much of it matched.
// Our own, ten lines, rather than a dependency for them; `black_box` keeps the compiler from
// ending the loop at the first difference.
fn same(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        diff |= std::hint::black_box(e ^ given.get(i).copied().unwrap_or(!e));
    }
    diff == 0
}

/// `bytes` random bytes from the kernel, in hex.
fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| crate::log_warn!("cannot read /dev/urandom for the statistics session cookie: {e}; ?token= will not start a session"))
        .ok()?;
    Some(buf.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn hosts() {
        let v4: SocketAddr = "10.1.2.3:9100".parse().unwrap();
        let v6: SocketAddr = "[fd00::7]:9100".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:9100".parse().unwrap();
        let named = vec!["stats.example.com".to_owned()];
        let h11 = Version::HTTP_11;
        for (host, version, local, allowed) in [
            // The address the connection arrived on, with or without a port.
            (Some("10.1.2.3:9100"), h11, v4, true),
            (Some("10.1.2.3"), h11, v4, true),
            (Some("10.1.2.3:80"), h11, v4, true),
            (Some("10.1.2.3"), h11, mapped, true),
            (Some("[fd00::7]:9100"), h11, v6, true),
            (Some("[FD00::7]"), h11, v6, true),
            // Another address, or an IPv6 literal without brackets.
            (Some("10.1.2.4:9100"), h11, v4, false),
            (Some("127.0.0.1:9100"), h11, v4, false),
            (Some("fd00::7"), h11, v6, false),
            // localhost, and the names given, in any case and with any port.
            (Some("localhost:9100"), h11, v4, true),
            (Some("LocalHost"), h11, v4, true),
            (Some("Stats.Example.COM:443"), h11, v4, true),
            (Some("stats.example.com."), h11, v4, true),
            // Anything else: a rebinding page's name, a suffix, junk.
            (Some("evil.example:9100"), h11, v4, false),
            (Some("localhost.evil.example"), h11, v4, false),
            (Some("example.com"), h11, v4, false),
            (Some(""), h11, v4, false),
            (Some("10.1.2.3:x"), h11, v4, false),
            (Some("[fd00::7"), h11, v6, false),
            // No Host: only HTTP/1.0, which a browser does not send.
            (None, h11, v4, false),
            (None, Version::HTTP_10, v4, true),
        ] {
            assert_eq!(
                host_allowed(Ok(host), version, local, &named),
                allowed,
                "{host:?} {version:?} {local}"
            );
        }
        assert!(!host_allowed(Err(()), h11, v4, &named));
    }

    #[test]
    fn host_headers() {
        let uri: Uri = "/metrics".parse().unwrap();
        assert_eq!(
            named_host(&headers(&[("host", "a:1")]), &uri),
            Ok(Some("a:1"))
        );
        assert_eq!(named_host(&headers(&[]), &uri), Ok(None));
        assert_eq!(
            named_host(&headers(&[("host", "a"), ("host", "b")]), &uri),
            Err(())
        );
        let absolute: Uri = "http://10.0.0.1:9100/metrics".parse().unwrap();
        assert_eq!(named_host(&headers(&[]), &absolute), Ok(Some("10.0.0.1")));
    }

    fn access(token: Option<&str>, hosts: &[&str]) -> Access {
        Access {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            any_host: hosts.contains(&"*"),
            token: token.map(str::to_owned),
            session: token.map(|_| "5e55".to_owned()),
        }
    }

    /// A verdict in a word, for the tables.
    fn word(v: &Verdict) -> String {
        match v {
            Verdict::Allow {
                authenticated: true,
            } => "ok".into(),
            Verdict::Allow {
                authenticated: false,
            } => "probe".into(),
            Verdict::StartSession { location } => format!("303 {location}"),
            Verdict::Misdirected => "421".into(),
            Verdict::Unauthorized => "401".into(),
        }
    }

    fn check(a: &Access, arrival: Arrival, pairs: &[(&'static str, &str)], target: &str) -> String {
        let probe = target == "/healthz";
        let uri = target.parse().unwrap();
        word(&a.check(arrival, Version::HTTP_11, &headers(pairs), &uri, probe))
    }

    #[test]
    fn tokens() {
        let local = Arrival::Tcp("127.0.0.1:9100".parse().unwrap());
        let guarded = access(Some("0123456789abcdef"), &[]);
        let bearer = |v| [("host", "localhost"), ("authorization", v)];
        let cookie = |v| [("host", "localhost"), ("cookie", v)];
        let host = [("host", "localhost")];
        for (pairs, target, expect) in [
            (&host[..], "/metrics", "401"),
            (&bearer("Bearer 0123456789abcdef"), "/metrics", "ok"),
            (&bearer("bearer 0123456789abcdef"), "/", "ok"),
            (&bearer("Bearer 0123456789abcdeF"), "/", "401"),
            (&bearer("Bearer 0123456789abcde"), "/", "401"),
            (&bearer("Basic 0123456789abcdef"), "/", "401"),
            (
                &cookie("a=b; ferrule_stats_session=5e55"),
                "/stats.json",
                "ok",
            ),
            (&cookie("ferrule_stats_session=5e56"), "/", "401"),
            // The dashboard with the token in its address: a session, and the address without.
            (&host, "/?token=0123456789abcdef", "303 /"),
            (&host, "/?a=1&token=0123456789abcdef", "303 /?a=1"),
            (&host, "/metrics?token=0123456789abcdef", "ok"),
            (&host, "/?token=nope", "401"),
            // Probes need no token, and say less without it.
            (&host, "/healthz", "probe"),
            (&bearer("Bearer 0123456789abcdef"), "/healthz", "ok"),
        ] {
            assert_eq!(
                check(&guarded, local, pairs, target),
                expect,
                "{pairs:?} {target}"
            );
        }
    }

    #[test]
    fn the_host_is_checked_first_and_over_tcp_only() {
        let local = Arrival::Tcp("127.0.0.1:9100".parse().unwrap());
        let guarded = access(Some("0123456789abcdef"), &[]);
        let evil = [
            ("host", "evil.example"),
            ("authorization", "Bearer 0123456789abcdef"),
        ];
        assert_eq!(check(&guarded, local, &evil, "/"), "421");
        assert_eq!(check(&guarded, local, &evil[..1], "/healthz"), "421");
        // Over a Unix socket any Host will do; the token is still needed.
        assert_eq!(check(&guarded, Arrival::Unix, &evil[..1], "/"), "401");
        assert_eq!(check(&guarded, Arrival::Unix, &evil, "/"), "ok");
        assert_eq!(check(&access(None, &[]), Arrival::Unix, &evil, "/"), "ok");
        assert_eq!(check(&access(None, &["*"]), local, &evil, "/"), "ok");
    }

    #[test]
    fn comparing_secrets() {
        assert!(same("abc", "abc"));
        for given in ["abd", "ab", "abcd", "", "\u{0}bc"] {
            assert!(!same(given, "abc"), "{given:?}");
        }
    }

    #[test]
    fn warnings_at_start() {
        let everyone: SocketAddr = "0.0.0.0:9100".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(access(None, &[]).warnings(everyone).len(), 1);
        assert!(access(None, &[]).warnings(loopback).is_empty());
        assert!(access(Some("t"), &[]).warnings(everyone).is_empty());
        let any = access(None, &["*"]).warnings(loopback);
        assert!(
            any.len() == 1 && any[0].contains("DNS rebinding"),
            "{any:?}"
        );
    }
}
