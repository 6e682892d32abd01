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

use std::collections::{HashSet, VecDeque};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_capacity() {
        let mut p = SeenPool::new(128);
        for i in 0..10_000u32 {
            p.insert(i);
            assert!(p.len() <= 128);
        }
        assert!(p.contains(&9999));
        assert!(!p.contains(&(9999 - 128)));
    }
}
