//! The admin listener over real sockets: routes, probes, Unix sockets, shutdown, and who is
//! answered (`guard.rs` decides; these check the answers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{serve, Access, Health, HealthFn, SnapshotFn};
use crate::config::BindAddr;
use crate::listen::{bind_all, Bound};
use crate::stats::fixtures::filled;

/// Send one request with `Connection: close` and read the whole response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

fn head_and_body(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").unwrap()
}

fn get(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn counting_snapshot() -> (SnapshotFn, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let f: SnapshotFn = Arc::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { filled() })
    });
    (f, calls)
}

/// Ready until the flag is set, then draining.
fn health(draining: &Arc<std::sync::atomic::AtomicBool>) -> HealthFn {
    let draining = Arc::clone(draining);
    Arc::new(move || {
        if draining.load(Ordering::Relaxed) {
            Health::NotReady("draining".into())
        } else {
            Health::Ready
        }
    })
}

#[tokio::test]
async fn routes_over_tcp() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let mut bound = bind_all(&[BindAddr::Tcp(addr)], 0o600).unwrap();
    let Bound::Tcp(l) = &bound[0] else {
        unreachable!()
    };
    let addr = l.local_addr().unwrap();
    let (snapshot, calls) = counting_snapshot();
    let draining = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        bound.remove(0),
        snapshot,
        health(&draining),
        Access::open(),
        async {
            let _ = stopped.await;
        },
    ));
    let ask = |request: String| async move {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        exchange(s, &request).await
    };

    let r = ask(get("GET", "/metrics")).await;
    let (head, body) = head_and_body(&r);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"));
    assert!(head.contains("cache-control: no-store"));
    assert!(body.contains("# TYPE ferrule_requests_total counter"));

    let r = ask(get("GET", "/stats.json?pretty=no")).await;
    let (head, body) = head_and_body(&r);
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("content-type: application/json")
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["pid"], 4242);

    let r = ask(get("GET", "/")).await;
    let (head, body) = head_and_body(&r);
    assert!(head.contains("content-type: text/html; charset=utf-8"));
    assert!(head.contains("content-security-policy: default-src 'none'"));
    assert!(body.starts_with("<!DOCTYPE html>"));

    // HEAD: the GET's length, no body.
    let r = ask(get("HEAD", "/")).await;
    let (head, body) = head_and_body(&r);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 1000 && body.is_empty(), "{length} {body:?}");

    let r = ask(get("GET", "/favicon.ico")).await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    assert!(r.contains("/metrics, /stats.json"));

    let r = ask(
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
            .into(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    assert!(r.contains("allow: GET, HEAD\r\n"));

    // Keep-alive: two requests on one connection.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let two = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /stats.json HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n";
    s.write_all(two.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2);

    // The probes: alive, ready, then not ready while draining; HEAD too.
    let r = ask(get("GET", "/healthz")).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok\n"),
        "{r}"
    );
    let r = ask(get("GET", "/readyz?verbose")).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nready\n"),
        "{r}"
    );
    draining.store(true, Ordering::Relaxed);
    let r = ask(get("GET", "/readyz")).await;
    assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nnot ready: draining\n"), "{r}");
    assert!(r.contains("cache-control: no-store"));
    let r = ask(get("HEAD", "/healthz")).await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = ask(get("GET", "/healthz")).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");

    // A snapshot per page asked for; none for the probes, 404 and 405.
    assert_eq!(calls.load(Ordering::Relaxed), 6);
    stop.send(()).unwrap();
    server.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn serves_on_a_unix_socket_and_removes_it_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    let mut bound = bind_all(&[BindAddr::Unix(path.clone())], 0o600).unwrap();
    let (snapshot, _) = counting_snapshot();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        bound.remove(0),
        snapshot,
        health(&Arc::default()),
        Access::open(),
        async {
            let _ = stopped.await;
        },
    ));
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let r = exchange(s, &get("GET", "/metrics")).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let r = exchange(s, &get("GET", "/readyz")).await;
    assert!(r.ends_with("\r\n\r\nready\n"), "{r}");

    // An idle keep-alive connection does not hold shutdown up.
    let mut idle = tokio::net::UnixStream::connect(&path).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0; 64];
    let n = idle.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK"));
    stop.send(()).unwrap();
    server.await.unwrap();
    assert!(!path.exists());
}

/// An admin listener on a free TCP port with `options`' access rules, draining when told.
fn tcp_admin(
    options: &[&str],
    draining: &Arc<std::sync::atomic::AtomicBool>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    use clap::Parser;
    let argv = [&["ferrule"], options, &["app:app"]].concat();
    let plan = crate::config::Cli::try_parse_from(argv)
        .unwrap()
        .options
        .stats
        .resolve()
        .unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let mut bound = bind_all(&[BindAddr::Tcp(addr)], 0o600).unwrap();
    let Bound::Tcp(l) = &bound[0] else {
        unreachable!()
    };
    let addr = l.local_addr().unwrap();
    let (snapshot, _) = counting_snapshot();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        bound.remove(0),
        snapshot,
        health(draining),
        Access::new(&plan),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, server)
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_and_a_token_opens_a_session() {
    let draining = Arc::default();
    let (addr, stop, server) = tcp_admin(&["--stats-token", "0123456789abcdef"], &draining);
    let ask = |request: String| async move {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        exchange(s, &request).await
    };
    let with = |path: &str, header: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{header}\r\nConnection: close\r\n\r\n")
    };

    let r =
        ask("GET /metrics HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n".into())
            .await;
    assert!(r.starts_with("HTTP/1.1 421 Misdirected Request\r\n"), "{r}");
    assert!(r.contains("--stats-hosts"), "{r}");

    let r = ask(get("GET", "/metrics")).await;
    assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
    assert!(r.contains("www-authenticate: Bearer"), "{r}");
    let r = ask(with("/metrics", "Authorization: Bearer 0123456789abcdef")).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");

    // The probes need no token, and without it give no reason.
    let r = ask(get("GET", "/healthz")).await;
    assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
    draining.store(true, Ordering::Relaxed);
    let r = ask(get("GET", "/readyz")).await;
    assert!(
        r.starts_with("HTTP/1.1 503 ") && r.ends_with("\r\n\r\nnot ready\n"),
        "{r}"
    );
    let r = ask(with("/readyz", "Authorization: Bearer 0123456789abcdef")).await;
    assert!(r.ends_with("\r\n\r\nnot ready: draining\n"), "{r}");

    // A browser: the token once, then the cookie.
    let r = ask(get("GET", "/?token=0123456789abcdef")).await;
    assert!(r.starts_with("HTTP/1.1 303 See Other\r\n"), "{r}");
    assert!(r.contains("\r\nlocation: /\r\n"), "{r}");
    let cookie = r
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .to_owned();
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("0123456789abcdef"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    let r = ask(with("/stats.json", &format!("Cookie: {session}"))).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    stop.send(()).unwrap();
    server.await.unwrap();
}
