//! The messages that cross the wire: frames over TCP, datagrams over UDP.
//!
//! User payloads are carried as opaque bytes (`Bytes`, encoded as a CBOR byte string), never
//! walked or re-encoded by the codec.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::OnPair;
use crate::files::{FileChunk, FileEnd, FileGone, FileOffer, FileWant};
use crate::id::NodeId;
use crate::text::Escaped;

/// The newest protocol version this node speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version this node speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The version two nodes speak: the newest both know, if their ranges (`version` to
/// `max_version` of each Hello) meet. Both sides compute the same from the two Hellos.
pub fn negotiate(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let chosen = ours.1.min(theirs.1);
    (chosen >= ours.0.max(theirs.0)).then_some(chosen)
}

/// The first frame each way on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The oldest protocol version the sender speaks (a version-1 node speaks only this).
    pub version: u16,
    /// The newest protocol version the sender speaks, when newer than `version` (absent:
    /// only `version`). See [`negotiate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<u16>,
    /// The sender's node id.
    pub id: NodeId,
    /// The sender's name.
    pub name: String,
    /// Where the sender listens, if it does.
    pub listen: Option<SocketAddr>,
    /// The sender's topics.
    pub topics: Vec<String>,
    /// The topics the sender is paired for, each with its cluster's id.
    pub paired: Vec<(String, NodeId)>,
    /// The services the sender offers.
    pub services: Vec<String>,
    /// Whether the sender is a root.
    pub root: bool,
    /// Set when this connection answers a discovery.
    pub pairing: Option<PairIntent>,
    /// The dialer's random number for this connection (0 from the accepting side); with the
    /// dialer's id it orders duplicate connections the same way on both sides.
    pub nonce: u64,
}

/// Why a connection was opened to a discovery's origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairIntent {
    /// The discovery answered.
    pub discovery: u64,
    /// The topic paired for.
    pub topic: String,
    /// The origin's neighbour the discovery entered through (its bootstrap link).
    pub entry: Option<NodeId>,
    /// The dialer's cluster for that topic (`None` when the dialer is itself seeking).
    pub cluster: Option<NodeId>,
}

/// A request to find members of a topic's cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Unique per origin; de-duplicated at every node by `(origin, id)`.
    pub id: u64,
    /// The node looking for peers.
    pub origin: NodeId,
    /// Its name, for logs.
    pub origin_name: String,
    /// Where to dial it.
    pub origin_addr: SocketAddr,
    /// The topic sought.
    pub topic: String,
    /// Remaining hops; a node receiving 1 does not forward.
    pub ttl: u8,
    /// The origin's policy, echoed for logs.
    pub on_pair: OnPair,
    /// The origin's neighbour this copy was first sent to.
    pub entry: Option<NodeId>,
}

/// A search for the servers of a service, flooded through the mesh like a [`Discovery`]: a
/// node that serves it dials the origin, whose proxy then calls it directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSearch {
    /// Unique per origin (shared with discoveries); de-duplicated by `(origin, id)`.
    pub id: u64,
    /// The node looking for a server.
    pub origin: NodeId,
    /// Where to dial it.
    pub origin_addr: SocketAddr,
    /// The service sought.
    pub service: String,
    /// Remaining hops; a node receiving 1 does not forward.
    pub ttl: u8,
}

/// A publish as it is encoded and relayed, borrowing its topic and payload (so publishing and
/// relaying allocate nothing per message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// The node that published it.
    pub origin: NodeId,
    /// The origin's sequence number.
    pub seq: u64,
    /// Topic.
    pub topic: &'a str,
    /// Remaining hops.
    pub ttl: u8,
    /// Hops travelled so far.
    pub hops: u8,
    /// The user's bytes.
    pub payload: &'a [u8],
}

impl Publish {
    /// A borrowed view.
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            origin: self.origin,
            seq: self.seq,
            topic: &self.topic,
            ttl: self.ttl,
            hops: self.hops,
            payload: &self.payload,
        }
    }
}

/// A published message, relayed among subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The node that published it.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The origin's sequence number (with `origin`, the de-duplication key).
    #[serde(rename = "s")]
    pub seq: u64,
    /// Topic.
    #[serde(rename = "t")]
    pub topic: String,
    /// Remaining hops.
    #[serde(rename = "l")]
    pub ttl: u8,
    /// Hops travelled so far.
    #[serde(rename = "h")]
    pub hops: u8,
    /// The user's bytes.
    #[serde(rename = "p")]
    pub payload: Bytes,
}

/// What a remote call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallKind {
    /// Call the method at the path with the arguments.
    Call,
    /// Read the attribute at the path.
    Get,
}

