//! Tables for `proxy.rs`: trust, precedence, conflicts and prefix routing.

use super::*;
use crate::config::ProxyPlan;

fn conn(peer: &str) -> ConnInfo {
    ConnInfo {
        peer: if peer == "unix" {
            Peer::Unix
        } else {
            Peer::Tcp(peer.parse().unwrap())
        },
        local: None,
        scheme: "http",
        tls: None,
    }
}

fn proxy(allow: &[&str], prefix: &str, redirect: bool) -> Proxy {
    let plan = ProxyPlan {
        prefix: Some(prefix.to_owned()),
        prefix_redirect: redirect,
        allow: AllowList::parse(allow).unwrap(),
    };
    Proxy::new(&plan, None).unwrap()
}

fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().uri(target).header("host", "h");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// What a test compares: (client, client port, scheme, host, port, script name).
type Seen = (
    Option<String>,
    Option<String>,
    Option<&'static str>,
    Option<String>,
    Option<String>,
    String,
);

fn seen(o: Origin) -> Seen {
    (
        o.client,
        o.client_port,
        o.scheme,
        o.host,
        o.port,
        o.script_name,
    )
}

fn want(
    client: Option<&str>,
    client_port: Option<&str>,
    scheme: Option<&'static str>,
    host: Option<&str>,
    port: Option<&str>,
    script_name: &str,
) -> Seen {
    (
        client.map(str::to_owned),
        client_port.map(str::to_owned),
        scheme,
        host.map(str::to_owned),
        port.map(str::to_owned),
        script_name.to_owned(),
    )
}

fn none() -> Seen {
    want(None, None, None, None, None, "")
}

#[test]
fn untrusted_peers_lose_every_forwarding_header() {
    let p = proxy(&["10.9.9.9"], "", false);
    let all = [
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/evil"),
        ("x-forwarded-ssl", "on"),
        ("forwarded", "for=1.2.3.4;proto=https"),
        ("x-other", "kept"),
    ];
    let mut req = parts("/", &all);
    let origin = p.forwarded(&mut req, &conn("127.0.0.1:5000")).unwrap();
    assert_eq!(seen(origin), none());
    let left: Vec<&str> = req.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["host", "x-other"]);
    // Even conflicting or malformed ones: they are dropped, not judged.
    let mut req = parts(
        "/",
        &[
            ("x-forwarded-proto", "https"),
            ("forwarded", "proto=http;;="),
        ],
    );
    assert!(p.forwarded(&mut req, &conn("[::1]:5000")).is_ok());
    assert!(req.headers.get("forwarded").is_none());
}

