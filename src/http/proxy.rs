//! Trusted proxies and the URL prefix: how a request looks to the application.
//!
//! From a peer in `--forwarded-allow-ips` (or on a Unix socket) the `X-Forwarded-*` headers
//! and RFC 7239 `Forwarded` say who the client is and which scheme, host and prefix it used;
//! from anyone else those headers are removed so the application never sees a spoofed value.
//! `--prefix` (or Django's `FORCE_SCRIPT_NAME`) splits the path into `SCRIPT_NAME` and
//! `PATH_INFO`. The result is a [`job::Origin`](crate::job::Origin); the environ is built from it
//! in `wsgi/environ.rs`.

use http::request::Parts;
use http::Response;

use super::admission::Refusal;
use super::out_body::OutBody;
use crate::config::ProxyPlan;
use crate::error::Error;
use crate::job::{ConnInfo, Origin};

pub struct Proxy {
    prefix: String,
}

impl Proxy {
    /// `force_script_name` is Django's `FORCE_SCRIPT_NAME`, used when `--prefix` is not given.
    pub fn new(_plan: &ProxyPlan, _force_script_name: Option<String>) -> Result<Self, Error> {
        Ok(Self {
            prefix: String::new(),
        })
    }

    /// The URL prefix (`""` for none), which Django static mounts live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Remove forwarding headers a peer is not trusted to send; turn trusted ones into an
    /// [`Origin`]. Contradicting scheme headers are refused.
    pub fn forwarded(&self, _parts: &mut Parts, _conn: &ConnInfo) -> Result<Origin, Refusal> {
        Ok(Origin::default())
    }

    /// Split the path at `--prefix`; a request outside it gets the response to send instead
    /// (`Some`).
    pub fn route(&self, _parts: &Parts, _origin: &mut Origin) -> Option<Response<OutBody>> {
        None
    }
}
