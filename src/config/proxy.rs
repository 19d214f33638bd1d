//! Options under "Proxies and URL prefix", and their part of the plan.

use clap::Args;

use crate::error::Error;

/// "Proxies and URL prefix" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct ProxyOptions {}

/// The validated "Proxies and URL prefix" options.
#[derive(Debug, Clone, Default)]
pub struct ProxyPlan {}

impl ProxyOptions {
    pub fn resolve(&self) -> Result<ProxyPlan, Error> {
        Ok(ProxyPlan {})
    }
}
