//! Subscriptions and publishing: sent only to subscribed neighbours and roots, relayed with a
//! TTL, de-duplicated by (origin, sequence) in bounded per-origin windows (our own messages are
//! recognised by their origin).

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Delivery, Node, Received, TopicState, ROOT_TOPIC};
use crate::config::Config;
use crate::error::CommandError;
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, PublishRef};

/// Received payloads up to this size share blocks (see `Node::copy_payload`).
const SMALL_PAYLOAD: usize = 256;
/// The size of such a block.
const PAYLOAD_BLOCK: usize = 4096;

impl Node {
    /// Subscribes to `topic`, or to every topic a pattern matches (`sensors/*/temperature`,
    /// `sensors/**`: see [`crate::topic`]), and tells every neighbour at once.
    pub fn subscribe(&mut self, topic: &str, now: std::time::Instant) -> Result<(), CommandError> {
        self.check_live()?;
        self.check_name("topic", topic)?;
        crate::topic::check_pattern(topic)?;
        if topic == ROOT_TOPIC {
            return Err(CommandError::Reserved(ROOT_TOPIC));
        }
        if self.topics.contains_key(topic) {
            return Ok(());
        }
        if self.topics.len() >= self.cfg.max_peer_topics {
            return Err(CommandError::Limit("max_peer_topics"));
        }
        let state = if self.cfg.paired {
            TopicState::Paired(self.id)
        } else {
            TopicState::Unpaired
        };
        self.topics.insert(topic.to_string(), state);
        if crate::topic::is_pattern(topic) {
            self.patterns.push(topic.to_string());
            self.pattern_set = crate::patterns::PatternSet::new(&self.patterns);
        }
        for e in self.edges.values_mut() {
            if e.topics.iter().any(|t| crate::topic::overlap(t, topic)) {
                e.pairing = true;
            }
        }
        self.announce_topics(now);
        if self.cfg.paired {
            self.announce_paired(now);
        }
        Ok(())
    }

    /// Unsubscribes from `topic` and tells every neighbour at once.
    pub fn unsubscribe(
        &mut self,
        topic: &str,
        now: std::time::Instant,
    ) -> Result<(), CommandError> {
        let _ = now;
        self.check_live()?;
        if topic == "@" && self.cfg.root {
            return Ok(());
        }
        if let Some(state) = self.topics.remove(topic) {
            if self.patterns.iter().any(|p| p == topic) {
                self.patterns.retain(|p| p != topic);
                self.pattern_set = crate::patterns::PatternSet::new(&self.patterns);
            }
            self.announce_topics(now);
            if matches!(state, TopicState::Paired(_)) {
                self.announce_paired(now);
            }
        }
        Ok(())
    }

    /// What [`Node::publish`] checks of its arguments, without a node: a valid topic name and
    /// a payload that fits in a frame. A runtime may check this before queueing a publish.
    ///
    /// ```
    /// use chaski_proto::{Config, Node};
    /// assert!(Node::check_publish(&Config::default(), "news", 10).is_ok());
    /// assert!(Node::check_publish(&Config::default(), "", 10).is_err());
    /// ```
    pub fn check_publish(cfg: &Config, topic: &str, len: usize) -> Result<(), CommandError> {
        super::check_name(cfg, "topic", topic)?;
        crate::topic::check_topic(topic)?;
        if topic == ROOT_TOPIC {
            return Err(CommandError::Reserved(ROOT_TOPIC));
        }
        if len + topic.len() + 64 > cfg.max_frame_len {
            return Err(CommandError::PayloadTooLarge {
                len,
                max: cfg.max_frame_len.saturating_sub(topic.len() + 64),
            });
        }
        Ok(())
    }