#[test]
fn trust_follows_the_allow_list_and_unix_sockets() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["127.0.0.1", "::1"], "127.0.0.1:1", true),
        (&["127.0.0.1", "::1"], "[::1]:1", true),
        (&["127.0.0.1", "::1"], "[::ffff:127.0.0.1]:1", true),
        (&["127.0.0.1", "::1"], "10.0.0.1:1", false),
        (&["10.0.0.0/8"], "10.0.0.1:1", true),
        (&["10.9.9.9"], "127.0.0.1:1", false),
        (&["10.9.9.9"], "unix", true),
        (&[], "unix", true),
        (&["*"], "203.0.113.1:1", true),
    ];
    for (allow, peer, trusted) in cases {
        let p = proxy(allow, "", false);
        let mut req = parts("/", &[("x-forwarded-proto", "https")]);
        let origin = p.forwarded(&mut req, &conn(peer)).unwrap();
        let want = trusted.then_some("https");
        assert_eq!(origin.scheme, want, "{allow:?} {peer}");
        assert_eq!(req.headers.contains_key("x-forwarded-proto"), *trusted);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one table
fn trusted_headers_become_the_origin() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<Seen, Refusal>);
    let bad = Refusal::BadRequest;
    let cases: Vec<Case> = vec![
        ("none", &[], Ok(none())),
        (
            "xff",
            &[("x-forwarded-for", "203.0.113.7")],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff chain, proxies skipped from the right",
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1")],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff over two lines",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "xff with a port",
            &[("x-forwarded-for", "[2001:db8::7]:4711")],
            Ok(want(Some("2001:db8::7"), Some("4711"), None, None, None, "")),
        ),
        (
            "xff unknown keeps the peer",
            &[("x-forwarded-for", "unknown")],
            Ok(none()),
        ),
        (
            "forwarded for v6 with port",
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
            &[("forwarded", "for=_hidden;proto=https;host=example.com")],
            Ok(want(None, None, Some("https"), Some("example.com"), None, "")),
        ),
        (
            "forwarded: the picked element's proto and host",
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
        (
            "xff wins over forwarded for the client",
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("forwarded", "for=6.6.6.6"),
            ],
            Ok(want(Some("203.0.113.7"), None, None, None, None, "")),
        ),
        (
            "x-forwarded-host wins over host=",
            &[
                ("x-forwarded-host", "a.example"),
                ("forwarded", "host=b.example"),
            ],
            Ok(want(None, None, None, Some("a.example"), None, "")),
        ),
        (
            "agreeing schemes",
            &[
                ("x-forwarded-proto", "HTTPS"),
                ("x-forwarded-ssl", "on"),
                ("forwarded", "proto=https"),
            ],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "x-forwarded-ssl alone",
            &[("x-forwarded-ssl", "on")],
            Ok(want(None, None, Some("https"), None, None, "")),
        ),
        (
            "host, port, prefix",
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
            &[("x-forwarded-host", "spoofed.example, real.example")],
            Ok(want(None, None, None, Some("real.example"), None, "")),
        ),
        (
            "proto conflict",
            &[
                ("x-forwarded-proto", "https"),
                ("forwarded", "proto=http"),
            ],
            Err(bad(
                "X-Forwarded-Proto (or X-Forwarded-Ssl) and the proto= of the Forwarded header disagree about the scheme",
            )),
        ),
        (
            "two x-forwarded-proto",
            &[("x-forwarded-proto", "https"), ("x-forwarded-proto", "http")],
            Err(bad("the X-Forwarded-Proto header has two different values")),
        ),
        (
            "proto list",
            &[("x-forwarded-proto", "https, http")],
            Err(bad("the X-Forwarded-Proto header has two different values")),
        ),
        (
            "ssl conflict",
            &[("x-forwarded-proto", "http"), ("x-forwarded-ssl", "on")],
            Err(bad(
                "X-Forwarded-Proto and X-Forwarded-Ssl disagree about the scheme",
            )),
        ),
        (
            "unknown scheme",
            &[("x-forwarded-proto", "ftp")],
            Err(bad("the X-Forwarded-Proto header must be http or https")),
        ),
        (
            "unknown rfc scheme",
            &[("forwarded", "proto=wss")],
            Err(bad("the proto= of the Forwarded header must be http or https")),
        ),
        (
            "bad ssl",
            &[("x-forwarded-ssl", "yes")],
            Err(bad("the X-Forwarded-Ssl header must be on or off")),
        ),
        (
            "bad host",
            &[("x-forwarded-host", "evil.example/path")],
            Err(bad("the X-Forwarded-Host header is not a valid host[:port]")),
        ),
        (
            "bad rfc host",
            &[("forwarded", "host=\"a b\"")],
            Err(bad("the host= of the Forwarded header is not a valid host[:port]")),
        ),
        (
            "bad port",
            &[("x-forwarded-port", "http")],
            Err(bad("the X-Forwarded-Port header is not a port number (1-65535)")),
        ),
        (
            "bad prefix",
            &[("x-forwarded-prefix", "/a/../b")],
            Err(bad(
                "the X-Forwarded-Prefix header is not a valid path prefix (it must start with '/' and have no '%', '//' or '..')",
            )),
        ),
        (
            "malformed forwarded",
            &[("forwarded", "for=\"1.2.3.4")],
            Err(bad("a quoted string in the Forwarded header is not closed")),
        ),
    ];
    let p = proxy(&["127.0.0.1", "::1", "10.0.0.0/8"], "", false);
    for (name, headers, expected) in cases {
        let mut req = parts("/", headers);
        let got = p.forwarded(&mut req, &conn("127.0.0.1:5000")).map(seen);
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn non_ascii_values_are_refused() {
    let p = proxy(&["127.0.0.1"], "", false);
    let mut req = parts("/", &[]);
    req.headers.insert(
        "x-forwarded-host",
        http::HeaderValue::from_bytes(b"caf\xe9.example").unwrap(),
    );
    assert_eq!(
        p.forwarded(&mut req, &conn("127.0.0.1:1")).unwrap_err(),
        Refusal::BadRequest("the X-Forwarded-Host header is not ASCII")
    );
}

#[test]
fn forwarding_names_are_recognized() {
    for (name, want) in [
        ("forwarded", true),
        ("x-forwarded-for", true),
        ("x-forwarded-ssl", true),
        ("x-forwarded-prefix", true),
        ("x-forwarded-server", false),
        ("x-forwarded", false),
        ("x-real-ip", false),
        ("host", false),
    ] {
        assert_eq!(
            Fwd::of(&HeaderName::from_static(name)).is_some(),
            want,
            "{name}"
        );
    }
}

#[test]
fn routing_at_the_prefix() {
    let p = proxy(&[], "/app", false);
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("/app", Some(b"")),
        ("/app/", Some(b"/")),
        ("/app/notes/?x=1", Some(b"/notes/")),
        ("/%61pp/x", Some(b"/x")),
        ("/app/caf%C3%A9", Some(b"/caf\xc3\xa9")),
        ("/app%2Fx", Some(b"/x")),
        ("/application", None),
        ("/", None),
        ("/other/app", None),
    ];
    for (target, rest) in cases {
        let mut origin = Origin::default();
        let answer = p.route(&parts(target, &[]), &mut origin);
        match rest {
            Some(rest) => {
                assert!(answer.is_none(), "{target}");
                assert_eq!(origin.script_name, "/app", "{target}");
                assert_eq!(origin.path_info.as_deref(), Some(*rest), "{target}");
            }
            None => {
                assert_eq!(
                    answer.expect(target).status(),
                    http::StatusCode::NOT_FOUND,
                    "{target}"
                );
            }
        }
    }
    // X-Forwarded-Prefix comes first.
    let mut origin = Origin {
        script_name: "/outer".to_owned(),
        ..Origin::default()
    };
    assert!(p.route(&parts("/app/x", &[]), &mut origin).is_none());
    assert_eq!(origin.script_name, "/outer/app");
    // Without a prefix nothing is split.
    let p = proxy(&[], "", false);
    let mut origin = Origin::default();
    assert!(p.route(&parts("/x", &[]), &mut origin).is_none());
    assert_eq!(origin.path_info, None);
}

#[test]
fn redirect_keeps_the_query() {
    let p = proxy(&[], "/app", true);
    let resp = p
        .route(&parts("/x?a=1", &[]), &mut Origin::default())
        .unwrap();
    assert_eq!(resp.status(), http::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers()["location"], "/app/x?a=1");
}

#[test]
fn force_script_name_applies_without_prefix() {
    let mut plan = ProxyPlan::default();
    let p = Proxy::new(&plan, Some("/site/".to_owned())).unwrap();
    assert_eq!(p.prefix(), "/site");
    let err = Proxy::new(&plan, Some("site".to_owned())).err().unwrap();
    assert!(
        err.to_string().contains("FORCE_SCRIPT_NAME 'site'"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    plan.prefix = Some("/app".to_owned());
    let p = Proxy::new(&plan, Some("/site".to_owned())).unwrap();
    assert_eq!(p.prefix(), "/app");
    assert_eq!(
        Proxy::new(&ProxyPlan::default(), None).unwrap().prefix(),
        ""
    );
}
