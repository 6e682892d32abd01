//! What a node counts: running totals ([`Counters`]) and levels at one instant ([`Gauges`]),
//! for status output, benchmarks and operators' metrics. Counting is a few integer additions
//! on paths that already touch the connection; nothing here allocates.

use std::time::Duration;

use super::Node;
use crate::message::{DisconnectReason, Message};

/// The reasons of goodbyes a node counts, by the index [`DisconnectReason::index`] gives.
pub const GOODBYE_REASONS: [&str; 14] = [
    "shutdown",
    "closed",
    "duplicate",
    "self_connection",
    "already_paired",
    "unneeded",
    "version_mismatch",
    "protocol_error",
    "limit_exceeded",
    "handshake_timeout",
    "idle_timeout",
    "too_many_connections",
    "connection_lost",
    "not_authorized",
];

/// Upper bounds (in microseconds) of the buckets of [`Counters::rtt_buckets`]; the last
/// bucket takes everything above the last bound.
pub const RTT_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

impl Message {
    /// The index of this message's kind in [`MESSAGE_KINDS`](crate::MESSAGE_KINDS) (the names the wire gives
    /// them).
    pub fn kind_index(&self) -> usize {
        match self {
            Message::Hello(_) => 0,
            Message::Topics(_) => 1,
            Message::Paired(_) => 2,
            Message::Services(_) => 3,
            Message::Ping { .. } => 4,
            Message::Pong { .. } => 5,
            Message::Discovery(_) => 6,
            Message::Publish(_) => PUBLISH,
            Message::Request { .. } => 8,
            Message::Cancel { .. } => 9,
            Message::FindService(_) => 10,
            Message::Response { .. } => 11,
            Message::Goodbye(_) => 12,
            Message::FileOffer(_) => 13,
            Message::FileChunk(_) => 14,
            Message::FileEnd(_) => 15,
            Message::FileWant(_) => 16,
            Message::FileGone(_) => 17,
        }
    }
}

/// The index of publishes in [`MESSAGE_KINDS`].
pub(super) const PUBLISH: usize = 7;

impl DisconnectReason {
    /// The index of this reason in [`GOODBYE_REASONS`].
    pub fn index(&self) -> usize {
        match self {
            DisconnectReason::Shutdown => 0,
            DisconnectReason::Closed => 1,
            DisconnectReason::Duplicate => 2,
            DisconnectReason::SelfConnection => 3,
            DisconnectReason::AlreadyPaired => 4,
            DisconnectReason::Unneeded => 5,
            DisconnectReason::VersionMismatch { .. } => 6,
            DisconnectReason::ProtocolError(_) => 7,
            DisconnectReason::LimitExceeded(_) => 8,
            DisconnectReason::HandshakeTimeout => 9,
            DisconnectReason::IdleTimeout => 10,
            DisconnectReason::TooManyConnections => 11,
            DisconnectReason::ConnectionLost => 12,
            DisconnectReason::NotAuthorized(_) => 13,
        }
    }
}

