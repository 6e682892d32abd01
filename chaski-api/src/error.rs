//! One error type for every runtime.

use thiserror::Error;

use chaski_proto::addr::AddrError;
use chaski_proto::{CommandError, ConfigError, ConnectError, RemoteError};

/// What a Chaski operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// An address string could not be parsed.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// A configuration setting is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A host name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The core refused the command.
    #[error(transparent)]
    Command(CommandError),
    /// A connection did not become an edge.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A remote call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// No server of that service was found: none is connected, and none answered a search
    /// through the mesh within `discovery_timeout`.
    #[error("no server of the service {0:?} found in the mesh")]
    NoService(String),
    /// An argument or result could not be (de)serialized.
    #[error("serialization: {0}")]
    Codec(String),
    /// A socket operation failed: its kind (to match on) and the system's message.
    #[error("i/o: {message}")]
    Io {
        /// What kind of failure.
        kind: std::io::ErrorKind,
        /// The system's message.
        message: String,
    },
    /// The wait had a deadline and it passed.
    #[error("timed out")]
    Timeout,
    /// The node has shut down.
    #[error("the node has shut down")]
    ShutDown,
    /// A file transfer failed, or a file was refused.
    #[error(transparent)]
    File(#[from] chaski_proto::files::FileError),
    /// A TLS identity could not be loaded or set up.
    #[error(transparent)]
    Tls(#[from] chaski_proto::tls::TlsError),
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::ShutDown => Error::ShutDown,
            e => Error::Command(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl Error {
    /// An [`Error::Io`] of kind `Other` with this message.
    pub fn io(message: impl Into<String>) -> Self {
        Error::Io {
            kind: std::io::ErrorKind::Other,
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
