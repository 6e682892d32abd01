//! The records the node keeps per connection (its state, buffers, TLS session) and per edge
//! (the peer's topics, services, latency, liveness), and what is left to write after a close.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::secure::TlsConn;
use super::{Direction, Purpose};
use crate::codec::FrameDecoder;
use crate::id::{ConnId, NodeId};
use crate::latency::RttEstimator;
use crate::patterns::PatternSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    /// Dial requested, socket not open yet.
    Dialing,
    /// Socket open, our Hello sent, theirs awaited.
    Handshaking,
    /// Edge established with this peer.
    Established(NodeId),
    /// Lost a duplicate tie-break against the edge to this peer: our goodbye is sent and
    /// nothing more is written; what the peer sent before it learned still counts as the
    /// edge's (answered on the edge's connection). Ends at the peer's goodbye or close.
    Superseded(NodeId),
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) dir: Direction,
    pub(super) remote: SocketAddr,
    pub(super) state: ConnState,
    pub(super) purpose: Option<Purpose>,
    /// The dialer's nonce (see [`crate::message::Hello::nonce`]).
    pub(super) nonce: u64,
    /// Closing the handshake by this instant, or give up.
    pub(super) deadline: Instant,
    pub(super) decoder: FrameDecoder,
    /// Frames waiting to be written (on a secure connection: to be sealed into `tls.wire`).
    pub(super) out: BytesMut,
    /// Since when the runtime could not write what waits in `out` (reset by any progress).
    pub(super) blocked_since: Option<Instant>,
    /// Bytes at the front of the wire that finish a frame (a TLS record on a secure
    /// connection) the socket has begun: all that must be written before another frame.
    pub(super) begun: usize,
    /// The TLS session of a secure node's connection.
    pub(super) tls: Option<Box<TlsConn>>,
    /// The peer said `Goodbye(Duplicate)` on this edge's connection before its other
    /// connection's Hello reached us: the edge stays here until that Hello arrives.
    pub(super) peer_moved: bool,
    /// File frames waiting behind everything else (whole frames, oldest first): fed into
    /// `out` as it empties, so that publishes and calls pass a transfer.
    pub(super) bulk: VecDeque<Bytes>,
    /// Bytes in `bulk`.
    pub(super) bulk_bytes: usize,
    /// The bulk lane went past the congestion limit (senders of files wait) and has not
    /// drained to half of it since.
    pub(super) bulk_full: bool,
    /// Frames queued for this connection, and decoded from it.
    pub(super) frames_out: u64,
    pub(super) frames_in: u64,
    /// Bytes the socket took, and gave.
    pub(super) bytes_out: u64,
    pub(super) bytes_in: u64,
}

impl Conn {
    /// The bytes for the socket: the sealed ones on a secure connection.
    pub(super) fn wire(&self) -> &[u8] {
        match &self.tls {
            Some(t) => &t.wire,
            None => &self.out,
        }
    }

    pub(super) fn wire_mut(&mut self) -> &mut BytesMut {
        match &mut self.tls {
            Some(t) => &mut t.wire,
            None => &mut self.out,
        }
    }

    /// Everything that waits to be written, sealed or not, file frames included.
    pub(super) fn pending(&self) -> usize {
        self.queued() + self.bulk_bytes
    }

    /// What waits to be written ahead of the file frames (what congestion is measured by).
    pub(super) fn queued(&self) -> usize {
        self.out.len() + self.tls.as_ref().map_or(0, |t| t.wire.len())
    }

    /// Moves waiting file frames behind the rest while less than `upto` bytes wait ahead.
    pub(super) fn feed_bulk(&mut self, upto: usize) {
        while self.queued() < upto {
            let Some(frame) = self.bulk.pop_front() else {
                break;
            };
            self.bulk_bytes -= frame.len();
            self.out.extend_from_slice(&frame);
        }
    }

    /// Drops the waiting file frames (none has begun).
    fn clear_bulk(&mut self) {
        self.bulk.clear();
        self.bulk_bytes = 0;
    }

    /// Drops everything that waits to be written; returns how much it was.
    pub(super) fn clear_pending(&mut self) -> usize {
        let n = self.pending();
        self.clear_bulk();
        self.out.clear();
        if let Some(t) = &mut self.tls {
            t.wire.clear();
        }
        self.begun = 0;
        n
    }

    /// `n` bytes of the wire were written.
    pub(super) fn written(&mut self, n: usize) {
        let n = n.min(self.wire().len());
        self.begun = begun_after(self.wire(), self.begun, n, self.tls.is_some());
        bytes::Buf::advance(self.wire_mut(), n);
    }

