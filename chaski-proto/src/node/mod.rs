//! The node state machine.
//!
//! Inputs are the `handle_*` methods and the user commands; outputs come from
//! [`Node::poll_output`], and [`Node::poll_timeout`] tells when to call [`Node::handle_timeout`].
//! Collections whose order is observable are `BTreeMap`s or ordered lists, so a run is
//! reproducible from its inputs.

mod budget;
mod calls;
mod discovery;
mod handshake;
mod liveness;
mod pubsub;
mod rpc;
mod secure;
mod timers;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::{debug, warn};

pub use budget::MemoryUse;
use timers::{TimerKey, Timers};
pub use types::{Delivery, Direction, EdgeInfo, Event, Output, Received};

use crate::codec::{
    decode_publish_ref, decode_value, encode_frame, split_frame, FrameDecoder, PUBLISH_MARK,
};
use crate::config::{Config, ConfigError, OnPair};
use crate::dedup::{SeenPool, SeqWindows};
use crate::error::{CommandError, ConnectError};
use crate::id::{ConnId, NodeId};
use crate::latency::RttEstimator;
use crate::message::{DisconnectReason, Message, PairIntent};
use crate::text::Escaped;

/// Messages of unknown kinds from one peer that each make an [`Event::UnknownMessage`]; the
/// rest are only counted ([`Counters::unknown_skipped`]).
pub const UNKNOWN_EVENTS: u32 = 16;

/// A root's own topic (it marks the node as a root to peers): reserved, never published on,
/// never delivered.
pub const ROOT_TOPIC: &str = "@";

/// The reserved service every node answers itself (when [`Config::introspect`] is on):
/// method `edges` gives its edges ([`crate::EdgeReport`]s), `status` its [`crate::Status`].
/// Names starting with `@` cannot be served by the application.
pub const NODE_SERVICE: &str = "@node";

/// Why the core dialed a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Purpose {
    /// The application's `connect`.
    User,
    /// Redialing a lost peer.
    Reconnect(NodeId),
    /// Answering a discovery.
    Pair(PairIntent, NodeId),
    /// Offering a service to a node that seeks it.
    Offer(NodeId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// Dial requested, socket not open yet.
    Dialing,
    /// Socket open, our Hello sent, theirs awaited.
    Handshaking,
    /// Edge established with this peer.
    Established(NodeId),
    /// Lost a duplicate tie-break against the edge to this peer: our goodbye is sent and
    /// nothing more is written; what the peer sent before it learned still counts as the
    /// edge's (answered on the edge's connection). Ends at the peer's goodbye or close.
    Superseded(NodeId),
}

#[derive(Debug)]
struct Conn {
    dir: Direction,
    remote: SocketAddr,
    state: ConnState,
    purpose: Option<Purpose>,
    /// The dialer's nonce (see [`crate::message::Hello::nonce`]).
    nonce: u64,
    /// Closing the handshake by this instant, or give up.
    deadline: Instant,
    decoder: FrameDecoder,
    /// Frames waiting to be written (on a secure connection: to be sealed into `tls.wire`).
    out: BytesMut,
    /// Since when the runtime could not write what waits in `out` (reset by any progress).
    blocked_since: Option<Instant>,
    /// Bytes at the front of the wire that finish a frame (a TLS record on a secure
    /// connection) the socket has begun: all that must be written before another frame.
    begun: usize,
    /// The TLS session of a secure node's connection.
    tls: Option<Box<secure::TlsConn>>,
    /// The peer said `Goodbye(Duplicate)` on this edge's connection before its other
    /// connection's Hello reached us: the edge stays here until that Hello arrives.
    peer_moved: bool,
}

impl Conn {
    /// The bytes for the socket: the sealed ones on a secure connection.
    fn wire(&self) -> &[u8] {
        match &self.tls {
            Some(t) => &t.wire,
            None => &self.out,
        }
    }

    fn wire_mut(&mut self) -> &mut BytesMut {
        match &mut self.tls {
            Some(t) => &mut t.wire,
            None => &mut self.out,
        }
    }

    /// Everything that waits to be written, sealed or not.
    fn pending(&self) -> usize {
        self.out.len() + self.tls.as_ref().map_or(0, |t| t.wire.len())
    }

    /// Drops everything that waits to be written; returns how much it was.
    fn clear_pending(&mut self) -> usize {
        let n = self.pending();
        self.out.clear();
        if let Some(t) = &mut self.tls {
            t.wire.clear();
        }
        self.begun = 0;
        n
    }

    /// `n` bytes of the wire were written.
    fn written(&mut self, n: usize) {
        let n = n.min(self.wire().len());
        self.begun = begun_after(self.wire(), self.begun, n, self.tls.is_some());
        bytes::Buf::advance(self.wire_mut(), n);
    }

    /// Drops what waits that the socket has not begun (the rest of a begun frame stays, or the
    /// peer could not read anything after it); returns whether a frame may still follow it.
    /// On a secure connection, sealed records cannot be dropped (the ones after would not
    /// decrypt): if whole records wait, everything goes and nothing may follow.
    fn drop_unsent(&mut self) -> bool {
        match &mut self.tls {
            None => {
                self.out.truncate(self.begun);
                true
            }
            Some(t) => {
                self.out.clear();
                if t.wire.len() > self.begun {
                    t.wire.clear();
                    self.begun = 0;
                    return false;
                }
                true
            }
        }
    }
}

