//! Trusted proxies and the URL prefix: how a request looks to the application.
//!
//! From a peer in `--forwarded-allow-ips` (or on a Unix socket) the `X-Forwarded-*` headers
//! and RFC 7239 `Forwarded` say who the client is and which scheme, host and prefix it used;
//! from anyone else those headers are removed so the application never sees a spoofed value.
//! `--prefix` (or Django's `FORCE_SCRIPT_NAME`) splits the path into `SCRIPT_NAME` and
//! `PATH_INFO`. The result is a [`job::Origin`](crate::job::Origin); the environ is built from it
//! in `wsgi/environ.rs`. Header syntax is `forwarded.rs`'s, the allow-list `trust.rs`'s and the
//! prefix rules `prefix.rs`'s; this file decides what wins.
//!
//! Precedence, when a trusted request carries both families (docs/proxies.md explains why):
//! `X-Forwarded-For` over `Forwarded: for=` for the client, `X-Forwarded-Host` over `host=`;
//! the scheme must agree wherever it is given, or the request is refused. (Port and prefix
//! have no `Forwarded` parameter.)

use std::borrow::Cow;

use http::header::FORWARDED;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response};
use percent_encoding::percent_decode_str;

use super::admission::Refusal;
use super::forwarded::{self, Element, Node};
use super::out_body::OutBody;
use super::prefix;
use super::trust::AllowList;
use crate::config::ProxyPlan;
use crate::error::Error;
use crate::job::{ConnInfo, Origin};
use crate::listen::Peer;
use crate::log_debug;

/// The headers a proxy forwards; removed from an untrusted peer's request.
#[derive(Debug, Clone, Copy)]
enum Fwd {
    For,
    Proto,
    Host,
    Port,
    Prefix,
    Ssl,
    Forwarded,
}

impl Fwd {
    const ALL: [Fwd; 7] = [
        Fwd::For,
        Fwd::Proto,
        Fwd::Host,
        Fwd::Port,
        Fwd::Prefix,
        Fwd::Ssl,
        Fwd::Forwarded,
    ];

    /// Which one `name` is, if any: a comparison of the name's bytes, no hashing.
    fn of(name: &HeaderName) -> Option<Fwd> {
        let name = name.as_str();
        if name == "forwarded" {
            return Some(Fwd::Forwarded);
        }
        match name.strip_prefix("x-forwarded-")? {
            "for" => Some(Fwd::For),
            "proto" => Some(Fwd::Proto),
            "host" => Some(Fwd::Host),
            "port" => Some(Fwd::Port),
            "prefix" => Some(Fwd::Prefix),
            "ssl" => Some(Fwd::Ssl),
            _ => None,
        }
    }

    fn name(self) -> HeaderName {
        // Constants, so that `from_static` checks the names at compile time.
        const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
        const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
        const PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
        const PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
        const SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
        match self {
            Fwd::For => FOR,
            Fwd::Proto => PROTO,
            Fwd::Host => HOST,
            Fwd::Port => PORT,
            Fwd::Prefix => PREFIX,
            Fwd::Ssl => SSL,
            Fwd::Forwarded => FORWARDED,
        }
    }

    fn not_ascii(self) -> &'static str {
        match self {
            Fwd::For => "the X-Forwarded-For header is not ASCII",
            Fwd::Proto => "the X-Forwarded-Proto header is not ASCII",
            Fwd::Host => "the X-Forwarded-Host header is not ASCII",
            Fwd::Port => "the X-Forwarded-Port header is not ASCII",
            Fwd::Prefix => "the X-Forwarded-Prefix header is not ASCII",
            Fwd::Ssl => "the X-Forwarded-Ssl header is not ASCII",
            Fwd::Forwarded => "the Forwarded header is not ASCII",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A request's forwarding headers: the map, and which of them it has.
struct Found<'h> {
    headers: &'h HeaderMap,
    present: u8,
}

impl<'h> Found<'h> {
    /// One pass over the header names; no allocation.
    fn scan(headers: &'h HeaderMap) -> Self {
        let present = headers
            .keys()
            .filter_map(Fwd::of)
            .fold(0, |bits, f| bits | f.bit());
        Self { headers, present }
    }

