//! The static mounts a Django project's settings describe: `STATIC_URL` from `STATIC_ROOT`
//! (and the staticfiles finders' directories in development), `MEDIA_URL` from `MEDIA_ROOT`.
//!
//! Reads settings once at start-up, after the project is imported; serving is `mod.rs`'s.

use pyo3::prelude::*;

use super::Mount;
use crate::config::StaticPlan;

/// The mounts for the configured Django project.
pub fn mounts(_py: Python<'_>, _plan: &StaticPlan, _script_name: &str) -> PyResult<Vec<Mount>> {
    Ok(Vec::new())
}
