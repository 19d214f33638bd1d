//! The entry points the `cargo fuzz` targets in `fuzz/` call, compiled only with the
//! `fuzzing` cargo feature.
//!
//! Nothing here has logic of its own: it names, from outside the crate, the pure functions
//! that take untrusted input and live in private modules (the `Range` parser, static path
//! resolution, the environ builder). The targets, their invariants and the seed corpus are
//! `fuzz/`'s; docs/fuzzing.md says how to run them.

pub use crate::config::file::{check as check_descriptor, Descriptor};
pub use crate::config::trust::AllowList;
pub use crate::config::{parse_size, Cli, DjangoCli, ForwardedHeaders, Limits, ProxyPlan};
pub use crate::http::admission::{admit, check_trailers, request_target_of, Refusal};
pub use crate::http::host::check as check_host;
pub use crate::http::proxy::Proxy;
pub use crate::job::{ConnInfo, Origin};
pub use crate::listen::Peer;
pub use crate::response::Part;
pub use crate::static_files::range::{content_range, multipart, parse as parse_range, Ranges};
pub use crate::static_files::resolve::{find, relative, under, Found, RelPath, Root};
pub use crate::wsgi::environ::{build as build_environ, Constants, Streams};