/// Why a connection ended, sent in a goodbye and reported to the application.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The node is shutting down.
    Shutdown,
    /// The application closed this peer.
    Closed,
    /// A connection to this node already exists.
    Duplicate,
    /// The connection leads back to the same node.
    SelfConnection,
    /// The discovery origin already paired for that topic.
    AlreadyPaired,
    /// The bootstrap link is no longer needed after pairing (`on_pair = disconnect`).
    Unneeded,
    /// The peer speaks another protocol version.
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// Undecodable or out-of-order input.
    ProtocolError(String),
    /// A configured bound was exceeded.
    LimitExceeded(String),
    /// The Hello exchange did not finish in time.
    HandshakeTimeout,
    /// Nothing was received for the idle timeout.
    IdleTimeout,
    /// The edge table is full.
    TooManyConnections,
    /// The peer closed the socket without a goodbye (never sent; local only).
    ConnectionLost,
    /// Authentication failed: no TLS where it is required (or TLS where it is not), a
    /// certificate the cluster's CA did not sign or that expired, a Hello whose id the
    /// certificate does not prove, a peer not on the allow-list.
    NotAuthorized(String),
}

impl DisconnectReason {
    /// Whether a lost edge with this reason should be redialed.
    pub fn should_reconnect(&self) -> bool {
        matches!(
            self,
            DisconnectReason::ConnectionLost | DisconnectReason::IdleTimeout
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Shutdown => f.write_str("peer shut down"),
            DisconnectReason::Closed => f.write_str("closed"),
            DisconnectReason::Duplicate => f.write_str("duplicate connection"),
            DisconnectReason::SelfConnection => f.write_str("connection to self"),
            DisconnectReason::AlreadyPaired => f.write_str("already paired for that topic"),
            DisconnectReason::Unneeded => f.write_str("bootstrap link no longer needed"),
            DisconnectReason::VersionMismatch { ours, theirs } => {
                write!(
                    f,
                    "protocol version mismatch (ours {ours}, theirs {theirs})"
                )
            }
            DisconnectReason::ProtocolError(m) => write!(f, "protocol error: {}", Escaped(m)),
            DisconnectReason::LimitExceeded(m) => write!(f, "limit exceeded: {}", Escaped(m)),
            DisconnectReason::HandshakeTimeout => f.write_str("handshake timeout"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::TooManyConnections => f.write_str("too many connections"),
            DisconnectReason::ConnectionLost => f.write_str("connection lost"),
            DisconnectReason::NotAuthorized(m) => write!(f, "not authorized: {}", Escaped(m)),
        }
    }
}

/// One frame on a TCP connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The handshake; first frame each way.
    Hello(Hello),
    /// The sender's full topic set, sent when it changes.
    Topics(Vec<String>),
    /// The topics the sender is paired for, each with its cluster's id, sent when they change.
    Paired(Vec<(String, NodeId)>),
    /// The sender's full service list, sent when it changes.
    Services(Vec<String>),
    /// A latency probe; `padding` is echoed back.
    Ping {
        /// Probe id.
        id: u64,
        /// Bytes to carry both ways.
        padding: Bytes,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        id: u64,
        /// The ping's padding, echoed.
        padding: Bytes,
    },
    /// A topic discovery.
    Discovery(Discovery),
    /// A published message.
    Publish(Publish),
    /// A remote call.
    Request {
        /// Call id, unique per caller.
        id: u64,
        /// Service name.
        service: String,
        /// Dotted path inside the service, e.g. `random.normal`.
        path: String,
        /// Call or attribute read.
        kind: CallKind,
        /// Serialized arguments (opaque to the protocol).
        args: Bytes,
        /// How long the caller waits for the answer, in milliseconds (absent from older
        /// callers): the server's handler learns its deadline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// The caller stopped waiting for a request (it gave up, or its deadline passed): the
    /// server may stop working on it, and sends no response.
    Cancel {
        /// The request's id.
        id: u64,
    },
    /// A search for the servers of a service.
    FindService(ServiceSearch),
    /// The answer to a remote call.
    Response {
        /// The request's id.
        id: u64,
        /// The serialized result or a typed error.
        result: Result<Bytes, RemoteError>,
    },
    /// A graceful close.
    Goodbye(DisconnectReason),
    /// A file offered on a topic (routed like a publish).
    FileOffer(FileOffer),
    /// A piece of a file (routed like a publish, or a repair to one peer).
    FileChunk(FileChunk),
    /// A file's end: its size and SHA-256 (routed like a publish).
    FileEnd(FileEnd),
    /// A receiver asks a sender for the chunks it misses.
    FileWant(FileWant),
    /// A sender no longer has a transfer.
    FileGone(FileGone),
}

/// The kinds of [`Message`], as their CBOR encoding names them (the key of the one-entry map,
/// or the text of a kind without fields).
pub const MESSAGE_KINDS: [&str; 18] = [
    "Hello",
    "Topics",
    "Paired",
    "Services",
    "Ping",
    "Pong",
    "Discovery",
    "Publish",
    "Request",
    "Cancel",
    "FindService",
    "Response",
    "Goodbye",
    "FileOffer",
    "FileChunk",
    "FileEnd",
    "FileWant",
    "FileGone",
];

/// A node's status, as a UDP status reply gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Node name.
    pub name: String,
    /// Node id.
    pub id: NodeId,
    /// Subscribed topics, each with whether it is paired.
    pub paired: BTreeMap<String, bool>,
    /// Offered services.
    pub services: Vec<String>,
    /// Number of edges.
    pub edges: usize,
    /// Whether it is a root.
    pub root: bool,
    /// Whether a reconnection is under way.
    pub reconnecting: bool,
    /// Whether topics and services were left out because the whole status would have been
    /// larger than the query (a reply is never larger than its query).
    #[serde(default)]
    pub truncated: bool,
}

