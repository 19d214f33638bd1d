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
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(app.plan.max_connections));
    let mut accept_loops = Vec::new();
    for bound in listeners {
        let (app, stop, tracker, permits) = (
            Arc::clone(&app),
            stop.clone(),
            tracker.clone(),
            Arc::clone(&permits),
        );
        accept_loops.push(tokio::spawn(async move {
            match bound {
                Bound::Tcp(std) => match tokio::net::TcpListener::from_std(std) {
                    Ok(l) => {
                        let local = l.local_addr().ok();
                        accept_loop(
                            || async {
                                let (s, peer) = l.accept().await?;
                                let _ = s.set_nodelay(true);
                                Ok((s, Peer::Tcp(peer)))
                            },
                            local,
                            &app,
                            &stop,
                            &tracker,
                            &permits,
                        )
                        .await;
                    }
                    Err(e) => log_warn!("cannot register a TCP listener with the runtime: {e}"),
                },
                Bound::Unix(std, socket_file) => {
                    match tokio::net::UnixListener::from_std(std) {
                        Ok(l) => {
                            accept_loop(
                                || async { l.accept().await.map(|(s, _)| (s, Peer::Unix)) },
                                None,
                                &app,
                                &stop,
                                &tracker,
                                &permits,
                            )
                            .await;
                        }
                        Err(e) => {
                            log_warn!("cannot register a Unix listener with the runtime: {e}");
                        }
                    }
                    drop(socket_file); // unlinks the socket path: no new clients can find us
                }
            }
        }));
    }

    shutdown.await;
    stop.cancel();
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        log_info!(
            "Waiting up to {}s for {open} connection(s) to finish. (CTRL+C to force quit)",
            app.plan.graceful_timeout.as_secs_f64()
        );
    }
    tokio::select! {
        () = tracker.wait() => Outcome::Drained,
        () = tokio::time::sleep(app.plan.graceful_timeout) => Outcome::TimedOut,
        () = force => Outcome::Forced,
    }
}

async fn accept_loop<S, F, Fut>(
    mut accept: F,
    local: Option<std::net::SocketAddr>,
    app: &Arc<App>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
    permits: &Arc<Semaphore>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<(S, Peer)>>,
{
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = Arc::clone(permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
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
        });
        let (app, stop) = (Arc::clone(app), stop.clone());
        tracker.spawn(async move {
            serve_connection(stream, conn, app, stop).await;
            drop(permit);
        });
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
