//! The HTTP side of a request: admission, the hyper service, and the responses the server
//! makes itself.
//!
//! - `admission.rs`: limits and rules checked before anything else, with `host.rs` (the
//!   syntax of `Host` and of the target's authority);
//! - `service.rs`: one request from head to response;
//! - `dispatch.rs`: the seam to what runs applications, and `queued.rs`, the thread pool's
//!   side of it (the body read first, then a job on the pool);
//! - `proxy.rs`: trusted forwarding headers and the URL prefix, built on `forwarded.rs`
//!   (header syntax), `config/trust.rs` (`--forwarded-allow-ips`) and `prefix.rs` (splitting
//!   a path at the prefix);
//! - `access.rs`: access log lines.
//!
//! Accepting connections and shutting down is `server.rs`'s.

pub mod access;
pub mod admission;
pub mod dispatch;
mod exchange;
mod forwarded;
pub(crate) mod host;
pub mod prefix;
pub mod proxy;
pub(crate) mod queued;
pub mod request_id;
mod service;

pub use access::Format as AccessFormat;
pub use exchange::Exchange;
pub use queued::Queued;
pub use service::{handle, App};
