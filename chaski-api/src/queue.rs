//! The bounded queue between a node's driver and the application, with the slow-consumer
//! policy, usable as an async `Stream` or a blocking receiver.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;

use chaski_proto::SlowConsumer;

/// Items a receiver takes from the queue at once.
const BATCH: usize = 256;

/// Counters of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items queued now.
    pub len: usize,
    /// Items dropped by the drop-oldest policy.
    pub dropped: u64,
    /// Items delivered to the application.
    pub delivered: u64,
}

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
    dropped: u64,
    delivered: u64,
    reader: Option<Waker>,
    /// Tasks waiting for room (one per connection at most).
    space: Vec<Waker>,
    /// Threads blocked in `recv_timeout` (the condvar is signalled only if some are).
    waiting: usize,
}

#[derive(Debug)]
struct Shared<T> {
    inner: Mutex<Inner<T>>,
    cond: Condvar,
    capacity: usize,
    policy: SlowConsumer,
}

/// The producer side, held by the driver.
#[derive(Debug)]
pub struct MessageQueue<T> {
    shared: Arc<Shared<T>>,
}

/// The consumer side: a `Stream`, or blocking with [`Messages::recv_timeout`]. Clones share
/// one queue (each item goes to one of them).
///
/// A receiver takes up to 256 queued items at once into its own batch (one lock of the shared
/// queue per batch, not per item); a dropped receiver gives what it did not read back to the
/// front of the queue.
#[derive(Debug)]
pub struct Messages<T> {
    shared: Arc<Shared<T>>,
    batch: Mutex<VecDeque<T>>,
}

impl<T> Clone for Messages<T> {
    fn clone(&self) -> Self {
        Messages {
            shared: self.shared.clone(),
            batch: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T> Drop for Messages<T> {
    fn drop(&mut self) {
        let batch = self.batch.get_mut().unwrap_or_else(|p| p.into_inner());
        if batch.is_empty() {
            return;
        }
        let mut g = lock(&self.shared);
        g.delivered -= batch.len() as u64;
        while let Some(item) = batch.pop_back() {
            g.items.push_front(item);
        }
        self.shared.readable(g);
    }
}

impl<T> Shared<T> {
    fn stats(&self) -> QueueStats {
        let g = lock(self);
        QueueStats {
            len: g.items.len(),
            dropped: g.dropped,
            delivered: g.delivered,
        }
    }
}

impl<T> Shared<T> {
    /// Tells readers (a stream's task, blocked threads) that items arrived; releases the lock.
    fn readable(&self, mut g: MutexGuard<'_, Inner<T>>) {
        if let Some(w) = g.reader.take() {
            w.wake();
        }
        let waiting = g.waiting > 0;
        drop(g);
        if waiting {
            self.cond.notify_all();
        }
    }
}

fn lock<T>(s: &Shared<T>) -> MutexGuard<'_, Inner<T>> {
    // A panic while holding this lock cannot leave the queue inconsistent: recover it.
    s.inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> MessageQueue<T> {
    /// A queue of `capacity` items with the given policy, and its consumer side.
    pub fn new(capacity: usize, policy: SlowConsumer) -> (Self, Messages<T>) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
                dropped: 0,
                delivered: 0,
                reader: None,
                space: Vec::new(),
                waiting: 0,
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
            policy,
        });
        (
            MessageQueue {
                shared: shared.clone(),
            },
            Messages {
                shared,
                batch: Mutex::new(VecDeque::new()),
            },
        )
    }

    /// Queues an item. Under drop-oldest the oldest item makes room; under back-pressure the
    /// item is always kept and the driver must stop reading while [`MessageQueue::is_full`].
    pub fn push(&self, item: T) {
        self.push_many(std::iter::once(item));
    }

    /// Queues several items under one lock, with one wake-up (the policy as in
    /// [`MessageQueue::push`]).
    pub fn push_many(&self, items: impl IntoIterator<Item = T>) {
        let mut g = lock(&self.shared);
        for item in items {
            if self.shared.policy == SlowConsumer::DropOldest
                && g.items.len() >= self.shared.capacity
            {
                g.items.pop_front();
                g.dropped += 1;
            }
            g.items.push_back(item);
        }
        self.shared.readable(g);
    }

    /// Whether the driver should stop reading sockets (back-pressure only).
    pub fn is_full(&self) -> bool {
        self.shared.policy == SlowConsumer::BackPressure
            && lock(&self.shared).items.len() >= self.shared.capacity
    }

