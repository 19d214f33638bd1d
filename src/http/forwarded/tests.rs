//! Tables for `forwarded.rs`: nodes, the chain rule, schemes, hosts and RFC 7239 parsing.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn nodes() {
    let cases: &[(&str, Node)] = &[
        ("192.0.2.1", Node::Ip(ip("192.0.2.1"), None)),
        (" 192.0.2.1 ", Node::Ip(ip("192.0.2.1"), None)),
        ("192.0.2.1:8080", Node::Ip(ip("192.0.2.1"), Some(8080))),
        ("192.0.2.1:_p", Node::Ip(ip("192.0.2.1"), None)),
        ("2001:db8::1", Node::Ip(ip("2001:db8::1"), None)),
        ("[2001:db8::1]", Node::Ip(ip("2001:db8::1"), None)),
        ("[2001:db8::1]:443", Node::Ip(ip("2001:db8::1"), Some(443))),
        ("[2001:db8::1]:_obf", Node::Ip(ip("2001:db8::1"), None)),
        ("[2001:db8::1", Node::Unknown),
        ("[2001:db8::1]x", Node::Unknown),
        ("[192.0.2.1]", Node::Unknown),
        ("unknown", Node::Unknown),
        ("_hidden", Node::Unknown),
        ("", Node::Unknown),
        ("example.com", Node::Unknown),
        ("300.1.1.1", Node::Unknown),
    ];
    for (s, want) in cases {
        assert_eq!(node(s), *want, "{s:?}");
    }
}

#[test]
fn chain_rule_walks_from_the_right() {
    let allow = AllowList::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
    let any = AllowList::parse(["*"]).unwrap();
    let none = AllowList::parse::<_, &str>([]).unwrap();
    let cases: &[(&str, &AllowList, Option<usize>)] = &[
        ("", &allow, None),
        ("203.0.113.7", &allow, Some(0)),
        // The client's own (forgeable) entries are left of the one our proxy added.
        ("1.1.1.1, 203.0.113.7", &allow, Some(1)),
        ("1.1.1.1, 203.0.113.7, 10.0.0.2", &allow, Some(1)),
        ("203.0.113.7, 10.0.0.3, 10.0.0.2", &allow, Some(0)),
        // Every hop trusted: the leftmost.
        ("10.0.0.9, 127.0.0.1", &allow, Some(0)),
        ("1.1.1.1, 203.0.113.7", &any, Some(0)),
        ("1.1.1.1, 203.0.113.7", &none, Some(1)),
        // A hop we cannot name stops the walk.
        ("203.0.113.7, unknown, 10.0.0.2", &allow, Some(1)),
        ("203.0.113.7, junk, 10.0.0.2", &allow, Some(1)),
        ("203.0.113.7, [::ffff:10.0.0.1]:80", &allow, Some(0)),
    ];
    for (chain, allow, want) in cases {
        let nodes: Vec<Node> = chain
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(node)
            .collect();
        assert_eq!(pick(nodes.into_iter(), allow), *want, "{chain:?}");
    }
}

#[test]
fn schemes() {
    for (s, want) in [
        ("http", Some("http")),
        ("HTTPS", Some("https")),
        (" https ", Some("https")),
        ("ws", None),
        ("ftp", None),
        ("", None),
        ("https, http", None),
    ] {
        assert_eq!(scheme(s), want, "{s:?}");
    }
}

#[test]
fn hosts() {
    for (s, want) in [
        ("example.com", true),
        ("example.com:8443", true),
        ("EXAMPLE.com", true),
        ("my_host.internal", true),
        ("192.0.2.1", true),
        ("192.0.2.1:80", true),
        ("[2001:db8::1]", true),
        ("[2001:db8::1]:443", true),
        ("", false),
        (":80", false),
        ("example.com:", false),
        ("example.com:0", false),
        ("example.com:65536", false),
        ("example.com:80:80", false),
        ("exa mple.com", false),
        ("evil.com/path", false),
        ("user@example.com", false),
        ("[2001:db8::1", false),
        ("[not-v6]", false),
        ("2001:db8::1", false),
        ("<script>", false),
    ] {
        assert_eq!(valid_host(s), want, "{s:?}");
    }
}