/// Running totals, for status output, benchmarks and metrics.
///
/// ```
/// use chaski_proto::{Config, Node, MESSAGE_KINDS};
/// let node = Node::new(Config::default(), None).unwrap();
/// let c = node.counters();
/// assert_eq!(c.sent.len(), MESSAGE_KINDS.len());
/// assert_eq!(c.frames_sent, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames encoded for sending.
    pub frames_sent: u64,
    /// Frames decoded.
    pub frames_received: u64,
    /// Frames sent, by kind ([`MESSAGE_KINDS`]).
    pub sent: [u64; 18],
    /// Frames received and decoded, by kind ([`MESSAGE_KINDS`]).
    pub received: [u64; 18],
    /// Bytes the sockets took (on a secure connection: TLS records).
    pub bytes_sent: u64,
    /// Bytes the sockets gave (on a secure connection: TLS records).
    pub bytes_received: u64,
    /// Publishes passed on to other peers (one per peer it went to).
    pub relayed: u64,
    /// Publishes handed to the application (one per subscribed publish).
    pub delivered: u64,
    /// Connections that became edges.
    pub handshakes: u64,
    /// Connections that ended before they became edges (dials that failed included).
    pub handshakes_failed: u64,
    /// Goodbyes sent, by reason ([`GOODBYE_REASONS`]).
    pub goodbyes_sent: [u64; 14],
    /// Goodbyes received, by reason ([`GOODBYE_REASONS`]).
    pub goodbyes_received: [u64; 14],
    /// Calls this node made (each try of a call counts).
    pub calls: u64,
    /// Calls that ended in an error (remote, timeout, lost server).
    pub call_errors: u64,
    /// Requests from peers handed to the application.
    pub requests: u64,
    /// Round trips measured by keep-alive pings, by bucket ([`RTT_BUCKETS_US`], then one for
    /// everything above).
    pub rtt_buckets: [u64; 13],
    /// The sum of every round trip measured, in microseconds.
    pub rtt_sum_us: u64,
    /// Publishes dropped as duplicates.
    pub duplicates: u64,
    /// Application events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Connections closed for bad input.
    pub bad_peers: u64,
    /// Publishes from peers on the reserved topic `@`, dropped.
    pub reserved_dropped: u64,
    /// Messages not sent to a congested peer ([`OnCongestion::Skip`](crate::OnCongestion)).
    pub congestion_skipped: u64,
    /// Connections dropped (or closed connections' bytes dropped) to stay within the memory
    /// budget.
    pub memory_shed: u64,
    /// Messages of kinds this node does not know (from a newer peer), skipped.
    pub unknown_skipped: u64,
    /// Status queries not answered: past `status_replies_per_sec`.
    pub status_dropped: u64,
    /// Files offered on an accepted pattern and refused (limits, malformed offers).
    pub files_refused: u64,
}

impl Counters {
    /// Counts one round trip.
    pub(super) fn rtt(&mut self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let bucket = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.rtt_buckets[bucket] += 1;
        self.rtt_sum_us = self.rtt_sum_us.saturating_add(us);
    }

    /// Counts a frame sent.
    pub(super) fn sent(&mut self, msg: &Message) {
        self.frames_sent += 1;
        self.sent[msg.kind_index()] += 1;
        if let Message::Goodbye(reason) = msg {
            self.goodbyes_sent[reason.index()] += 1;
        }
    }
}

/// Levels of a node at one instant, from [`Node::gauges`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open or being opened.
    pub connections: usize,
    /// Connections still in their handshake.
    pub handshaking: usize,
    /// Edges.
    pub edges: usize,
    /// Edges to roots.
    pub root_edges: usize,
    /// Pairing links.
    pub pairing_edges: usize,
    /// Edges the application dialed (or that were redialed after a loss).
    pub configured_edges: usize,
    /// Peers being redialed.
    pub reconnecting: usize,
    /// Closed connections still writing their last bytes.
    pub closing: usize,
    /// Connections over the congestion limit.
    pub congested: usize,
    /// Connections whose reading waits for a full bulk lane.
    pub read_paused: usize,
    /// Outputs (events and deliveries) waiting for the runtime.
    pub output_queue: usize,
    /// Deadlines set.
    pub timers: usize,
    /// Files this node sends.
    pub files_outgoing: usize,
    /// Files this node receives.
    pub files_incoming: usize,
    /// Topics (and patterns) this node subscribes to.
    pub topics: usize,
    /// Services this node serves.
    pub services: usize,
    /// Calls this node waits for.
    pub calls_pending: usize,
    /// Requests from peers the application has not answered.
    pub requests_pending: usize,
}

