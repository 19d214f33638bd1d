//! The whole request path without Python: a listener on port 0, [`serve`], the hyper
//! service, admission and the thread pool's dispatcher (`http/queued.rs`), with a stand-in
//! for the pool that answers each job from a tokio task. Raw bytes go in, as a client sends
//! them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use super::{serve, Outcome};
use crate::body::Spool;
use crate::config::Cli;
use crate::http::proxy::Proxy;
use crate::http::{App, Queued};
use crate::job::{Job, Jobs, Rejected, Reply};
use crate::listen::Bound;
use crate::static_files::StaticFiles;
use crate::stats::Stats;

/// Generous: the machine running the tests may be busy; a broken path fails by hanging.
const LIVENESS: Duration = Duration::from_secs(30);

/// A pool stand-in: answers `METHOD PATH len=BODY` from a task, after a permit of `gate` when
/// there is one; remembers what it was given.
#[derive(Clone, Default)]
struct Answering {
    seen: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
    gate: Option<Arc<Semaphore>>,
}

impl Jobs for Answering {
    fn submit(&self, job: Job) -> Result<(), (Rejected, Box<Job>)> {
        let what = format!("{} {}", job.head.method, job.head.uri.path());
        self.seen.lock().unwrap().push(what.clone());
        self.arrived.notify_one();
        let gate = self.gate.clone();
        tokio::spawn(async move {
            if let Some(gate) = gate {
                let _ = gate
                    .acquire()
                    .await
                    .map(tokio::sync::SemaphorePermit::forget);
            }
            let body = Bytes::from(format!("{what} len={}", job.body.len()));
            let _ = job
                .reply
                .send(Reply::full(StatusCode::OK, HeaderMap::new(), body));
        });
        Ok(())
    }

    fn threads(&self) -> (usize, usize) {
        (1, 1)
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Arc<Notify>,
    outcome: tokio::task::JoinHandle<Outcome>,
}

fn start(options: &[&str], jobs: Answering) -> Running {
    let command_line = ["ferrule", "--bind", "127.0.0.1:0"]
        .iter()
        .chain(options)
        .chain(&["stand:in"]);
    let cli = Cli::try_parse_from(command_line).unwrap();
    let plan = Arc::new(cli.options.resolve(None).unwrap());
    let app = Arc::new(App {
        dispatch: Arc::new(Queued(jobs)),
        statics: StaticFiles::new(&plan.statics, Vec::new()).unwrap(),
        proxy: Proxy::new(&plan.proxy, None).unwrap(),
        stats: Arc::new(Stats::new(&plan.stats, false)),
        access_format: Arc::new(plan.access_log_format.clone()),
        spool: Spool::new(&plan.clients.spool_dir, plan.clients.max_spool, 1),
        forwarded_clients: None,
        plan,
    });
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std.set_nonblocking(true).unwrap();
    let addr = std.local_addr().unwrap();
    let (stop, force) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let stopped = Arc::clone(&stop);
    let outcome = tokio::spawn(serve(
        vec![Bound::Tcp(std)],
        app,
        None,
        None,
        async move { stopped.notified().await },
        async move { force.notified().await },
    ));
    Running {
        addr,
        stop,
        outcome,
    }
}

/// Send `request` on a new connection and read until the server closes it or `until`
/// appears; the text read.
async fn exchange(addr: std::net::SocketAddr, request: &str, until: &str) -> String {
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(request.as_bytes()).await.unwrap();
    read_until(&mut client, until).await
}

async fn read_until(client: &mut TcpStream, until: &str) -> String {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = client.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).contains(until) {
                break;
            }
        }
    };
    tokio::time::timeout(LIVENESS, read)
        .await
        .unwrap_or_else(|_| panic!("no {until:?} within {LIVENESS:?}"));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn an_application_request_goes_through_the_dispatcher_and_back() {
    let jobs = Answering::default();
    let server = start(&[], jobs.clone());
    let got = exchange(
        server.addr,
        "GET /hello?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "len=0",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("x-request-id: "), "{got}");
    assert!(got.ends_with("GET /hello len=0"), "{got}");
    // The body is read whole before the dispatcher's job is made.
    let got = exchange(
        server.addr,
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
        "len=5",
    )
    .await;
    assert!(got.ends_with("POST /up len=5"), "{got}");
    // Refused by admission: the dispatcher never sees it.
    let got = exchange(server.addr, "get / HTTP/1.1\r\nHost: t\r\n\r\n", "\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert_eq!(*jobs.seen.lock().unwrap(), ["GET /hello", "POST /up"]);
    server.stop.notify_one();
    assert_eq!(server.outcome.await.unwrap(), Outcome::Drained);
}

#[tokio::test]
async fn a_request_in_flight_is_answered_before_the_server_stops() {
    let gate = Arc::new(Semaphore::new(0));
    let jobs = Answering {
        gate: Some(Arc::clone(&gate)),
        ..Answering::default()
    };
    let server = start(&[], jobs.clone());
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let arrived = jobs.arrived.notified();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(LIVENESS, arrived).await.unwrap();
    server.stop.notify_one();
    // Stopped: no new connection is accepted, the one in flight is still answered.
    tokio::time::timeout(LIVENESS, async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener closes on shutdown");
    gate.add_permits(1);
    let got = read_until(&mut client, "len=0").await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.contains("connection: close\r\n"),
        "the last response says so: {got}"
    );
    assert_eq!(server.outcome.await.unwrap(), Outcome::Drained);
}

#[tokio::test]
async fn a_client_beyond_max_connections_waits_for_a_free_slot() {
    let gate = Arc::new(Semaphore::new(0));
    let jobs = Answering {
        gate: Some(Arc::clone(&gate)),
        ..Answering::default()
    };
    let server = start(&["--max-connections", "1"], jobs.clone());
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let arrived = jobs.arrived.notified();
    first
        .write_all(b"GET /first HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(LIVENESS, arrived).await.unwrap();
    // The second connects (the backlog takes it) but is not served while the first holds
    // the only slot.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second
        .write_all(b"GET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(200), second.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond --max-connections");
    assert_eq!(*jobs.seen.lock().unwrap(), ["GET /first"]);
    gate.add_permits(2);
    assert!(read_until(&mut first, "len=0")
        .await
        .ends_with("GET /first len=0"));
    drop(first);
    assert!(read_until(&mut second, "len=0")
        .await
        .ends_with("GET /second len=0"));
    server.stop.notify_one();
    assert_eq!(server.outcome.await.unwrap(), Outcome::Drained);
}