#[test]
fn last_entries() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&[""], None),
        (&["a.example"], Some("a.example")),
        (&["a.example, b.example"], Some("b.example")),
        (&["a.example", "b.example ,"], Some("b.example")),
        (&["a.example", " , "], Some("a.example")),
    ];
    for (lines, want) in cases {
        assert_eq!(last_entry(lines.iter().copied()), *want, "{lines:?}");
    }
}

fn el<'a>(f: Option<&'a str>, p: Option<&'a str>, h: Option<&'a str>) -> Element<'a> {
    Element {
        for_: f.map(Cow::Borrowed),
        proto: p.map(Cow::Borrowed),
        host: h.map(Cow::Borrowed),
    }
}

#[test]
fn rfc7239_parsing() {
    type Case<'a> = (&'a [&'a str], Result<Vec<Element<'a>>, &'a str>);
    let cases: Vec<Case> = vec![
        (&[], Ok(vec![])),
        (
            &["for=192.0.2.60"],
            Ok(vec![el(Some("192.0.2.60"), None, None)]),
        ),
        (
            &["for=192.0.2.60;proto=http;by=203.0.113.43"],
            Ok(vec![el(Some("192.0.2.60"), Some("http"), None)]),
        ),
        (
            &["For=\"[2001:db8:cafe::17]:4711\""],
            Ok(vec![el(Some("[2001:db8:cafe::17]:4711"), None, None)]),
        ),
        (
            &["FOR=192.0.2.43, for=198.51.100.17;PROTO=HTTPS"],
            Ok(vec![
                el(Some("192.0.2.43"), None, None),
                el(Some("198.51.100.17"), Some("HTTPS"), None),
            ]),
        ),
        (
            &["for=192.0.2.43", "for=\"_gazonk\""],
            Ok(vec![
                el(Some("192.0.2.43"), None, None),
                el(Some("_gazonk"), None, None),
            ]),
        ),
        (
            &["for=unknown;host=\"example.com:8443\"; proto=https"],
            Ok(vec![el(
                Some("unknown"),
                Some("https"),
                Some("example.com:8443"),
            )]),
        ),
        (&["host=\"a\\\"b\""], Ok(vec![el(None, None, Some("a\"b"))])),
        (
            &[" for=1.2.3.4:80 ; proto=http , , for=[::1]"],
            Ok(vec![
                el(Some("1.2.3.4:80"), Some("http"), None),
                el(Some("[::1]"), None, None),
            ]),
        ),
        (
            &["for=\"a,b;c\";secret=x"],
            Ok(vec![el(Some("a,b;c"), None, None)]),
        ),
        (
            &["for"],
            Err("a Forwarded parameter has no value (see RFC 7239)"),
        ),
        (
            &["for="],
            Err("a Forwarded parameter has no value (see RFC 7239)"),
        ),
        (
            &["=x"],
            Err("a Forwarded parameter has no value (see RFC 7239)"),
        ),
        (
            &["for=\"192.0.2.1"],
            Err("a quoted string in the Forwarded header is not closed"),
        ),
        (
            &["for=1.1.1.1;for=2.2.2.2"],
            Err("a Forwarded parameter appears twice in one element"),
        ),
        (
            &["for=\"x\"y"],
            Err("the Forwarded header is malformed (see RFC 7239)"),
        ),
        (
            &["for=1.1.1.1 proto=http"],
            Err("the Forwarded header is malformed (see RFC 7239)"),
        ),
        (
            &["junk"],
            Err("a Forwarded parameter has no value (see RFC 7239)"),
        ),
    ];
    for (lines, want) in cases {
        assert_eq!(parse_forwarded(lines.iter().copied()), want, "{lines:?}");
    }
}
