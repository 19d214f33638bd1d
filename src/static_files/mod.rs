//! Static files, answered entirely on tokio: no Python thread is involved.
//!
//! Owns the mounts (`--static URL=DIR`, Django's `STATIC_URL`/`MEDIA_URL`), path resolution
//! and its safety rules, and the HTTP semantics of a file response. Deciding that a request
//! is for a static URL before it goes to the application is `http/service.rs`'s call.

pub mod django;

use std::path::PathBuf;

use http::request::Parts;
use http::Response;

use crate::config::StaticPlan;
use crate::error::Error;
use crate::http::OutBody;

/// A URL path prefix served from one or more directories, searched in order.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Starts and ends with `/`.
    pub url: String,
    pub roots: Vec<PathBuf>,
}

/// Every static mount of this server.
#[derive(Debug, Default)]
pub struct StaticFiles {
    mounts: Vec<Mount>,
}

impl StaticFiles {
    /// `django` holds the mounts found in the Django settings (`django::mounts`).
    pub fn new(_plan: &StaticPlan, django: Vec<Mount>) -> Result<Self, Error> {
        Ok(Self { mounts: django })
    }

    /// The mounts, for the start-up log.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Answer `parts` if its path is under a mount; `None` sends it on to the application.
    #[allow(clippy::unused_async)]
    pub async fn serve(&self, _parts: &Parts) -> Option<Response<OutBody>> {
        None
    }
}
