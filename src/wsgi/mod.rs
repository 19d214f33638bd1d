//! WSGI (PEP 3333): from a job to a call of the application and back.
//!
//! - `environ.rs`: the environ dict, built in Rust with interned keys;
//! - `input.rs` / `errors.rs`: `wsgi.input` and `wsgi.errors`;
//! - `start_response.rs`: `start_response`, `write()`, and the response's state, with the
//!   head's rules as pure functions in `head.rs`;
//! - `file_wrapper.rs`: `wsgi.file_wrapper`, sent by tokio;
//! - `lend.rs`: Python `bytes` handed to the network core without a copy;
//! - `request.rs`: `ferrule.request` and `ferrule.disconnected`;
//! - `interrupt.rs`: the cancellation exception raised in a request's thread after the grace;
//! - `response.rs`: calling the application and delivering its result;
//! - `cost.rs`: `FERRULE_COST_SAMPLE`, the application's share of a worker thread's CPU time,
//!   for benchmarks.
//!
//! Threads and queueing are `pool/`'s; the network side is `http/`.

pub(crate) mod cost;
pub(crate) mod environ;
mod errors;
mod file_wrapper;
mod head;
mod input;
mod interrupt;
mod lend;
mod request;
mod response;
mod start_response;

pub use file_wrapper::FileWrapper;
pub use interrupt::Interrupts;
pub use request::Request;
pub use response::{traceback, Application};
pub use start_response::Sending;
