//! The WSGI environ builder, with Python: bytes → httparse (as hyper) → admission and the
//! `Host` check → trusted proxy headers and `--prefix` (`http/proxy.rs`) → `wsgi/environ.rs`'s
//! `build`, in an embedded interpreter.
//!
//! Invariants: no panic and no Python error; `REQUEST_METHOD`, `QUERY_STRING` as sent;
//! `SCRIPT_NAME` + `PATH_INFO` is the decoded path (the `--prefix` moved from one to the
//! other); every string is latin-1 (code points below 256); `SERVER_PORT` is digits; every
//! `HTTP_*` key comes from a header whose name has no `_` (or is the `HTTP_HOST` a proxy or
//! HTTP/2 supplied), and `Content-Length`/`Content-Type` are never `HTTP_*`.
#![no_main]

use std::sync::OnceLock;

use _ferrule::fuzzing::{
    admit, build_environ, check_host, AllowList, ConnInfo, Constants, ForwardedHeaders, Peer,
    Proxy, ProxyPlan, Streams,
};
use ferrule_fuzz::{default_limits, head};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use pyo3::prelude::*;
use pyo3::types::PyDict;

struct Fixture {
    consts: Constants,
    /// Stands in for `ferrule.request`: `build` only reads its `disconnected` method.
    request: Py<PyAny>,
    /// (`--prefix`, peer): a trusted Unix-socket peer without a prefix, an untrusted TCP peer
    /// with one.
    cases: Vec<(Proxy, ConnInfo)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        Python::initialize();
        let allow = AllowList::parse(["10.0.0.0/8"]).expect("a valid allow-list");
        let proxy = |prefix: Option<&str>| {
            let plan = ProxyPlan {
                prefix: prefix.map(str::to_owned),
                prefix_redirect: false,
                allow: allow.clone(),
                headers: ForwardedHeaders::Both,
                protocol: false,
            };
            Proxy::new(&plan, None).expect("a valid proxy plan")
        };
        let conn = |peer: Peer| ConnInfo {
            peer,
            local: Some("127.0.0.1:8000".parse().expect("an address")),
            unix_path: None,
            scheme: "http",
            tls: None,
            relayed: false,
            pending: std::sync::atomic::AtomicUsize::new(0),
            held: None,
        };
        Python::attach(|py| Fixture {
            consts: Constants::new(py).expect("the environ constants"),
            request: py
                .eval(
                    c"type('Request', (), {'disconnected': lambda self: False})()",
                    None,
                    None,
                )
                .expect("a stand-in request object")
                .unbind(),
            cases: vec![
                (proxy(None), conn(Peer::Unix)),
                (
                    proxy(Some("/a")),
                    conn(Peer::Tcp("192.0.2.1:5000".parse().expect("an address"))),
                ),
            ],
        })
    })
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The `HTTP_*` key PEP 3333 gives a header name.
fn key_of(name: &str) -> String {
    format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"))
}

fn get(env: &Bound<'_, PyDict>, key: &str) -> String {
    env.get_item(key)
        .expect("a str key")
        .unwrap_or_else(|| panic!("{key} is missing"))
        .extract()
        .unwrap_or_else(|e| panic!("{key} is not a str: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((parts, head_len)) = head(data) else {
        return;
    };
    if admit(&parts, &default_limits()).is_err() || check_host(&parts).is_err() {
        return;
    }
    let fx = fixture();
    for (proxy, conn) in &fx.cases {
        let mut parts = parts.clone();
        let Ok(mut origin) = proxy.forwarded(&mut parts, conn) else {
            continue;
        };
        if proxy.route(&parts, &mut origin).is_some() {
            continue; // outside --prefix: answered without the application
        }
        Python::attach(|py| {
            let streams = Streams {
                input: py.None().into_bound(py),
                errors: py.None().into_bound(py),
                request: fx.request.bind(py).clone(),
            };
            let body_len = (data.len() - head_len) as u64;
            let env = build_environ(py, &parts, conn, &origin, &fx.consts, streams, body_len)
                .expect("the environ builds");

            assert_eq!(get(&env, "REQUEST_METHOD"), parts.method.as_str());
            // hyper passes raw bytes above 0x7f in the target; PEP 3333 wants them latin-1.
            let query = latin1(parts.uri.query().unwrap_or("").as_bytes());
            assert_eq!(get(&env, "QUERY_STRING"), query);
            let decoded = latin1(&percent_decode_str(parts.uri.path()).collect::<Vec<u8>>());
            let script_name = get(&env, "SCRIPT_NAME");
            let path_info = get(&env, "PATH_INFO");
            assert!(script_name.ends_with(proxy.prefix()), "{script_name:?}");
            assert_eq!(format!("{}{path_info}", proxy.prefix()), decoded);
            let port = get(&env, "SERVER_PORT");
            assert!(
                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
                "SERVER_PORT {port:?}"
            );
            let names: Vec<String> = parts
                .headers
                .keys()
                .map(|n| n.as_str())
                .filter(|n| !n.contains('_'))
                .map(key_of)
                .collect();
            for (key, value) in env.iter() {
                let key: String = key.extract().expect("environ keys are str");
                if let Ok(s) = value.extract::<String>() {
                    assert!(s.chars().all(|c| u32::from(c) < 256), "{key} = {s:?}");
                }
                if key.starts_with("HTTP_") && key != "HTTP_HOST" {
                    assert!(names.contains(&key), "{key} from no header without '_'");
                }
            }
            for key in ["HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"] {
                assert!(env.get_item(key).expect("a str key").is_none(), "{key}");
            }
        });
    }
});
