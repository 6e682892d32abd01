//! The node-wide memory budget for connection buffers.
//!
//! Every byte the node holds for a connection is counted: the unfinished frame a peer is
//! sending (`held_in`), and what waits to be written, on open and on closed connections
//! (`held_out`). Per-connection bounds (`max_frame_len`, `max_hello_len`, `max_outbound`) are
//! each peer's share; [`Config::buffer_budget`](crate::Config::buffer_budget) bounds them all
//! together. Past it, at the end of the input that grew them, the connections holding the most
//! are dropped until the node is under it again. Publishing waits from half the budget of
//! outbound bytes, so a node's own publishers slow down before any peer has to be dropped.

use std::time::Instant;

use tracing::warn;

use super::{Conn, ConnId, Node, Output, TimerKey};
use crate::message::DisconnectReason;

/// Memory the node holds for its connections, from [`Node::memory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Bytes held for frames received and not finished yet (buffer capacity: at most twice
    /// what arrived, and never more than the frame).
    pub inbound: usize,
    /// Bytes waiting to be written (open and closing connections).
    pub outbound: usize,
    /// The bound on both together ([`Config::buffer_budget`](crate::Config::buffer_budget)).
    pub budget: usize,
}

impl Node {
    /// What the node holds for its connections now, and the bound.
    pub fn memory(&self) -> MemoryUse {
        MemoryUse {
            inbound: self.held_in,
            outbound: self.held_out,
            budget: self.cfg.buffer_budget(),
        }
    }

    /// The same as [`Node::memory`], counted again from every buffer (O(connections); for
    /// tests and fuzzing, which check that the running totals never drift).
    pub fn memory_recounted(&self) -> MemoryUse {
        let inbound = self.conns.values().map(|c| c.decoder.held()).sum();
        let outbound = self.conns.values().map(|c| c.pending()).sum::<usize>()
            + self.closing.values().map(|c| c.out.len()).sum::<usize>();
        MemoryUse {
            inbound,
            outbound,
            budget: self.cfg.buffer_budget(),
        }
    }

    /// `n` more bytes wait to be written.
    pub(super) fn grew_out(&mut self, n: usize) {
        self.held_out += n;
        if !self.memory_waiting && self.held_out > self.cfg.buffer_budget() / 2 {
            self.memory_waiting = true;
        }
    }

    /// `n` bytes that waited to be written were written or dropped.
    pub(super) fn shrank_out(&mut self, n: usize) {
        self.held_out -= n.min(self.held_out);
        if self.memory_waiting && self.held_out <= self.cfg.buffer_budget() / 4 {
            self.memory_waiting = false;
            // Publishers that wait are woken by this counter.
            self.released += 1;
        }
    }

    /// A connection leaves the table: what it held is no longer counted.
    pub(super) fn release(&mut self, c: &Conn) {
        self.held_in -= c.decoder.held().min(self.held_in);
        self.shrank_out(c.pending());
    }

    /// Drops the connections holding the most until the node is within its budget (called at
    /// the end of every input that can make buffers grow).
    pub(super) fn enforce_budget(&mut self, now: Instant) {
        let budget = self.cfg.buffer_budget();
        while self.held_in + self.held_out > budget {
            let open = self
                .conns
                .iter()
                .map(|(id, c)| (c.decoder.held() + c.pending(), *id))
                .max();
            let closed = self.closing.iter().map(|(id, c)| (c.out.len(), *id)).max();
            match (open, closed) {
                (_, Some((n, conn))) if n > 0 && open.is_none_or(|(m, _)| n >= m) => {
                    warn!(%conn, bytes = n, "memory budget: dropping what a closed connection did not take");
                    self.closing.remove(&conn);
                    self.timers.cancel(&TimerKey::Stall(conn));
                    self.shrank_out(n);
                    self.counters.memory_shed += 1;
                    self.queue.push_back(Output::Close { conn });
                }
                (Some((n, conn)), _) if n > 0 => self.shed(conn, n, now),
                _ => {
                    debug_assert!(false, "memory counted but held by no connection");
                    self.held_in = 0;
                    self.held_out = 0;
                    return;
                }
            }
        }
    }

    /// Drops one open connection for the budget's sake (what it has to send goes; the
    /// goodbye follows when the wire allows it).
    fn shed(&mut self, conn: ConnId, bytes: usize, now: Instant) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        warn!(%conn, bytes, "memory budget: dropping the connection that holds the most");
        self.counters.memory_shed += 1;
        let reason = DisconnectReason::LimitExceeded("node memory budget".into());
        self.drop_outbound(conn, reason, now);
    }
}
