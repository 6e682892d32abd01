//! What the node gives its runtime: outputs, application events and edge snapshots.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::error::ConnectError;
use crate::id::{ConnId, NodeId, RequestId};
use crate::message::RemoteError;
use crate::message::{CallKind, DisconnectReason, Status};

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// One thing for the runtime to do, from [`Node::poll_output`](crate::Node::poll_output).
#[derive(Debug)]
pub enum Output {
    /// The connection has bytes to write again: write what [`Node::outbound`](crate::Node::outbound)
    /// gives when the socket can take it, and report it with [`Node::advance`](crate::Node::advance).
    Transmit {
        /// Connection.
        conn: ConnId,
    },
    /// Reading the connection may go on: it waited because file frames from it filled a
    /// peer's bulk lane ([`Node::wants_read`](crate::Node::wants_read)).
    Resume {
        /// Connection.
        conn: ConnId,
    },
    /// Send one UDP datagram from the node's socket.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
    /// Open a TCP connection, then report [`Node::handle_connected`](crate::Node::handle_connected)
    /// or [`Node::handle_dial_failed`](crate::Node::handle_dial_failed) with this id.
    Dial {
        /// The id to use for the connection.
        conn: ConnId,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Close the connection once [`Node::outbound`](crate::Node::outbound) has nothing left for
    /// it (it keeps giving what was queued before the close, for at most `linger` without
    /// progress). May come again for a connection already closing: the bytes were dropped.
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// Something that happened to the node (its edges, pairing, latency, bad peers): for the
    /// application's event stream.
    Event(Event),
    /// What the application asked for or subscribed to: a message, a request to serve, the
    /// answer to a call or a status query.
    Deliver(Delivery),
}

/// A message received by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Topic.
    pub topic: String,
    /// The publisher's bytes. Payloads of up to 256 bytes share 4 KiB blocks with the
    /// messages received around them (one allocation per block, not per message): keeping one
    /// keeps its block, so copy a payload you keep for long (`Bytes::copy_from_slice`).
    pub payload: Bytes,
    /// The publishing node (`None` for a UDP publish).
    pub origin: Option<NodeId>,
    /// The publisher's sequence number (0 for UDP).
    pub seq: u64,
    /// Edges crossed: 1 for a direct neighbour.
    pub hops: u8,
    /// The neighbour it came from (`None` for UDP).
    pub from: Option<NodeId>,
}

/// Something that happened to the node: its edges, pairing, latency, bad peers. What a program
/// reads from its node's event stream (every runtime gives these, unchanged).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// An edge exists: both Hellos have crossed.
    PeerConnected {
        /// The connection it runs on.
        conn: ConnId,
        /// A snapshot of the edge.
        info: Box<EdgeInfo>,
        /// Whether this restores an edge lost earlier.
        reconnected: bool,
    },
    /// A `connect` (or a redial) did not give an edge.
    ConnectFailed {
        /// The connection id returned by `connect`.
        conn: ConnId,
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        error: ConnectError,
    },
    /// An edge ended.
    PeerLost {
        /// The peer.
        peer: NodeId,
        /// Its name.
        name: String,
        /// Why.
        reason: DisconnectReason,
        /// Whether the peer said goodbye (`reason` is then the peer's).
        by_peer: bool,
        /// Whether the node will redial it.
        reconnecting: bool,
    },
    /// Redialing a lost peer stopped after this many attempts.
    ReconnectGaveUp {
        /// The peer.
        peer: NodeId,
        /// Attempts made.
        attempts: u32,
    },
    /// A peer's topics or services changed.
    PeerUpdated {
        /// The peer.
        peer: NodeId,
    },
    /// This node now belongs to the topic's cluster.
    Paired {
        /// Topic.
        topic: String,
        /// The peer paired with, or `None` when the node became the topic's anchor.
        with: Option<NodeId>,
    },
    /// A pong arrived.
    Latency {
        /// The peer.
        peer: NodeId,
        /// The ping's id.
        ping: u64,
        /// This round trip.
        rtt: Duration,
        /// Half the smoothed RTT.
        latency: Duration,
        /// RTT variance.
        jitter: Duration,
    },
    /// A peer sent a message of a kind this node does not know (a newer protocol version):
    /// it was skipped, and the connection goes on.
    UnknownMessage {
        /// The peer.
        peer: NodeId,
        /// The message's kind, as its encoding names it (at most 64 bytes of it).
        kind: String,
    },
    /// A connection was closed because of bad input from the peer.
    BadPeer {
        /// The connection.
        conn: ConnId,
        /// The peer, if the Hello had arrived.
        peer: Option<NodeId>,
        /// The reason sent in the goodbye.
        reason: DisconnectReason,
    },
}