    /// Drops what waits that the socket has not begun (the rest of a begun frame stays, or the
    /// peer could not read anything after it); returns whether a frame may still follow it.
    /// On a secure connection, sealed records cannot be dropped (the ones after would not
    /// decrypt): if whole records wait, everything goes and nothing may follow.
    pub(super) fn drop_unsent(&mut self) -> bool {
        self.clear_bulk();
        match &mut self.tls {
            None => {
                self.out.truncate(self.begun);
                true
            }
            Some(t) => {
                self.out.clear();
                if t.wire.len() > self.begun {
                    t.wire.clear();
                    self.begun = 0;
                    return false;
                }
                true
            }
        }
    }
}

/// How much of a begun frame (or TLS record) is left at the front of `wire` once its first
/// `n` bytes are written, `begun` being that before. Frames are `4 + length` bytes, records
/// `5 + length`; the wire holds whole ones after the begun one.
fn begun_after(wire: &[u8], begun: usize, n: usize, tls: bool) -> usize {
    if n <= begun {
        return begun - n;
    }
    let mut at = begun;
    while at < n {
        let len = if tls {
            wire.get(at + 3..at + 5)
                .map(|h| 5 + usize::from(u16::from_be_bytes([h[0], h[1]])))
        } else {
            wire.get(at..at + 4)
                .map(|h| 4 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
        };
        match len {
            Some(len) => at += len,
            // Not a unit's start (never, for what the core writes): nothing is known begun.
            None => return 0,
        }
    }
    at - n
}

/// What is left to write on a connection after its close.
#[derive(Debug)]
pub(super) struct Closing {
    pub(super) out: BytesMut,
    /// The close, or the last write that made progress.
    pub(super) since: Instant,
}

#[derive(Debug)]
pub(super) struct Edge {
    pub(super) conn: ConnId,
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) listen: Option<SocketAddr>,
    pub(super) topics: BTreeSet<String>,
    /// Those of `topics` that are patterns, matched together against every message for this
    /// peer.
    pub(super) patterns: PatternSet,
    /// The peer's paired topics and their cluster ids.
    pub(super) paired: BTreeMap<String, NodeId>,
    pub(super) services: BTreeSet<String>,
    pub(super) root: bool,
    pub(super) pairing: bool,
    pub(super) dir: Direction,
    pub(super) rtt: RttEstimator,
    /// Outstanding pings: id and send time (a few at most).
    pub(super) pings: VecDeque<(u64, Instant)>,
    pub(super) last_rx: Instant,
    pub(super) last_ping: Instant,
    pub(super) keepalive_delay: Duration,
    pub(super) inbound_requests: usize,
    /// Messages of unknown kinds skipped from this peer (only the first few make an event).
    pub(super) unknown: u32,
    /// Dialed by the application (or redialed after a loss).
    pub(super) configured: bool,
}

impl Edge {
    /// Whether a message on `topic` goes to this peer: a root takes everything, others what
    /// they subscribe to, by name or by pattern.
    pub(super) fn wants(&self, topic: &str) -> bool {
        self.root || self.topics.contains(topic) || self.patterns.matches(topic)
    }

    /// Replaces the peer's topics (and the patterns among them).
    pub(super) fn set_topics(&mut self, topics: Vec<String>) {
        self.patterns = PatternSet::new(topics.iter().filter(|t| crate::topic::is_pattern(t)));
        self.topics = topics.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::begun_after;

    /// Two frames (10 and 20 bytes of body) as the wire holds them.
    fn frames() -> Vec<u8> {
        let mut w = vec![0, 0, 0, 10];
        w.extend([1; 10]);
        w.extend([0, 0, 0, 20]);
        w.extend([2; 20]);
        w
    }

    /// Two TLS records (3 and 300 bytes of body).
    fn records() -> Vec<u8> {
        let mut w = vec![23, 3, 3, 0, 3];
        w.extend([1; 3]);
        w.extend([23, 3, 3, 1, 44]);
        w.extend([2; 300]);
        w
    }

    #[test]
    fn what_is_left_of_a_begun_frame() {
        let w = frames();
        assert_eq!(begun_after(&w, 0, 0, false), 0);
        assert_eq!(begun_after(&w, 0, 5, false), 9);
        assert_eq!(begun_after(&w, 9, 4, false), 5);
        assert_eq!(begun_after(&w, 9, 9, false), 0);
        // A write that ends exactly at a frame's end leaves nothing begun.
        assert_eq!(begun_after(&w, 0, 14, false), 0);
        assert_eq!(begun_after(&w, 0, 15, false), 23);
        assert_eq!(begun_after(&w, 0, 38, false), 0);
        // Past the begun frame's rest, into the next one.
        assert_eq!(begun_after(&w[5..], 9, 10, false), 23);
        // Not a frame's start: nothing is known begun.
        assert_eq!(begun_after(&w[..2], 0, 1, false), 0);
    }

    #[test]
    fn what_is_left_of_a_begun_record() {
        let w = records();
        assert_eq!(begun_after(&w, 0, 1, true), 7);
        assert_eq!(begun_after(&w, 0, 8, true), 0);
        assert_eq!(begun_after(&w, 0, 9, true), 304);
        assert_eq!(begun_after(&w, 0, w.len(), true), 0);
    }
}
