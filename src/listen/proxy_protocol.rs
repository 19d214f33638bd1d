//! The PROXY protocol, versions 1 (text) and 2 (binary), as haproxy specifies it
//! (`doc/proxy-protocol.txt`): a load balancer that passes TCP through (haproxy `send-proxy`,
//! `send-proxy-v2`, AWS and GCP network load balancers) opens each connection with a header
//! naming the client, before any TLS or HTTP byte.
//!
//! Exactly the header is read, never a byte past it: what follows belongs to TLS or HTTP. A
//! header that is absent, malformed, truncated or too slow ends the connection; so does a
//! connection from a peer not allowed to send one (`server.rs` decides that). A header with
//! the LOCAL command (a balancer's own health check) or an unknown or Unix address family
//! leaves the connection's own peer in place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Peer;
use crate::logging::throttle::{self, Throttle};

/// Version 2's first twelve bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Version 2's shortest header, and more than version 1's shortest (`PROXY UNKNOWN\r\n`, 15):
/// the first read takes this much less one, which every valid header has.
const V2_FIXED: usize = 16;
/// The most address and TLV bytes accepted after version 2's fixed part. The addresses take
/// at most 216 (Unix); the rest leaves room for the TLVs cloud balancers add (an AWS VPC
/// endpoint id, a GCP PSC connection id) while a header cannot make us hold 64 KiB.
const V2_MAX_LEN: usize = 1024;

/// How often a refused connection is logged at most: a balancer that does not send the
/// header (or a client that reaches the port directly) would otherwise log every connection.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What a header says about the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Client {
    /// The connection was relayed for this client.
    Relayed(SocketAddr),
    /// The balancer speaks for itself (LOCAL, UNKNOWN, a Unix or unspecified family): the
    /// connection's own peer stands.
    Unchanged,
}

/// What [`read`] says of a connection that closed before sending a byte (a TCP health check,
/// a port scan): not worth a warning.
pub const NOTHING_SENT: &str = "the connection closed before sending anything";

/// Read one PROXY protocol header from the start of `stream`.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Client, String> {
    let mut start = [0u8; V2_FIXED - 1];
    let first = stream
        .read(&mut start)
        .await
        .map_err(|e| format!("reading the PROXY protocol header failed: {e}"))?;
    if first == 0 {
        return Err(NOTHING_SENT.to_owned());
    }
    read_exact(stream, &mut start[first..]).await?;
    if start[..V2_SIGNATURE.len()] == V2_SIGNATURE {
        let mut fixed = [0u8; V2_FIXED];
        fixed[..start.len()].copy_from_slice(&start);
        read_exact(stream, &mut fixed[start.len()..]).await?;
        let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
        if len > V2_MAX_LEN {
            return Err(format!(
                "a version 2 header of {len} address bytes, more than the {V2_MAX_LEN} accepted"
            ));
        }
        let mut rest = vec![0u8; len];
        read_exact(stream, &mut rest).await?;
        return parse_v2(fixed[12], fixed[13], &rest);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(format!(
            "no PROXY protocol header: the connection began with {:?}",
            String::from_utf8_lossy(&start)
        ));
    }
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(format!(
                "a version 1 header longer than {V1_MAX} bytes without its CRLF"
            ));
        }
        let mut byte = [0u8];
        read_exact(stream, &mut byte).await?;
        line.push(byte[0]);
    }
    parse_v1(&line[..line.len() - 2])
}

/// Log a connection closed for want of a valid header: the first at once, then at most one
/// line per [`LOG_EVERY`] with how many were closed since.
pub fn log_refused(peer: &Peer, why: &str) {
    static LINES: Throttle = Throttle::new(LOG_EVERY);
    if let Some(n) = LINES.pass() {
        let more = throttle::more(n, "closed for these reasons");
        crate::log_warn!("Closed the connection from {peer} (--proxy-protocol): {why}{more}");
    }
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), String> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err("the connection closed inside the PROXY protocol header".to_owned())
        }
        Err(e) => Err(format!("reading the PROXY protocol header failed: {e}")),
    }
}