    /// Publishes `payload` on `topic` to every neighbour that subscribes to it, and to roots.
    /// Returns the message's sequence number. The node itself does not receive it.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Bytes,
        now: std::time::Instant,
    ) -> Result<u64, CommandError> {
        self.check_live()?;
        Node::check_publish(&self.cfg, topic, payload.len())?;
        self.next_seq += 1;
        let seq = self.next_seq;
        let p = PublishRef {
            origin: self.id,
            seq,
            topic,
            ttl: self.cfg.ttl,
            hops: 1,
            payload: &payload,
        };
        self.relay(&p, None, now);
        self.enforce_budget(now);
        Ok(seq)
    }

    /// Sends `p` to every subscribed or root neighbour except `from` and the origin.
    fn relay(&mut self, p: &PublishRef<'_>, from: Option<NodeId>, now: Instant) {
        let mut i = 0;
        while let Some(&peer) = self.edge_order.get(i) {
            i += 1;
            if Some(peer) == from || peer == p.origin {
                continue;
            }
            let Some(e) = self.edges.get(&peer) else {
                continue;
            };
            if !e.wants(p.topic) {
                continue;
            }
            let conn = e.conn;
            if self.cfg.on_congestion == crate::OnCongestion::Skip && self.congested.contains(&conn)
            {
                self.counters.congestion_skipped += 1;
                continue;
            }
            let before = self.edge_order.len();
            if !self.send_publish(conn, p, now) {
                return;
            }
            if from.is_some() {
                self.counters.relayed += 1;
            }
            // Sending may close that peer (outbound limit): its place is taken by the next one.
            if self.edge_order.len() < before {
                i -= 1;
            }
        }
    }

    /// Whether a peer's publish names a topic one may publish on: what [`Node::publish`]
    /// refuses locally, a peer may not send either (its relays would carry it on).
    pub(super) fn check_published_topic(&self, topic: &str) -> Result<(), DisconnectReason> {
        if topic.is_empty() {
            return Err(DisconnectReason::ProtocolError(
                "publish on the empty topic".into(),
            ));
        }
        if topic.len() > self.cfg.max_name_len {
            return Err(DisconnectReason::LimitExceeded(format!(
                "topic name of {} bytes",
                topic.len()
            )));
        }
        if crate::topic::check_topic(topic).is_err() {
            return Err(DisconnectReason::ProtocolError(format!(
                "publish on a pattern: {topic}"
            )));
        }
        Ok(())
    }

    /// A received payload, copied out of the read buffer (a slice of it would pin the whole
    /// buffer, many frames, for as long as the application holds the message). Small ones
    /// share blocks of [`PAYLOAD_BLOCK`] bytes: one allocation per block, not per message;
    /// a message the application keeps holds its block.
    fn copy_payload(&mut self, payload: &[u8]) -> Bytes {
        if payload.len() > SMALL_PAYLOAD {
            return Bytes::copy_from_slice(payload);
        }
        let block = &mut self.payload_block;
        // Empty between messages (each is split off whole): its capacity is the room left.
        if block.capacity() < payload.len() {
            *block = BytesMut::with_capacity(PAYLOAD_BLOCK);
        }
        block.extend_from_slice(payload);
        block.split().freeze()
    }

    pub(super) fn on_publish(
        &mut self,
        conn: ConnId,
        from: NodeId,
        mut p: PublishRef<'_>,
        now: Instant,
    ) {
        if let Err(reason) = self.check_published_topic(p.topic) {
            return self.bad_peer(conn, reason, now);
        }
        // Our own messages coming back are duplicates without a lookup.
        if p.origin == self.id || !self.seen_publishes.insert(p.origin, p.seq) {
            self.counters.duplicates += 1;
            return;
        }
        if p.topic == ROOT_TOPIC {
            // A root's own topic is not for peers: neither delivered nor relayed.
            self.counters.reserved_dropped += 1;
            return;
        }
        let subscribed = self.is_subscribed(p.topic);
        if !subscribed && !self.cfg.root {
            return;
        }
        if p.ttl > 1 {
            p.ttl -= 1;
            p.hops = p.hops.saturating_add(1);
            self.relay(&p, Some(from), now);
            p.hops = p.hops.saturating_sub(1);
        }
        if subscribed {
            self.counters.delivered += 1;
            let payload = self.copy_payload(p.payload);
            self.push_delivery(Delivery::Message(Received {
                topic: p.topic.to_string(),
                payload,
                origin: Some(p.origin),
                seq: p.seq,
                hops: p.hops,
                from: Some(from),
            }));
        }
    }
}
