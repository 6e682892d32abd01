//! Reading: the bytes of a connection cut into frames (whole ones straight from the input, a
//! partial one kept), each frame decoded (the compact publish without a copy) and handed to
//! the handler of its kind, by the connection's state.

use std::time::Instant;

use bytes::Bytes;
use tracing::debug;

use super::conn::ConnState;
use super::rpc::IncomingRequest;
use super::{Event, Node, UNKNOWN_EVENTS};
use crate::codec::{decode_publish_ref, decode_value, split_frame, PUBLISH_MARK};
use crate::id::ConnId;
use crate::message::{DisconnectReason, Message};
use crate::text::Escaped;

impl Node {
    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        self.counters.bytes_received += data.len() as u64;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.bytes_in += data.len() as u64;
        }
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

    pub(super) fn read_frames(&mut self, conn: ConnId, data: &[u8], now: Instant) {
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
    pub(super) fn handle_body(&mut self, conn: ConnId, body: &[u8], now: Instant) {
        self.counters.frames_received += 1;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.frames_in += 1;
        }
        if body.first() != Some(&PUBLISH_MARK) {
            return match decode_value(body).or_else(|e| {
                // A newer peer's reason or error, read as the nearest known one.
                crate::codec::tolerant_decode(body).ok_or(e)
            }) {
                Ok(msg) => {
                    self.counters.received[msg.kind_index()] += 1;
                    if let Message::Goodbye(reason) = &msg {
                        self.counters.goodbyes_received[reason.index()] += 1;
                    }
                    self.handle_message(conn, msg, now)
                }
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
            Ok(p) => {
                self.counters.received[super::counters::PUBLISH] += 1;
                p
            }
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

    pub(super) fn handle_message(&mut self, conn: ConnId, msg: Message, now: Instant) {
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
            } => {
                let request = IncomingRequest {
                    id,
                    service,
                    path,
                    kind,
                    args,
                    timeout_ms,
                };
                self.on_request(conn, peer, request, now)
            }
            Message::Response { id, result } => self.on_response(peer, id, result, now),
            Message::Cancel { id } => self.on_cancel(peer, id),
            Message::FindService(search) => self.on_find_service(peer, search, now),
            Message::FileOffer(offer) => self.on_file_offer(conn, peer, offer, now),
            Message::FileChunk(chunk) => self.on_file_chunk(conn, peer, chunk, now),
            Message::FileEnd(end) => self.on_file_end(conn, peer, end, now),
            Message::FileWant(want) => self.on_file_want(peer, want, now),
            Message::FileGone(gone) => self.on_file_gone(peer, gone),
        }
    }
}
