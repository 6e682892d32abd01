//! The node's timers: one deadline per key, ordered, so the next deadline costs O(log n) and
//! a timeout touches only what is due (not every connection, edge and call).
//!
//! A deadline may be set early and found not due when it fires (an edge's keep-alive moves
//! every time something arrives): its handler checks the real state and sets the key again.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::id::{ConnId, NodeId};

/// What a deadline belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// A connection's handshake (or a superseded connection's drain) deadline.
    Handshake(ConnId),
    /// A connection whose peer stopped taking bytes: dropped unless it writes again.
    Stall(ConnId),
    /// An edge's keep-alive ping or idle drop (the edge's connection, so a new edge to the
    /// same peer has its own key).
    Edge(NodeId, ConnId),
    /// A topic's discovery.
    Discovery(String),
    /// One of our calls.
    Call(u64),
    /// A search for a service's servers.
    ServiceSearch(String),
    /// One of our status queries.
    Status(u64),
    /// The next attempt to redial a peer.
    Redial(NodeId),
    /// A transfer this node receives: ask for what is missing, or give it up.
    FileRepair(crate::files::FileKey),
    /// A transfer this node sent stops being kept for repairs.
    FileKeep(u64),
}

/// Deadlines by key, at most one per key.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    order: BTreeSet<(Instant, TimerKey)>,
    at: HashMap<TimerKey, Instant>,
}

impl Timers {
    /// Sets (or moves) the deadline of `key`.
    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        if let Some(old) = self.at.insert(key.clone(), at) {
            if old == at {
                return;
            }
            self.order.remove(&(old, key.clone()));
        }
        self.order.insert((at, key));
    }

    /// Removes the deadline of `key`, if any.
    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.at.remove(key) {
            self.order.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Takes the earliest key due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (t, _) = self.order.first()?;
        if *t > now {
            return None;
        }
        let (_, key) = self.order.pop_first()?;
        self.at.remove(&key);
        Some(key)
    }

    /// How many deadlines are set.
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    /// Keeps only the deadlines whose key passes `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&TimerKey) -> bool) {
        self.order.retain(|(_, k)| keep(k));
        let order = &self.order;
        self.at.retain(|k, t| order.contains(&(*t, k.clone())));
    }
}