impl Node {
    /// Levels at this instant (O(edges)).
    pub fn gauges(&self) -> Gauges {
        let edges = self.edges.values();
        Gauges {
            connections: self.conns.len(),
            handshaking: self
                .conns
                .values()
                .filter(|c| {
                    !matches!(
                        c.state,
                        super::ConnState::Established(_) | super::ConnState::Superseded(_)
                    )
                })
                .count(),
            edges: self.edges.len(),
            root_edges: edges.clone().filter(|e| e.root).count(),
            pairing_edges: edges.clone().filter(|e| e.pairing).count(),
            configured_edges: edges.filter(|e| e.configured).count(),
            reconnecting: self.redials.len(),
            closing: self.closing.len(),
            congested: self.congested.len(),
            read_paused: self.read_paused.len(),
            output_queue: self.queue.len(),
            timers: self.timers.len(),
            files_outgoing: self.outgoing.len(),
            files_incoming: self.incoming.len(),
            topics: self.topics.len(),
            services: self.services.len(),
            calls_pending: self.calls.len(),
            requests_pending: self.inbound.len(),
        }
    }
}

/// Everything an operator's metrics read from a node, taken at one instant (from
/// [`Node::metrics`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The node's id.
    pub id: crate::id::NodeId,
    /// The node's name.
    pub name: String,
    /// Whether the node is a root.
    pub root: bool,
    /// Whether every topic the node subscribes to is paired ([`Node::is_paired`]).
    pub paired: bool,
    /// Running totals.
    pub counters: Counters,
    /// Levels.
    pub gauges: Gauges,
    /// Memory held for connections, and its bound.
    pub memory: super::MemoryUse,
    /// Every edge, in the order established.
    pub edges: Vec<super::EdgeInfo>,
}

impl Node {
    /// Counters, levels, memory and edges together (O(edges)).
    ///
    /// ```
    /// use chaski_proto::{Config, Node};
    /// let node = Node::new(Config::default(), None).unwrap();
    /// let m = node.metrics();
    /// assert_eq!(m.gauges.edges, 0);
    /// assert!(m.memory.budget > 0);
    /// ```
    pub fn metrics(&self) -> Metrics {
        Metrics {
            id: self.id,
            name: self.name.clone(),
            root: self.cfg.root,
            paired: self.is_paired(),
            counters: self.counters(),
            gauges: self.gauges(),
            memory: self.memory(),
            edges: self.edges(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_name() {
        let reasons = [
            DisconnectReason::Shutdown,
            DisconnectReason::Closed,
            DisconnectReason::Duplicate,
            DisconnectReason::SelfConnection,
            DisconnectReason::AlreadyPaired,
            DisconnectReason::Unneeded,
            DisconnectReason::VersionMismatch { ours: 1, theirs: 2 },
            DisconnectReason::ProtocolError(String::new()),
            DisconnectReason::LimitExceeded(String::new()),
            DisconnectReason::HandshakeTimeout,
            DisconnectReason::IdleTimeout,
            DisconnectReason::TooManyConnections,
            DisconnectReason::ConnectionLost,
            DisconnectReason::NotAuthorized(String::new()),
        ];
        for (i, r) in reasons.iter().enumerate() {
            assert_eq!(r.index(), i);
            let debug = format!("{r:?}").to_lowercase();
            let name = GOODBYE_REASONS[i].replace('_', "");
            assert!(debug.starts_with(&name), "{debug} is named {name}");
        }
    }

    #[test]
    fn round_trips_fall_in_their_buckets() {
        let mut c = Counters::default();
        c.rtt(Duration::from_micros(100));
        c.rtt(Duration::from_micros(101));
        c.rtt(Duration::from_secs(5));
        assert_eq!(c.rtt_buckets[0], 1, "a bound is inclusive");
        assert_eq!(c.rtt_buckets[1], 1);
        assert_eq!(
            c.rtt_buckets[RTT_BUCKETS_US.len()],
            1,
            "above the last bound"
        );
        assert_eq!(c.rtt_sum_us, 5_000_201);
    }
}
