//! The node state machine.
//!
//! Inputs are the `handle_*` methods and the user commands; outputs come from
//! [`Node::poll_output`], and [`Node::poll_timeout`] tells when to call [`Node::handle_timeout`].
//! Collections whose order is observable are `BTreeMap`s or ordered lists, so a run is
//! reproducible from its inputs.

mod announce;
mod budget;
mod calls;
mod conn;
mod counters;
mod discovery;
mod dispatch;
mod duplicates;
mod files;
mod handshake;
mod liveness;
mod open;
mod outbound;
mod pubsub;
mod rpc;
mod secure;
mod teardown;
mod timers;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

pub use budget::MemoryUse;
pub use calls::RemoteCall;
use conn::{Closing, Conn, ConnState, Edge};
pub use counters::{Counters, Gauges, Metrics, GOODBYE_REASONS, RTT_BUCKETS_US};
use timers::{TimerKey, Timers};
pub use types::{Delivery, Direction, EdgeInfo, Event, Output, Received};

use crate::config::{Config, ConfigError, OnPair};
use crate::dedup::{SeenPool, SeqWindows};
use crate::error::CommandError;
use crate::id::{ConnId, NodeId};
use crate::message::PairIntent;

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
    /// Asking a file's sender for the chunks a transfer misses.
    Fetch(NodeId),
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
    /// Those of `topics` that are patterns, and the same matched together.
    patterns: Vec<String>,
    pattern_set: crate::patterns::PatternSet,
    services: BTreeSet<String>,
    next_discovery: u64,
    /// Other seekers heard while a topic was unpaired: topic → (origin, address, discovery).
    seekers: BTreeMap<String, VecDeque<(NodeId, SocketAddr, u64)>>,
    seen_discoveries: SeenPool<(NodeId, u64)>,
    next_seq: u64,
    seen_publishes: SeqWindows<NodeId>,
    /// Where small received payloads are copied, many to a block (see
    /// [`Node::copy_payload`]).
    payload_block: bytes::BytesMut,
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

    /// Transfers this node sends, by number, and the last number given.
    outgoing: files::OutgoingFiles,
    next_file: u64,
    /// Transfers this node receives.
    incoming: files::IncomingFiles,
    /// Transfers lately refused, failed or finished here (their offers come again while they
    /// go: each is taken, or refused, once).
    done_files: VecDeque<crate::files::FileKey>,
    /// Patterns the application takes files on, with their limits.
    file_patterns: Vec<(String, crate::files::FileLimits)>,
    /// Connections whose reading waits: file frames from them fill a peer's bulk lane.
    read_paused: BTreeSet<ConnId>,

    dirty: VecDeque<ConnId>,
    /// Scratch for what a TLS session decrypts (kept to spare an allocation per read).
    plain: Vec<u8>,
    queue: VecDeque<Output>,
    dropped_events: u64,
    counters: Counters,
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
            pattern_set: Default::default(),
            services: BTreeSet::new(),
            next_discovery: 0,
            seekers: BTreeMap::new(),
            next_seq: 0,
            payload_block: bytes::BytesMut::new(),
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
            outgoing: BTreeMap::new(),
            next_file: 0,
            incoming: BTreeMap::new(),
            done_files: VecDeque::new(),
            file_patterns: Vec::new(),
            read_paused: BTreeSet::new(),
            dirty: VecDeque::new(),
            plain: Vec::new(),
            queue: VecDeque::new(),
            dropped_events: 0,
            counters: Counters::default(),
        })
    }

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
        self.topics.contains_key(topic) || self.pattern_set.matches(topic)
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
        let c = self.conns.get(&e.conn);
        let count = |f: fn(&Conn) -> u64| c.map_or(0, f);
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
            configured: e.configured,
            frames_out: count(|c| c.frames_out),
            frames_in: count(|c| c.frames_in),
            bytes_out: count(|c| c.bytes_out),
            bytes_in: count(|c| c.bytes_in),
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

    /// The next thing for the runtime to do. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        while let Some(conn) = self.dirty.pop_front() {
            if self.has_output(conn) {
                return Some(Output::Transmit { conn });
            }
        }
        self.queue.pop_front()
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

    pub(crate) fn push_event(&mut self, ev: Event) {
        self.push_for_application(Output::Event(ev));
    }

    pub(crate) fn push_delivery(&mut self, d: Delivery) {
        self.push_for_application(Output::Deliver(d));
    }

    /// Queues an event or a delivery, within `max_events` of them together.
    fn push_for_application(&mut self, out: Output) {
        if self.queue.len() >= self.cfg.max_events {
            // Over the bound (a runtime that stopped draining): the oldest goes.
            if let Some(pos) = self.queue.iter().position(for_application) {
                self.queue.remove(pos);
                self.dropped_events += 1;
            }
        }
        self.queue.push_back(out);
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
                TimerKey::FileRepair(key) => self.file_repair_timeout(key, now),
                TimerKey::FileKeep(id) => self.file_keep_timeout(id, now),
            }
        }
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