    /// Every value of `which` as text (no lookup, no allocation when it is absent); a value
    /// that is not ASCII is refused.
    fn values(&self, which: Fwd) -> Result<Vec<&'h str>, Refusal> {
        if self.present & which.bit() == 0 {
            return Ok(Vec::new());
        }
        self.headers
            .get_all(which.name())
            .iter()
            .map(|v| {
                v.to_str()
                    .map_err(|_| Refusal::BadRequest(which.not_ascii()))
            })
            .collect()
    }
}

pub struct Proxy {
    /// Normal form (see `prefix.rs`); empty for none.
    prefix: String,
    redirect: bool,
    allow: AllowList,
}

impl Proxy {
    /// `force_script_name` is Django's `FORCE_SCRIPT_NAME`, used when `--prefix` is not given.
    pub fn new(plan: &ProxyPlan, force_script_name: Option<String>) -> Result<Self, Error> {
        let prefix = match (&plan.prefix, force_script_name) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => prefix::normalize(&f)
                .map_err(|why| {
                    Error::config(format!(
                        "invalid FORCE_SCRIPT_NAME '{f}' in the Django settings: {why} (ferrule splits request paths at it; --prefix overrides it)"
                    ))
                })?
                .to_owned(),
            (None, None) => String::new(),
        };
        Ok(Self {
            prefix,
            redirect: plan.prefix_redirect,
            allow: plan.allow.clone(),
        })
    }

    /// The URL prefix (`""` for none), which Django static mounts live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Remove forwarding headers a peer is not trusted to send; turn trusted ones into an
    /// [`Origin`]. Contradicting scheme headers are refused.
    pub fn forwarded(&self, parts: &mut Parts, conn: &ConnInfo) -> Result<Origin, Refusal> {
        // The common case, a request with none of these headers, costs one pass over the
        // header names and no allocation.
        let present = Found::scan(&parts.headers).present;
        if present == 0 {
            return Ok(Origin::default());
        }
        let trusted = match conn.peer {
            // Only a process on this host can connect to a Unix socket: the proxy.
            Peer::Unix => true,
            Peer::Tcp(addr) => self.allow.contains(addr.ip()),
        };
        if trusted {
            let found = Found {
                headers: &parts.headers,
                present,
            };
            return read(&found, &self.allow);
        }
        for which in Fwd::ALL {
            if present & which.bit() != 0 {
                parts.headers.remove(which.name());
            }
        }
        if let Peer::Tcp(addr) = conn.peer {
            log_debug!(
                "removed forwarding headers from {addr}, which is not in --forwarded-allow-ips"
            );
        }
        Ok(Origin::default())
    }

    /// Split the path at `--prefix`; a request outside it gets the response to send instead
    /// (`Some`).
    pub fn route(&self, parts: &Parts, origin: &mut Origin) -> Option<Response<OutBody>> {
        if self.prefix.is_empty() {
            return None;
        }
        let decoded: Cow<'_, [u8]> = percent_decode_str(parts.uri.path()).into();
        if let Some(rest) = prefix::split(&decoded, &self.prefix) {
            origin.script_name.push_str(&self.prefix);
            origin.path_info = Some(rest.to_vec());
            return None;
        }
        log_debug!(
            "{} {} is outside --prefix {}",
            parts.method,
            parts.uri,
            self.prefix
        );
        Some(prefix::outside(
            parts,
            &origin.script_name,
            &self.prefix,
            self.redirect,
        ))
    }
}

