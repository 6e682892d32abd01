//! Two connections between the same two nodes (both dialed at once, or a reconnect): the one
//! both sides keep, and the loser, told `Duplicate` at once and read to its end so that nothing
//! sent on it goes unanswered (PROTOCOL §4.3).

use std::time::Instant;

use tracing::debug;

use super::conn::ConnState;
use super::timers::TimerKey;
use super::{Direction, Event, Node, Purpose};
use crate::error::ConnectError;
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, Hello, Message};
use crate::text::Escaped;

impl Node {
    /// Two connections to the same node: both sides keep the one with the smaller
    /// (dialer id, dialer nonce), so a simultaneous cross-connect leaves exactly one edge. The
    /// other is [superseded](Node::supersede) at once.
    pub(super) fn resolve_duplicate(
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
            Some(Purpose::Offer(_) | Purpose::Fetch(_)) | None => {}
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
}
