//! Responses on their way to hyper: the body type every response has ([`OutBody`]: whole,
//! streamed from a worker thread, a file or a range of one, parts of `multipart/byteranges`)
//! with the hook that settles the request when hyper drops it, and the responses the server
//! makes itself (`respond.rs`: 4xx, 5xx, 503 with Retry-After). Deciding which response a
//! request gets is `http/`'s and `static_files/`'s.

mod body;
pub mod respond;

pub use body::{Chunk, Finish, OutBody, Part, Trailers};
