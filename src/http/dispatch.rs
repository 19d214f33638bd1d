//! The seam between the HTTP core and what runs applications.
//!
//! `service.rs` does what every request needs — its id and exchange (statistics, access
//! line), admission, trusted proxy headers, static files, the URL prefix — and hands what is
//! left, an application request, to the server's [`Dispatch`]. The thread pool's is
//! `queued.rs` (the body read first, then a job on the pool); a dispatcher that runs
//! applications on an event loop plugs in the same way. Nothing here touches Python, so the
//! whole request path is tested with a stand-in dispatcher.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;

use super::exchange::Exchange;
use super::App;
use crate::job::{ConnInfo, Origin};
use crate::response::OutBody;

/// An application request, admitted: its head checked, the trusted proxy headers and the URL
/// prefix applied (`origin`), its body `B` not read yet.
pub struct Admitted<B = Incoming> {
    pub parts: http::request::Parts,
    pub body: B,
    pub conn: Arc<ConnInfo>,
    pub origin: Origin,
}

impl<B> Admitted<B> {
    /// The request without its body, and the body.
    pub fn take_body(self) -> (Admitted<()>, B) {
        let Admitted {
            parts,
            body,
            conn,
            origin,
        } = self;
        (
            Admitted {
                parts,
                body: (),
                conn,
                origin,
            },
            body,
        )
    }
}

/// The response to an application request, when it is ready.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Response<OutBody>> + Send + 'a>>;

/// What runs application requests.
pub trait Dispatch: Send + Sync + 'static {
    /// Answer `request`, telling `exchange` what it turned out to be (an application request
    /// with its statistics trace, one never queued). `app` holds the plan, the statistics and
    /// the rest every request shares.
    fn dispatch<'a>(
        &'a self,
        request: Admitted,
        app: &'a App,
        exchange: &'a mut Exchange,
    ) -> Answer<'a>;

    /// Whether it serves WebSockets: HTTP/2 connections then offer extended CONNECT
    /// (RFC 8441).
    fn websockets(&self) -> bool {
        false
    }
}
