//! Trusted proxies and the URL prefix: how a request looks to the application.
//!
//! From a peer in `--forwarded-allow-ips` (or on a Unix socket) the forwarding headers of the
//! family `--forwarded-headers` names (`X-Forwarded-*`, RFC 7239 `Forwarded`, or both) say
//! who the client is and which scheme, host and prefix it used; every other forwarding header
//! is removed, from trusted and untrusted peers alike, so the application never sees a value
//! the proxy did not write. `--prefix` (or Django's `FORCE_SCRIPT_NAME`) splits the path into
//! `SCRIPT_NAME` and `PATH_INFO`. The result is a [`job::Origin`](crate::job::Origin); the
//! environ is built from it in `wsgi/environ.rs`. Header syntax is `forwarded.rs`'s, the
//! allow-list `config/trust.rs`'s and the prefix rules `config/prefix.rs`'s and `prefix.rs`'s; this file decides what is read
//! and what wins.
//!
//! Lists: the client is found by the chain rule over `X-Forwarded-For` (or the `Forwarded`
//! elements); every other `X-Forwarded-*` header uses its rightmost entry, the one the proxy
//! next to us wrote. When both families are read (`both`) and both name the client, the scheme
//! or the host, they must agree or the request is refused; so must `X-Forwarded-Proto` and
//! `X-Forwarded-Ssl`. docs/proxies.md explains why.

use std::borrow::Cow;

use http::header::FORWARDED;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response};
use percent_encoding::percent_decode_str;

use super::admission::Refusal;
use super::forwarded::{self, Element, Node};
use super::prefix;
use crate::config::trust::AllowList;
use crate::config::{ForwardedHeaders, ProxyPlan};
use crate::error::Error;
use crate::job::{ConnInfo, Origin};
use crate::listen::Peer;
use crate::log_debug;
use crate::response::OutBody;

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

/// The bits of the headers `--forwarded-headers` reads.
fn family(which: ForwardedHeaders) -> u8 {
    let rfc = Fwd::Forwarded.bit();
    let x = Fwd::ALL.iter().fold(0, |bits, f| bits | f.bit()) & !rfc;
    match which {
        ForwardedHeaders::XForwarded => x,
        ForwardedHeaders::Forwarded => rfc,
        ForwardedHeaders::Both => x | rfc,
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
    /// The headers read from a trusted peer (`--forwarded-headers`), as [`Fwd::bit`]s.
    read: u8,
}

impl Proxy {
    /// `force_script_name` is Django's `FORCE_SCRIPT_NAME`, used when `--prefix` is not given.
    pub fn new(plan: &ProxyPlan, force_script_name: Option<String>) -> Result<Self, Error> {
        let prefix = match (&plan.prefix, force_script_name) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => crate::config::prefix::normalize(&f)
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
            read: family(plan.headers),
        })
    }

    /// The URL prefix (`""` for none), which Django static mounts live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the connection's peer may speak for the client (`--forwarded-allow-ips`): its
    /// forwarding headers and `X-Request-ID` are believed. A client named by a PROXY protocol
    /// header never may.
    pub fn trusts(&self, conn: &ConnInfo) -> bool {
        if conn.relayed {
            return false;
        }
        match conn.peer {
            // Only a process on this host can connect to a Unix socket: the proxy.
            Peer::Unix => true,
            Peer::Tcp(addr) => self.allow.contains(addr.ip()),
        }
    }

    /// Remove the forwarding headers a peer is not trusted to send, and those of the family
    /// `--forwarded-headers` does not read; turn the rest into an [`Origin`]. Contradicting or
    /// malformed values are refused.
    pub fn forwarded(&self, parts: &mut Parts, conn: &ConnInfo) -> Result<Origin, Refusal> {
        // The common case, a request with none of these headers, costs one pass over the
        // header names and no allocation.
        let present = Found::scan(&parts.headers).present;
        if present == 0 {
            return Ok(Origin::default());
        }
        let trusted = self.trusts(conn);
        let kept = if trusted { present & self.read } else { 0 };
        let dropped = present & !kept;
        if dropped != 0 {
            for which in Fwd::ALL {
                if dropped & which.bit() != 0 {
                    parts.headers.remove(which.name());
                }
            }
            if !trusted {
                log_debug!(
                    "removed forwarding headers from {}, which is not in --forwarded-allow-ips",
                    conn.peer
                );
            } else if dropped & Fwd::Forwarded.bit() != 0 {
                log_debug!(
                    "removed the Forwarded header from {}: --forwarded-headers does not read it",
                    conn.peer
                );
            } else {
                log_debug!(
                    "removed X-Forwarded-* headers from {}: --forwarded-headers does not read them",
                    conn.peer
                );
            }
        }
        if kept == 0 {
            return Ok(Origin::default());
        }
        let found = Found {
            headers: &parts.headers,
            present: kept,
        };
        read(&found, &self.allow)
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

    if let Some(Node::Ip(ip, port)) = client(found, element, allow)? {
        origin.client = Some(ip.to_string());
        origin.client_port = port.map(|p| p.to_string());
    }
    origin.scheme = scheme(found, element)?;
    origin.host = host(found, element)?;

    let xfport = found.values(Fwd::Port)?;
    if let Some(port) = forwarded::last_entry(xfport.into_iter()) {
        let port = forwarded::port_number(port).ok_or(Refusal::BadRequest(
            "the X-Forwarded-Port header is not a port number (1-65535)",
        ))?;
        origin.port = Some(port.to_string());
    }

    let xfprefix = found.values(Fwd::Prefix)?;
    if let Some(p) = forwarded::last_entry(xfprefix.into_iter()) {
        let p = crate::config::prefix::normalize(p).map_err(|_| {
            Refusal::BadRequest(
                "the X-Forwarded-Prefix header is not a valid path prefix (it must start with '/' and have no '%', '//' or '..')",
            )
        })?;
        p.clone_into(&mut origin.script_name);
    }
    Ok(origin)
}