/// One edge of a node, as its introspection service ([`crate::NODE_SERVICE`], method `edges`)
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeReport {
    /// Peer id.
    pub id: NodeId,
    /// Peer name.
    pub name: String,
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// Where the peer listens, as it declared.
    pub listen: Option<SocketAddr>,
    /// The peer's topics.
    pub topics: Vec<String>,
    /// The peer's services.
    pub services: Vec<String>,
    /// Whether the peer is a root.
    pub root: bool,
    /// Whether the edge is a pairing link.
    pub pairing: bool,
    /// Whether the reporting node dialed it.
    pub outbound: bool,
    /// Newest round trip, in microseconds.
    pub rtt_us: Option<u64>,
    /// Half the smoothed round trip, in microseconds.
    pub latency_us: Option<u64>,
    /// Round-trip variance, in microseconds.
    pub jitter_us: Option<u64>,
    /// Whether the reporting node's application dialed it (absent from older nodes: false).
    #[serde(default)]
    pub configured: bool,
    /// Frames the reporting node sent on it.
    #[serde(default)]
    pub frames_out: u64,
    /// Frames the reporting node received on it.
    #[serde(default)]
    pub frames_in: u64,
    /// Bytes the reporting node sent on it.
    #[serde(default)]
    pub bytes_out: u64,
    /// Bytes the reporting node received on it.
    #[serde(default)]
    pub bytes_in: u64,
}

/// A status query is padded to this many bytes: a reply is never larger than its query, so
/// a forged source gains nothing by asking. A reply that would not fit comes back
/// truncated, and the asker repeats the query once, padded to `max_datagram_len`.
pub const STATUS_QUERY_LEN: usize = 1200;

/// One UDP datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datagram {
    /// Ask for the receiver's status; the reply goes to the source address.
    StatusRequest {
        /// Echoed in the reply.
        token: u64,
        /// Zeros that make the query as large as the reply it may get back.
        #[serde(default)]
        padding: Bytes,
    },
    /// A status reply.
    StatusReply {
        /// The request's token.
        token: u64,
        /// The status.
        status: Status,
    },
    /// A best-effort publish, delivered to the receiver only (never relayed).
    Publish {
        /// Topic.
        topic: String,
        /// The user's bytes.
        payload: Bytes,
    },
}

