//! Ending connections and edges: a goodbye (ours or the peer's), bad input, a lost socket, a
//! handshake that never finished, a shutdown; what is left to write after a close; the events
//! that say so, and the redial that follows where one is due.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, warn};

use super::conn::{Closing, ConnState};
use super::timers::TimerKey;
use super::{Delivery, Direction, Event, Node, Output, Purpose, TopicState};
use crate::error::{CommandError, ConnectError};
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, Message};
use crate::text::Escaped;

impl Node {
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

    /// Closes a connection for bad input: goodbye with the reason, then an event.
    pub(super) fn bad_peer(&mut self, conn: ConnId, reason: DisconnectReason, now: Instant) {
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
    pub(super) fn close_conn(
        &mut self,
        conn: ConnId,
        reason: DisconnectReason,
        goodbye: bool,
        now: Instant,
    ) {
        if goodbye {
            if matches!(
                reason,
                DisconnectReason::Shutdown | DisconnectReason::Closed
            ) {
                // A parting on purpose: file frames still waiting leave before the goodbye.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.feed_bulk(usize::MAX);
                }
            }
            self.send(conn, &Message::Goodbye(reason.clone()), now);
        }
        self.end_conn(conn, reason, false, false, now);
    }

    /// The connection ended from the outside (EOF, reset, the peer's goodbye): forget it, and
    /// redial if the reason calls for it.
    pub(super) fn drop_conn(
        &mut self,
        conn: ConnId,
        reason: DisconnectReason,
        by_peer: bool,
        now: Instant,
    ) {
        let redial = !by_peer && reason.should_reconnect();
        self.end_conn(conn, reason, by_peer, redial, now);
    }

    /// Flushes what is buffered for `conn`, asks the runtime to close it, and forgets it.
    pub(super) fn end_conn(
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
    pub(super) fn forget_conn(
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
        self.let_go(conn, &c);
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

    /// Lets go of what a connection taken out of the table held: its memory, its place among
    /// the congested, its bulk lane's waiting senders, its paused reading, its handshake timer.
    fn let_go(&mut self, conn: ConnId, c: &super::conn::Conn) {
        self.release(c);
        self.uncongest(conn);
        if c.bulk_full {
            self.released += 1;
        }
        self.read_paused.remove(&conn);
        self.resume_reading();
        self.timers.cancel(&TimerKey::Handshake(conn));
    }

    /// A connection that never became an edge: report to whoever asked for it.
    pub(super) fn fail_handshake(&mut self, conn: ConnId, error: ConnectError, now: Instant) {
        if let Some(c) = self.conns.remove(&conn) {
            self.let_go(conn, &c);
            self.timers.cancel(&TimerKey::Stall(conn));
            self.queue.push_back(Output::Close { conn });
            self.handshake_failed(conn, c.purpose, c.remote, error, now);
        }
    }

    pub(super) fn handshake_failed(
        &mut self,
        conn: ConnId,
        purpose: Option<Purpose>,
        addr: SocketAddr,
        error: ConnectError,
        now: Instant,
    ) {
        self.counters.handshakes_failed += 1;
        match purpose {
            Some(Purpose::User) => self.push_event(Event::ConnectFailed { conn, addr, error }),
            Some(Purpose::Reconnect(peer)) => self.redial_failed(peer, conn, now),
            Some(Purpose::Pair(intent, _)) => {
                debug!(topic = %Escaped(&intent.topic), %error, "pairing attempt ended");
            }
            Some(Purpose::Offer(origin)) => {
                debug!(%origin, %error, "could not reach a service seeker");
            }
            Some(Purpose::Fetch(origin)) => {
                debug!(%origin, %error, "could not reach a file's sender");
            }
            None => debug!(%conn, %error, "inbound connection ended before its Hello"),
        }
    }

    pub(super) fn remove_edge(
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

    pub(super) fn handshake_timeout(&mut self, conn: ConnId, now: Instant) {
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
}
