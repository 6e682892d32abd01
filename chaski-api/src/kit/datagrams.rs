//! Datagrams waiting for the node's UDP socket: bounded in count and in bytes, the oldest
//! dropped (and counted) first when a new one does not fit.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

/// Datagrams waiting before the oldest is dropped.
pub(crate) const DATAGRAM_QUEUE: usize = 1024;
/// Bytes of datagrams waiting before the oldest is dropped.
pub(crate) const DATAGRAM_BYTES: usize = 4 << 20;

/// The node's outgoing datagrams, oldest first.
#[derive(Debug, Default)]
pub(crate) struct DatagramQueue {
    waiting: VecDeque<(SocketAddr, Bytes)>,
    /// What `waiting` holds.
    bytes: usize,
    dropped: u64,
}

impl DatagramQueue {
    /// Queues one; the oldest go (counted) until it fits in [`DATAGRAM_QUEUE`] and
    /// [`DATAGRAM_BYTES`] (a datagram larger than the byte bound alone still goes out).
    pub(crate) fn push(&mut self, to: SocketAddr, data: Bytes) {
        while self.waiting.len() >= DATAGRAM_QUEUE
            || (self.bytes + data.len() > DATAGRAM_BYTES && !self.waiting.is_empty())
        {
            self.pop();
            self.dropped += 1;
        }
        self.bytes += data.len();
        self.waiting.push_back((to, data));
    }

    /// The oldest, to send (it stays queued until [`DatagramQueue::pop`]).
    pub(crate) fn front(&self) -> Option<(SocketAddr, Bytes)> {
        self.waiting.front().cloned()
    }

    /// Forgets the oldest (sent, or failed).
    pub(crate) fn pop(&mut self) {
        if let Some((_, d)) = self.waiting.pop_front() {
            self.bytes -= d.len();
        }
    }

    /// Datagrams dropped because the socket could not keep up.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn at_most_1024_datagrams_wait_the_oldest_dropped_and_counted() {
        let mut q = DatagramQueue::default();
        for i in 0..1030u16 {
            q.push(to(i), Bytes::from_static(b"x"));
        }
        assert_eq!(q.len(), DATAGRAM_QUEUE);
        assert_eq!(q.dropped(), 6);
        assert_eq!(q.front().map(|(a, _)| a), Some(to(6)), "the oldest went");
        q.pop();
        assert_eq!(q.len(), DATAGRAM_QUEUE - 1);
        assert_eq!(q.bytes(), DATAGRAM_QUEUE - 1);
    }

    #[test]
    fn at_most_4_mib_of_datagrams_wait() {
        let mut q = DatagramQueue::default();
        let big = Bytes::from(vec![0u8; 60_000]);
        for i in 0..80u16 {
            q.push(to(i), big.clone());
        }
        // 69 of 60,000 bytes fit in 4 MiB, the 70th does not.
        assert_eq!(q.len(), DATAGRAM_BYTES / 60_000);
        assert!(q.bytes() <= DATAGRAM_BYTES);
        assert_eq!(q.dropped(), 80 - (DATAGRAM_BYTES / 60_000) as u64);
        // One larger than the bound alone is still queued (it empties the queue).
        q.push(to(1), Bytes::from(vec![0u8; DATAGRAM_BYTES + 1]));
        assert_eq!(q.len(), 1);
        while q.front().is_some() {
            q.pop();
        }
        assert_eq!(q.bytes(), 0);
    }
}
