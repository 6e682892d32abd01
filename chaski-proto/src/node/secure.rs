//! A secure node's connections: the TLS session of each, fed with what the socket read and
//! sealing what waits for it; the peer's id proven by its certificate; plaintext peers told
//! why they are refused.

use std::io::Read;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use tracing::{debug, warn};

use super::{ConnState, Direction, Event, Node};
use crate::codec::{decode_value, split_frame};
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, Message};
use crate::tls::{id_of_cert, is_tls_record};

/// The TLS side of one connection.
pub(super) struct TlsConn {
    session: rustls::Connection,
    /// Encrypted bytes for the socket (what [`Node::outbound`] gives).
    pub(super) wire: BytesMut,
    /// Whether the peer sent anything yet (its first byte tells a plaintext peer).
    heard: bool,
    /// The peer's id, proven by its certificate once the handshake is done.
    pub(super) peer: Option<NodeId>,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.session.is_handshaking())
            .field("wire", &self.wire.len())
            .field("peer", &self.peer)
            .finish()
    }
}

impl TlsConn {
    /// Whether the session has something of its own to send (handshake, alert).
    pub(super) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Queues the session's close_notify.
    pub(super) fn close(&mut self) {
        self.session.send_close_notify();
    }
}

/// How much decrypted data is handled at once.
const PLAIN_CHUNK: usize = 64 * 1024;

/// What a secure node tells a plaintext peer.
const TLS_REQUIRED: &str = "this node accepts TLS only: connect with a certificate of the cluster";
/// What a plaintext node tells a TLS peer.
const TLS_UNUSED: &str = "this node does not use TLS";

impl Node {
    /// The TLS session of a new connection, if the node is secure.
    pub(super) fn new_tls(&self, dir: Direction) -> Option<Result<Box<TlsConn>, String>> {
        let tls = self.cfg.tls.as_ref()?;
        Some(
            tls.session(dir == Direction::Outbound)
                .map(|session| {
                    Box::new(TlsConn {
                        session,
                        wire: BytesMut::new(),
                        heard: false,
                        peer: None,
                    })
                })
                .map_err(|e| e.to_string()),
        )
    }

    /// Encrypts what waits in the connection's plaintext buffer, with whatever the session
    /// has to send (handshake, alerts), onto its wire buffer.
    pub(super) fn seal(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(t) = c.tls.as_mut() else {
            return;
        };
        let (plain, before) = (c.out.len(), t.wire.len());
        if plain > 0 {
            // No buffer limit is set: the session takes everything.
            let _ = std::io::Write::write_all(&mut t.session.writer(), &c.out);
            c.out.clear();
        }
        while t.session.wants_write() {
            let mut w = (&mut t.wire).writer();
            if t.session.write_tls(&mut w).is_err() {
                break;
            }
        }
        let after = t.wire.len();
        self.shrank_out(plain);
        self.grew_out(after - before);
    }