/// The client, by the chain rule over `X-Forwarded-For` and over the `Forwarded` elements;
/// when both name one, it must be the same address.
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
    let by_xff = forwarded::pick(chain.iter().copied(), allow).map(|i| chain[i]);
    let by_rfc = element.and_then(|e| e.for_.as_deref()).map(forwarded::node);
    match (by_xff, by_rfc) {
        (Some(one), Some(other)) => match (one, other) {
            // The same address; keep the port whichever gives one.
            (Node::Ip(ip, port), Node::Ip(ip2, port2))
                if ip.to_canonical() == ip2.to_canonical() =>
            {
                Ok(Some(Node::Ip(ip, port.or(port2))))
            }
            (Node::Unknown, Node::Unknown) => Ok(Some(Node::Unknown)),
            _ => Err(Refusal::BadRequest(
                "X-Forwarded-For and the for= of the Forwarded header name different clients",
            )),
        },
        (one, other) => Ok(one.or(other)),
    }
}

/// The host: the rightmost `X-Forwarded-Host` entry and the picked element's `host=`, which
/// must agree (host names are case-insensitive) when both are given.
fn host(found: &Found<'_>, element: Option<&Element<'_>>) -> Result<Option<String>, Refusal> {
    let xfh = found.values(Fwd::Host)?;
    let by_xfh = forwarded::last_entry(xfh.into_iter());
    if by_xfh.is_some_and(|h| !forwarded::valid_host(h)) {
        return Err(Refusal::BadRequest(
            "the X-Forwarded-Host header is not a valid host[:port]",
        ));
    }
    let by_rfc = element.and_then(|e| e.host.as_deref());
    if by_rfc.is_some_and(|h| !forwarded::valid_host(h)) {
        return Err(Refusal::BadRequest(
            "the host= of the Forwarded header is not a valid host[:port]",
        ));
    }
    match (by_xfh, by_rfc) {
        (Some(one), Some(other)) if !one.eq_ignore_ascii_case(other) => Err(Refusal::BadRequest(
            "X-Forwarded-Host and the host= of the Forwarded header disagree about the host",
        )),
        (one, other) => Ok(one.or(other).map(str::to_owned)),
    }
}

/// The scheme, which every header that gives one must agree on. In `X-Forwarded-Proto` and
/// `X-Forwarded-Ssl` that is the rightmost entry: the proxy next to us wrote it.
fn scheme(
    found: &Found<'_>,
    element: Option<&Element<'_>>,
) -> Result<Option<&'static str>, Refusal> {
    let proto = rightmost_scheme(
        &found.values(Fwd::Proto)?,
        forwarded::scheme,
        "the X-Forwarded-Proto header must be http or https",
    )?;
    let ssl = rightmost_scheme(
        &found.values(Fwd::Ssl)?,
        |v| match v.trim() {
            v if v.eq_ignore_ascii_case("on") => Some("https"),
            v if v.eq_ignore_ascii_case("off") => Some("http"),
            _ => None,
        },
        "the X-Forwarded-Ssl header must be on or off",
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

/// The scheme in the rightmost entry of a (possibly repeated, comma-separated) header. The
/// entries left of it describe hops farther away (or were sent by the client); they are not
/// read, so they cannot be refused either.
fn rightmost_scheme(
    lines: &[&str],
    parse: impl Fn(&str) -> Option<&'static str>,
    invalid: &'static str,
) -> Result<Option<&'static str>, Refusal> {
    forwarded::last_entry(lines.iter().copied())
        .map(|entry| parse(entry).ok_or(Refusal::BadRequest(invalid)))
        .transpose()
}

#[cfg(test)]
mod tests;
