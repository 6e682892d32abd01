//! Discovery and pairing: the Python semantics with its defects fixed (de-dup by id, TTL at
//! every hop, every edge asked, saturated members forward, anchors on timeout).

use std::time::Instant;

use tracing::debug;

use super::{Node, Purpose, TimerKey, TopicState};
use crate::config::OnPair;
use crate::error::CommandError;
use crate::id::NodeId;
use crate::message::{DisconnectReason, Discovery, Message, PairIntent};
use crate::text::Escaped;

impl Node {
    /// Marks `topic` as paired without discovery (the Python `paired=True`). Roots never pair.
    pub fn set_paired(&mut self, topic: &str, now: Instant) -> Result<(), CommandError> {
        self.check_name("topic", topic)?;
        if !self.topics.contains_key(topic) {
            return Err(CommandError::Empty("subscription to that topic"));
        }
        let id = self.id;
        self.mark_paired(topic, None, id, now);
        Ok(())
    }

    /// Starts discovery for every subscribed topic not yet paired, with the configured `on_pair`.
    /// A topic for which a neighbour is already paired is paired at once; the others are sought
    /// through every edge, and become anchored here if nothing answers within
    /// `discovery_timeout`.
    pub fn discover(&mut self, now: Instant) -> Result<(), CommandError> {
        let on_pair = self.cfg.on_pair;
        self.discover_with(on_pair, now)
    }

