//! Ping/pong and latency, keep-alive, idle timeout, and redialing lost peers with jittered
//! exponential back-off.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::{Event, Node, Purpose, Redial};
use crate::error::CommandError;
use crate::id::{ConnId, NodeId};
use crate::message::{DisconnectReason, Message};

/// Outstanding pings remembered per edge.
const MAX_PINGS: usize = 16;

impl Node {
    /// Pings `peer` with `padding` bytes that travel both ways. The round trip arrives as
    /// [`Event::Latency`] with the returned ping id.
    pub fn ping(
        &mut self,
        peer: NodeId,
        padding: usize,
        now: Instant,
    ) -> Result<u64, CommandError> {
        self.check_live()?;
        if padding + 64 > self.cfg.max_frame_len {
            return Err(CommandError::PayloadTooLarge {
                len: padding,
                max: self.cfg.max_frame_len - 64,
            });
        }
        if !self.edges.contains_key(&peer) {
            return Err(CommandError::NotConnected);
        }
        Ok(self.send_ping(peer, Bytes::from(vec![0u8; padding]), now))
    }

    fn send_ping(&mut self, peer: NodeId, padding: Bytes, now: Instant) -> u64 {
        self.next_ping += 1;
        let id = self.next_ping;
        if let Some(e) = self.edges.get_mut(&peer) {
            if e.pings.len() >= MAX_PINGS {
                e.pings.pop_front();
            }
            e.pings.push_back((id, now));
            e.last_ping = now;
        }
        self.send_to_peer(peer, &Message::Ping { id, padding });
        id
    }

    /// Forgets the latency estimate of the edge to `peer`.
    pub fn reset_latency(&mut self, peer: NodeId) -> Result<(), CommandError> {
        let e = self
            .edges
            .get_mut(&peer)
            .ok_or(CommandError::NotConnected)?;
        e.rtt.reset();
        Ok(())
    }

    pub(super) fn on_ping(&mut self, conn: ConnId, id: u64, padding: Bytes) {
        if padding.len() > self.cfg.max_ping_padding {
            return self.bad_peer(
                conn,
                DisconnectReason::LimitExceeded(format!(
                    "ping padding of {} bytes, limit {}",
                    padding.len(),
                    self.cfg.max_ping_padding
                )),
            );
        }
        self.send(conn, &Message::Pong { id, padding });
    }

    pub(super) fn on_pong(&mut self, peer: NodeId, id: u64, now: Instant) {
        let Some(e) = self.edges.get_mut(&peer) else {
            return;
        };
        let Some(pos) = e.pings.iter().position(|(p, _)| *p == id) else {
            return;
        };
        let Some((_, sent)) = e.pings.remove(pos) else {
            return;
        };
        let rtt = now.saturating_duration_since(sent);
        e.rtt.sample(rtt);
        let (latency, jitter) = (
            e.rtt.latency().unwrap_or_default(),
            e.rtt.jitter().unwrap_or_default(),
        );
        self.push_event(Event::Latency {
            peer,
            ping: id,
            rtt,
            latency,
            jitter,
        });
    }

    pub(super) fn liveness_timeouts(&mut self, now: Instant) {
        let idle = self.cfg.idle_timeout;
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (peer, e) in &self.edges {
            if e.last_rx + idle <= now {
                dead.push(e.conn);
            } else if e.last_rx.max(e.last_ping) + e.keepalive_delay <= now {
                ping.push(*peer);
            }
        }
        for conn in dead {
            debug!(%conn, "edge idle for too long");
            self.send(conn, &Message::Goodbye(DisconnectReason::IdleTimeout));
            self.end_conn(conn, DisconnectReason::IdleTimeout, false, true);
        }
        for peer in ping {
            let delay = self.keepalive_delay();
            if let Some(e) = self.edges.get_mut(&peer) {
                e.keepalive_delay = delay;
            }
            self.send_ping(peer, Bytes::new(), now);
        }
    }

    /// The delay before redial attempt `attempt` (0-based): doubling from `reconnect_initial`
    /// up to `reconnect_max`, each drawn between half and all of that.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .cfg
            .reconnect_initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cfg.reconnect_max);
        base.mul_f64(0.5 + 0.5 * self.rng.f64())
    }

    pub(super) fn start_redial(&mut self, peer: NodeId, addr: SocketAddr) {
        let Some(now) = self.now else {
            return;
        };
        let next = now + self.backoff(0);
        debug!(%peer, %addr, ?next, "will redial");
        self.redials.insert(
            peer,
            Redial {
                addr,
                attempt: 0,
                next: Some(next),
                conn: None,
            },
        );
    }

    /// A redial attempt ended without an edge. (A peer that came back by another connection,
    /// or a shutdown, has already removed the redial: nothing is left to do then.)
    pub(super) fn redial_failed(&mut self, peer: NodeId, conn: ConnId) {
        let Some(now) = self.now else {
            return;
        };
        let Some(attempt) = self
            .redials
            .get(&peer)
            .filter(|r| r.conn == Some(conn))
            .map(|r| r.attempt)
        else {
            return;
        };
        if attempt >= self.cfg.reconnections {
            self.redials.remove(&peer);
            debug!(%peer, attempt, "giving up redialing");
            self.push_event(Event::ReconnectGaveUp {
                peer,
                attempts: attempt,
            });
            return;
        }
        let next = now + self.backoff(attempt);
        if let Some(r) = self.redials.get_mut(&peer) {
            r.conn = None;
            r.next = Some(next);
        }
    }

    pub(super) fn redial_timeouts(&mut self, now: Instant) {
        let due: Vec<(NodeId, SocketAddr)> = self
            .redials
            .iter()
            .filter(|(_, r)| r.conn.is_none() && r.next.is_some_and(|n| n <= now))
            .map(|(p, r)| (*p, r.addr))
            .collect();
        for (peer, addr) in due {
            if self.edges.contains_key(&peer) {
                self.redials.remove(&peer);
                continue;
            }
            if self.conns.len() >= self.cfg.max_edges {
                let next = now + self.backoff(0);
                if let Some(r) = self.redials.get_mut(&peer) {
                    r.next = Some(next);
                }
                continue;
            }
            let conn = self.dial(addr, Purpose::Reconnect(peer), now);
            if let Some(r) = self.redials.get_mut(&peer) {
                r.attempt += 1;
                r.conn = Some(conn);
                r.next = None;
            }
        }
    }
}
