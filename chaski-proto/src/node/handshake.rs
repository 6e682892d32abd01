//! The Hello exchange: validation, duplicate and self checks, edge creation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{ConnState, Direction, Edge, Event, Node, Purpose, TimerKey, TopicState};
use crate::config::OnPair;
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
                self.topics.contains_key(t) && t != ROOT_TOPIC_NAME || self.pattern_set.matches(t)
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
            self.file_sender_connected(peer, now);
        }
    }

    pub(super) fn establish(
        &mut self,
        conn: ConnId,
        dir: Direction,
        remote: std::net::SocketAddr,
        h: Hello,
        pairing: bool,
        now: Instant,
    ) {
        let mut configured = false;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Established(h.id);
            c.decoder.set_max_frame_len(self.cfg.max_frame_len);
            configured = matches!(c.purpose, Some(Purpose::User | Purpose::Reconnect(_)));
        }
        self.counters.handshakes += 1;
        let shares = self.shares_interest(&h.topics);
        let patterns =
            crate::patterns::PatternSet::new(h.topics.iter().filter(|t| topic::is_pattern(t)));
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
                configured,
            },
        );
        self.edge_order.push(h.id);
        self.timers.cancel(&TimerKey::Handshake(conn));
        self.arm_edge(h.id);
    }

    pub(super) fn keepalive_delay(&mut self) -> Duration {
        let j = self.cfg.keepalive_jitter.clamp(0.0, 10.0);
        self.cfg
            .keepalive_interval
            .mul_f64(1.0 + j * self.rng.f64())
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

#[cfg(test)]
mod tests {
    use super::reachable;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_wildcard_or_loopback_listen_address_is_made_reachable() {
        let cases = [
            // A wildcard: the address the peer is reached at, with its port.
            ("0.0.0.0:9", "10.0.0.7:4000", "10.0.0.7:9"),
            ("[::]:9", "[fd00::7]:4000", "[fd00::7]:9"),
            // Loopback told by a peer on another host: that host's address.
            ("127.0.0.1:9", "10.0.0.7:4000", "10.0.0.7:9"),
            // Loopback on this host, or a routable address: kept.
            ("127.0.0.1:9", "127.0.0.2:4000", "127.0.0.1:9"),
            ("10.0.0.5:9", "10.0.0.7:4000", "10.0.0.5:9"),
        ];
        for (listen, seen_at, expected) in cases {
            assert_eq!(
                reachable(a(listen), a(seen_at)),
                a(expected),
                "{listen} seen at {seen_at}"
            );
        }
    }
}