/// `PROXY TCP4 src dst sport dport` (without the CRLF), or `PROXY UNKNOWN ...`.
fn parse_v1(line: &[u8]) -> Result<Client, String> {
    let text =
        std::str::from_utf8(line).map_err(|_| "a version 1 header that is not ASCII".to_owned())?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Client::Unchanged),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let address = |text: &str| -> Result<IpAddr, String> {
                match *family {
                    "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::from),
                    _ => text.parse::<Ipv6Addr>().map(IpAddr::from),
                }
                .map_err(|_| format!("a version 1 header with the {family} address {text:?}"))
            };
            let port = |text: &str| -> Result<u16, String> {
                let decimal = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                text.parse::<u16>()
                    .ok()
                    .filter(|_| decimal)
                    .ok_or_else(|| format!("a version 1 header with the port {text:?}"))
            };
            let client = SocketAddr::new(address(src)?, port(sport)?);
            address(dst)?;
            port(dport)?;
            Ok(Client::Relayed(client))
        }
        _ => Err(format!("a malformed version 1 header {text:?}")),
    }
}

/// Version 2 after its signature: the version and command byte, the family and transport
/// byte, and the `len` bytes that follow the fixed part.
fn parse_v2(version_command: u8, family: u8, rest: &[u8]) -> Result<Client, String> {
    if version_command >> 4 != 2 {
        return Err(format!("a header of version {}", version_command >> 4));
    }
    match version_command & 0x0F {
        0 => return Ok(Client::Unchanged), // LOCAL: the balancer's own connection.
        1 => {}
        other => return Err(format!("a version 2 header with the command {other}")),
    }
    let short = |need: usize| {
        format!(
            "a version 2 header with {} address bytes, fewer than its family's {need}",
            rest.len()
        )
    };
    // The specification's whole list: any other value must be refused.
    match family {
        0x11 => {
            let (Some(&[a, b, c, d]), Some(&[high, low])) = (rest.get(..4), rest.get(8..10)) else {
                return Err(short(12));
            };
            Ok(Client::Relayed(SocketAddr::new(
                Ipv4Addr::new(a, b, c, d).into(),
                u16::from_be_bytes([high, low]),
            )))
        }
        0x21 => {
            let (Some(octets), Some(&[high, low])) = (rest.get(..16), rest.get(32..34)) else {
                return Err(short(36));
            };
            let octets: [u8; 16] = octets.try_into().map_err(|_| short(36))?;
            Ok(Client::Relayed(SocketAddr::new(
                Ipv6Addr::from(octets).into(),
                u16::from_be_bytes([high, low]),
            )))
        }
        // A Unix socket: no address to give the application.
        0x31 if rest.len() >= 216 => Ok(Client::Unchanged),
        0x31 => Err(short(216)),
        // Unspecified: the balancer's own connection, as LOCAL.
        0x00 => Ok(Client::Unchanged),
        0x12 | 0x22 | 0x32 => Err("a version 2 header for a datagram connection".to_owned()),
        other => Err(format!(
            "a version 2 header with the family and transport byte {other:#04x}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<Client, String>, Vec<u8>) {
        let mut stream = bytes;
        let client = read(&mut stream).await;
        (client, stream.to_vec())
    }

    fn addr(text: &str) -> Client {
        Client::Relayed(text.parse().unwrap())
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn version_1_gives_the_client_and_leaves_what_follows() {
        let (client, rest) =
            parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(client, Ok(addr("203.0.113.7:51234")));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (client, _) = parse(b"PROXY TCP6 2001:db8::7 ::1 1 80\r\n").await;
        assert_eq!(client, Ok(addr("[2001:db8::7]:1")));
        let (client, rest) = parse(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!((client, rest), (Ok(Client::Unchanged), b"X".to_vec()));
        let (client, _) = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").await;
        assert_eq!(client, Ok(Client::Unchanged));
    }

    #[tokio::test]
    async fn malformed_version_1_headers_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 203.0.113.7 ::1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 +5 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 0443 443\r\n",
            b"PROXY TCP4  203.0.113.7 10.0.0.1 1 443\r\n",
            b"PROXY TCP5 203.0.113.7 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 443\n\r\n",
            b"PROXY TCP4 203.0.113.7 garbage 1 443\r\n",
            b"PROXY TCP4 203.0.113.7 ::1 1 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 1 99999\r\n",
        ] {
            let (client, _) = parse(bad).await;
            assert!(client.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Too long without its CRLF, and cut short.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long)
            .await
            .0
            .unwrap_err()
            .contains("longer than 107"));
        let cut = parse(b"PROXY TCP4 203.0.113.7 10.0").await.0.unwrap_err();
        assert!(cut.contains("closed inside"), "{cut}");
        assert!(parse(b"PROXY")
            .await
            .0
            .unwrap_err()
            .contains("closed inside"));
    }

    #[tokio::test]
    async fn version_2_gives_the_client_and_skips_its_tlvs() {
        let mut body = vec![203, 0, 113, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x01, 0xBB];
        body.extend_from_slice(&[0x04, 0x00, 0x03, b'v', b'p', b'c']); // a TLV
        let mut wire = v2(0x21, 0x11, &body);
        wire.extend_from_slice(b"\x16\x03\x01");
        let (client, rest) = parse(&wire).await;
        assert_eq!(client, Ok(addr("203.0.113.7:51234")));
        assert_eq!(rest, b"\x16\x03\x01");

        let mut six = vec![0x20, 0x01, 0x0d, 0xb8];
        six.extend_from_slice(&[0; 11]);
        six.push(7);
        six.extend_from_slice(&[0; 16]);
        six.extend_from_slice(&[0, 9, 1, 187]);
        assert_eq!(
            parse(&v2(0x21, 0x21, &six)).await.0,
            Ok(addr("[2001:db8::7]:9"))
        );
        // LOCAL (a health check) and the families without an IP address.
        assert_eq!(parse(&v2(0x20, 0x00, &[])).await.0, Ok(Client::Unchanged));
        assert_eq!(parse(&v2(0x21, 0x00, &[])).await.0, Ok(Client::Unchanged));
        assert_eq!(
            parse(&v2(0x21, 0x31, &[0; 216])).await.0,
            Ok(Client::Unchanged)
        );
    }

    #[tokio::test]
    async fn malformed_version_2_headers_are_refused() {
        let four = [203, 0, 113, 7, 10, 0, 0, 1, 0, 1, 0, 2];
        for (wire, why) in [
            (v2(0x11, 0x11, &four), "version 1"),
            (v2(0x22, 0x11, &four), "command 2"),
            (v2(0x21, 0x12, &four), "datagram"),
            (v2(0x21, 0x11, &four[..8]), "fewer than its family's 12"),
            (v2(0x21, 0x21, &four), "fewer than its family's 36"),
            (v2(0x21, 0x41, &four), "byte 0x41"),
            (v2(0x21, 0x10, &four), "byte 0x10"),
            (v2(0x21, 0x13, &four), "byte 0x13"),
            (v2(0x21, 0x01, &four), "byte 0x01"),
            (v2(0x21, 0x31, &four), "fewer than its family's 216"),
            (v2(0x21, 0x11, &[0; 2000]), "more than the 1024"),
        ] {
            let err = parse(&wire).await.0.unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        // Truncated: in the fixed part, and in the addresses.
        let whole = v2(0x21, 0x11, &four);
        for cut in [13, 20] {
            let err = parse(&whole[..cut]).await.0.unwrap_err();
            assert!(err.contains("closed inside"), "{cut}: {err}");
        }
    }
}
