//! Options under "TLS and HTTP/2", and their part of the plan.

use clap::Args;

use crate::error::Error;

/// "TLS and HTTP/2" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct TlsOptions {}

/// The validated "TLS and HTTP/2" options.
#[derive(Debug, Clone, Default)]
pub struct TlsPlan {}

impl TlsOptions {
    pub fn resolve(&self) -> Result<TlsPlan, Error> {
        Ok(TlsPlan {})
    }
}
