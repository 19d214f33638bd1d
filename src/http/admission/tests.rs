//! Tables for `admission.rs`: limits, `Host`, the method and target-form rules, length and
//! transfer-coding rules, and trailer fields. The live counterpart is
//! `tests/test_conformance.py` (gunicorn's request corpus).

use super::*;

fn limits() -> Limits {
    Limits {
        request_line: 4094,
        fields: 100,
        field_size: 8190,
        max_body: 1 << 20,
        body_buffer: 1024,
    }
}

fn parts(target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method("GET").uri(target);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn admission_table() {
    let long = format!("/{}", "a".repeat(4100));
    let big = "b".repeat(8190);
    let many: Vec<(String, &str)> = (0..101).map(|i| (format!("x-h{i}"), "v")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let cases: Vec<(&str, Parts, Result<(), Refusal>)> = vec![
        ("plain", parts("/a?b=c", &[("host", "x")]), Ok(())),
        (
            "no host",
            parts("/", &[]),
            Err(Refusal::BadRequest(
                "an HTTP/1.1 request must have a Host header",
            )),
        ),
        (
            "two hosts",
            parts("/", &[("host", "a"), ("host", "b")]),
            Err(Refusal::BadRequest(
                "the request has more than one Host header",
            )),
        ),
        (
            "long line",
            parts(&long, &[("host", "x")]),
            Err(Refusal::UriTooLong),
        ),
        (
            "big field",
            parts("/", &[("host", "x"), ("x-big", &big)]),
            Err(Refusal::HeadersTooLarge(
                "a header field is larger than --limit-request-field-size (repeated fields count together)",
            )),
        ),
        (
            "chunked",
            parts("/", &[("host", "x"), ("transfer-encoding", "chunked")]),
            Ok(()),
        ),
        (
            "gzip",
            parts(
                "/",
                &[("host", "x"), ("transfer-encoding", "gzip, chunked")],
            ),
            Err(Refusal::NotImplemented(
                "the request uses a transfer coding other than chunked",
            )),
        ),
        (
            "chunked twice",
            parts(
                "/",
                &[
                    ("host", "x"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
            ),
            Err(Refusal::BadRequest(
                "chunked is listed more than once in Transfer-Encoding",
            )),
        ),
    ];
    for (name, p, want) in cases {
        assert_eq!(admit(&p, &limits()), want, "{name}");
    }
    let mut h2 = parts("https://example.com:8443/a?b", &[]);
    h2.version = Version::HTTP_2;
    assert_eq!(admit(&h2, &limits()), Ok(()), "HTTP/2 needs no Host");
    assert_eq!(request_target_of(&h2), "/a?b");
    h2.version = Version::HTTP_11;
    assert_eq!(request_target_of(&h2), "https://example.com:8443/a?b");
    let mut p = parts("/", &many);
    p.headers.insert("host", "x".parse().unwrap());
    assert_eq!(
        admit(&p, &limits()).unwrap_err().status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}
/// One request head per line: `METHOD TARGET VERSION [| name: value]... => STATUS` (200 for
/// admitted). `{half}` in a value is 4091 bytes: two such fields under one name, joined,
/// make exactly the default 8190 with `x-a: ` and the CRLF.
const RULES: &[&str] = &[
    "-BLARGH / 1.1 | host: x => 200",
    "get / 1.1 | host: x => 400",
    "GE#T / 1.1 | host: x => 400",
    "GE / 1.1 | host: x => 400",
    "ABCDEFGHIJKLMNOPQRSTU / 1.1 | host: x => 400",
    "OPTIONS * 1.1 | host: x => 200",
    "GET * 1.1 | host: x => 400",
    "GET example.com:443 1.1 | host: x => 400",
    "CONNECT example.com:443 1.1 | host: x => 501",
    "GET http://example.com/a?b 1.1 | host: x => 200",
    "GET / 1.0 => 200",
    "POST / 1.1 | host: x | content-type: a/b | content-type: c/d => 400",
    "GET / 1.1 | host: x | x-a: {half} | x-a: {half} => 200",
    "GET / 1.1 | host: x | x-a: {half} | x-a: {half} | x-a: b => 431",
    "POST / 1.1 | host: x | content-length: 12 => 200",
    "POST / 1.1 | host: x | content-length: 5 | content-length: 5 => 400",
    "POST / 1.1 | host: x | content-length: 5, 5 => 400",
    "POST / 1.1 | host: x | content-length: +5 => 400",
    "POST / 1.1 | host: x | content-length: 3 | transfer-encoding: chunked => 400",
    "POST / 1.1 | host: x | transfer-encoding: identity, chunked => 200",
    "POST / 1.1 | host: x | transfer-encoding: identity | transfer-encoding: chunked => 200",
    "POST / 1.1 | host: x | transfer-encoding: identity, chunked, identity, chunked => 400",
    "POST / 1.1 | host: x | transfer-encoding: chunked | transfer-encoding: identity => 400",
    "POST / 1.1 | host: x | transfer-encoding: identity => 400",
    "POST / 1.1 | host: x | transfer-encoding: gzip, chunked => 501",
    "POST / 1.0 | transfer-encoding: chunked => 400",
];

fn head_of(rule: &str) -> (Parts, u16) {
    let half = "a".repeat((8190 - 5 - 1 - 2) / 2);
    let (head, status) = rule.split_once(" => ").expect("every rule has => STATUS");
    let mut fields = head.split(" | ");
    let line: Vec<&str> = fields.next().unwrap().split(' ').collect();
    let mut b = http::Request::builder()
        .method(Method::from_bytes(line[0].as_bytes()).unwrap())
        .uri(line[1])
        .version(match line[2] {
            "1.0" => Version::HTTP_10,
            "2" => Version::HTTP_2,
            _ => Version::HTTP_11,
        });
    for field in fields {
        let (name, value) = field.split_once(": ").unwrap();
        b = b.header(name, value.replace("{half}", &half));
    }
    (b.body(()).unwrap().into_parts().0, status.parse().unwrap())
}

#[test]
fn method_target_and_framing_rules() {
    for rule in RULES {
        let (parts, want) = head_of(rule);
        let got = match admit(&parts, &limits()) {
            Ok(()) => 200,
            Err(r) => r.status().as_u16(),
        };
        assert_eq!(got, want, "{rule}");
    }
    let (mut h2, _) = head_of("OPTIONS https://example.com/ 2 => 200");
    assert_eq!(admit(&h2, &limits()), Ok(()), "HTTP/2 has no target forms");
    h2.method = Method::CONNECT;
    assert_eq!(
        admit(&h2, &limits()).unwrap_err().status(),
        StatusCode::NOT_IMPLEMENTED
    );
}

#[test]
fn forbidden_trailer_fields() {
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("vary: * | content-type: text/plain", true),
        ("x-checksum: abc", true),
        ("content-length: 99", false),
        ("host: evil.example.com", false),
        ("transfer-encoding: chunked", false),
        ("x-ok: 1 | authorization: Basic x", false),
    ];
    for (fields, ok) in cases {
        let mut map = HeaderMap::new();
        for field in fields.split(" | ").filter(|f| !f.is_empty()) {
            let (name, value) = field.split_once(": ").unwrap();
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        assert_eq!(check_trailers(&map).is_ok(), *ok, "{fields}");
    }
}
