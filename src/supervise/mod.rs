//! The supervisor: master process, worker processes, signals, reload watcher, systemd notify.
//!
//! `notify.rs` tells systemd how the service is doing (READY, RELOADING, STOPPING, STATUS,
//! the watchdog); the single-process server and the master process both use it.

pub mod notify;
