//! What waits to be written: the outbound buffer of each connection (frames encoded onto it,
//! taken by the runtime as the socket allows), congestion (publishers wait for a peer over its
//! share), a peer over `max_outbound` (dropped with a goodbye after the frame it began), and a
//! peer that takes nothing for `stall_timeout`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::{debug, warn};

use super::conn::ConnState;
use super::timers::TimerKey;
use super::{Event, Node, Output};
use crate::codec::encode_frame;
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, Message};

/// File frames move from a connection's bulk lane into its outbound buffer while this many
/// bytes or fewer wait there (what a publish may wait behind a transfer).
pub(super) const BULK_FEED: usize = 256 * 1024;

impl Node {
    /// Whether `conn` has anything to write (sealed or not, or a TLS handshake message).
    pub(super) fn has_output(&self, conn: ConnId) -> bool {
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
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.bulk_bytes > 0 {
                c.feed_bulk(BULK_FEED);
                if c.bulk_bytes <= self.cfg.congestion_limit() / 2 {
                    if c.bulk_full {
                        // Senders of files waiting for this lane may go on.
                        c.bulk_full = false;
                        self.released += 1;
                    }
                    self.resume_reading();
                }
            }
        }
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
            c.bytes_out += n as u64;
            self.counters.bytes_sent += n as u64;
            if c.pending() == 0 {
                c.blocked_since = None;
            } else if n > 0 || c.blocked_since.is_none() {
                if c.blocked_since.is_none() {
                    self.timers
                        .set(TimerKey::Stall(conn), now + self.cfg.stall_timeout);
                }
                c.blocked_since = Some(now);
            }
            if c.queued() <= limit {
                self.uncongest(conn);
            }
            self.shrank_out(n);
        } else if let Some(c) = self.closing.get_mut(&conn) {
            let n = n.min(c.out.len());
            bytes::Buf::advance(&mut c.out, n);
            self.counters.bytes_sent += n as u64;
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
        let mut data = BytesMut::new();
        loop {
            let next = self.outbound(conn);
            if next.is_empty() {
                break;
            }
            let n = next.len();
            data.extend_from_slice(next);
            self.advance(conn, n, now);
        }
        data.freeze()
    }

    /// Whether publishing on `topic` should wait: a neighbour it goes to has more than
    /// [`Config::congestion_limit`](crate::Config::congestion_limit) bytes waiting, or all the node's connections together have
    /// more than half of [`Config::buffer_budget`](crate::Config::buffer_budget) (until they fall under a quarter). The wait ends when that peer takes its
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

    pub(super) fn uncongest(&mut self, conn: ConnId) {
        if self.congested.remove(&conn) {
            self.released += 1;
        }
    }

    /// Connections with more than [`Config::congestion_limit`](crate::Config::congestion_limit) bytes waiting.
    pub fn congested_count(&self) -> usize {
        self.congested.len()
    }

    /// Closed connections that still have bytes to write.
    pub fn closing_count(&self) -> usize {
        self.closing.len()
    }

    /// Encodes `msg` onto the connection's outbound buffer.
    pub(super) fn send(&mut self, conn: ConnId, msg: &Message, now: Instant) {
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
        let (was_empty, len, total) = (before == 0, c.queued(), c.pending());
        let grown = c.out.len() - before;
        c.frames_out += 1;
        self.grew_out(grown);
        self.counters.sent(msg);
        if was_empty {
            self.dirty.push_back(conn);
        }
        if len > self.cfg.congestion_limit() {
            self.congested.insert(conn);
        }
        if total > self.cfg.max_outbound {
            self.overflowed(conn, now);
        }
    }

    /// Encodes a file frame for `conn`, behind everything else that waits for it (its bulk
    /// lane; see [`Node::send_frame_bulk`]).
    pub(super) fn send_bulk(&mut self, conn: ConnId, msg: &Message, now: Instant) {
        if let Some(frame) = self.bulk_frame(msg) {
            self.send_frame_bulk(conn, frame, msg.kind_index(), now);
        }
    }

    /// A file frame encoded once, for every connection it goes to (`None`: it cannot be).
    pub(super) fn bulk_frame(&self, msg: &Message) -> Option<Bytes> {
        let mut frame = BytesMut::new();
        match encode_frame(msg, &mut frame, self.cfg.max_frame_len) {
            Ok(()) => Some(frame.freeze()),
            Err(e) => {
                warn!(error = %e, "dropping a file frame that cannot be encoded");
                None
            }
        }
    }

    /// Queues an encoded file frame for `conn` behind everything else that waits for it: onto
    /// the outbound buffer while that holds little and nothing is in the lane, else into the
    /// lane (shared, not copied), joining the buffer as it empties.
    pub(super) fn send_frame_bulk(
        &mut self,
        conn: ConnId,
        frame: Bytes,
        kind: usize,
        now: Instant,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(c.state, ConnState::Superseded(_)) {
            return;
        }
        let before = c.pending();
        if c.bulk.is_empty() && c.queued() < BULK_FEED {
            c.out.extend_from_slice(&frame);
        } else {
            c.bulk_bytes += frame.len();
            c.bulk.push_back(frame);
        }
        if c.bulk_bytes > self.cfg.congestion_limit() {
            c.bulk_full = true;
        }
        let after = c.pending();
        c.frames_out += 1;
        self.grew_out(after - before);
        self.counters.frames_sent += 1;
        self.counters.sent[kind] += 1;
        if before == 0 {
            self.dirty.push_back(conn);
        }
        if after > self.cfg.max_outbound {
            self.overflowed(conn, now);
        }
    }

    /// Whether reading `conn` may go on (it waits while file frames it brought fill a peer's
    /// bulk lane past the congestion limit; [`Output::Resume`] says when it may again).
    pub fn wants_read(&self, conn: ConnId) -> bool {
        !self.read_paused.contains(&conn)
    }

    /// Lets every paused connection read again once no bulk lane holds more than half the
    /// congestion limit.
    pub(super) fn resume_reading(&mut self) {
        if self.read_paused.is_empty() {
            return;
        }
        let half = self.cfg.congestion_limit() / 2;
        if self.conns.values().any(|c| c.bulk_bytes > half) {
            return;
        }
        for conn in std::mem::take(&mut self.read_paused) {
            self.queue.push_back(Output::Resume { conn });
        }
    }

    /// Encodes a publish straight onto the connection's outbound buffer (no intermediate frame).
    /// `false` if it cannot be encoded at all (too large), for any connection.
    pub(super) fn send_publish(
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
        let (len, total) = (c.queued(), c.pending());
        c.frames_out += 1;
        if before == 0 {
            self.dirty.push_back(conn);
        }
        self.grew_out(grown);
        self.counters.frames_sent += 1;
        self.counters.sent[super::counters::PUBLISH] += 1;
        if len > self.cfg.congestion_limit() {
            self.congested.insert(conn);
        }
        if total > self.cfg.max_outbound {
            self.overflowed(conn, now);
        }
        true
    }

    /// A peer's outbound buffer passed `max_outbound` (it reads too slowly, or not at all):
    /// what the socket has not begun is dropped, the goodbye follows when the wire allows it,
    /// and it counts as a bad peer either way.
    pub(super) fn overflowed(&mut self, conn: ConnId, now: Instant) {
        let reason = DisconnectReason::LimitExceeded("outbound buffer full".into());
        self.drop_outbound(conn, reason, now);
    }

    /// Drops a connection that holds too much to send: what the socket has not begun goes,
    /// the goodbye with `reason` follows when the wire allows it, and it counts as a bad peer.
    pub(super) fn drop_outbound(&mut self, conn: ConnId, reason: DisconnectReason, now: Instant) {
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

    pub(super) fn send_to_peer(&mut self, peer: NodeId, msg: &Message, now: Instant) {
        if let Some(conn) = self.edges.get(&peer).map(|e| e.conn) {
            self.send(conn, msg, now);
        }
    }

    /// A peer took none of its bytes for `stall_timeout` (a closed one: for `linger`).
    pub(super) fn stall_timeout(&mut self, conn: ConnId, now: Instant) {
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
