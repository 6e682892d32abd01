//! Ping/pong and latency, keep-alive, idle timeout, and redialing lost peers with jittered
//! exponential back-off.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::{Event, Node, Purpose, Redial, TimerKey};
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
        let id = self.send_ping(peer, Bytes::from(vec![0u8; padding]), now);
        self.enforce_budget(now);
        Ok(id)
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
        self.send_to_peer(peer, &Message::Ping { id, padding }, now);
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

    pub(super) fn on_ping(&mut self, conn: ConnId, id: u64, padding: Bytes, now: Instant) {
        if padding.len() > self.cfg.max_ping_padding {
            return self.bad_peer(
                conn,
                DisconnectReason::LimitExceeded(format!(
                    "ping padding of {} bytes, limit {}",
                    padding.len(),
                    self.cfg.max_ping_padding
                )),
                now,
            );
        }
        self.send(conn, &Message::Pong { id, padding }, now);
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
        self.counters.rtt(rtt);
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

    /// When the edge next needs a keep-alive ping or is dropped as idle.
    pub(super) fn edge_deadline(&self, peer: NodeId) -> Option<Instant> {
        let e = self.edges.get(&peer)?;
        let mut ping = e.last_rx.max(e.last_ping) + e.keepalive_delay;
        if !self.cfg.latency_interval.is_zero() {
            ping = ping.min(e.last_ping + self.cfg.latency_interval);
        }
        Some(ping.min(e.last_rx + self.cfg.idle_timeout))
    }

    /// Sets the edge's keep-alive timer.
    pub(super) fn arm_edge(&mut self, peer: NodeId) {
        if let (Some(at), Some(e)) = (self.edge_deadline(peer), self.edges.get(&peer)) {
            self.timers.set(TimerKey::Edge(peer, e.conn), at);
        }
    }

    pub(super) fn edge_timeout(&mut self, peer: NodeId, conn: ConnId, now: Instant) {
        let paused = self.read_paused.contains(&conn);
        let Some(e) = self.edges.get_mut(&peer).filter(|e| e.conn == conn) else {
            return;
        };
        if paused {
            // Not read while its file frames wait for a slow peer: the silence is ours.
            e.last_rx = now;
        }
        if e.last_rx + self.cfg.idle_timeout <= now {
            debug!(%conn, "edge idle for too long");
            self.send(conn, &Message::Goodbye(DisconnectReason::IdleTimeout), now);
            self.end_conn(conn, DisconnectReason::IdleTimeout, false, true, now);
            return;
        }
        let measure = self.cfg.latency_interval;
        if e.last_rx.max(e.last_ping) + e.keepalive_delay <= now
            || (!measure.is_zero() && e.last_ping + measure <= now)
        {
            let delay = self.keepalive_delay();
            if let Some(e) = self.edges.get_mut(&peer) {
                e.keepalive_delay = delay;
            }
            self.send_ping(peer, Bytes::new(), now);
        }
        self.arm_edge(peer);
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

    pub(super) fn start_redial(&mut self, peer: NodeId, addr: SocketAddr, now: Instant) {
        let next = now + self.backoff(0);
        debug!(%peer, %addr, ?next, "will redial");
        self.timers.set(TimerKey::Redial(peer), next);
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
    pub(super) fn redial_failed(&mut self, peer: NodeId, conn: ConnId, now: Instant) {
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
            self.timers.cancel(&TimerKey::Redial(peer));
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
        self.timers.set(TimerKey::Redial(peer), next);
    }

    pub(super) fn redial_timeout(&mut self, peer: NodeId, now: Instant) {
        let Some(r) = self.redials.get(&peer) else {
            return;
        };
        let (Some(next), None) = (r.next, r.conn) else {
            return;
        };
        if next > now {
            return self.timers.set(TimerKey::Redial(peer), next);
        }
        let addr = r.addr;
        if self.edges.contains_key(&peer) {
            self.redials.remove(&peer);
            return;
        }
        if let Some(at) = self.dial_allowed_at(addr, now) {
            // Dialed a moment ago (by another redial, or a pairing): not sooner than allowed.
            if let Some(r) = self.redials.get_mut(&peer) {
                r.next = Some(at);
            }
            self.timers.set(TimerKey::Redial(peer), at);
            return;
        }
        if self.conns.len() >= self.cfg.max_edges {
            let next = now + self.backoff(0);
            if let Some(r) = self.redials.get_mut(&peer) {
                r.next = Some(next);
            }
            self.timers.set(TimerKey::Redial(peer), next);
            return;
        }
        self.note_dial(addr, now);
        let conn = self.dial(addr, Purpose::Reconnect(peer), now);
        if let Some(r) = self.redials.get_mut(&peer) {
            r.attempt += 1;
            r.conn = Some(conn);
            r.next = None;
        }
    }

    /// When a dial of our own to `addr` would be allowed, if not now ([`Config::dial_interval`]
    /// since the last one).
    pub(super) fn dial_allowed_at(&self, addr: SocketAddr, now: Instant) -> Option<Instant> {
        let at = *self.recent_dials.get(&addr)? + self.cfg.dial_interval;
        (at > now).then_some(at)
    }

    /// Records a dial of our own to `addr`. The table forgets dials older than the interval,
    /// and holds at most [`MAX_RECENT_DIALS`].
    pub(super) fn note_dial(&mut self, addr: SocketAddr, now: Instant) {
        if self.recent_dials.len() >= MAX_RECENT_DIALS {
            let interval = self.cfg.dial_interval;
            self.recent_dials.retain(|_, t| *t + interval > now);
        }
        self.recent_dials.insert(addr, now);
    }

    /// Whether the node may dial `addr` by itself now; if so, the dial is recorded. Refused
    /// when it dialed it less than [`Config::dial_interval`] ago, or when
    /// [`MAX_RECENT_DIALS`] other addresses were dialed within it.
    pub(super) fn may_dial(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.dial_allowed_at(addr, now).is_some() {
            debug!(%addr, "not dialing: dialed it a moment ago");
            return false;
        }
        self.note_dial(addr, now);
        if self.recent_dials.len() > MAX_RECENT_DIALS {
            self.recent_dials.remove(&addr);
            debug!(%addr, "not dialing: too many addresses dialed a moment ago");
            return false;
        }
        true
    }
}

/// Addresses a node remembers having dialed by itself within [`Config::dial_interval`]
/// (pairing and redials beyond it wait).
pub const MAX_RECENT_DIALS: usize = 1024;
