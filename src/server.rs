//! Serving: accept loops, connections, and the one shutdown path.
//!
//! [`serve`] takes bound listeners, the plan, the pool and a shutdown future (injected, so
//! tests and the supervisor decide what "stop" means). On shutdown it stops accepting
//! (removing Unix socket files), asks every connection to finish its current request and
//! close, and races that against `--graceful-timeout` and a second signal. What a connection
//! does with a request is `http/`'s business.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::App;
use crate::job::ConnInfo;
use crate::listen::{Bound, Peer};
use crate::{log_debug, log_info, log_warn};

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every connection finished.
    Drained,
    /// `--graceful-timeout` passed with requests still running.
    TimedOut,
    /// A second signal asked to stop at once.
    Forced,
}

/// After a failed accept (out of file descriptors, usually), wait this long before the next
/// try instead of spinning; in-flight connections closing is what frees descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serve until `shutdown` resolves, then drain until `force` resolves or the graceful
/// timeout passes.
pub async fn serve(
    listeners: Vec<Bound>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
) -> Outcome {
    let ctx = Accepting {
        app: Arc::clone(&app),
        stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
        permits: Arc::new(Semaphore::new(app.plan.max_connections)),
    };
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|bound| tokio::spawn(ctx.clone().listen(bound)))
        .collect();

    shutdown.await;
    ctx.stop.cancel();
    for l in accept_loops {
        let _ = l.await;
    }
    ctx.tracker.close();
    let open = ctx.tracker.len();
    if open > 0 {
        log_info!(
            "Waiting up to {}s for {open} connection(s) to finish. (CTRL+C to force quit)",
            app.plan.graceful_timeout.as_secs_f64()
        );
    }
    tokio::select! {
        () = ctx.tracker.wait() => Outcome::Drained,
        () = tokio::time::sleep(app.plan.graceful_timeout) => Outcome::TimedOut,
        () = force => Outcome::Forced,
    }
}

/// What every accept loop shares: the connection permits, the stop signal, and the tracker
/// that shutdown waits on.
#[derive(Clone)]
struct Accepting {
    app: Arc<App>,
    stop: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
}

impl Accepting {
    /// Accept on one listener until stopped. A Unix socket file is removed when its loop ends,
    /// so no new client can find the server.
    async fn listen(self, bound: Bound) {
        match bound {
            Bound::Tcp(std) => match tokio::net::TcpListener::from_std(std) {
                Ok(l) => {
                    let local = l.local_addr().ok();
                    let accept = || async {
                        let (s, peer) = l.accept().await?;
                        let _ = s.set_nodelay(true);
                        Ok((s, Peer::Tcp(peer)))
                    };
                    self.accept_loop(accept, local).await;
                }
                Err(e) => log_warn!("cannot register a TCP listener with the runtime: {e}"),
            },
            Bound::Unix(std, _socket_file) => match tokio::net::UnixListener::from_std(std) {
                Ok(l) => {
                    let accept = || async { l.accept().await.map(|(s, _)| (s, Peer::Unix)) };
                    self.accept_loop(accept, None).await;
                }
                Err(e) => log_warn!("cannot register a Unix listener with the runtime: {e}"),
            },
        }
    }

    async fn accept_loop<S, F, Fut>(&self, mut accept: F, local: Option<std::net::SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = std::io::Result<(S, Peer)>>,
    {
        loop {
            let permit = tokio::select! {
                () = self.stop.cancelled() => return,
                p = Arc::clone(&self.permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            let accepted = tokio::select! {
                () = self.stop.cancelled() => return,
                r = accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    log_warn!("accept failed: {e}; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let conn = Arc::new(ConnInfo {
                peer,
                local,
                scheme: "http",
                tls: None,
            });
            let (app, stop) = (Arc::clone(&self.app), self.stop.clone());
            self.tracker.spawn(async move {
                serve_connection(stream, conn, app, stop).await;
                drop(permit);
            });
        }
    }
}

async fn serve_connection<S>(stream: S, conn: Arc<ConnInfo>, app: Arc<App>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let plan = &app.plan;
    let mut builder = http1::Builder::new();
    // hyper restarts the header-read timer whenever it waits for a request head, including
    // on an idle keep-alive connection, so one timer serves both; see docs/architecture.md.
    let idle = plan.header_timeout.min(plan.keep_alive);
    builder
        .timer(TokioTimer::new())
        .keep_alive(!plan.keep_alive.is_zero())
        .header_read_timeout(if idle.is_zero() {
            plan.header_timeout
        } else {
            idle
        })
        .max_headers(plan.limits.fields.saturating_add(1).max(1))
        .max_buf_size(head_buffer(plan));
    let service_app = Arc::clone(&app);
    let service = service_fn(move |req| {
        crate::http::handle(req, Arc::clone(&service_app), Arc::clone(&conn))
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        log_debug!("connection ended with an error: {e}");
    }
}

/// hyper's read buffer must hold a whole request head within the configured limits; 8 KiB
/// is hyper's minimum.
fn head_buffer(plan: &crate::config::Plan) -> usize {
    let l = &plan.limits;
    l.request_line
        .saturating_add(l.fields.saturating_mul(l.field_size.saturating_add(2)))
        .saturating_add(4096)
        .clamp(8192, 16 << 20)
}
