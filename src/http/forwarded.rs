//! Parsing the forwarding headers: RFC 7239 `Forwarded`, the nodes of a forwarding chain
//! (`for=` values and `X-Forwarded-For` entries), schemes, hosts and the chain rule.
//!
//! Pure functions over strings; which headers to read, from whom, and what wins when they
//! disagree is `proxy.rs`'s business. Parsing is lenient where real proxies are sloppy
//! (unquoted `for=1.2.3.4:80`, spaces around `;`) and strict where a mistake would be
//! silent (an unterminated quote, a parameter given twice, a parameter without a value).

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::trust::AllowList;

/// One hop of a forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// An address, with the port when one was given.
    Ip(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier (`_hidden`), or something that is not an address:
    /// a hop we cannot name.
    Unknown,
}

/// Parse one node: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:8080`. Anything else is [`Node::Unknown`]; an obfuscated port (`:_p`) is
/// no port.
pub fn node(s: &str) -> Node {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Node::Unknown;
        };
        let Ok(ip) = addr.parse::<std::net::Ipv6Addr>() else {
            return Node::Unknown;
        };
        return match after.strip_prefix(':') {
            None if after.is_empty() => Node::Ip(IpAddr::V6(ip), None),
            Some(port) => Node::Ip(IpAddr::V6(ip), port.parse().ok()),
            None => Node::Unknown,
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Node::Ip(ip, None);
    }
    // IPv4 with a port; a bare IPv6 address has more than one colon and parsed above.
    if let Some((addr, port)) = s.split_once(':') {
        if let Ok(ip) = addr.parse::<std::net::Ipv4Addr>() {
            return Node::Ip(IpAddr::V4(ip), port.parse().ok());
        }
    }
    Node::Unknown
}

/// The chain rule: walking from the right (the hop nearest to us), the index of the first node
/// that is not itself a trusted proxy. If every hop is trusted, the leftmost. `None` for an
/// empty chain.
pub fn pick<I>(chain: I, allow: &AllowList) -> Option<usize>
where
    I: DoubleEndedIterator<Item = Node> + ExactSizeIterator,
{
    let len = chain.len();
    if len == 0 {
        return None;
    }
    let from_right = chain
        .rev()
        .position(|n| !matches!(n, Node::Ip(ip, _) if allow.contains(ip)));
    Some(from_right.map_or(0, |i| len - 1 - i))
}

/// `http` or `https`, in any case; anything else is `None`.
pub fn scheme(s: &str) -> Option<&'static str> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("https") {
        Some("https")
    } else if s.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// Whether `s` is a `host[:port]` as a Host header carries it: a name (letters, digits, `-`,
/// `.`, `_`), an IPv4 address or a bracketed IPv6 address, then an optional port.
pub fn valid_host(s: &str) -> bool {
    let (name, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(s), None),
        }
    };
    // 253 is the longest DNS name; the rest is room for a port.
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    });
    name_ok && port.is_none_or(|p| port_number(p).is_some())
}

/// A TCP port, 1-65535, as decimal digits.
pub fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|p| *p != 0)
}

/// The rightmost non-empty entry of a comma-separated header, over all of its lines: the one
/// the proxy nearest to us wrote.
pub fn last_entry<'a>(values: impl DoubleEndedIterator<Item = &'a str>) -> Option<&'a str> {
    values
        .rev()
        .find_map(|v| v.rsplit(',').map(str::trim).find(|e| !e.is_empty()))
}

/// One RFC 7239 forwarded-element: what one proxy saw of the request it received.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Element<'a> {
    pub for_: Option<Cow<'a, str>>,
    pub proto: Option<Cow<'a, str>>,
    pub host: Option<Cow<'a, str>>,
}

/// Parse the `Forwarded` header lines (the elements of all lines, in order), or say why they
/// are malformed. Parameter names are case-insensitive; `by=` and extensions are skipped.
pub fn parse_forwarded<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Result<Vec<Element<'a>>, &'static str> {
    let mut elements = Vec::new();
    for value in values {
        let mut p = Parser { s: value, pos: 0 };
        loop {
            let element = p.element()?;
            if element != Element::default() {
                elements.push(element);
            }
            if !p.eat(b',') {
                break;
            }
        }
        if p.pos != p.s.len() {
            return Err("the Forwarded header is malformed (see RFC 7239)");
        }
    }
    Ok(elements)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Skip whitespace, then consume `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ows();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Pairs up to the next `,` or the end.
    fn element(&mut self) -> Result<Element<'a>, &'static str> {
        let mut element = Element::default();
        loop {
            self.skip_ows();
            match self.peek() {
                None | Some(b',') => return Ok(element),
                Some(b';') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = self.pos;
            while self.peek().is_some_and(is_tchar) {
                self.pos += 1;
            }
            let name = &self.s[start..self.pos];
            if name.is_empty() || !self.eat(b'=') {
                return Err("a Forwarded parameter has no value (see RFC 7239)");
            }
            self.skip_ows();
            let value = self.value()?;
            let slot = if name.eq_ignore_ascii_case("for") {
                Some(&mut element.for_)
            } else if name.eq_ignore_ascii_case("proto") {
                Some(&mut element.proto)
            } else if name.eq_ignore_ascii_case("host") {
                Some(&mut element.host)
            } else {
                None
            };
            if let Some(slot) = slot {
                if slot.replace(value).is_some() {
                    return Err("a Forwarded parameter appears twice in one element");
                }
            }
            self.skip_ows();
            if !matches!(self.peek(), None | Some(b';' | b',')) {
                return Err("the Forwarded header is malformed (see RFC 7239)");
            }
        }
    }

    /// A quoted string (unescaped) or a token. Tokens are read loosely, up to the next
    /// separator, because proxies send `for=192.0.2.1:80` and `for=[::1]` unquoted.
    fn value(&mut self) -> Result<Cow<'a, str>, &'static str> {
        if self.peek() != Some(b'"') {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| !matches!(b, b';' | b',' | b' ' | b'\t' | b'"'))
            {
                self.pos += 1;
            }
            if start == self.pos {
                return Err("a Forwarded parameter has no value (see RFC 7239)");
            }
            return Ok(Cow::Borrowed(&self.s[start..self.pos]));
        }
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            match self.peek() {
                None => return Err("a quoted string in the Forwarded header is not closed"),
                Some(b'"') => {
                    let raw = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(owned.map_or(Cow::Borrowed(raw), Cow::Owned));
                }
                Some(b'\\') => {
                    let so_far = owned.get_or_insert_with(|| self.s[start..self.pos].to_owned());
                    self.pos += 1;
                    let Some(c) = self.s[self.pos..].chars().next() else {
                        return Err("a quoted string in the Forwarded header is not closed");
                    };
                    so_far.push(c);
                    self.pos += c.len_utf8();
                }
                Some(_) => {
                    let c = self.s[self.pos..]
                        .chars()
                        .next()
                        .expect("peek saw a byte, so a character starts here");
                    if let Some(o) = owned.as_mut() {
                        o.push(c);
                    }
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