    /// [`Node::discover`] with an explicit `on_pair` policy.
    pub fn discover_with(&mut self, on_pair: OnPair, now: Instant) -> Result<(), CommandError> {
        self.check_live()?;
        if self.cfg.root {
            return Ok(());
        }
        let pending: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, s)| **s == TopicState::Unpaired)
            .map(|(t, _)| t.clone())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if self.edges.is_empty() {
            return Err(CommandError::NoEdges);
        }
        let Some(origin_addr) = self.listen_addr() else {
            return Err(CommandError::Limit("discovery needs a listening address"));
        };
        for topic in pending {
            // Neighbours paired for the topic (for a pattern: for a topic it matches).
            let sharing: Vec<(NodeId, NodeId)> = self
                .edge_order
                .iter()
                .filter_map(|p| neighbour_cluster(&self.edges[p], &topic).map(|c| (*p, c)))
                .collect();
            if let Some(&(first, _)) = sharing.first() {
                let cluster = sharing.iter().map(|(_, c)| *c).min().unwrap_or(self.id);
                for (p, _) in &sharing {
                    if let Some(e) = self.edges.get_mut(p) {
                        e.pairing = true;
                    }
                }
                self.mark_paired(&topic, Some(first), cluster, now);
                continue;
            }
            self.next_discovery += 1;
            let id = self.next_discovery;
            self.seen_discoveries.insert((self.id, id));
            let deadline = now + self.cfg.discovery_timeout;
            self.topics.insert(
                topic.clone(),
                TopicState::Discovering {
                    id,
                    deadline,
                    on_pair,
                },
            );
            self.timers
                .set(TimerKey::Discovery(topic.clone()), deadline);
            debug!(topic = %Escaped(&topic), id, "discovery started");
            // Seekers heard earlier (all with larger ids) may still be seeking: answer them.
            self.answer_seekers(&topic, now);
            for peer in self.edge_order.clone() {
                let msg = Message::Discovery(Discovery {
                    id,
                    origin: self.id,
                    origin_name: self.name.clone(),
                    origin_addr,
                    topic: topic.clone(),
                    ttl: self.cfg.ttl,
                    on_pair,
                    entry: Some(peer),
                });
                self.send_to_peer(peer, &msg, now);
            }
        }
        Ok(())
    }

    pub(super) fn on_discovery(&mut self, from: NodeId, mut d: Discovery, now: Instant) {
        if d.origin == self.id || !self.seen_discoveries.insert((d.origin, d.id)) {
            return;
        }
        if d.topic.is_empty()
            || d.topic.len() > self.cfg.max_name_len
            || crate::topic::check_pattern(&d.topic).is_err()
        {
            return;
        }
        if self.shut_down {
            return;
        }
        // An origin that listens on a wildcard address is reached at the address its
        // connection to us comes from: the first hop makes that explicit for the others.
        if d.origin == from {
            if let Some(e) = self.edges.get(&from) {
                d.origin_addr = super::handshake::reachable(d.origin_addr, e.addr);
            }
        }
        // Two nodes seeking the same topic would each anchor alone: the smaller id answers the
        // larger like a member (only one side dials, so they never race), and a node that is
        // not seeking yet remembers the seeker for when it starts.
        let state = if self.cfg.root {
            None
        } else {
            self.topics.get(&d.topic)
        };
        let seeking = matches!(state, Some(TopicState::Discovering { .. }));
        // Remembered, to answer later: a larger seeker heard before this node seeks (answered
        // when its own discovery starts), and a smaller seeker heard while it seeks (that one
        // answers only if it hears our discovery, which may have gone out before it was
        // connected; answered once this node is paired, as an anchor or a member).
        if (state == Some(&TopicState::Unpaired) && self.id < d.origin)
            || (seeking && self.id > d.origin)
        {
            let heard = self.seekers.entry(d.topic.clone()).or_default();
            if heard.len() >= 8 {
                heard.pop_front();
            }
            heard.push_back((d.origin, d.origin_addr, d.id));
        }
        // Having answered, a node still passes the discovery on, but only out of its own
        // cluster: other clusters of the topic get to answer too, and the origin merges them.
        let mut answered = false;
        let cluster = self.paired_cluster_for(&d.topic);
        if cluster.is_some() || (seeking && self.id < d.origin) {
            if self.edges.contains_key(&d.origin) || self.pairing_to(d.origin) {
                return;
            }
            let members = self
                .edges
                .values()
                .filter(|e| e.topics.contains(&d.topic))
                .count();
            if members < self.cfg.max_connections
                && self.conns.len() < self.cfg.max_edges
                && self.may_dial(d.origin_addr, now)
            {
                debug!(topic = %Escaped(&d.topic), origin = %d.origin, "pairing with a discovery origin");
                let intent = PairIntent {
                    cluster,
                    discovery: d.id,
                    topic: d.topic.clone(),
                    entry: d.entry,
                };
                self.dial(d.origin_addr, Purpose::Pair(intent, d.origin), now);
                answered = true;
            } else {
                debug!(topic = %Escaped(&d.topic), "saturated member forwards the discovery");
            }
        }
        if d.ttl <= 1 {
            return;
        }
        d.ttl -= 1;
        let (origin, topic) = (d.origin, d.topic.clone());
        let msg = Message::Discovery(d);
        for peer in self.edge_order.clone() {
            if peer == from || peer == origin {
                continue;
            }
            if answered
                && self
                    .edges
                    .get(&peer)
                    .is_some_and(|e| e.paired.contains_key(&topic))
            {
                continue;
            }
            self.send_to_peer(peer, &msg, now);
        }
    }

    /// Answers the seekers of `topic` remembered earlier, now that this node seeks or is
    /// paired itself: each gets a pairing dial, unless it is connected or already dialed.
    pub(super) fn answer_seekers(&mut self, topic: &str, now: Instant) {
        for (origin, addr, disc) in self.seekers.remove(topic).unwrap_or_default() {
            if !self.edges.contains_key(&origin)
                && !self.pairing_to(origin)
                && self.may_dial(addr, now)
            {
                let intent = PairIntent {
                    discovery: disc,
                    topic: topic.to_string(),
                    entry: None,
                    cluster: self.cluster_of(topic),
                };
                self.dial(addr, Purpose::Pair(intent, origin), now);
            }
        }
    }

    /// The cluster this node belongs to for what a seeker wants: the topic's own, or for a
    /// pattern, that of a topic it matches (the smallest id), so a wildcard subscriber pairs
    /// with the nodes whose topics its pattern matches. `None` if it is paired for neither.
    fn paired_cluster_for(&self, wanted: &str) -> Option<NodeId> {
        if let Some(c) = self.cluster_of(wanted) {
            return Some(c);
        }
        if self.cfg.root || !crate::topic::is_pattern(wanted) {
            return None;
        }
        self.topics
            .iter()
            .filter_map(|(t, s)| match s {
                TopicState::Paired(c)
                    if !crate::topic::is_pattern(t) && crate::topic::matches(wanted, t) =>
                {
                    Some(*c)
                }
                _ => None,
            })
            .min()
    }

    /// Whether a pairing dial to that origin is already under way.
    fn pairing_to(&self, origin: NodeId) -> bool {
        self.conns.values().any(|c| {
            matches!(&c.purpose, Some(Purpose::Pair(_, o)) if *o == origin)
                && !matches!(c.state, super::ConnState::Established(_))
        })
    }

    /// The origin accepted a pairing link from `peer` for `intent.topic`.
    pub(super) fn accept_pairing(
        &mut self,
        peer: NodeId,
        intent: PairIntent,
        on_pair: OnPair,
        cluster: NodeId,
        now: Instant,
    ) {
        debug!(topic = %Escaped(&intent.topic), %peer, "paired");
        let cluster = self
            .cluster_of(&intent.topic)
            .map_or(cluster, |c| c.min(cluster));
        self.mark_paired(&intent.topic, Some(peer), cluster, now);
        if on_pair != OnPair::Disconnect {
            return;
        }
        let Some(entry) = intent.entry.filter(|e| *e != peer) else {
            return;
        };
        // An edge that shares a topic is always a pairing link (set when it is established,
        // when either side subscribes, and on topic updates), so this keeps those too.
        let drop = self.edges.get(&entry).map(|e| !e.pairing);
        if drop == Some(true) {
            let conn = self.edges[&entry].conn;
            debug!(%entry, "dropping the bootstrap link after pairing");
            self.close_conn(conn, DisconnectReason::Unneeded, true, now);
        }
    }

    pub(super) fn discovery_timeout(&mut self, topic: &str, now: Instant) {
        let Some(TopicState::Discovering { deadline, .. }) = self.topics.get(topic) else {
            return;
        };
        if *deadline > now {
            let at = *deadline;
            return self.timers.set(TimerKey::Discovery(topic.to_string()), at);
        }
        debug!(topic = %Escaped(topic), "no answer to discovery: this node anchors the topic");
        let id = self.id;
        self.mark_paired(topic, None, id, now);
    }
}

/// The cluster a neighbour is paired in for `topic` (for a pattern, the smallest of those of
/// the topics it matches), if any.
fn neighbour_cluster(e: &super::Edge, topic: &str) -> Option<NodeId> {
    if let Some(c) = e.paired.get(topic) {
        return Some(*c);
    }
    if !crate::topic::is_pattern(topic) {
        return None;
    }
    e.paired
        .iter()
        .filter(|(t, _)| crate::topic::matches(topic, t))
        .map(|(_, c)| *c)
        .min()
}
