//! Why a `chaski` command failed, as a message and a documented exit code, so a script can tell
//! "unreachable" from "timed out" from "the remote side said no".

use std::fmt;

use chaski_tokio::{ConnectError, Error, RemoteError};

/// Exit codes of every subcommand (also in `chaski --help`).
pub const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 other failure; 2 usage (bad arguments or settings); \
3 unreachable (cannot resolve or connect); 4 timed out; 5 remote error (the peer answered with \
an error); 6 refused (the peer closed the connection with a reason); 7 a file transfer failed \
(cancelled, unreadable, changed while sent).";

/// Not a failure: the command stopped early for a reason that needs no message (its standard
/// output was closed by its reader).
pub const QUIET_EXIT: i32 = 0;
/// Exit code of a failure with no more specific class.
pub const OTHER: i32 = 1;
/// Bad arguments or settings.
pub const USAGE: i32 = 2;
/// The peer cannot be resolved or connected to.
pub const UNREACHABLE: i32 = 3;
/// A wait with a deadline ran out.
pub const TIMEOUT: i32 = 4;
/// The peer answered with an error.
pub const REMOTE: i32 = 5;
/// The peer refused the connection (a goodbye with a reason).
pub const REFUSED: i32 = 6;
/// A file transfer failed.
pub const FILE: i32 = 7;

/// A failed command: what to print, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code (one of the constants above).
    pub code: i32,
    /// The message.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Failure {
    /// The same failure, its message prefixed with what it concerns.
    pub fn context(self, what: &str) -> Failure {
        Failure {
            code: self.code,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            code: OTHER,
            message,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Addr(_) | Error::Config(_) => USAGE,
            Error::Resolve(_) => UNREACHABLE,
            Error::Connect(c) => match c {
                ConnectError::DialFailed(_) | ConnectError::Closed => UNREACHABLE,
                ConnectError::HandshakeTimeout => TIMEOUT,
                ConnectError::ShutDown => OTHER,
                _ => REFUSED,
            },
            Error::Timeout | Error::Remote(RemoteError::Timeout) => TIMEOUT,
            Error::Remote(RemoteError::Disconnected) => UNREACHABLE,
            Error::Remote(_) | Error::NoService(_) => REMOTE,
            Error::File(_) => FILE,
            _ => OTHER,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_of_failure_has_its_code() {
        let code = |e: Error| Failure::from(e).code;
        assert_eq!(code(Error::Resolve("x".into())), UNREACHABLE);
        assert_eq!(
            code(Error::Connect(ConnectError::DialFailed("refused".into()))),
            UNREACHABLE
        );
        assert_eq!(code(Error::Timeout), TIMEOUT);
        assert_eq!(code(Error::Remote(RemoteError::Timeout)), TIMEOUT);
        assert_eq!(
            code(Error::Remote(RemoteError::Failed("boom".into()))),
            REMOTE
        );
        assert_eq!(code(Error::NoService("demo".into())), REMOTE);
        assert_eq!(
            code(Error::Connect(ConnectError::Refused(
                chaski_tokio::DisconnectReason::TooManyConnections
            ))),
            REFUSED
        );
        assert_eq!(code(Error::ShutDown), OTHER);
        assert_eq!(
            code(Error::File(chaski_tokio::FileError::HashMismatch)),
            FILE
        );
        assert_eq!(Failure::from("x".to_string()).code, OTHER);
    }
}
