//! The one error type of the server's start-up and configuration paths.
//!
//! Opaque, with a private kind that decides the exit code; the message always names the option,
//! address or path that failed. Hot paths (admission, body reading) use plain enums of their
//! own and never allocate one of these.

use std::fmt;

/// An error that stops ferrule before or while it starts serving.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bad option value or option combination: exit code 2, before anything binds.
    Config,
    /// The application could not be imported: exit code 2, before anything binds.
    App,
    /// A listener could not be set up: exit code 2, as for any failure to start.
    Listen,
    /// The application's own start-up failed (its ASGI lifespan startup): exit code 3, as
    /// for worker processes that keep failing to start.
    Startup,
    /// Anything else, at run time or a failure of the machine rather than of the
    /// configuration (no thread, no runtime): exit code 1.
    Runtime,
}

impl Error {
    pub fn config(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Config,
            message: message.into(),
        }
    }

    pub fn app(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::App,
            message: message.into(),
        }
    }

    pub fn listen(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Listen,
            message: message.into(),
        }
    }

    pub fn startup(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Startup,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Runtime,
            message: message.into(),
        }
    }

    /// The process exit code this error ends ferrule with.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Config | Kind::App | Kind::Listen => 2,
            Kind::Startup => 3,
            Kind::Runtime => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
