//! Per-view statistics: recorded for every request, exported on the admin listener.
//!
//! Recording (`record.rs`, `series.rs`, `histogram.rs`, `labels.rs`) happens on the request
//! path and is lock-light: atomics, and a read lock to find a label's series. Once a second
//! `history.rs` folds what was recorded into bounded rings (the timeline and the per-view
//! windows). The exports read a [`Snapshot`] built on demand: Prometheus text
//! (`prometheus.rs`), JSON (`json.rs`) and an HTML dashboard with server-rendered SVG charts
//! (`dashboard.rs`, `svg.rs`), served by the admin listener (`admin.rs`).

pub mod admin;
pub mod dashboard;
pub mod json;
pub mod prometheus;
pub mod snapshot;
mod svg;

pub use snapshot::Snapshot;