    /// Bytes from the socket of a secure connection.
    pub(super) fn read_secure(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        let mut rest = data;
        while !rest.is_empty() {
            let Some(t) = self.conns.get_mut(&conn).and_then(|c| c.tls.as_mut()) else {
                return;
            };
            if !t.heard {
                t.heard = true;
                if !is_tls_record(rest[0]) {
                    return self.plaintext_peer(conn, rest, now);
                }
            }
            match t.session.read_tls(&mut rest) {
                Err(e) => return self.tls_failed(conn, e.to_string(), now),
                // The session takes nothing more (the peer ended it): whatever follows is not
                // read, and the connection is over.
                Ok(0) => return self.handle_closed(conn, now),
                Ok(_) => {}
            }
            if let Err(e) = t.session.process_new_packets() {
                return self.tls_failed(conn, e.to_string(), now);
            }
            if t.peer.is_none() && !t.session.is_handshaking() {
                let proven = t
                    .session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| id_of_cert(cert));
                let Some(peer) = proven else {
                    return self.tls_failed(conn, "no readable peer certificate".into(), now);
                };
                t.peer = Some(peer);
                debug!(%conn, %peer, "TLS handshake done");
                if !self.cfg.tls.as_ref().is_some_and(|tls| tls.allows(peer)) {
                    let reason =
                        DisconnectReason::NotAuthorized(format!("{peer} is not on the allow-list"));
                    return self.refuse(conn, reason, now);
                }
            }
            // Decrypted bytes are handled a chunk at a time from one reused buffer.
            let mut plain = std::mem::take(&mut self.plain);
            if plain.len() < PLAIN_CHUNK {
                plain.resize(PLAIN_CHUNK, 0);
            }
            let mut ended = false;
            while let Some(t) = self.conns.get_mut(&conn).and_then(|c| c.tls.as_mut()) {
                match t.session.reader().read(&mut plain) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(n) => self.read_frames(conn, &plain[..n], now),
                    Err(_) => break,
                }
            }
            self.plain = plain;
            if ended {
                // The peer closed its side of the session (close_notify): like an EOF.
                return self.handle_closed(conn, now);
            }
        }
        let wants = self
            .conns
            .get(&conn)
            .and_then(|c| c.tls.as_ref())
            .is_some_and(|t| t.session.wants_write());
        if wants {
            self.dirty.push_back(conn);
        }
    }

    /// The TLS handshake or a record failed: the session has queued an alert for the peer;
    /// the connection closes with the reason (the dialer's `connect` fails with it).
    fn tls_failed(&mut self, conn: ConnId, why: String, now: Instant) {
        warn!(%conn, why = %crate::text::Escaped(&why), "TLS failed");
        self.refuse(
            conn,
            DisconnectReason::NotAuthorized(format!("TLS: {why}")),
            now,
        );
    }

    /// Closes a connection for a failed authentication, with an event.
    fn refuse(&mut self, conn: ConnId, reason: DisconnectReason, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let peer = match c.state {
            ConnState::Established(p) => Some(p),
            _ => None,
        };
        // A goodbye can go only through a finished handshake.
        let goodbye = c.tls.as_ref().is_some_and(|t| !t.session.is_handshaking());
        self.counters.bad_peers += 1;
        self.push_event(Event::BadPeer {
            conn,
            peer,
            reason: reason.clone(),
        });
        self.close_conn(conn, reason, goodbye, now);
    }

    /// A secure node heard plaintext: an accepted peer is told (in plaintext) that TLS is
    /// required; a dialed one may have said why it refuses TLS (its goodbye is read, nothing
    /// else).
    fn plaintext_peer(&mut self, conn: ConnId, data: &[u8], now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.dir == Direction::Inbound {
            // Answered in plaintext: the session goes, and the goodbye is an ordinary frame.
            if let Some(t) = c.tls.take() {
                self.shrank_out(t.wire.len());
            }
            let reason = DisconnectReason::NotAuthorized(TLS_REQUIRED.into());
            self.counters.bad_peers += 1;
            self.push_event(Event::BadPeer {
                conn,
                peer: None,
                reason: reason.clone(),
            });
            return self.close_conn(conn, reason, true, now);
        }
        let said = match split_frame(data, 1 << 16) {
            Ok(Some((body, _))) => match decode_value::<Message>(body) {
                Ok(Message::Goodbye(reason)) => Some(reason),
                _ => None,
            },
            _ => None,
        };
        match said {
            Some(reason) => self.drop_conn(conn, reason, true, now),
            None => self.refuse(
                conn,
                DisconnectReason::NotAuthorized("the peer does not speak TLS".into()),
                now,
            ),
        }
    }

    /// A plaintext node heard a TLS handshake: the peer is told, in plaintext, and closed.
    pub(super) fn tls_peer(&mut self, conn: ConnId, now: Instant) {
        let reason = DisconnectReason::NotAuthorized(TLS_UNUSED.into());
        self.counters.bad_peers += 1;
        self.push_event(Event::BadPeer {
            conn,
            peer: None,
            reason: reason.clone(),
        });
        self.close_conn(conn, reason, true, now);
    }

    /// Whether the Hello's id is the one the peer's certificate proves (always, on a plain
    /// node).
    pub(super) fn proven(&self, conn: ConnId, claimed: NodeId) -> Result<(), DisconnectReason> {
        let Some(t) = self.conns.get(&conn).and_then(|c| c.tls.as_ref()) else {
            return Ok(());
        };
        match t.peer {
            Some(p) if p == claimed => Ok(()),
            Some(p) => Err(DisconnectReason::NotAuthorized(format!(
                "Hello claims id {claimed}, the certificate proves {p}"
            ))),
            None => Err(DisconnectReason::NotAuthorized(
                "Hello before the TLS handshake finished".into(),
            )),
        }
    }
}
