//! Tables for `proxy.rs`: trust, which header family is read and what is removed, and prefix
//! routing. What the headers turn into (lists, conflicts, refusals) is `tests/origin.rs`'s table.

use super::*;
use crate::config::ProxyPlan;
use ForwardedHeaders::{Both, Forwarded as Rfc, XForwarded};

mod origin;

fn conn(peer: &str) -> ConnInfo {
    ConnInfo {
        unix_path: None,
        peer: if peer == "unix" {
            Peer::Unix
        } else {
            Peer::Tcp(peer.parse().unwrap())
        },
        local: None,
        scheme: "http",
        tls: None,
        relayed: false,
        pending: std::sync::atomic::AtomicUsize::new(0),
        held: None,
    }
}

fn proxy(allow: &[&str], prefix: &str, redirect: bool) -> Proxy {
    reading(allow, XForwarded, prefix, redirect)
}

fn reading(allow: &[&str], headers: ForwardedHeaders, prefix: &str, redirect: bool) -> Proxy {
    let plan = ProxyPlan {
        prefix: Some(prefix.to_owned()),
        prefix_redirect: redirect,
        allow: AllowList::parse(allow).unwrap(),
        headers,
        protocol: false,
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
pub(super) type Seen = (
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
    for mode in [XForwarded, Rfc, Both] {
        untrusted_peer_loses_every_forwarding_header(mode);
    }
}

fn untrusted_peer_loses_every_forwarding_header(mode: ForwardedHeaders) {
    let p = reading(&["10.9.9.9"], mode, "", false);
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
fn the_family_not_read_is_removed_from_trusted_peers_too() {
    let every = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "example.com"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/outer"),
        ("x-forwarded-ssl", "on"),
        ("forwarded", "for=203.0.113.7;proto=https;host=example.com"),
    ];
    let x_family = [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-ssl",
    ];
    let cases: &[(ForwardedHeaders, &[&str])] = &[
        (XForwarded, &x_family),
        (Rfc, &["forwarded"]),
        (Both, &[&x_family[..], &["forwarded"]].concat()),
    ];
    for (mode, kept) in cases {
        for peer in ["127.0.0.1:1", "unix"] {
            let p = reading(&["127.0.0.1"], *mode, "", false);
            let mut req = parts("/", &every);
            let origin = p.forwarded(&mut req, &conn(peer)).unwrap();
            assert_eq!(origin.client.as_deref(), Some("203.0.113.7"), "{mode:?}");
            assert_eq!(origin.scheme, Some("https"), "{mode:?}");
            let mut left: Vec<&str> = req
                .headers
                .keys()
                .map(HeaderName::as_str)
                .filter(|n| *n != "host")
                .collect();
            left.sort_unstable();
            let mut kept = kept.to_vec();
            kept.sort_unstable();
            assert_eq!(left, kept, "{mode:?} {peer}");
        }
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
