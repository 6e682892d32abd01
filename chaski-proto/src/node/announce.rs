//! What each side tells the other once the edge exists: its topics, services and paired
//! topics (whole sets, on change), kept per edge; and cluster ids, adopted when a neighbour
//! knows a smaller one.

use std::time::Instant;

use super::timers::TimerKey;
use super::{Event, Node, TopicState};
use crate::id::{ConnId, NodeId};
use crate::message::Message;

impl Node {
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
