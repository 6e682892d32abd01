//! Typed errors of the core.

use thiserror::Error;

use crate::addr::AddrError;
use crate::message::DisconnectReason;
use crate::text::Escaped;

/// A frame or datagram that could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length prefix exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// Declared length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("undecodable message: {}", Escaped(.0))]
    Decode(String),
    /// The message could not be encoded.
    #[error("unencodable message: {}", Escaped(.0))]
    Encode(String),
}

/// A user command the core refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A topic, service, path or name was empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A topic, service or name exceeds `max_name_len`.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A payload would make a frame over `max_frame_len` (or a datagram over `max_datagram_len`).
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A wildcard (`*`, `**`) that is not a whole level, or a pattern where a topic is needed
    /// (publishing).
    #[error(
        "\"{}\": wildcards are whole levels (`*` one, `**` any), and only subscriptions have them",
        Escaped(.0)
    )]
    BadPattern(String),
    /// The topic is reserved for the protocol (`@`, a root's own topic).
    #[error("the topic {0:?} is reserved")]
    Reserved(&'static str),
    /// No edge to that peer.
    #[error("not connected to that peer")]
    NotConnected,
    /// The node has no edges at all.
    #[error("no connection to perform discovery")]
    NoEdges,
    /// A configured bound was reached.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The node has shut down.
    #[error("the node has shut down")]
    ShutDown,
    /// Unknown request id.
    #[error("no such request")]
    UnknownRequest,
    /// No transfer of that number is being sent (or it has ended).
    #[error("no transfer {0} is being sent")]
    UnknownTransfer(u64),
    /// A chunk that does not fit its transfer (its size, its place, the file's size).
    #[error("the chunk does not fit the transfer: {0}")]
    BadChunk(String),
    /// An address could not be parsed.
    #[error(transparent)]
    Addr(#[from] AddrError),
}

/// Why a `connect` did not produce an edge.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The runtime could not open the socket.
    #[error("dial failed: {}", Escaped(.0))]
    DialFailed(String),
    /// The peer did not finish the Hello exchange in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Already connected to that node.
    #[error("already connected to that node")]
    Duplicate,
    /// The address leads back to this node.
    #[error("connection to self")]
    SelfConnection,
    /// The peer refused or closed the connection with this reason.
    #[error("refused by peer: {0}")]
    Refused(DisconnectReason),
    /// The connection closed before the Hello exchange finished.
    #[error("connection closed during handshake")]
    Closed,
    /// The local node is shutting down.
    #[error("node is shutting down")]
    ShutDown,
}
