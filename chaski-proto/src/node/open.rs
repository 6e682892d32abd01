//! Opening connections: the application's `connect`, the core's own dials (redials, pairing,
//! offers to service seekers), and the sockets the runtime reports open (handshake slots per
//! source address; TLS started on a secure node; the dialer's Hello).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use tracing::{debug, warn};

use super::conn::{Conn, ConnState};
use super::timers::TimerKey;
use super::{Direction, Node, Output, Purpose};
use crate::codec::FrameDecoder;
use crate::error::{CommandError, ConnectError};
use crate::id::ConnId;
use crate::message::{DisconnectReason, Message};
use crate::text::Escaped;

impl Node {
    pub(super) fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(ConnId::OUTBOUND_BIT | self.next_conn)
    }

    /// Records connection `conn` before its Hello: dialing (outbound) or handshaking
    /// (accepted), frames held to `max_hello_len`, and the handshake's deadline set.
    fn open_conn(
        &mut self,
        conn: ConnId,
        (dir, remote): (Direction, SocketAddr),
        purpose: Option<Purpose>,
        nonce: u64,
        now: Instant,
    ) {
        let deadline = now + self.cfg.handshake_timeout;
        let state = match dir {
            Direction::Outbound => ConnState::Dialing,
            Direction::Inbound => ConnState::Handshaking,
        };
        let c = Conn {
            dir,
            remote,
            state,
            purpose,
            nonce,
            deadline,
            decoder: FrameDecoder::new(self.cfg.max_hello_len.min(self.cfg.max_frame_len)),
            out: BytesMut::new(),
            blocked_since: None,
            begun: 0,
            tls: None,
            peer_moved: false,
            bulk: std::collections::VecDeque::new(),
            bulk_bytes: 0,
            bulk_full: false,
            frames_out: 0,
            frames_in: 0,
            bytes_out: 0,
            bytes_in: 0,
        };
        self.conns.insert(conn, c);
        self.timers.set(TimerKey::Handshake(conn), deadline);
    }

    pub(super) fn dial(&mut self, addr: SocketAddr, purpose: Purpose, now: Instant) -> ConnId {
        let conn = self.alloc_conn();
        let nonce = self.rng.u64(..);
        self.open_conn(conn, (Direction::Outbound, addr), Some(purpose), nonce, now);
        self.queue.push_back(Output::Dial { conn, addr });
        conn
    }

    /// Asks the runtime to dial `addr`; the edge (or the failure) arrives as an event carrying the
    /// returned id.
    pub fn connect(&mut self, addr: SocketAddr, now: Instant) -> Result<ConnId, CommandError> {
        self.check_live()?;
        if self.conns.len() >= self.cfg.max_edges {
            return Err(CommandError::Limit("max_edges"));
        }
        Ok(self.dial(addr, Purpose::User, now))
    }

    /// A TCP connection is open: an outbound one the core dialed (same id as in
    /// [`Output::Dial`]), or an inbound one accepted by the runtime (any id below
    /// [`ConnId::OUTBOUND_BIT`], not reused while open).
    pub fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dir: Direction,
        now: Instant,
    ) {
        match dir {
            Direction::Outbound => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    // Closed while dialing: the runtime should drop the socket.
                    self.queue.push_back(Output::Close { conn });
                    return;
                };
                if c.state != ConnState::Dialing {
                    return;
                }
                c.state = ConnState::Handshaking;
                c.remote = remote;
                c.deadline = now + self.cfg.handshake_timeout;
                self.timers.set(TimerKey::Handshake(conn), c.deadline);
                let told = self.listen_addr();
                if !self.said_unreachable
                    && !remote.ip().is_loopback()
                    && told.is_some_and(|l| l.ip().is_loopback())
                {
                    self.said_unreachable = true;
                    warn!(
                        ?told,
                        %remote,
                        "this node tells peers a loopback address: peers on other hosts cannot \
                         dial it back (bind a reachable address, or set Config::advertise)"
                    );
                }
            }
            Direction::Inbound => {
                if conn.is_outbound() || self.conns.contains_key(&conn) {
                    warn!(%conn, "runtime reused or mis-numbered an inbound connection id");
                    self.queue.push_back(Output::Close { conn });
                    return;
                }
                self.open_conn(conn, (dir, remote), None, 0, now);
                if self.shut_down {
                    self.close_conn(conn, DisconnectReason::Shutdown, true, now);
                    return;
                }
                // Connections that have not said Hello yet have their own slots: when they are
                // all taken, the oldest goes (a real peer says Hello at once; idle sockets
                // opened again and again cannot keep it out), and they never take an edge's.
                // One address may hold only `max_handshakes_per_ip` of them: its own oldest
                // goes first, so one host cannot take the slots of every other.
                let waiting: Vec<(ConnId, bool)> = self
                    .conns
                    .iter()
                    .filter(|(c, s)| !c.is_outbound() && s.state == ConnState::Handshaking)
                    .map(|(c, s)| (*c, s.remote.ip() == remote.ip()))
                    .collect();
                let same_ip = waiting.iter().filter(|(_, same)| *same).count();
                let oldest = if same_ip > self.cfg.max_handshakes_per_ip {
                    waiting.iter().find(|(_, same)| *same).map(|(c, _)| *c)
                } else if waiting.len() > self.cfg.max_handshakes {
                    waiting.first().map(|(c, _)| *c)
                } else {
                    None
                };
                if let Some(oldest) = oldest {
                    debug!(conn = %oldest, "handshake slots full: dropping the oldest");
                    self.close_conn(oldest, DisconnectReason::TooManyConnections, true, now);
                }
                if self.conns.len() > self.cfg.max_edges + self.cfg.max_handshakes {
                    self.close_conn(conn, DisconnectReason::TooManyConnections, true, now);
                    return;
                }
            }
        }
        // A secure node's connection runs TLS; the Hello goes inside it.
        if let Some(session) = self.new_tls(dir) {
            match session {
                Ok(t) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.tls = Some(t);
                        self.dirty.push_back(conn);
                    }
                }
                Err(e) => {
                    warn!(%conn, error = %e, "cannot start a TLS session");
                    let reason = DisconnectReason::NotAuthorized(format!("TLS: {e}"));
                    return self.close_conn(conn, reason, false, now);
                }
            }
        }
        // The dialer speaks first; the acceptor answers only once it accepts the dialer's Hello,
        // so a dialer never holds an edge the acceptor refused.
        if dir == Direction::Outbound {
            let hello = self.hello_for(conn);
            self.send(conn, &Message::Hello(hello), now);
        }
    }

    /// A dial the core asked for failed.
    pub fn handle_dial_failed(&mut self, conn: ConnId, error: &str, now: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.state != ConnState::Dialing {
            return;
        }
        debug!(%conn, error = %Escaped(error), "dial failed");
        self.fail_handshake(conn, ConnectError::DialFailed(error.to_string()), now);
    }
}