/// How much of a begun frame (or TLS record) is left at the front of `wire` once its first
/// `n` bytes are written, `begun` being that before. Frames are `4 + length` bytes, records
/// `5 + length`; the wire holds whole ones after the begun one.
fn begun_after(wire: &[u8], begun: usize, n: usize, tls: bool) -> usize {
    if n <= begun {
        return begun - n;
    }
    let mut at = begun;
    while at < n {
        let len = if tls {
            wire.get(at + 3..at + 5)
                .map(|h| 5 + usize::from(u16::from_be_bytes([h[0], h[1]])))
        } else {
            wire.get(at..at + 4)
                .map(|h| 4 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
        };
        match len {
            Some(len) => at += len,
            // Not a unit's start (never, for what the core writes): nothing is known begun.
            None => return 0,
        }
    }
    at - n
}

/// What is left to write on a connection after its close.
#[derive(Debug)]
struct Closing {
    out: BytesMut,
    /// The close, or the last write that made progress.
    since: Instant,
}

#[derive(Debug)]
struct Edge {
    conn: ConnId,
    name: String,
    addr: SocketAddr,
    listen: Option<SocketAddr>,
    topics: BTreeSet<String>,
    /// Those of `topics` that are patterns (matched against every message for this peer).
    patterns: Vec<String>,
    /// The peer's paired topics and their cluster ids.
    paired: BTreeMap<String, NodeId>,
    services: BTreeSet<String>,
    root: bool,
    pairing: bool,
    dir: Direction,
    rtt: RttEstimator,
    /// Outstanding pings: id and send time (a few at most).
    pings: VecDeque<(u64, Instant)>,
    last_rx: Instant,
    last_ping: Instant,
    keepalive_delay: Duration,
    inbound_requests: usize,
    /// Messages of unknown kinds skipped from this peer (only the first few make an event).
    unknown: u32,
}

impl Edge {
    /// Whether a message on `topic` goes to this peer: a root takes everything, others what
    /// they subscribe to, by name or by pattern.
    fn wants(&self, topic: &str) -> bool {
        self.root
            || self.topics.contains(topic)
            || self
                .patterns
                .iter()
                .any(|p| crate::topic::matches(p, topic))
    }

    /// Replaces the peer's topics (and the patterns among them).
    fn set_topics(&mut self, topics: Vec<String>) {
        self.patterns = topics
            .iter()
            .filter(|t| crate::topic::is_pattern(t))
            .cloned()
            .collect();
        self.topics = topics.into_iter().collect();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TopicState {
    Unpaired,
    Discovering {
        id: u64,
        deadline: Instant,
        on_pair: OnPair,
    },
    /// Member of the cluster with this id (the smallest node id known in it).
    Paired(NodeId),
}

#[derive(Debug)]
struct Redial {
    addr: SocketAddr,
    attempt: u32,
    next: Option<Instant>,
    conn: Option<ConnId>,
}

/// A Chaski node as a pure state machine. See the [crate docs](crate) for the driving loop.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    id: NodeId,
    name: String,
    listen: Option<SocketAddr>,
    rng: fastrand::Rng,
    shut_down: bool,

    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    edges: BTreeMap<NodeId, Edge>,
    /// Edges in the order they were established (relays follow it, as in Python).
    edge_order: Vec<NodeId>,

    topics: BTreeMap<String, TopicState>,
    /// Those of `topics` that are patterns.
    patterns: Vec<String>,
    services: BTreeSet<String>,
    next_discovery: u64,
    /// Other seekers heard while a topic was unpaired: topic → (origin, address, discovery).
    seekers: BTreeMap<String, VecDeque<(NodeId, SocketAddr, u64)>>,
    seen_discoveries: SeenPool<(NodeId, u64)>,
    next_seq: u64,
    seen_publishes: SeqWindows<NodeId>,
    next_ping: u64,

    next_request: u64,
    /// Our calls.
    calls: BTreeMap<u64, calls::Call>,
    /// Our searches for a service's servers: service → deadline.
    searches: BTreeMap<String, Instant>,
    /// Requests from peers the application has not answered.
    inbound: HashSet<(NodeId, u64)>,
    next_status: u64,
    /// Our status queries: token → (address asked, deadline, whether asked again padded).
    status_queries: BTreeMap<u64, (SocketAddr, Instant, bool)>,
    /// Status replies sent in the current second, and when that second began.
    status_replies: (u32, Option<Instant>),

    redials: BTreeMap<NodeId, Redial>,
    /// When the node last dialed an address by itself (pairing, redial).
    recent_dials: BTreeMap<SocketAddr, Instant>,
    timers: Timers,
    /// Closed connections with bytes still to write.
    closing: BTreeMap<ConnId, Closing>,
    /// Connections with more than the congestion limit waiting.
    congested: BTreeSet<ConnId>,
    /// How many times a connection left `congested`, or the node's outbound bytes fell back
    /// under a quarter of the budget (a runtime wakes waiting publishers then).
    released: u64,
    /// Bytes of unfinished frames received, on every connection.
    held_in: usize,
    /// Bytes waiting to be written, on every open and closing connection.
    held_out: usize,
    /// Outbound bytes went over half the budget and have not fallen under a quarter yet.
    memory_waiting: bool,
    /// Whether the log already said that peers on other hosts cannot dial this node back.
    said_unreachable: bool,

    dirty: VecDeque<ConnId>,
    /// Scratch for what a TLS session decrypts (kept to spare an allocation per read).
    plain: Vec<u8>,
    queue: VecDeque<Output>,
    /// How many of `queue` are events (kept so pushing an event is O(1)).
    queued_events: usize,
    dropped_events: u64,
    counters: Counters,
}

/// Running totals, for status output and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames encoded for sending.
    pub frames_sent: u64,
    /// Frames decoded.
    pub frames_received: u64,
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
}

impl Node {
    /// A node that listens on `listen` (what it tells peers unless [`Config::advertise`] says
    /// otherwise; `None` if it accepts nothing). Fails if a setting is not valid
    /// ([`Config::validate`]).
    pub fn new(cfg: Config, listen: Option<SocketAddr>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let drawn = NodeId(rng.u128(..).max(1));
        // A secure node is who its certificate proves.
        let id = cfg.tls.as_ref().map_or(drawn, |t| t.id());
        let name = cfg
            .name
            .clone()
            .or_else(|| cfg.tls.as_ref().and_then(|t| t.name().map(str::to_string)))
            .unwrap_or_else(|| format!("node-{id}"));
        let mut topics = BTreeMap::new();
        if cfg.root {
            topics.insert(ROOT_TOPIC.to_string(), TopicState::Paired(id));
        }
        Ok(Node {
            seen_discoveries: SeenPool::new(cfg.discovery_pool),
            seen_publishes: SeqWindows::new(cfg.dedup_pool),
            cfg,
            id,
            name,
            listen,
            rng,
            shut_down: false,
            conns: BTreeMap::new(),
            next_conn: 0,
            edges: BTreeMap::new(),
            edge_order: Vec::new(),
            topics,
            patterns: Vec::new(),
            services: BTreeSet::new(),
            next_discovery: 0,
            seekers: BTreeMap::new(),
            next_seq: 0,
            next_ping: 0,
            next_request: 0,
            calls: BTreeMap::new(),
            searches: BTreeMap::new(),
            inbound: HashSet::new(),
            next_status: 0,
            status_queries: BTreeMap::new(),
            status_replies: (0, None),
            redials: BTreeMap::new(),
            recent_dials: BTreeMap::new(),
            timers: Timers::default(),
            closing: BTreeMap::new(),
            congested: BTreeSet::new(),
            released: 0,
            held_in: 0,
            held_out: 0,
            memory_waiting: false,
            said_unreachable: false,
            dirty: VecDeque::new(),
            plain: Vec::new(),
            queue: VecDeque::new(),
            queued_events: 0,
            dropped_events: 0,
            counters: Counters::default(),
        })
    }

    // ----- accessors -------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The address announced to peers: [`Config::advertise`], or the one the node listens on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.cfg.advertise.or(self.listen)
    }

    /// Sets the address the node listens on (e.g. once the runtime knows its bound port).
    pub fn set_listen_addr(&mut self, addr: Option<SocketAddr>) {
        self.listen = addr;
    }

    /// Whether the node is a root.
    pub fn is_root(&self) -> bool {
        self.cfg.root
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Subscribed topics.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }

    /// Whether the node subscribes to `topic`, by name or by a pattern that matches it.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
            || self
                .patterns
                .iter()
                .any(|p| crate::topic::matches(p, topic))
    }

    /// Whether the node belongs to `topic`'s cluster (never true on a root).
    pub fn is_paired_for(&self, topic: &str) -> bool {
        !self.cfg.root && matches!(self.topics.get(topic), Some(TopicState::Paired(_)))
    }

    /// The id of `topic`'s cluster, if this node is paired for it (the smallest node id in it).
    pub fn cluster_of(&self, topic: &str) -> Option<NodeId> {
        match self.topics.get(topic) {
            Some(TopicState::Paired(c)) if !self.cfg.root => Some(*c),
            _ => None,
        }
    }

    /// Whether every topic is paired (true with no topics), as Python's `node.paired`.
    pub fn is_paired(&self) -> bool {
        self.topics
            .values()
            .all(|s| matches!(s, TopicState::Paired(_)))
    }

    /// Offered services.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(String::as_str)
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Whether an edge to `peer` exists.
    pub fn is_connected_to(&self, peer: NodeId) -> bool {
        self.edges.contains_key(&peer)
    }

    /// Peer ids in the order their edges were established.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.edge_order.iter().copied()
    }

    /// A snapshot of every edge, in the order established.
    pub fn edges(&self) -> Vec<EdgeInfo> {
        self.edge_order
            .iter()
            .filter_map(|p| self.edge_info(*p))
            .collect()
    }

    /// A snapshot of the edge to `peer`.
    pub fn edge_info(&self, peer: NodeId) -> Option<EdgeInfo> {
        let e = self.edges.get(&peer)?;
        Some(EdgeInfo {
            id: peer,
            name: e.name.clone(),
            conn: e.conn,
            addr: e.addr,
            listen: e.listen,
            topics: e.topics.iter().cloned().collect(),
            services: e.services.iter().cloned().collect(),
            root: e.root,
            pairing: e.pairing,
            direction: e.dir,
            rtt: e.rtt.latest(),
            latency: e.rtt.latency(),
            jitter: e.rtt.jitter(),
        })
    }

    /// The first peer (in edge order) whose name is `name`.
    pub fn peer_by_name(&self, name: &str) -> Option<NodeId> {
        self.edge_order
            .iter()
            .copied()
            .find(|p| self.edges[p].name == name)
    }

    /// Connections open or being opened (edges and handshakes).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Peers being redialed.
    pub fn reconnecting(&self) -> usize {
        self.redials.len()
    }

    /// Whether the node is redialing `peer` (it lost an edge it had dialed).
    pub fn is_redialing(&self, peer: NodeId) -> bool {
        self.redials.contains_key(&peer)
    }

    /// Deadlines set (one per handshake, stalled connection, edge, discovery, call, status
    /// query and redial at most).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Running totals.
    pub fn counters(&self) -> Counters {
        Counters {
            events_dropped: self.dropped_events,
            ..self.counters
        }
    }

    // ----- outputs ---------------------------------------------------------------------------

    /// The next thing for the runtime to do. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        while let Some(conn) = self.dirty.pop_front() {
            if self.has_output(conn) {
                return Some(Output::Transmit { conn });
            }
        }
        let out = self.queue.pop_front();
        if out.as_ref().is_some_and(for_application) {
            self.queued_events -= 1;
        }
        out
    }

    /// Whether [`Node::poll_output`] may have something (a runtime that did more after
    /// draining it, such as cancelling calls, drains again while this holds).
    pub fn has_pending_output(&self) -> bool {
        !self.queue.is_empty() || !self.dirty.is_empty()
    }

    /// When the node next wants [`Node::handle_timeout`]; `None` if it has no timer. Costs
    /// O(log n): the deadlines are kept in order.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Whether `conn` has anything to write (sealed or not, or a TLS handshake message).
    fn has_output(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn) {
            Some(c) => c.pending() > 0 || c.tls.as_ref().is_some_and(|t| t.wants_write()),
            None => self.closing.get(&conn).is_some_and(|c| !c.out.is_empty()),
        }
    }

    /// How many bytes wait to be written on `conn` (on a secure connection, some may not be
    /// sealed yet: [`Node::outbound`] seals them). For a runtime that waits for more before
    /// writing a little.
    pub fn outbound_len(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn) {
            Some(c) => c.pending(),
            None => self.closing.get(&conn).map_or(0, |c| c.out.len()),
        }
    }

    /// The bytes waiting to be written on `conn` (an open or a closing connection), oldest
    /// first; empty if none. Write what the socket takes, then report it with
    /// [`Node::advance`]. [`Output::Transmit`] tells when a connection has bytes again. On a
    /// secure connection this seals what waits into TLS records first: everything queued
    /// since the last write goes out in as few records as it fills.
    pub fn outbound(&mut self, conn: ConnId) -> &[u8] {
        self.seal(conn);
        match self.conns.get(&conn) {
            Some(c) => c.wire(),
            None => self.closing.get(&conn).map_or(&[], |c| &c.out[..]),
        }
    }

    /// `n` bytes of [`Node::outbound`] were written at `now` (0 when the socket took nothing:
    /// the peer's stall clock starts then). A peer that takes nothing for `stall_timeout` is
    /// dropped (a closed connection: after `linger`).
    pub fn advance(&mut self, conn: ConnId, n: usize, now: Instant) {
        let limit = self.cfg.congestion_limit();
        if let Some(c) = self.conns.get_mut(&conn) {
            let n = n.min(c.wire().len());
            c.written(n);
            if c.pending() == 0 {
                c.blocked_since = None;
            } else if n > 0 || c.blocked_since.is_none() {
                if c.blocked_since.is_none() {
                    self.timers
                        .set(TimerKey::Stall(conn), now + self.cfg.stall_timeout);
                }
                c.blocked_since = Some(now);
            }
            if c.pending() <= limit {
                self.uncongest(conn);
            }
            self.shrank_out(n);
        } else if let Some(c) = self.closing.get_mut(&conn) {
            let n = n.min(c.out.len());
            bytes::Buf::advance(&mut c.out, n);
            if c.out.is_empty() {
                self.closing.remove(&conn);
                self.timers.cancel(&TimerKey::Stall(conn));
            } else if n > 0 {
                c.since = now;
            }
            self.shrank_out(n);
        }
    }

    /// Takes everything waiting for `conn` at once, as if the socket took it all (for
    /// simulations and tests; a runtime writes from [`Node::outbound`]).
    pub fn take_outbound(&mut self, conn: ConnId, now: Instant) -> Bytes {
        self.seal(conn);
        let data = Bytes::copy_from_slice(self.outbound(conn));
        self.advance(conn, data.len(), now);
        data
    }

    /// Whether publishing on `topic` should wait: a neighbour it goes to has more than
    /// [`Config::congestion_limit`] bytes waiting, or all the node's connections together have
    /// more than half of [`Config::buffer_budget`] (until they fall under a quarter). The wait ends when that peer takes its
    /// bytes, or is dropped for not taking any for `stall_timeout`; other peers are never
    /// held by it.
    pub fn publish_would_wait(&self, topic: &str) -> bool {
        if self.cfg.on_congestion == crate::OnCongestion::Skip {
            return false;
        }
        if self.memory_waiting {
            return true;
        }
        self.congested
            .iter()
            .any(|conn| match self.conns.get(conn).map(|c| c.state) {
                Some(ConnState::Established(p)) => {
                    self.edges.get(&p).is_some_and(|e| e.wants(topic))
                }
                _ => false,
            })
    }

    /// Counts every time a congested connection stopped being congested (took its bytes, or
    /// closed): a runtime wakes publishers that wait whenever it changes.
    pub fn congestion_released(&self) -> u64 {
        self.released
    }

    fn uncongest(&mut self, conn: ConnId) {
        if self.congested.remove(&conn) {
            self.released += 1;
        }
    }

    /// Connections with more than [`Config::congestion_limit`] bytes waiting.
    pub fn congested_count(&self) -> usize {
        self.congested.len()
    }

    /// Closed connections that still have bytes to write.
    pub fn closing_count(&self) -> usize {
        self.closing.len()
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        self.push_for_application(Output::Event(ev));
    }

    pub(crate) fn push_delivery(&mut self, d: Delivery) {
        self.push_for_application(Output::Deliver(d));
    }

    /// Queues an event or a delivery, within `max_events` of them together.
    fn push_for_application(&mut self, out: Output) {
        if self.queue.len() >= self.cfg.max_events && self.queued_events > 0 {
            // Over the bound (a runtime that stopped draining): the oldest goes.
            if let Some(pos) = self.queue.iter().position(for_application) {
                self.queue.remove(pos);
                self.queued_events -= 1;
                self.dropped_events += 1;
            }
        }
        self.queue.push_back(out);
        self.queued_events += 1;
    }

    /// Encodes `msg` onto the connection's outbound buffer.
    fn send(&mut self, conn: ConnId, msg: &Message, now: Instant) {
        let max = self.cfg.max_frame_len;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(c.state, ConnState::Superseded(_)) {
            // Its goodbye was the last frame on it.
            return;
        }
        let before = c.out.len();
        if let Err(e) = encode_frame(msg, &mut c.out, max) {
            warn!(%conn, error = %e, "dropping a frame that cannot be encoded");
            return;
        }
        let (was_empty, len, grown) = (before == 0, c.pending(), c.out.len() - before);
        self.grew_out(grown);
        self.counters.frames_sent += 1;
        if was_empty {
            self.dirty.push_back(conn);
        }
        if len > self.cfg.congestion_limit() {
            self.congested.insert(conn);
        }
        if len > self.cfg.max_outbound {
            self.overflowed(conn, now);
        }
    }

    /// Encodes a publish straight onto the connection's outbound buffer (no intermediate frame).
    /// `false` if it cannot be encoded at all (too large), for any connection.
    fn send_publish(
        &mut self,
        conn: ConnId,
        p: &crate::message::PublishRef<'_>,
        now: Instant,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return true;
        };
        let before = c.out.len();
        if crate::codec::encode_publish_ref(p, &mut c.out, self.cfg.max_frame_len).is_err() {
            return false;
        }
        let grown = c.out.len() - before;
        let len = c.pending();
        if before == 0 {
            self.dirty.push_back(conn);
        }
        self.grew_out(grown);
        self.counters.frames_sent += 1;
        if len > self.cfg.congestion_limit() {
            self.congested.insert(conn);
        }
        if len > self.cfg.max_outbound {
            self.overflowed(conn, now);
        }
        true
    }

    /// A peer's outbound buffer passed `max_outbound` (it reads too slowly, or not at all):
    /// what the socket has not begun is dropped, the goodbye follows when the wire allows it,
    /// and it counts as a bad peer either way.
    fn overflowed(&mut self, conn: ConnId, now: Instant) {
        let reason = DisconnectReason::LimitExceeded("outbound buffer full".into());
        self.drop_outbound(conn, reason, now);
    }

    /// Drops a connection that holds too much to send: what the socket has not begun goes,
    /// the goodbye with `reason` follows when the wire allows it, and it counts as a bad peer.
    fn drop_outbound(&mut self, conn: ConnId, reason: DisconnectReason, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let before = c.pending();
        let goodbye = c.drop_unsent();
        let after = c.pending();
        let peer = match c.state {
            ConnState::Established(p) => Some(p),
            _ => None,
        };
        self.shrank_out(before - after);
        warn!(%conn, %reason, "dropping a peer with too much to send");
        self.counters.bad_peers += 1;
        self.push_event(Event::BadPeer {
            conn,
            peer,
            reason: reason.clone(),
        });
        self.close_conn(conn, reason, goodbye, now);
    }

    fn send_to_peer(&mut self, peer: NodeId, msg: &Message, now: Instant) {
        if let Some(conn) = self.edges.get(&peer).map(|e| e.conn) {
            self.send(conn, msg, now);
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(ConnId::OUTBOUND_BIT | self.next_conn)
    }

    fn dial(&mut self, addr: SocketAddr, purpose: Purpose, now: Instant) -> ConnId {
        let conn = self.alloc_conn();
        let nonce = self.rng.u64(..);
        self.conns.insert(
            conn,
            Conn {
                dir: Direction::Outbound,
                remote: addr,
                state: ConnState::Dialing,
                purpose: Some(purpose),
                nonce,
                deadline: now + self.cfg.handshake_timeout,
                decoder: FrameDecoder::new(self.cfg.max_hello_len.min(self.cfg.max_frame_len)),
                out: BytesMut::new(),
                blocked_since: None,
                begun: 0,
                tls: None,
                peer_moved: false,
            },
        );
        self.timers
            .set(TimerKey::Handshake(conn), now + self.cfg.handshake_timeout);
        self.queue.push_back(Output::Dial { conn, addr });
        conn
    }

    fn check_name(&self, what: &'static str, s: &str) -> Result<(), CommandError> {
        check_name(&self.cfg, what, s)
    }

    fn check_live(&self) -> Result<(), CommandError> {
        if self.shut_down {
            Err(CommandError::ShutDown)
        } else {
            Ok(())
        }
    }

    // ----- connection inputs -----------------------------------------------------------------

    /// Asks the runtime to dial `addr`; the edge (or the failure) arrives as an event carrying the
    /// returned id.
    pub fn connect(&mut self, addr: SocketAddr, now: Instant) -> Result<ConnId, CommandError> {
        self.check_live()?;
        if self.conns.len() >= self.cfg.max_edges {
            return Err(CommandError::Limit("max_edges"));
        }
        Ok(self.dial(addr, Purpose::User, now))
    }

    /// A TCP connection is open: an outbound one the core dialed (same id as in
    /// [`Output::Dial`]), or an inbound one accepted by the runtime (any id below
    /// [`ConnId::OUTBOUND_BIT`], not reused while open).
    pub fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dir: Direction,
        now: Instant,
    ) {
        match dir {
            Direction::Outbound => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    // Closed while dialing: the runtime should drop the socket.
                    self.queue.push_back(Output::Close { conn });
                    return;
                };
                if c.state != ConnState::Dialing {
                    return;
                }
                c.state = ConnState::Handshaking;
                c.remote = remote;
                c.deadline = now + self.cfg.handshake_timeout;
                self.timers.set(TimerKey::Handshake(conn), c.deadline);
                let told = self.listen_addr();
                if !self.said_unreachable
                    && !remote.ip().is_loopback()
                    && told.is_some_and(|l| l.ip().is_loopback())
                {
                    self.said_unreachable = true;
                    warn!(
                        ?told,
                        %remote,
                        "this node tells peers a loopback address: peers on other hosts cannot \
                         dial it back (bind a reachable address, or set Config::advertise)"
                    );
                }
            }
            Direction::Inbound => {
                if conn.is_outbound() || self.conns.contains_key(&conn) {
                    warn!(%conn, "runtime reused or mis-numbered an inbound connection id");
                    self.queue.push_back(Output::Close { conn });
                    return;
                }
                self.conns.insert(
                    conn,
                    Conn {
                        dir,
                        remote,
                        state: ConnState::Handshaking,
                        purpose: None,
                        nonce: 0,
                        deadline: now + self.cfg.handshake_timeout,
                        decoder: FrameDecoder::new(
                            self.cfg.max_hello_len.min(self.cfg.max_frame_len),
                        ),
                        out: BytesMut::new(),
                        blocked_since: None,
                        begun: 0,
                        tls: None,
                        peer_moved: false,
                    },
                );
                self.timers
                    .set(TimerKey::Handshake(conn), now + self.cfg.handshake_timeout);
                if self.shut_down {
                    self.close_conn(conn, DisconnectReason::Shutdown, true, now);
                    return;
                }
                // Connections that have not said Hello yet have their own slots: when they are
                // all taken, the oldest goes (a real peer says Hello at once; idle sockets
                // opened again and again cannot keep it out), and they never take an edge's.
                // One address may hold only `max_handshakes_per_ip` of them: its own oldest
                // goes first, so one host cannot take the slots of every other.
                let waiting: Vec<(ConnId, bool)> = self
                    .conns
                    .iter()
                    .filter(|(c, s)| !c.is_outbound() && s.state == ConnState::Handshaking)
                    .map(|(c, s)| (*c, s.remote.ip() == remote.ip()))
                    .collect();
                let same_ip = waiting.iter().filter(|(_, same)| *same).count();
                let oldest = if same_ip > self.cfg.max_handshakes_per_ip {
                    waiting.iter().find(|(_, same)| *same).map(|(c, _)| *c)
                } else if waiting.len() > self.cfg.max_handshakes {
                    waiting.first().map(|(c, _)| *c)
                } else {
                    None
                };
                if let Some(oldest) = oldest {
                    debug!(conn = %oldest, "handshake slots full: dropping the oldest");
                    self.close_conn(oldest, DisconnectReason::TooManyConnections, true, now);
                }
                if self.conns.len() > self.cfg.max_edges + self.cfg.max_handshakes {
                    self.close_conn(conn, DisconnectReason::TooManyConnections, true, now);
                    return;
                }
            }
        }
        // A secure node's connection runs TLS; the Hello goes inside it.
        if let Some(session) = self.new_tls(dir) {
            match session {
                Ok(t) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.tls = Some(t);
                        self.dirty.push_back(conn);
                    }
                }
                Err(e) => {
                    warn!(%conn, error = %e, "cannot start a TLS session");
                    let reason = DisconnectReason::NotAuthorized(format!("TLS: {e}"));
                    return self.close_conn(conn, reason, false, now);
                }
            }
        }
        // The dialer speaks first; the acceptor answers only once it accepts the dialer's Hello,
        // so a dialer never holds an edge the acceptor refused.
        if dir == Direction::Outbound {
            let hello = self.hello_for(conn);
            self.send(conn, &Message::Hello(hello), now);
        }
    }

    /// A dial the core asked for failed.
    pub fn handle_dial_failed(&mut self, conn: ConnId, error: &str, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.state != ConnState::Dialing {
            return;
        }
        debug!(%conn, error = %Escaped(error), "dial failed");
        self.fail_handshake(conn, ConnectError::DialFailed(error.to_string()), now);
    }

    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        match self.conns.get(&conn) {
            Some(c) if c.tls.is_some() => self.read_secure(conn, data, now),
            // A TLS handshake (a frame never opens with those bytes): a secure peer.
            Some(c)
                if c.state == ConnState::Handshaking
                    && c.decoder.buffered() == 0
                    && data.first().is_some_and(|b| crate::tls::is_tls_record(*b)) =>
            {
                self.tls_peer(conn, now)
            }
            _ => self.read_frames(conn, data, now),
        }
        self.enforce_budget(now);
    }

    fn read_frames(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        let mut rest = data;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.decoder.buffered() > 0 {
                // Finish the frame begun earlier: only its missing bytes are copied.
                let before = c.decoder.held();
                let take = c.decoder.needed().min(rest.len());
                c.decoder.extend(&rest[..take]);
                rest = &rest[take..];
                let frame = c.decoder.next_frame();
                self.held_in = (self.held_in + c.decoder.held()).saturating_sub(before);
                match frame {
                    Ok(Some(body)) => self.handle_body(conn, &body, now),
                    Ok(None) if rest.is_empty() => return,
                    // The header is complete now: the body's length is known.
                    Ok(None) => {}
                    Err(e) => {
                        return self.bad_peer(
                            conn,
                            DisconnectReason::ProtocolError(e.to_string()),
                            now,
                        );
                    }
                }
                continue;
            }
            // Whole frames are handled straight from `data`; only a partial one is kept.
            match split_frame(rest, c.decoder.max_frame_len()) {
                Ok(Some((body, used))) => {
                    rest = &rest[used..];
                    self.handle_body(conn, body, now);
                }
                Ok(None) => {
                    let before = c.decoder.held();
                    c.decoder.extend(rest);
                    self.held_in += c.decoder.held() - before;
                    return;
                }
                Err(e) => {
                    return self.bad_peer(
                        conn,
                        DisconnectReason::ProtocolError(e.to_string()),
                        now,
                    );
                }
            }
        }
    }

    /// One frame body from a connection.
    fn handle_body(&mut self, conn: ConnId, body: &[u8], now: Instant) {
        self.counters.frames_received += 1;
        if body.first() != Some(&PUBLISH_MARK) {
            return match decode_value(body).or_else(|e| {
                // A newer peer's reason or error, read as the nearest known one.
                crate::codec::tolerant_decode(body).ok_or(e)
            }) {
                Ok(msg) => self.handle_message(conn, msg, now),
                Err(e) => match (crate::codec::unknown_kind(body), self.conns.get(&conn)) {
                    // A kind of message a newer peer knows and we do not: skipped.
                    (Some(kind), Some(c)) if matches!(c.state, ConnState::Established(_)) => {
                        let ConnState::Established(peer) = c.state else {
                            return;
                        };
                        debug!(%peer, kind = %Escaped(&kind), "skipping a message of an unknown kind");
                        self.counters.unknown_skipped += 1;
                        // A peer sending them by the thousand must not flood the event queue.
                        let first = self.edges.get_mut(&peer).is_some_and(|e| {
                            e.unknown += 1;
                            e.unknown <= UNKNOWN_EVENTS
                        });
                        if first {
                            self.push_event(Event::UnknownMessage { peer, kind });
                        }
                    }
                    _ => self.bad_peer(conn, DisconnectReason::ProtocolError(e.to_string()), now),
                },
            };
        }
        // A publish, the common case: handled without copying it into a message first.
        let p = match decode_publish_ref(body) {
            Ok(p) => p,
            Err(e) => {
                return self.bad_peer(conn, DisconnectReason::ProtocolError(e.to_string()), now)
            }
        };
        let peer = match self.conns.get(&conn).map(|c| c.state) {
            Some(ConnState::Established(p)) => p,
            Some(ConnState::Superseded(p)) if self.edges.contains_key(&p) => p,
            _ => {
                let owned = Message::Publish(crate::message::Publish {
                    origin: p.origin,
                    seq: p.seq,
                    topic: p.topic.to_string(),
                    ttl: p.ttl,
                    hops: p.hops,
                    payload: Bytes::copy_from_slice(p.payload),
                });
                return self.handle_message(conn, owned, now);
            }
        };
        if let Some(e) = self.edges.get_mut(&peer) {
            e.last_rx = now;
        }
        self.on_publish(conn, peer, p, now);
    }

    /// The connection ended without our asking (EOF, reset, write error).
    pub fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.closing.remove(&conn) {
            self.timers.cancel(&TimerKey::Stall(conn));
            self.shrank_out(c.out.len());
            return;
        }
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.drop_conn(conn, DisconnectReason::ConnectionLost, false, now);
    }

    fn handle_message(&mut self, conn: ConnId, msg: Message, now: Instant) {
        let state = match self.conns.get(&conn) {
            Some(c) => c.state,
            None => return,
        };
        let peer = match (state, msg) {
            (ConnState::Superseded(_), Message::Goodbye(_)) => {
                return self.end_conn(conn, DisconnectReason::Duplicate, true, false, now);
            }
            (ConnState::Superseded(p), msg)
                if self.edges.contains_key(&p) && !matches!(msg, Message::Hello(_)) =>
            {
                (p, msg)
            }
            (ConnState::Superseded(_), _) => return,
            // The peer moved this edge to a connection whose Hello has not reached us yet
            // (it wins the tie-break there): the edge stays here until it does.
            (ConnState::Established(_), Message::Goodbye(DisconnectReason::Duplicate))
                if self.awaiting_hello() =>
            {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer_moved = true;
                }
                return;
            }
            (ConnState::Established(_), Message::Hello(_)) => {
                return self.bad_peer(
                    conn,
                    DisconnectReason::ProtocolError("second Hello".into()),
                    now,
                );
            }
            (ConnState::Established(p), msg) => (p, msg),
            (_, Message::Hello(h)) => return self.on_hello(conn, h, now),
            (_, Message::Goodbye(reason)) => {
                return self.drop_conn(conn, reason, true, now);
            }
            (_, _) => {
                return self.bad_peer(
                    conn,
                    DisconnectReason::ProtocolError("message before Hello".into()),
                    now,
                );
            }
        };
        let (peer, msg) = peer;
        // Answers go on the edge's connection (this one may be a superseded duplicate).
        let reply = match self.edges.get_mut(&peer) {
            Some(e) => {
                e.last_rx = now;
                e.conn
            }
            None => conn,
        };
        match msg {
            Message::Hello(_) => unreachable!("handled above"),
            Message::Goodbye(reason) => self.drop_conn(conn, reason, true, now),
            Message::Topics(t) => self.on_topics(conn, peer, t, now),
            Message::Paired(t) => self.on_paired(conn, peer, t, now),
            Message::Services(s) => self.on_services(conn, peer, s, now),
            Message::Ping { id, padding } => self.on_ping(reply, id, padding, now),
            Message::Pong { id, .. } => self.on_pong(peer, id, now),
            Message::Discovery(d) => self.on_discovery(peer, d, now),
            Message::Publish(p) => self.on_publish(conn, peer, p.as_ref(), now),
            Message::Request {
                id,
                service,
                path,
                kind,
                args,
                timeout_ms,
            } => self.on_request(conn, peer, id, service, path, kind, args, timeout_ms, now),
            Message::Response { id, result } => self.on_response(peer, id, result, now),
            Message::Cancel { id } => self.on_cancel(peer, id),
            Message::FindService(search) => self.on_find_service(peer, search, now),
        }
    }

    /// Closes a connection for bad input: goodbye with the reason, then an event.
    fn bad_peer(&mut self, conn: ConnId, reason: DisconnectReason, now: Instant) {
        let peer = match self.conns.get(&conn).map(|c| c.state) {
            Some(ConnState::Established(p)) => Some(p),
            Some(_) => None,
            None => return,
        };
        warn!(%conn, %reason, "closing a connection for bad input");
        self.counters.bad_peers += 1;
        self.push_event(Event::BadPeer {
            conn,
            peer,
            reason: reason.clone(),
        });
        self.close_conn(conn, reason, true, now);
    }

    /// Locally closes `conn`: optional goodbye, then `Close`. No redial follows.
    fn close_conn(&mut self, conn: ConnId, reason: DisconnectReason, goodbye: bool, now: Instant) {
        if goodbye {
            self.send(conn, &Message::Goodbye(reason.clone()), now);
        }
        self.end_conn(conn, reason, false, false, now);
    }

    /// The connection ended from the outside (EOF, reset, the peer's goodbye): forget it, and
    /// redial if the reason calls for it.
    fn drop_conn(&mut self, conn: ConnId, reason: DisconnectReason, by_peer: bool, now: Instant) {
        let redial = !by_peer && reason.should_reconnect();
        self.end_conn(conn, reason, by_peer, redial, now);
    }

    /// Flushes what is buffered for `conn`, asks the runtime to close it, and forgets it.
    fn end_conn(
        &mut self,
        conn: ConnId,
        reason: DisconnectReason,
        by_peer: bool,
        redial: bool,
        now: Instant,
    ) {
        self.seal(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(t) = c.tls.as_mut() {
            // The peer learns the session ended on purpose (not a truncation).
            t.close();
        }
        let closed_tls = c.tls.is_some();
        if closed_tls {
            self.seal(conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.pending() > 0 {
            // Written after the close, for at most `linger` without progress.
            let out = c.wire_mut().split();
            self.closing.insert(conn, Closing { out, since: now });
            self.timers
                .set(TimerKey::Stall(conn), now + self.cfg.linger);
        }
        self.queue.push_back(Output::Close { conn });
        self.forget_conn(conn, reason, by_peer, redial, now);
    }

    /// Removes the connection and, if it carried an edge, the edge (with its event).
    fn forget_conn(
        &mut self,
        conn: ConnId,
        reason: DisconnectReason,
        by_peer: bool,
        redial: bool,
        now: Instant,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.release(&c);
        self.uncongest(conn);
        self.timers.cancel(&TimerKey::Handshake(conn));
        if !self.closing.contains_key(&conn) {
            self.timers.cancel(&TimerKey::Stall(conn));
        }
        match c.state {
            ConnState::Established(peer) => self.remove_edge(peer, reason, by_peer, redial, now),
            ConnState::Superseded(peer) => debug!(%peer, %conn, "superseded connection closed"),
            _ => {
                let error = match reason {
                    DisconnectReason::ConnectionLost => ConnectError::Closed,
                    DisconnectReason::HandshakeTimeout => ConnectError::HandshakeTimeout,
                    DisconnectReason::Duplicate => ConnectError::Duplicate,
                    DisconnectReason::SelfConnection => ConnectError::SelfConnection,
                    DisconnectReason::Shutdown if !by_peer => ConnectError::ShutDown,
                    other => ConnectError::Refused(other),
                };
                self.handshake_failed(conn, c.purpose, c.remote, error, now);
            }
        }
    }

    /// A connection that never became an edge: report to whoever asked for it.
    fn fail_handshake(&mut self, conn: ConnId, error: ConnectError, now: Instant) {
        if let Some(c) = self.conns.remove(&conn) {
            self.release(&c);
            self.uncongest(conn);
            self.timers.cancel(&TimerKey::Handshake(conn));
            self.timers.cancel(&TimerKey::Stall(conn));
            self.queue.push_back(Output::Close { conn });
            self.handshake_failed(conn, c.purpose, c.remote, error, now);
        }
    }

    fn handshake_failed(
        &mut self,
        conn: ConnId,
        purpose: Option<Purpose>,
        addr: SocketAddr,
        error: ConnectError,
        now: Instant,
    ) {
        match purpose {
            Some(Purpose::User) => self.push_event(Event::ConnectFailed { conn, addr, error }),
            Some(Purpose::Reconnect(peer)) => self.redial_failed(peer, conn, now),
            Some(Purpose::Pair(intent, _)) => {
                debug!(topic = %Escaped(&intent.topic), %error, "pairing attempt ended");
            }
            Some(Purpose::Offer(origin)) => {
                debug!(%origin, %error, "could not reach a service seeker");
            }
            None => debug!(%conn, %error, "inbound connection ended before its Hello"),
        }
    }

    fn remove_edge(
        &mut self,
        peer: NodeId,
        reason: DisconnectReason,
        by_peer: bool,
        redial: bool,
        now: Instant,
    ) {
        let Some(e) = self.edges.remove(&peer) else {
            return;
        };
        self.timers.cancel(&TimerKey::Edge(peer, e.conn));
        self.edge_order.retain(|p| *p != peer);
        self.fail_calls_to(peer, now);
        // Their callers are gone: the work on their requests may stop.
        let gone: Vec<u64> = self
            .inbound
            .iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, id)| *id)
            .collect();
        for id in gone {
            self.inbound.remove(&(peer, id));
            self.push_delivery(Delivery::Cancelled { peer, id });
        }
        // The side that dialed redials, at the address it dialed: the acceptor may not reach
        // the dialer at all (a client behind a NAT, or one that has exited).
        let reconnecting =
            redial && !self.shut_down && self.cfg.reconnections > 0 && e.dir == Direction::Outbound;
        if reconnecting {
            self.start_redial(peer, e.addr, now);
        }
        debug!(peer = %peer, name = %Escaped(&e.name), %reason, by_peer, reconnecting, "edge lost");
        self.push_event(Event::PeerLost {
            peer,
            name: e.name,
            reason,
            by_peer,
            reconnecting,
        });
    }

    /// Closes the edge to `peer` with a goodbye; it is not redialed.
    pub fn close(&mut self, peer: NodeId, now: Instant) -> Result<(), CommandError> {
        let _ = now;
        let conn = self
            .edges
            .get(&peer)
            .ok_or(CommandError::NotConnected)?
            .conn;
        self.close_conn(conn, DisconnectReason::Closed, true, now);
        Ok(())
    }

    /// Says goodbye to every peer, closes every connection and stops every timer. Afterwards
    /// commands fail with [`CommandError::ShutDown`] and inbound connections are refused.
    pub fn shutdown(&mut self, now: Instant) {
        let _ = now;
        self.shut_down = true;
        self.redials.clear();
        // Only the closing connections keep a timer (their `linger`).
        let closing = &self.closing;
        self.timers
            .retain(|k| matches!(k, TimerKey::Stall(c) if closing.contains_key(c)));
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let dialing = self.conns.get(&conn).map(|c| c.state) == Some(ConnState::Dialing);
            if dialing {
                self.fail_handshake(conn, ConnectError::ShutDown, now);
            } else {
                self.close_conn(conn, DisconnectReason::Shutdown, true, now);
            }
        }
        self.fail_all_calls();
        for (token, (addr, ..)) in std::mem::take(&mut self.status_queries) {
            self.push_delivery(Delivery::Status {
                token,
                addr,
                status: None,
            });
        }
        for s in self.topics.values_mut() {
            if matches!(s, TopicState::Discovering { .. }) {
                *s = TopicState::Unpaired;
            }
        }
    }

    /// Runs every timer due at `now` (only those: the deadlines are kept in order).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(key) = self.timers.pop_due(now) {
            due.push(key);
        }
        // Taken first: a handler that sets its key again runs at the next call, not in a loop.
        for key in due {
            match key {
                TimerKey::Handshake(conn) => self.handshake_timeout(conn, now),
                TimerKey::Stall(conn) => self.stall_timeout(conn, now),
                TimerKey::Edge(peer, conn) => self.edge_timeout(peer, conn, now),
                TimerKey::Discovery(topic) => self.discovery_timeout(&topic, now),
                TimerKey::Call(id) => self.call_timeout(id, now),
                TimerKey::ServiceSearch(service) => self.search_timeout(&service, now),
                TimerKey::Status(token) => self.status_timeout(token, now),
                TimerKey::Redial(peer) => self.redial_timeout(peer, now),
            }
        }
    }

    fn handshake_timeout(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if matches!(c.state, ConnState::Established(_)) {
            return;
        }
        if c.deadline > now {
            let at = c.deadline;
            return self.timers.set(TimerKey::Handshake(conn), at);
        }
        match c.state {
            ConnState::Dialing => self.fail_handshake(conn, ConnectError::HandshakeTimeout, now),
            ConnState::Superseded(_) => {
                self.end_conn(conn, DisconnectReason::Duplicate, false, false, now)
            }
            _ => self.close_conn(conn, DisconnectReason::HandshakeTimeout, true, now),
        }
    }

    /// A peer took none of its bytes for `stall_timeout` (a closed one: for `linger`).
    fn stall_timeout(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.closing.get(&conn) {
            let at = c.since + self.cfg.linger;
            if at > now {
                return self.timers.set(TimerKey::Stall(conn), at);
            }
            debug!(%conn, "dropping what a closed connection did not take");
            let left = c.out.len();
            self.closing.remove(&conn);
            self.shrank_out(left);
            // The runtime may wait for the socket: tell it again that the connection is done.
            self.queue.push_back(Output::Close { conn });
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(since) = c.blocked_since.filter(|_| c.pending() > 0) else {
            return;
        };
        let at = since + self.cfg.stall_timeout;
        if at > now {
            return self.timers.set(TimerKey::Stall(conn), at);
        }
        // What waits would never be written, and a goodbye behind it neither.
        let left = c.clear_pending();
        let peer = match c.state {
            ConnState::Established(p) => Some(p),
            _ => None,
        };
        self.shrank_out(left);
        let reason = DisconnectReason::LimitExceeded("peer is not reading".into());
        warn!(%conn, "dropping a peer that takes none of its bytes");
        self.counters.bad_peers += 1;
        self.push_event(Event::BadPeer {
            conn,
            peer,
            reason: reason.clone(),
        });
        self.end_conn(conn, reason, false, false, now);
    }
}

/// Whether an output is for the application (an event or a delivery), not the runtime.
fn for_application(o: &Output) -> bool {
    matches!(o, Output::Event(_) | Output::Deliver(_))
}

#[cfg(test)]
mod tests;

/// A topic, service or name is non-empty and within `max_name_len`.
pub(crate) fn check_name(cfg: &Config, what: &'static str, s: &str) -> Result<(), CommandError> {
    if s.is_empty() {
        return Err(CommandError::Empty(what));
    }
    if s.len() > cfg.max_name_len {
        return Err(CommandError::TooLong {
            what,
            len: s.len(),
            max: cfg.max_name_len,
        });
    }
    Ok(())
}