    /// Ready once the queue has room; registers the task otherwise (every waiting task is
    /// woken when the application reads).
    pub fn poll_space(&self, cx: &Context<'_>) -> Poll<()> {
        if self.shared.policy == SlowConsumer::DropOldest {
            return Poll::Ready(());
        }
        let mut g = lock(&self.shared);
        if g.items.len() < self.shared.capacity {
            Poll::Ready(())
        } else {
            if !g.space.iter().any(|w| w.will_wake(cx.waker())) {
                g.space.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    /// Ends the stream once the queued items are read.
    pub fn close(&self) {
        let mut g = lock(&self.shared);
        g.closed = true;
        if let Some(w) = g.reader.take() {
            w.wake();
        }
        drop(g);
        self.shared.cond.notify_all();
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }
}

impl<T> Drop for MessageQueue<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Messages<T> {
    /// The next item of this receiver's batch, or of the queue (then taken whole as the
    /// batch); `g` is the queue, locked.
    fn take(g: &mut Inner<T>, batch: &mut VecDeque<T>) -> Option<T> {
        if let Some(item) = batch.pop_front() {
            return Some(item);
        }
        if g.items.is_empty() {
            return None;
        }
        if g.items.len() <= BATCH {
            std::mem::swap(&mut g.items, batch);
        } else {
            batch.extend(g.items.drain(..BATCH));
        }
        g.delivered += batch.len() as u64;
        for w in g.space.drain(..) {
            w.wake();
        }
        batch.pop_front()
    }

    fn batch(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let mut batch = self.batch();
        if let Some(item) = batch.pop_front() {
            return Some(item);
        }
        Self::take(&mut lock(&self.shared), &mut batch)
    }

    /// Blocks up to `timeout` for the next item; `None` on timeout or once closed and empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let mut batch = self.batch();
        if let Some(item) = batch.pop_front() {
            return Some(item);
        }
        let mut g = lock(&self.shared);
        if let Some(item) = Self::take(&mut g, &mut batch) {
            return Some(item);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = Self::take(&mut g, &mut batch) {
                return Some(item);
            }
            if g.closed {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g.waiting += 1;
            g = self
                .shared
                .cond
                .wait_timeout(g, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            g.waiting -= 1;
        }
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }
}

impl<T> Stream for Messages<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut batch = self.batch();
        if let Some(item) = batch.pop_front() {
            return Poll::Ready(Some(item));
        }
        let mut g = lock(&self.shared);
        if let Some(item) = Self::take(&mut g, &mut batch) {
            return Poll::Ready(Some(item));
        }
        if g.closed {
            return Poll::Ready(None);
        }
        g.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A blocking iterator over a queue, from [`Messages::blocking_iter`].
#[derive(Debug)]
pub struct BlockingIter<T>(Messages<T>);

impl<T> Messages<T> {
    /// Iterates, blocking for each item, until the node has shut down and the queue is empty
    /// (for programs without an async runtime).
    pub fn blocking_iter(&self) -> BlockingIter<T> {
        BlockingIter(self.clone())
    }
}

impl<T> Iterator for BlockingIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.0.recv_timeout(Duration::from_secs(3600)) {
                return Some(x);
            }
            if lock(&self.0.shared).closed {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_oldest_keeps_the_bound_and_counts() {
        let (q, m) = MessageQueue::new(3, SlowConsumer::DropOldest);
        for i in 0..10 {
            q.push(i);
        }
        assert_eq!(q.stats().len, 3);
        assert_eq!(q.stats().dropped, 7);
        assert!(!q.is_full());
        assert_eq!(m.try_recv(), Some(7));
    }

    #[test]
    fn a_receiver_takes_a_batch_and_gives_back_what_it_did_not_read() {
        let (q, m) = MessageQueue::new(10_000, SlowConsumer::BackPressure);
        q.push_many(0..1000);
        let other = m.clone();
        assert_eq!(other.try_recv(), Some(0));
        // The rest of its batch is its own; the queue keeps what was not taken.
        assert_eq!(q.stats().len, 1000 - BATCH);
        assert_eq!(m.try_recv(), Some(BATCH as i32));
        assert_eq!(q.stats().len, 1000 - 2 * BATCH);
        // Dropped: what it did not read goes back to the front of the queue, in order.
        drop(other);
        assert_eq!(q.stats().len, 1000 - 2 * BATCH + (BATCH - 1));
        let rest: Vec<i32> = std::iter::from_fn(|| m.try_recv()).collect();
        // m's own batch first, then the queue: the given-back items, then the rest.
        let b = BATCH as i32;
        let mut expect: Vec<i32> = (b + 1..2 * b).collect();
        expect.extend(1..b);
        expect.extend(2 * b..1000);
        assert_eq!(rest, expect);
        assert_eq!(m.stats().delivered, 1000);
    }

    #[test]
    fn back_pressure_reports_full_until_read() {
        let (q, m) = MessageQueue::new(2, SlowConsumer::BackPressure);
        q.push(1);
        assert!(!q.is_full());
        q.push(2);
        assert!(q.is_full());
        assert_eq!(m.recv_timeout(Duration::from_millis(1)), Some(1));
        assert!(!q.is_full());
        q.close();
        assert_eq!(m.recv_timeout(Duration::from_millis(1)), Some(2));
        assert_eq!(m.recv_timeout(Duration::from_secs(5)), None);
    }
}