/// The [`Origin`] a trusted proxy describes.
fn read(found: &Found<'_>, allow: &AllowList) -> Result<Origin, Refusal> {
    let mut origin = Origin::default();
    let elements = match found.values(Fwd::Forwarded)? {
        lines if lines.is_empty() => Vec::new(),
        lines => forwarded::parse_forwarded(lines.into_iter()).map_err(Refusal::BadRequest)?,
    };
    // The element the chain rule picks describes the request as the client made it.
    let element = forwarded::pick(
        elements
            .iter()
            .map(|e| e.for_.as_deref().map_or(Node::Unknown, forwarded::node)),
        allow,
    )
    .map(|i| &elements[i]);

    let client = client(found, element, allow)?;
    if let Some(Node::Ip(ip, port)) = client {
        origin.client = Some(ip.to_string());
        origin.client_port = port.map(|p| p.to_string());
    }
    origin.scheme = scheme(found, element)?;

    let xfh = found.values(Fwd::Host)?;
    if let Some(host) = forwarded::last_entry(xfh.into_iter()) {
        if !forwarded::valid_host(host) {
            return Err(Refusal::BadRequest(
                "the X-Forwarded-Host header is not a valid host[:port]",
            ));
        }
        origin.host = Some(host.to_owned());
    } else if let Some(host) = element.and_then(|e| e.host.as_deref()) {
        if !forwarded::valid_host(host) {
            return Err(Refusal::BadRequest(
                "the host= of the Forwarded header is not a valid host[:port]",
            ));
        }
        origin.host = Some(host.to_owned());
    }

    let xfport = found.values(Fwd::Port)?;
    if let Some(port) = forwarded::last_entry(xfport.into_iter()) {
        let port = forwarded::port_number(port).ok_or(Refusal::BadRequest(
            "the X-Forwarded-Port header is not a port number (1-65535)",
        ))?;
        origin.port = Some(port.to_string());
    }

    let xfprefix = found.values(Fwd::Prefix)?;
    if let Some(p) = forwarded::last_entry(xfprefix.into_iter()) {
        let p = prefix::normalize(p).map_err(|_| {
            Refusal::BadRequest(
                "the X-Forwarded-Prefix header is not a valid path prefix (it must start with '/' and have no '%', '//' or '..')",
            )
        })?;
        p.clone_into(&mut origin.script_name);
    }
    Ok(origin)
}

/// The client: from `X-Forwarded-For` when present, else from the picked `Forwarded` element.
fn client(
    found: &Found<'_>,
    element: Option<&Element<'_>>,
    allow: &AllowList,
) -> Result<Option<Node>, Refusal> {
    let xff = found.values(Fwd::For)?;
    let chain: Vec<Node> = xff
        .iter()
        .flat_map(|line| line.split(','))
        .filter(|e| !e.trim().is_empty())
        .map(forwarded::node)
        .collect();
    if let Some(i) = forwarded::pick(chain.iter().copied(), allow) {
        return Ok(Some(chain[i]));
    }
    Ok(element.and_then(|e| e.for_.as_deref()).map(forwarded::node))
}

/// The scheme, which every header that gives one must agree on.
fn scheme(
    found: &Found<'_>,
    element: Option<&Element<'_>>,
) -> Result<Option<&'static str>, Refusal> {
    let proto = one_scheme(
        found.values(Fwd::Proto)?,
        forwarded::scheme,
        "the X-Forwarded-Proto header must be http or https",
        "the X-Forwarded-Proto header has two different values",
    )?;
    let ssl = one_scheme(
        found.values(Fwd::Ssl)?,
        |v| match v.trim() {
            v if v.eq_ignore_ascii_case("on") => Some("https"),
            v if v.eq_ignore_ascii_case("off") => Some("http"),
            _ => None,
        },
        "the X-Forwarded-Ssl header must be on or off",
        "the X-Forwarded-Ssl header has two different values",
    )?;
    let rfc = match element.and_then(|e| e.proto.as_deref()) {
        None => None,
        Some(p) => Some(forwarded::scheme(p).ok_or(Refusal::BadRequest(
            "the proto= of the Forwarded header must be http or https",
        ))?),
    };
    let legacy = match (proto, ssl) {
        (Some(a), Some(b)) if a != b => {
            return Err(Refusal::BadRequest(
                "X-Forwarded-Proto and X-Forwarded-Ssl disagree about the scheme",
            ))
        }
        (a, b) => a.or(b),
    };
    match (legacy, rfc) {
        (Some(a), Some(b)) if a != b => Err(Refusal::BadRequest(
            "X-Forwarded-Proto (or X-Forwarded-Ssl) and the proto= of the Forwarded header disagree about the scheme",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// The one scheme a (possibly repeated, comma-separated) header gives.
fn one_scheme(
    lines: Vec<&str>,
    parse: impl Fn(&str) -> Option<&'static str>,
    invalid: &'static str,
    twice: &'static str,
) -> Result<Option<&'static str>, Refusal> {
    let mut found = None;
    for entry in lines.iter().flat_map(|l| l.split(',')) {
        if entry.trim().is_empty() {
            continue;
        }
        let s = parse(entry).ok_or(Refusal::BadRequest(invalid))?;
        if found.is_some_and(|f| f != s) {
            return Err(Refusal::BadRequest(twice));
        }
        found = Some(s);
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
