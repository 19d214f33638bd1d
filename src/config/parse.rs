//! Parsers for option values: sizes, durations, listen addresses.
//!
//! Each returns an [`Error`] naming the option and the bad value; deciding which option a value
//! belongs to and what the plan does with it is `config/mod.rs`'s.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::BindAddr;
use crate::error::Error;

/// clap's parser for a whole-number option: its message says what is expected, where Rust's
/// says "invalid digit found in string".
pub fn whole<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    value: &str,
) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            std::num::IntErrorKind::PosOverflow => "the number is too large".to_owned(),
            _ => "expected a whole number, such as 8".to_owned(),
        })
}

/// clap's parser for an option in seconds (`30`, `0.5`); the range is checked with the
/// plan ([`seconds`]).
pub fn seconds_value(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds, such as 30 or 0.5".to_owned())
}

pub fn positive_seconds(option: &str, value: f64) -> Result<Duration, Error> {
    seconds(option, value)?;
    if value > 0.0 {
        return seconds(option, value);
    }
    Err(Error::config(format!(
        "invalid value '{value}' for '{option}': it must be more than 0 seconds"
    )))
}

pub fn seconds(option: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::config(format!(
            "invalid value '{value}' for '{option}': expected a non-negative number of seconds"
        ))
    })
}

/// Parse `1024`, `64K`, `10M`, `1G` (binary multiples).
pub fn parse_size(option: &str, value: &str) -> Result<u64, Error> {
    let v = value.trim();
    let (digits, mult) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => 0,
            };
            (&v[..i], mult)
        }
        _ => (v, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| mult != 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            Error::config(format!(
                "invalid value '{value}' for '{option}': expected a size in bytes such as 65536, 64K, 10M or 1G"
            ))
        })
}

/// Parse a `--bind` value.
pub fn parse_bind(value: &str) -> Result<BindAddr, Error> {
    if let Some(path) = value.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(Error::config(
                "invalid value 'unix:' for '--bind': the socket path is missing",
            ));
        }
        return Ok(BindAddr::Unix(PathBuf::from(path)));
    }
    resolve_host_port(value)
        .map(BindAddr::Tcp)
        .map_err(|why| Error::config(format!("invalid value '{value}' for '--bind': {why}")))
}

/// Parse Django's `[addr:]port` the way `runserver` does: a bare port means 127.0.0.1.
pub fn parse_addrport(value: &str) -> Result<BindAddr, Error> {
    let full = if value.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{value}")
    } else {
        value.to_owned()
    };
    resolve_host_port(&full).map(BindAddr::Tcp).map_err(|why| {
        Error::config(format!(
            "'{value}' is not a valid port number or address:port pair: {why}"
        ))
    })
}

fn resolve_host_port(value: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT, [IPV6]:PORT or unix:PATH".to_owned())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{host}' resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("x", "1024").unwrap(), 1024);
        assert_eq!(parse_size("x", "64K").unwrap(), 65536);
        assert_eq!(parse_size("x", "10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("x", "1G").unwrap(), 1 << 30);
        for bad in ["", "G", "1T", "-1", "1.5M"] {
            let err = parse_size("--max-body-size", bad).unwrap_err().to_string();
            assert!(err.contains("--max-body-size"), "{err}");
        }
    }

    #[test]
    fn binds_accept_the_three_forms() {
        assert_eq!(
            parse_bind("127.0.0.1:80").unwrap(),
            BindAddr::Tcp("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_bind("[::1]:8000").unwrap(),
            BindAddr::Tcp("[::1]:8000".parse().unwrap())
        );
        assert_eq!(
            parse_bind("unix:/tmp/x.sock").unwrap(),
            BindAddr::Unix("/tmp/x.sock".into())
        );
        assert!(parse_bind("localhost:0")
            .unwrap()
            .to_string()
            .ends_with(":0"));
        assert!(parse_bind("nonsense").is_err());
        assert!(parse_bind("host:port").is_err());
        assert!(parse_bind("unix:").is_err());
    }

    #[test]
    fn addrport_works_like_runserver() {
        assert_eq!(
            parse_addrport("8000").unwrap(),
            BindAddr::Tcp("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_addrport("0.0.0.0:8001").unwrap(),
            BindAddr::Tcp("0.0.0.0:8001".parse().unwrap())
        );
        assert_eq!(
            parse_addrport("[::1]:8002").unwrap(),
            BindAddr::Tcp("[::1]:8002".parse().unwrap())
        );
        assert!(parse_addrport("abc").is_err());
    }
}
