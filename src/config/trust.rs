//! `--forwarded-allow-ips`: which peers are proxies whose forwarding headers are believed.
//!
//! Owns parsing the list (addresses, CIDR blocks, `*`) and matching an address against it.
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports for an IPv4
//! peer) are matched as the IPv4 address they carry, on both sides. What trust means for a
//! request is `http/proxy.rs`'s business.

use std::net::IpAddr;

/// The trusted proxies: every address, or a list of networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    any: bool,
    nets: Vec<Net>,
}

/// One network: an address with its first `len` bits significant (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    len: u8,
}

impl Default for AllowList {
    /// The loopback addresses, gunicorn's default.
    fn default() -> Self {
        Self::parse(["127.0.0.1", "::1"]).expect("the default entries are valid addresses")
    }
}

impl AllowList {
    /// Parse entries such as `127.0.0.1`, `::1`, `10.0.0.0/8`, `fd00::/8` or `*`; blank entries
    /// are skipped. The error is the bad entry and why.
    pub fn parse<I, S>(entries: I) -> Result<Self, (String, &'static str)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self {
            any: false,
            nets: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                list.any = true;
                continue;
            }
            list.nets
                .push(Net::parse(entry).map_err(|why| (entry.to_owned(), why))?);
        }
        Ok(list)
    }

    /// Whether every peer is trusted (`*`).
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(ip))
    }
}

impl Net {
    fn parse(entry: &str) -> Result<Self, &'static str> {
        let (addr, len) = match entry.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (entry, None),
        };
        // `[::1]` is how IPv6 addresses appear in URLs; accept it here too.
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or CIDR block (host names are not supported)")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len =
            match len {
                None => max,
                Some(len) => len.parse::<u8>().ok().filter(|l| *l <= max).ok_or(
                    "the prefix length after '/' must be 0-32 for IPv4 and 0-128 for IPv6",
                )?,
            };
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`; a shorter mapped prefix stays IPv6.
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (addr, len),
            },
            _ => (addr, len),
        };
        Ok(Self {
            addr: mask(addr, len),
            len,
        })
    }

    fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

/// `ip` with every bit after the first `len` cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &str) -> AllowList {
        AllowList::parse(entries.split(',')).unwrap()
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("127.0.0.1,::1", "127.0.0.1", true),
            ("127.0.0.1,::1", "127.0.0.2", false),
            ("127.0.0.1,::1", "::1", true),
            ("127.0.0.1,::1", "::2", false),
            // A dual-stack socket reports IPv4 peers as mapped IPv6 addresses.
            ("127.0.0.1,::1", "::ffff:127.0.0.1", true),
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            // Host bits in the entry are ignored.
            ("10.1.2.3/8", "10.200.0.1", true),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.0", false),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "203.0.113.9", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("fd00::/8", "fdff::1", true),
            ("[::1]", "::1", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "11.9.9.9", false),
            ("::ffff:10.0.0.1", "::ffff:10.0.0.1", true),
            ("10.0.0.1", "::ffff:10.0.0.1", true),
            ("10.9.9.9", "127.0.0.1", false),
            ("*", "203.0.113.9", true),
            ("*", "2001:db8::1", true),
            ("", "127.0.0.1", false),
            (" 10.0.0.1 , 10.0.0.2 ", "10.0.0.2", true),
        ];
        for (entries, ip, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(list(entries).contains(ip), *want, "{entries} contains {ip}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "1.2.3",
            "10.0.0.1-10.0.0.9",
        ] {
            let (entry, _) = AllowList::parse(["127.0.0.1", bad]).unwrap_err();
            assert_eq!(entry, bad);
        }
    }

    #[test]
    fn default_is_loopback() {
        let d = AllowList::default();
        assert!(d.contains("127.0.0.1".parse().unwrap()));
        assert!(d.contains("::1".parse().unwrap()));
        assert!(!d.contains("10.0.0.1".parse().unwrap()));
        assert!(!d.is_any());
    }
}
