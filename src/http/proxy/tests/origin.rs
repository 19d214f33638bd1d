//! What a trusted proxy's headers turn into, for each `--forwarded-headers`: the client, the
//! scheme, the host, the port and the prefix, and the values that are refused.

use super::*;

#[test]
#[allow(clippy::too_many_lines)] // one table
fn trusted_headers_become_the_origin() {
    type Case<'a> = (
        &'a str,
        ForwardedHeaders,
        &'a [(&'a str, &'a str)],
        Result<Seen, Refusal>,
    );
    let bad = Refusal::BadRequest;
    let cases: Vec<Case> = vec![
        ("none", XForwarded, &[], Ok(none())),
        (
            "xff",
            XForwarded,
            &[("x-forwarded-for", "203.0.113.7")],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff chain, proxies skipped from the right",
            XForwarded,
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1")],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff over two lines",
            XForwarded,
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff with a port",
            XForwarded,
            &[("x-forwarded-for", "[2001:db8::7]:4711")],
            Ok(want(Some("2001:db8::7"), Some("4711"), None, None, None, "")),
        ),
        (
            "xff unknown keeps the peer",
            XForwarded,
            &[("x-forwarded-for", "unknown")],
            Ok(none()),
        ),
        (
            "forwarded for v6 with port",
            Rfc,
            &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")],
            Ok(want(
                Some("2001:db8:cafe::17"),
                Some("4711"),
                Some("https"),
                None,
                None,
                "",
            )),
        ),
        (
            "forwarded obfuscated keeps the peer",
            Rfc,
            &[("forwarded", "for=_hidden;proto=https;host=example.com")],
            Ok(want(None, None, Some("https"), Some("example.com"), None, "")),
        ),
        (
            "forwarded: the picked element's proto and host",
            Rfc,
            &[(
                "forwarded",
                "for=203.0.113.7;proto=https;host=example.com, for=10.0.0.2;proto=http;host=internal",
            )],
            Ok(want(
                Some("203.0.113.7"),
                None,
                Some("https"),
                Some("example.com"),
                None,
                "",
            )),
        ),
        // Issue 3 review: a proxy that writes one family passes the client's own headers of the
        // other family through. The family not read is ignored, whatever it says.
        (
            "x-forwarded: a client's Forwarded is ignored",
            XForwarded,
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-proto", "http"),
                ("forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
            ],
            Ok(want(Some("203.0.113.7"), None, Some("http"), None, None, "")),
        ),
        (
            "x-forwarded: a Forwarded alone is ignored",
            XForwarded,
            &[("forwarded", "for=6.6.6.6;proto=https;host=evil.example")],
            Ok(none()),
        ),
        (
            "forwarded: a client's X-Forwarded-* are ignored",
            Rfc,
            &[
                ("forwarded", "for=203.0.113.7;proto=http"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-ssl", "on"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-port", "444"),
                ("x-forwarded-prefix", "/evil"),
            ],
            Ok(want(Some("203.0.113.7"), None, Some("http"), None, None, "")),
        ),
        (
            "forwarded: X-Forwarded-For alone is ignored",
            Rfc,
            &[("x-forwarded-for", "6.6.6.6")],
            Ok(none()),
        ),
        (
            "both: agreeing families",
            Both,
            &[
                ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "Example.com"),
                ("x-forwarded-prefix", "/outer"),
                ("forwarded", "for=\"203.0.113.7:4711\";proto=https;host=example.com"),
            ],
            Ok(want(
                Some("203.0.113.7"),
                Some("4711"),
                Some("https"),
                Some("Example.com"),
                None,
                "/outer",
            )),
        ),
        (
            "both: one family alone",
            Both,
            &[("forwarded", "for=203.0.113.7;host=example.com")],
            Ok(want(Some("203.0.113.7"), None, None, Some("example.com"), None, "")),
        ),
        (
            "both: different clients",
            Both,
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=203.0.113.7"),
            ],
            Err(bad(
                "X-Forwarded-For and the for= of the Forwarded header name different clients",
            )),
        ),
        (
            "both: an address and an unknown client",
            Both,
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("forwarded", "for=_hidden"),
            ],
            Err(bad(
                "X-Forwarded-For and the for= of the Forwarded header name different clients",
            )),
        ),
        (
            "both: different hosts",
            Both,
            &[
                ("x-forwarded-host", "a.example"),
                ("forwarded", "host=b.example"),
            ],
            Err(bad(
                "X-Forwarded-Host and the host= of the Forwarded header disagree about the host",
            )),
        ),
        (
            "both: different schemes",
            Both,
            &[
                ("x-forwarded-proto", "https"),
                ("forwarded", "proto=http"),
            ],
            Err(bad(
                "X-Forwarded-Proto (or X-Forwarded-Ssl) and the proto= of the Forwarded header disagree about the scheme",
            )),
        ),
        (
            "agreeing schemes",
            Both,
            &[
                ("x-forwarded-proto", "HTTPS"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "proto=https"),
            ],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "x-forwarded-ssl alone",
            XForwarded,
            &[("x-forwarded-ssl", "on")],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "host, port, prefix",
            XForwarded,
            &[
                ("x-forwarded-host", "example.com:8443"),
                ("x-forwarded-port", "8443"),
                ("x-forwarded-prefix", "/outer/"),
            ],
            Ok(want(
                None,
                None,
                None,
                Some("example.com:8443"),
                Some("8443"),
                "/outer",
            )),
        ),
        (
            "the rightmost host",
            XForwarded,
            &[("x-forwarded-host", "spoofed.example, real.example")],
            Ok(want(None, None, None, Some("real.example"), None, "")),
        ),
        // A scheme list is read like the host: the rightmost entry, which the proxy next to us
        // wrote. Entries to its left are not read, so not refused either.
        (
            "proto list",
            XForwarded,
            &[("x-forwarded-proto", "https, http")],
            Ok(want(None, None, Some("http"), None, None, "")),
        ),
        (
            "proto over two lines",
            XForwarded,
            &[("x-forwarded-proto", "https"), ("x-forwarded-proto", "http")],
            Ok(want(None, None, Some("http"), None, None, "")),
        ),
        (
            "a client's junk left of the proxy's proto",
            XForwarded,
            &[("x-forwarded-proto", "ftp, https, ")],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "ssl list",
            XForwarded,
            &[("x-forwarded-ssl", "off, on")],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "ssl conflict",
            XForwarded,
            &[("x-forwarded-proto", "http"), ("x-forwarded-ssl", "on")],
            Err(bad(
                "X-Forwarded-Proto and X-Forwarded-Ssl disagree about the scheme",
            )),
        ),
        (
            "ssl conflict, rightmost entries",
            XForwarded,
            &[("x-forwarded-proto", "http, https"), ("x-forwarded-ssl", "on, off")],
            Err(bad(
                "X-Forwarded-Proto and X-Forwarded-Ssl disagree about the scheme",
            )),
        ),
        (
            "unknown scheme",
            XForwarded,
            &[("x-forwarded-proto", "ftp")],
            Err(bad("the X-Forwarded-Proto header must be http or https")),
        ),
        (
            "unknown scheme rightmost",
            XForwarded,
            &[("x-forwarded-proto", "https, wss")],
            Err(bad("the X-Forwarded-Proto header must be http or https")),
        ),
        (
            "unknown rfc scheme",
            Rfc,
            &[("forwarded", "proto=wss")],
            Err(bad("the proto= of the Forwarded header must be http or https")),
        ),
        (
            "bad ssl",
            XForwarded,
            &[("x-forwarded-ssl", "yes")],
            Err(bad("the X-Forwarded-Ssl header must be on or off")),
        ),
        (
            "bad host",
            XForwarded,
            &[("x-forwarded-host", "evil.example/path")],
            Err(bad("the X-Forwarded-Host header is not a valid host[:port]")),
        ),
        (
            "bad rfc host",
            Rfc,
            &[("forwarded", "host=\"a b\"")],
            Err(bad("the host= of the Forwarded header is not a valid host[:port]")),
        ),
        (
            "bad port",
            XForwarded,
            &[("x-forwarded-port", "http")],
            Err(bad("the X-Forwarded-Port header is not a port number (1-65535)")),
        ),
        (
            "bad prefix",
            XForwarded,
            &[("x-forwarded-prefix", "/a/../b")],
            Err(bad(
                "the X-Forwarded-Prefix header is not a valid path prefix (it must start with '/' and have no '%', '//' or '..')",
            )),
        ),
        (
            "malformed forwarded",
            Rfc,
            &[("forwarded", "for=\"1.2.3.4")],
            Err(bad("a quoted string in the Forwarded header is not closed")),
        ),
        (
            "malformed forwarded, not read",
            XForwarded,
            &[("forwarded", "for=\"1.2.3.4")],
            Ok(none()),
        ),
    ];
    for (name, mode, headers, expected) in cases {
        let p = reading(&["127.0.0.1", "::1", "10.0.0.0/8"], mode, "", false);
        let mut req = parts("/", headers);
        let got = p.forwarded(&mut req, &conn("127.0.0.1:5000")).map(seen);
        assert_eq!(got, expected, "{name}");
    }
}