/// What the node hands its application because the application asked for it: a message on a
/// topic it subscribes to, a request to one of its services (and its cancellation), the answer
/// to one of its calls, searches or status queries. Each goes to its own stream or waiter, never
/// to the event stream.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// A published message arrived.
    Message(Received),
    /// A peer calls one of our services; answer with [`Node::respond`](crate::Node::respond).
    Request {
        /// The caller.
        peer: NodeId,
        /// The caller's request id.
        id: u64,
        /// Service name.
        service: String,
        /// Dotted path.
        path: String,
        /// Call or get.
        kind: CallKind,
        /// Serialized arguments.
        args: Bytes,
        /// When the caller stops waiting (if it said).
        deadline: Option<std::time::Instant>,
    },
    /// A caller cancelled a request of [`Delivery::Request`] (or its edge was lost): it wants no
    /// answer any more, and the work may stop.
    Cancelled {
        /// The caller.
        peer: NodeId,
        /// The caller's request id.
        id: u64,
    },
    /// A search for a service's servers ended ([`Node::seek_service`](crate::Node::seek_service)).
    ServiceFound {
        /// The service sought.
        service: String,
        /// A server now connected, or `None` if none answered within `discovery_timeout`.
        peer: Option<NodeId>,
    },
    /// A call of ours finished.
    Response {
        /// The id `call` returned.
        id: RequestId,
        /// Result or typed error.
        result: Result<Bytes, RemoteError>,
    },
    /// A UDP status query finished (`status` is `None` on timeout).
    Status {
        /// The query's token.
        token: u64,
        /// The address queried.
        addr: SocketAddr,
        /// The reply.
        status: Option<Status>,
    },
    /// A transfer this node accepts files for was offered: the runtime makes a place for it
    /// (`name` is the sender's: keep only [`safe_name`](crate::files::safe_name) of it).
    FileOffered {
        /// The transfer.
        key: crate::files::FileKey,
        /// The topic it came on.
        topic: String,
        /// The name the sender gave.
        name: String,
        /// Its size, if the sender said it ahead.
        size: Option<u64>,
        /// Bytes of every chunk but the last.
        chunk: u32,
        /// The sender's data about the file.
        meta: Bytes,
    },
    /// A transfer offered on a topic this node accepts files on was refused: past the
    /// receiver's limits, or malformed. Nothing of it is delivered.
    FileRefused {
        /// The transfer.
        key: crate::files::FileKey,
        /// The topic it came on.
        topic: String,
        /// The name the sender gave.
        name: String,
        /// Its size, if the sender said it.
        size: Option<u64>,
        /// Why.
        error: crate::files::FileError,
    },
    /// Bytes of a transfer this node takes, each chunk once: they belong at `offset`.
    FileData {
        /// The transfer.
        key: crate::files::FileKey,
        /// Where the bytes go in the file.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Every chunk of a transfer arrived and its end is known: the runtime checks the bytes
    /// against `sha256` and keeps the file, or says it failed
    /// ([`Node::file_failed`](crate::Node::file_failed)).
    FileComplete {
        /// The transfer.
        key: crate::files::FileKey,
        /// The file's size.
        size: u64,
        /// Its SHA-256, as the sender gave it.
        sha256: Bytes,
    },
    /// A transfer this node took ended without a file: the runtime drops what it wrote.
    FileFailed {
        /// The transfer.
        key: crate::files::FileKey,
        /// Why.
        error: crate::files::FileError,
    },
    /// A receiver asks for chunks of a transfer this node sends: the runtime reads them and
    /// answers with [`Node::repair_chunk`](crate::Node::repair_chunk).
    FileWanted {
        /// The receiver (an edge).
        peer: NodeId,
        /// The transfer (this node's number for it).
        id: u64,
        /// Chunk numbers, as `[start, end)` ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// A transfer this node sent is no longer kept for repairs: the runtime may let its file
    /// go.
    FileExpired {
        /// This node's number for it.
        id: u64,
    },
}

/// A snapshot of one edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeInfo {
    /// Peer id.
    pub id: NodeId,
    /// Peer name.
    pub name: String,
    /// The connection.
    pub conn: ConnId,
    /// Socket address of the peer.
    pub addr: SocketAddr,
    /// Where the peer listens, as it declared.
    pub listen: Option<SocketAddr>,
    /// Peer topics.
    pub topics: Vec<String>,
    /// Peer services.
    pub services: Vec<String>,
    /// Whether the peer is a root.
    pub root: bool,
    /// Whether this is a pairing link (made by discovery, or sharing a topic).
    pub pairing: bool,
    /// Who dialed.
    pub direction: Direction,
    /// Newest round trip.
    pub rtt: Option<Duration>,
    /// Half the smoothed RTT.
    pub latency: Option<Duration>,
    /// RTT variance.
    pub jitter: Option<Duration>,
    /// Whether the application dialed it (or it was redialed after a loss).
    pub configured: bool,
    /// Frames sent on its connection (queued for the socket).
    pub frames_out: u64,
    /// Frames received on its connection.
    pub frames_in: u64,
    /// Bytes its socket took.
    pub bytes_out: u64,
    /// Bytes its socket gave.
    pub bytes_in: u64,
}

impl EdgeInfo {
    /// The edge as [`NODE_SERVICE`](crate::NODE_SERVICE) reports it (durations in
    /// microseconds).
    pub fn into_report(self) -> crate::message::EdgeReport {
        let us = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        crate::message::EdgeReport {
            id: self.id,
            name: self.name,
            addr: self.addr,
            listen: self.listen,
            topics: self.topics,
            services: self.services,
            root: self.root,
            pairing: self.pairing,
            outbound: self.direction == Direction::Outbound,
            rtt_us: us(self.rtt),
            latency_us: us(self.latency),
            jitter_us: us(self.jitter),
            configured: self.configured,
            frames_out: self.frames_out,
            frames_in: self.frames_in,
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
        }
    }
}