/// Why a remote call failed. Travels on the wire inside a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteError {
    /// No connected peer (or not that peer) offers the service.
    #[error("service \"{}\" not found", Escaped(.0))]
    NotFound(String),
    /// The service has no method or attribute at that path.
    #[error("no such method or attribute: {}", Escaped(.0))]
    NoSuchMethod(String),
    /// The arguments did not fit the method.
    #[error("bad arguments: {}", Escaped(.0))]
    BadArguments(String),
    /// The method ran and failed.
    #[error("remote failure: {}", Escaped(.0))]
    Failed(String),
    /// No answer within the call's timeout.
    #[error("call timed out")]
    Timeout,
    /// The connection to the serving peer ended.
    #[error("disconnected from the serving peer")]
    Disconnected,
    /// The serving peer has too many requests from us in progress.
    #[error("serving peer is busy")]
    Busy,
    /// The caller gave up.
    #[error("call cancelled")]
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_message, encode_frame, FrameDecoder};

    /// [`MESSAGE_KINDS`] names every kind (the match is exhaustive: a new kind fails to compile
    /// until it is listed here), and the names are the encoding's.
    #[test]
    fn message_kinds_name_every_kind() {
        // `kind_index` is an exhaustive match: a new kind does not compile until it has a
        // place, and so a name here.
        fn name(m: &Message) -> &'static str {
            MESSAGE_KINDS[m.kind_index()]
        }
        let samples = [
            Message::FileGone(FileGone {
                origin: NodeId(1),
                id: 2,
            }),
            Message::FileWant(FileWant {
                origin: NodeId(1),
                id: 2,
                ranges: vec![(0, 3)],
                end: true,
            }),
            Message::Topics(vec![]),
            Message::Cancel { id: 1 },
            Message::Goodbye(DisconnectReason::Closed),
            Message::Response {
                id: 1,
                result: Err(RemoteError::Busy),
            },
        ];
        for m in &samples {
            let body = crate::codec::encode_value(m).unwrap();
            let value: ciborium::Value = crate::codec::decode_value(&body).unwrap();
            let key = value
                .as_map()
                .and_then(|e| e[0].0.as_text().map(str::to_string));
            assert_eq!(key.as_deref(), Some(name(m)));
            assert!(MESSAGE_KINDS.contains(&name(m)));
        }
        let mut listed: Vec<&str> = MESSAGE_KINDS.to_vec();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed.len(), MESSAGE_KINDS.len());
        for kind in MESSAGE_KINDS {
            assert_eq!(
                crate::codec::unknown_kind(
                    &crate::codec::encode_value(&ciborium::Value::Text(kind.into())).unwrap()
                ),
                None
            );
        }
    }

    /// Every reason and remote error crosses the wire unchanged. The matches are exhaustive
    /// (here, inside the crate, `#[non_exhaustive]` does not apply): adding a variant fails to
    /// compile until it is listed, and so round-tripped.
    #[test]
    fn every_variant_round_trips() {
        // Each variant's place: an exhaustive match, so a new variant does not compile until
        // it has one; the arrays below must then hold every place.
        fn error_place(e: &RemoteError) -> usize {
            match e {
                RemoteError::NotFound(_) => 0,
                RemoteError::NoSuchMethod(_) => 1,
                RemoteError::BadArguments(_) => 2,
                RemoteError::Failed(_) => 3,
                RemoteError::Timeout => 4,
                RemoteError::Disconnected => 5,
                RemoteError::Busy => 6,
                RemoteError::Cancelled => 7,
            }
        }
        let reasons = [
            DisconnectReason::Shutdown,
            DisconnectReason::Closed,
            DisconnectReason::Duplicate,
            DisconnectReason::SelfConnection,
            DisconnectReason::AlreadyPaired,
            DisconnectReason::Unneeded,
            DisconnectReason::VersionMismatch { ours: 1, theirs: 2 },
            DisconnectReason::ProtocolError("p".into()),
            DisconnectReason::LimitExceeded("l".into()),
            DisconnectReason::HandshakeTimeout,
            DisconnectReason::IdleTimeout,
            DisconnectReason::TooManyConnections,
            DisconnectReason::ConnectionLost,
            DisconnectReason::NotAuthorized("n".into()),
        ];
        let errors = [
            RemoteError::NotFound("n".into()),
            RemoteError::NoSuchMethod("m".into()),
            RemoteError::BadArguments("b".into()),
            RemoteError::Failed("f".into()),
            RemoteError::Timeout,
            RemoteError::Disconnected,
            RemoteError::Busy,
            RemoteError::Cancelled,
        ];
        let round_trip = |m: Message| {
            let mut buf = bytes::BytesMut::new();
            encode_frame(&m, &mut buf, 1 << 20).unwrap();
            let mut d = FrameDecoder::new(1 << 20);
            d.extend(&buf);
            let body = d.next_frame().unwrap().unwrap();
            assert_eq!(decode_message(&body).unwrap(), m);
        };
        let places: std::collections::BTreeSet<usize> =
            reasons.iter().map(DisconnectReason::index).collect();
        assert_eq!(
            places,
            (0..14).collect(),
            "a reason is missing from the list"
        );
        let places: std::collections::BTreeSet<usize> = errors.iter().map(error_place).collect();
        assert_eq!(
            places,
            (0..8).collect(),
            "an error is missing from the list"
        );
        for r in reasons {
            round_trip(Message::Goodbye(r));
        }
        for e in errors {
            round_trip(Message::Response {
                id: 1,
                result: Err(e),
            });
        }
    }
}
