//! The supervisor: master process, worker processes, signals, reload watcher, systemd notify.

pub mod watch;
