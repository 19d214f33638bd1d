//! A serving process's signals: SIGTERM and SIGINT stop it (a second one at once), SIGHUP
//! reloads the TLS files; each is told to systemd. Under a master, the master's own signals
//! are `supervise/`'s.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::error::Error;
use crate::listen::tls::Tls;
use crate::supervise::notify::Notifier;
use crate::{log_error, log_info, log_warn};

/// SIGTERM and SIGINT stop the server (twice: at once); SIGHUP reloads the TLS certificate
/// and key. Each is told to systemd (STOPPING=1; RELOADING=1 then READY=1).
pub(super) fn watch_signals(
    first: Arc<Notify>,
    second: Arc<Notify>,
    stopping: Arc<OnceLock<Instant>>,
    tls: Option<Arc<Tls>>,
    notifier: Arc<Notifier>,
) -> Result<(), Error> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::runtime(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::runtime(format!("cannot watch SIGINT: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| Error::runtime(format!("cannot watch SIGHUP: {e}")))?;
    // `recv` answers `None` once the runtime is shutting down and never again a signal.
    let hup_notifier = Arc::clone(&notifier);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // systemd's Type=notify-reload waits for RELOADING=1, then READY=1.
            hup_notifier.reloading();
            reload_tls(tls.as_ref()).await;
            hup_notifier.ready();
        }
    });
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let name = tokio::select! {
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = int.recv() => "SIGINT",
                else => return,
            };
            count += 1;
            if count == 1 {
                log_info!("Received {name}: finishing in-flight requests, then exiting");
                let _ = stopping.set(Instant::now());
                notifier.stopping();
                first.notify_one();
            } else {
                log_warn!("Received {name} again: exiting now");
                second.notify_one();
            }
        }
    });
    Ok(())
}

/// SIGHUP: read the certificate and key (and CA) again. Reading and decrypting a key is
/// blocking work, kept off the network threads.
async fn reload_tls(tls: Option<&Arc<Tls>>) {
    let Some(tls) = tls else {
        log_info!("Received SIGHUP: nothing to reload (no --certfile)");
        return;
    };
    let reloading = Arc::clone(tls);
    match tokio::task::spawn_blocking(move || reloading.reload()).await {
        Ok(Ok(())) => log_info!(
            "Received SIGHUP: reloaded {}; new connections use them",
            tls.describe()
        ),
        Ok(Err(e)) => log_error!("Received SIGHUP: {e}; still serving the previous certificate"),
        Err(e) => log_error!(
            "Received SIGHUP: the reload failed ({e}); still serving the previous certificate"
        ),
    }
}
