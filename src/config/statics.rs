//! Options under "Static files", and their part of the plan.

use clap::Args;

use crate::error::Error;

/// "Static files" options (flattened into [`super::Options`]).
#[derive(Debug, Args)]
pub struct StaticOptions {}

/// The validated "Static files" options.
#[derive(Debug, Clone, Default)]
pub struct StaticPlan {}

impl StaticOptions {
    pub fn resolve(&self) -> Result<StaticPlan, Error> {
        Ok(StaticPlan {})
    }
}
