//! A bounded set that forgets its oldest entries first.
//!
//! ```
//! use chaski_proto::dedup::SeenPool;
//! let mut pool = SeenPool::new(2);
//! assert!(pool.insert(1));
//! assert!(!pool.insert(1));
//! pool.insert(2);
//! pool.insert(3); // evicts 1
//! assert!(!pool.contains(&1));
//! assert_eq!(pool.len(), 2);
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// A FIFO-evicting set of at most `capacity` keys, with O(1) lookups.
#[derive(Debug, Clone)]
pub struct SeenPool<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> SeenPool<K> {
    /// An empty pool holding at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        SeenPool {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `key`; returns `false` if it was already there.
    pub fn insert(&mut self, key: K) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        true
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Sequence numbers a window remembers per origin.
pub const WINDOW: u64 = 256;
const WORDS: usize = (WINDOW / 64) as usize;

/// The latest [`WINDOW`] sequence numbers of one origin, as bits.
#[derive(Debug, Clone)]
struct Window {
    top: u64,
    bits: [u64; WORDS],
}

impl Window {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn insert(&mut self, seq: u64) -> bool {
        if seq > self.top {
            if seq - self.top >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in self.top + 1..seq {
                    let (w, b) = Self::bit(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq;
            let (w, b) = Self::bit(seq);
            self.bits[w] |= b;
            return true;
        }
        if self.top - seq >= WINDOW {
            // Older than anything remembered: taken as seen (a late copy, or a replay).
            return false;
        }
        let (w, b) = Self::bit(seq);
        let new = self.bits[w] & b == 0;
        self.bits[w] |= b;
        new
    }
}

/// De-duplication of `(origin, sequence)` pairs, where each origin numbers its messages
/// 1, 2, 3, ...: per origin, the latest [`WINDOW`] sequence numbers as a bitmap, for at most
/// `capacity / WINDOW` origins (the oldest origin is forgotten first). One lookup per message,
/// and no memory per message.
///
/// The window is `highest - (WINDOW - 1) ..= highest`: a number [`WINDOW`] or more below the
/// highest seen from its origin counts as seen.
///
/// ```
/// use chaski_proto::dedup::SeqWindows;
/// let mut seen = SeqWindows::new(1024);
/// assert!(seen.insert(7u8, 1));
/// assert!(seen.insert(7u8, 3));
/// assert!(!seen.insert(7u8, 1));
/// assert!(seen.insert(7u8, 2));
/// assert!(!seen.insert(7u8, 3));
/// ```
#[derive(Debug, Clone)]
pub struct SeqWindows<K> {
    windows: HashMap<K, Window>,
    order: VecDeque<K>,
    origins: usize,
}

impl<K: Hash + Eq + Clone> SeqWindows<K> {
    /// Windows for `capacity / WINDOW` origins (at least 1).
    pub fn new(capacity: usize) -> Self {
        SeqWindows {
            windows: HashMap::new(),
            order: VecDeque::new(),
            origins: (capacity / WINDOW as usize).max(1),
        }
    }

    /// Records `seq` of `origin`; returns `false` if it counts as seen.
    pub fn insert(&mut self, origin: K, seq: u64) -> bool {
        if let Some(w) = self.windows.get_mut(&origin) {
            return w.insert(seq);
        }
        if self.order.len() >= self.origins {
            if let Some(old) = self.order.pop_front() {
                self.windows.remove(&old);
            }
        }
        let mut w = Window {
            top: 0,
            bits: [0; WORDS],
        };
        w.insert(seq);
        self.windows.insert(origin.clone(), w);
        self.order.push_back(origin);
        true
    }

    /// Origins remembered.
    pub fn origins(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the window, exactly a set; below it, seen; origins bounded.
    #[test]
    fn windows_agree_with_a_set_within_the_window() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut w = SeqWindows::new(4 * WINDOW as usize);
        let mut set = HashSet::new();
        let mut top = [0u64; 3];
        for _ in 0..200_000 {
            let o = rng.usize(..3);
            let seq = match rng.u8(..4) {
                0 => top[o] + 1 + rng.u64(..2 * WINDOW),
                _ => (top[o] + 1).saturating_sub(rng.u64(..WINDOW + 8)).max(1),
            };
            let expect = if seq + WINDOW <= top[o] {
                false
            } else {
                set.insert((o, seq))
            };
            set.insert((o, seq));
            top[o] = top[o].max(seq);
            assert_eq!(
                w.insert(o, seq),
                expect,
                "origin {o} seq {seq} top {}",
                top[o]
            );
        }
        assert_eq!(w.origins(), 3);
        let mut small = SeqWindows::new(2 * WINDOW as usize);
        for o in 0..10u8 {
            assert!(small.insert(o, 1));
        }
        assert_eq!(small.origins(), 2);
        assert!(small.insert(0u8, 1), "a forgotten origin starts afresh");
        // An origin costs a few words, whatever the window.
        assert!(std::mem::size_of::<Window>() <= 8 + WINDOW as usize / 8);
    }

    #[test]
    fn the_window_is_the_newest_256_numbers_exactly() {
        let mut w = SeqWindows::new(WINDOW as usize);
        assert!(w.insert(1u8, 1000));
        assert!(
            w.insert(1u8, 1000 - (WINDOW - 1)),
            "255 below the newest: remembered"
        );
        assert!(!w.insert(1u8, 1000 - WINDOW), "256 below the newest: seen");
        assert!(!w.insert(1u8, 1000 - (WINDOW - 1)), "now a duplicate");
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut p = SeenPool::new(128);
        for i in 0..10_000u32 {
            p.insert(i);
            assert!(p.len() <= 128);
        }
        assert!(p.contains(&9999));
        assert!(!p.contains(&(9999 - 128)));
        assert!(!p.is_empty());
        assert!(SeenPool::<u8>::new(4).is_empty());
    }
}
