//! The Hello exchange: validation, duplicate and self checks, edge creation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{ConnState, Direction, Edge, Event, Node, Purpose, TimerKey, TopicState};
use crate::config::OnPair;
use crate::error::ConnectError;
use crate::id::{ConnId, NodeId};
use crate::latency::RttEstimator;
use crate::message::{
    negotiate, DisconnectReason, Hello, Message, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::text::Escaped;
use crate::topic;

/// The root's own topic, never a shared interest.
const ROOT_TOPIC_NAME: &str = super::ROOT_TOPIC;

impl Node {
    pub(super) fn hello_for(&self, conn: ConnId) -> Hello {
        let pairing = match self.conns.get(&conn).and_then(|c| c.purpose.as_ref()) {
            Some(Purpose::Pair(intent, _)) => Some(intent.clone()),
            _ => None,
        };
        Hello {
            version: MIN_PROTOCOL_VERSION,
            max_version: (PROTOCOL_VERSION > MIN_PROTOCOL_VERSION).then_some(PROTOCOL_VERSION),
            id: self.id,
            name: self.name.clone(),
            listen: self.listen_addr(),
            topics: self.topics.keys().cloned().collect(),
            paired: self.paired_topics(),
            services: self.services.iter().cloned().collect(),
            root: self.cfg.root,
            pairing,
            // The dialer's number; the acceptor says 0 (PROTOCOL §3).
            nonce: self
                .conns
                .get(&conn)
                .filter(|c| c.dir == Direction::Outbound)
                .map_or(0, |c| c.nonce),
        }
    }

    /// Checks a peer's announced names against the configured bounds.
    pub(super) fn validate_names(
        &self,
        what: &str,
        names: &[String],
        max: usize,
    ) -> Result<(), DisconnectReason> {
        if names.len() > max {
            return Err(DisconnectReason::LimitExceeded(format!(
                "{} {what} announced, limit {max}",
                names.len()
            )));
        }
        if let Some(n) = names
            .iter()
            .find(|n| n.is_empty() || n.len() > self.cfg.max_name_len)
        {
            return Err(DisconnectReason::LimitExceeded(format!(
                "{what} name of {} bytes",
                n.len()
            )));
        }
        Ok(())
    }

    /// A peer's patterns: at most `max_peer_patterns`, each at most
    /// [`MAX_PATTERN_LEVELS`](crate::topic::MAX_PATTERN_LEVELS) levels.
    pub(super) fn validate_patterns(&self, names: &[String]) -> Result<(), DisconnectReason> {
        let partial = |n: &&String| {
            n.split('/')
                .any(|l| l != topic::ONE && l != topic::ANY && l.contains('*'))
        };
        if let Some(bad) = names.iter().find(partial) {
            return Err(DisconnectReason::ProtocolError(format!(
                "wildcards are whole levels: {bad}"
            )));
        }
        let patterns: Vec<&String> = names.iter().filter(|n| topic::is_pattern(n)).collect();
        if patterns.len() > self.cfg.max_peer_patterns {
            return Err(DisconnectReason::LimitExceeded(format!(
                "{} patterns announced, limit {}",
                patterns.len(),
                self.cfg.max_peer_patterns
            )));
        }
        if let Some(p) = patterns
            .iter()
            .find(|p| p.split('/').count() > topic::MAX_PATTERN_LEVELS)
        {
            return Err(DisconnectReason::LimitExceeded(format!(
                "pattern of {} levels",
                p.split('/').count()
            )));
        }
        Ok(())
    }

    /// Whether a peer with `theirs` topics wants something we subscribe to, or the reverse
    /// (plain topics by lookup; patterns matched, theirs at most `max_peer_patterns`).
    pub(super) fn shares_interest(&self, theirs: &[String]) -> bool {
        let ours = || self.topics.keys().filter(|t| *t != ROOT_TOPIC_NAME);
        theirs.iter().any(|t| {
            if topic::is_pattern(t) {
                ours().any(|o| topic::overlap(t, o))
            } else {
                self.topics.contains_key(t) && t != ROOT_TOPIC_NAME
                    || self.patterns.iter().any(|p| topic::matches(p, t))
            }
        })
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, h: Hello, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.dir == Direction::Inbound {
            c.nonce = h.nonce;
        }
        let (dir, remote) = (c.dir, c.remote);
        let purpose = c.purpose.clone();
        if let Err(reason) = self.proven(conn, h.id) {
            return self.bad_peer(conn, reason, now);
        }
        if h.id == NodeId(0) {
            let reason = DisconnectReason::ProtocolError("node id 0".into());
            return self.bad_peer(conn, reason, now);
        }
        if h.max_version.is_some_and(|m| m < h.version) {
            let reason = DisconnectReason::ProtocolError(format!(
                "max_version {} below version {}",
                h.max_version.unwrap_or_default(),
                h.version
            ));
            return self.bad_peer(conn, reason, now);
        }
        let theirs = (h.version, h.max_version.unwrap_or(h.version));
        if negotiate((MIN_PROTOCOL_VERSION, PROTOCOL_VERSION), theirs).is_none() {
            let reason = DisconnectReason::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: theirs.1,
            };
            return self.bad_peer(conn, reason, now);
        }
        let checks = self
            .validate_names("topics", &h.topics, self.cfg.max_peer_topics)
            .and_then(|_| self.validate_patterns(&h.topics))
            .and_then(|_| {
                let paired: Vec<String> = h.paired.iter().map(|(t, _)| t.clone()).collect();
                self.validate_names("topics", &paired, self.cfg.max_peer_topics)
            })
            .and_then(|_| self.validate_names("services", &h.services, self.cfg.max_peer_services))
            .and_then(|_| {
                if h.name.len() > self.cfg.max_name_len {
                    Err(DisconnectReason::LimitExceeded("node name too long".into()))
                } else {
                    Ok(())
                }
            });
        if let Err(reason) = checks {
            return self.bad_peer(conn, reason, now);
        }
        if h.id == self.id {
            return self.close_conn(conn, DisconnectReason::SelfConnection, true, now);
        }
        if let Some(existing) = self.edges.get(&h.id).map(|e| (e.conn, e.dir)) {
            return self.resolve_duplicate(conn, dir, existing, h, now);
        }
        if self.edges.len() >= self.cfg.max_edges {
            return self.close_conn(conn, DisconnectReason::TooManyConnections, true, now);
        }
        // A pairing request: accept the first per topic, refuse the rest.
        let mut pairing = matches!(purpose, Some(Purpose::Pair(..)));
        let mut paired_topic = None;
        if let Some(intent) = &h.pairing {
            if dir != Direction::Inbound {
                return self.bad_peer(
                    conn,
                    DisconnectReason::ProtocolError("pairing intent on an outbound link".into()),
                    now,
                );
            }
            // The first link per topic is accepted, later ones only from another cluster (two
            // clusters that formed at once merge instead of staying apart).
            let theirs = intent.cluster.unwrap_or(self.id.min(h.id));
            match self.topics.get(&intent.topic) {
                // (A root never discovers, so it is never in this state.)
                Some(TopicState::Discovering { on_pair, .. }) => {
                    paired_topic = Some((intent.clone(), *on_pair, theirs));
                    pairing = true;
                }
                Some(TopicState::Paired(ours))
                    if !self.cfg.root && intent.cluster.is_some_and(|c| c != *ours) =>
                {
                    paired_topic = Some((intent.clone(), OnPair::None, theirs));
                    pairing = true;
                }
                _ => return self.close_conn(conn, DisconnectReason::AlreadyPaired, true, now),
            }
        }
        if dir == Direction::Inbound {
            let hello = self.hello_for(conn);
            self.send(conn, &Message::Hello(hello), now);
        }
        let mut reconnected = self.redials.remove(&h.id).is_some();
        self.timers.cancel(&TimerKey::Redial(h.id));
        if let Some(Purpose::Reconnect(old)) = &purpose {
            // The node at that address may have restarted with a new id: the redial is done.
            self.redials.remove(old);
            self.timers.cancel(&TimerKey::Redial(*old));
            reconnected = true;
        }
        self.establish(conn, dir, remote, h, pairing, now);
        let peer = self.edge_order.last().copied();
        if let (Some((intent, on_pair, cluster)), Some(peer)) = (paired_topic, peer) {
            self.accept_pairing(peer, intent, on_pair, cluster, now);
        }
        // We dialed to pair while seeking the same topic ourselves: that pairs us too.
        if let (Some(Purpose::Pair(intent, _)), Some(peer)) = (&purpose, peer) {
            if matches!(
                self.topics.get(&intent.topic),
                Some(TopicState::Discovering { .. })
            ) {
                let cluster = self
                    .edges
                    .get(&peer)
                    .and_then(|e| e.paired.get(&intent.topic).copied())
                    .unwrap_or(self.id.min(peer));
                self.mark_paired(&intent.topic, Some(peer), cluster, now);
            }
        }
        if let Some(peer) = peer {
            if let Some(info) = self.edge_info(peer) {
                self.push_event(Event::PeerConnected {
                    conn,
                    info: Box::new(info),
                    reconnected,
                });
            }
            self.servers_changed(peer, now);
        }
    }

    fn establish(
        &mut self,
        conn: ConnId,
        dir: Direction,
        remote: std::net::SocketAddr,
        h: Hello,
        pairing: bool,
        now: Instant,
    ) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Established(h.id);
            c.decoder.set_max_frame_len(self.cfg.max_frame_len);
        }
        let shares = self.shares_interest(&h.topics);
        let patterns = h
            .topics
            .iter()
            .filter(|t| topic::is_pattern(t))
            .cloned()
            .collect();
        let topics: BTreeSet<String> = h.topics.into_iter().collect();
        let keepalive_delay = self.keepalive_delay();
        debug!(peer = %h.id, name = %Escaped(&h.name), %conn, "edge established");
        self.edges.insert(
            h.id,
            Edge {
                conn,
                name: h.name,
                addr: remote,
                listen: h.listen.map(|l| reachable(l, remote)),
                topics,
                patterns,
                paired: h.paired.into_iter().collect(),
                services: h.services.into_iter().collect(),
                root: h.root,
                pairing: pairing || shares,
                dir,
                rtt: RttEstimator::default(),
                pings: Default::default(),
                last_rx: now,
                last_ping: now,
                keepalive_delay,
                inbound_requests: 0,
                unknown: 0,
            },
        );
        self.edge_order.push(h.id);
        self.timers.cancel(&TimerKey::Handshake(conn));
        self.arm_edge(h.id);
    }

    /// Two connections to the same node: both sides keep the one with the smaller
    /// (dialer id, dialer nonce), so a simultaneous cross-connect leaves exactly one edge. The
    /// other is [superseded](Node::supersede) at once.
    fn resolve_duplicate(
        &mut self,
        new: ConnId,
        new_dir: Direction,
        (old, old_dir): (ConnId, Direction),
        h: Hello,
        now: Instant,
    ) {
        let key = |conn: ConnId, dir: Direction| {
            let dialer = if dir == Direction::Outbound {
                self.id
            } else {
                h.id
            };
            (dialer, self.conns.get(&conn).map_or(0, |c| c.nonce))
        };
        let peer = h.id;
        // The peer is connected, by one connection or the other: nothing is left to redial.
        if self.redials.remove(&peer).is_some() {
            self.timers.cancel(&TimerKey::Redial(peer));
        }
        if key(new, new_dir) >= key(old, old_dir) {
            // The newcomer loses. In a cross-dial the peer may already hold it as its edge
            // (it took our Hello on it first), so what it sent there still counts.
            return self.supersede(new, peer, now);
        }
        debug!(%peer, %old, %new, "moving an edge to the connection that wins the tie-break");
        if new_dir == Direction::Inbound {
            let hello = self.hello_for(new);
            self.send(new, &Message::Hello(hello), now);
        }
        let Some(mut edge) = self.edges.remove(&peer) else {
            return;
        };
        edge.conn = new;
        edge.dir = new_dir;
        edge.last_rx = now;
        if let Some(c) = self.conns.get_mut(&new) {
            edge.addr = c.remote;
            c.state = ConnState::Established(peer);
            c.decoder.set_max_frame_len(self.cfg.max_frame_len);
        }
        let purpose = self.conns.get_mut(&new).and_then(|c| c.purpose.take());
        self.edges.insert(peer, edge);
        self.timers.cancel(&TimerKey::Edge(peer, old));
        self.timers.cancel(&TimerKey::Handshake(new));
        self.arm_edge(peer);
        self.supersede(old, peer, now);
        if let Some(Purpose::Reconnect(p)) = purpose {
            // A redial that reached the peer under another id (it restarted) is done too.
            if self.redials.remove(&p).is_some() {
                self.timers.cancel(&TimerKey::Redial(p));
            }
        }
        if let Some(Purpose::User) = purpose {
            // The user's connect gives no new edge: the peer was connected already.
            let addr = self.conns.get(&new).map(|c| c.remote);
            if let Some(addr) = addr {
                self.push_event(Event::ConnectFailed {
                    conn: new,
                    addr,
                    error: ConnectError::Duplicate,
                });
            }
        }
    }

    /// `conn` lost a duplicate tie-break against the edge to `peer`: it gets
    /// `Goodbye(Duplicate)` at once, and nothing after it. The node keeps reading it: what the
    /// peer sent before it learned counts as the edge's (answers go on the edge's connection),
    /// so nothing sent on it goes unanswered. It ends when the peer says goodbye on it or
    /// closes it (a peer that already said goodbye on it: at once), or after
    /// `handshake_timeout`. Whoever dialed it for a purpose learns it gave no new edge.
    pub(super) fn supersede(&mut self, conn: ConnId, peer: NodeId, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (moved, remote) = (c.peer_moved, c.remote);
        self.send(conn, &Message::Goodbye(DisconnectReason::Duplicate), now);
        let deadline = now + self.cfg.handshake_timeout;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = ConnState::Superseded(peer);
        c.deadline = deadline;
        c.decoder.set_max_frame_len(self.cfg.max_frame_len);
        let purpose = c.purpose.take();
        self.timers.cancel(&TimerKey::Edge(peer, conn));
        self.timers.set(TimerKey::Handshake(conn), deadline);
        match purpose {
            Some(Purpose::User) => self.push_event(Event::ConnectFailed {
                conn,
                addr: remote,
                error: ConnectError::Duplicate,
            }),
            // The peer is connected: nothing is left to redial.
            Some(Purpose::Reconnect(p)) => {
                if self.redials.get(&p).is_some_and(|r| r.conn == Some(conn)) {
                    self.redials.remove(&p);
                    self.timers.cancel(&TimerKey::Redial(p));
                }
            }
            Some(Purpose::Pair(intent, _)) => {
                debug!(topic = %Escaped(&intent.topic), %peer, "pairing dial met an existing edge");
            }
            Some(Purpose::Offer(_)) | None => {}
        }
        if moved {
            // The peer left this connection already: both goodbyes have crossed.
            self.end_conn(conn, DisconnectReason::Duplicate, true, false, now);
        }
    }

    /// Whether a connection we dialed waits for the peer's Hello (a peer that moves an edge
    /// to it may say goodbye on the old connection before that Hello reaches us).
    pub(super) fn awaiting_hello(&self) -> bool {
        self.conns
            .values()
            .any(|c| c.dir == Direction::Outbound && c.state == ConnState::Handshaking)
    }

    pub(super) fn keepalive_delay(&mut self) -> Duration {
        let j = self.cfg.keepalive_jitter.clamp(0.0, 10.0);
        self.cfg
            .keepalive_interval
            .mul_f64(1.0 + j * self.rng.f64())
    }

    pub(super) fn on_topics(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        topics: Vec<String>,
        now: Instant,
    ) {
        if let Err(reason) = self
            .validate_names("topics", &topics, self.cfg.max_peer_topics)
            .and_then(|_| self.validate_patterns(&topics))
        {
            return self.bad_peer(conn, reason, now);
        }
        let shares = self.shares_interest(&topics);
        if let Some(e) = self.edges.get_mut(&peer) {
            e.set_topics(topics);
            if shares {
                e.pairing = true;
            }
        }
        self.push_event(Event::PeerUpdated { peer });
    }

    pub(super) fn on_services(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        services: Vec<String>,
        now: Instant,
    ) {
        if let Err(reason) = self.validate_names("services", &services, self.cfg.max_peer_services)
        {
            return self.bad_peer(conn, reason, now);
        }
        if let Some(e) = self.edges.get_mut(&peer) {
            e.services = services.into_iter().collect();
        }
        self.push_event(Event::PeerUpdated { peer });
        self.servers_changed(peer, now);
    }

    /// Tells every neighbour our current topic set.
    pub(super) fn announce_topics(&mut self, now: Instant) {
        let msg = Message::Topics(self.topics.keys().cloned().collect());
        for peer in self.edge_order.clone() {
            self.send_to_peer(peer, &msg, now);
        }
    }

    pub(super) fn on_paired(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        topics: Vec<(String, NodeId)>,
        now: Instant,
    ) {
        let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
        if let Err(reason) = self.validate_names("topics", &names, self.cfg.max_peer_topics) {
            return self.bad_peer(conn, reason, now);
        }
        if let Some(e) = self.edges.get_mut(&peer) {
            e.paired = topics.iter().cloned().collect();
        }
        // A neighbour in our cluster learned a smaller cluster id: adopt it (this spreads a
        // merge through the whole cluster). A neighbour paired for a topic we seek pairs us.
        for (topic, cluster) in topics {
            match self.topics.get(&topic) {
                Some(TopicState::Paired(ours)) if cluster < *ours && !self.cfg.root => {
                    self.mark_paired(&topic, Some(peer), cluster, now);
                }
                Some(TopicState::Discovering { .. }) => {
                    if let Some(e) = self.edges.get_mut(&peer) {
                        e.pairing = true;
                    }
                    self.mark_paired(&topic, Some(peer), cluster, now);
                }
                _ => {}
            }
        }
    }

    /// Topics this node is paired for, with their cluster ids.
    pub(super) fn paired_topics(&self) -> Vec<(String, NodeId)> {
        if self.cfg.root {
            return Vec::new();
        }
        self.topics
            .iter()
            .filter_map(|(t, s)| match s {
                TopicState::Paired(c) => Some((t.clone(), *c)),
                _ => None,
            })
            .collect()
    }

    /// Records that this node belongs to `topic`'s cluster `cluster` (or, already paired, that
    /// its cluster merged into one with a smaller id), and tells the application and neighbours.
    pub(super) fn mark_paired(
        &mut self,
        topic: &str,
        with: Option<NodeId>,
        cluster: NodeId,
        now: Instant,
    ) {
        match self.topics.get(topic) {
            Some(TopicState::Paired(c)) if *c <= cluster => return,
            Some(TopicState::Paired(_)) => {
                self.topics
                    .insert(topic.to_string(), TopicState::Paired(cluster));
            }
            _ => {
                self.timers.cancel(&TimerKey::Discovery(topic.to_string()));
                self.topics
                    .insert(topic.to_string(), TopicState::Paired(cluster));
                self.push_event(Event::Paired {
                    topic: topic.to_string(),
                    with,
                });
                // Seekers that may never hear a discovery of ours get an answer now.
                self.announce_paired(now);
                return self.answer_seekers(topic, now);
            }
        }
        self.announce_paired(now);
    }

    /// Tells every neighbour which topics we are paired for.
    pub(super) fn announce_paired(&mut self, now: Instant) {
        let msg = Message::Paired(self.paired_topics());
        for peer in self.edge_order.clone() {
            self.send_to_peer(peer, &msg, now);
        }
    }

    /// Tells every neighbour our current service list.
    pub(super) fn announce_services(&mut self, now: Instant) {
        let msg = Message::Services(self.services.iter().cloned().collect());
        for peer in self.edge_order.clone() {
            self.send_to_peer(peer, &msg, now);
        }
    }
}

/// The address to reach a peer that listens on `listen`, seen connecting from `remote`: a
/// wildcard IP (`0.0.0.0`, `::`) means "every address of mine", and the one the connection
/// came from is one of them; a loopback IP from a peer on another host is its own loopback,
/// not ours, so the address it came from is the better guess.
pub(super) fn reachable(
    listen: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let ip = listen.ip();
    if ip.is_unspecified() || (ip.is_loopback() && !remote.ip().is_loopback()) {
        std::net::SocketAddr::new(remote.ip(), listen.port())
    } else {
        listen
    }
}
