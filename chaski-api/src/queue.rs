//! The bounded queue between a node's driver and the application, with the slow-consumer
//! policy, usable as an async `Stream` or a blocking receiver.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;

use chaski_proto::SlowConsumer;

/// Items a receiver takes from the queue at once (at most).
const BATCH: usize = 256;

/// Bytes a receiver takes from the queue at once (past the first item).
const BATCH_BYTES: usize = 1 << 20;

/// The bytes an item holds, for a queue's byte bound.
pub trait Weigh {
    /// Bytes held (the payload's, roughly; not the item's fixed size).
    fn weight(&self) -> usize;
}

impl Weigh for chaski_proto::Received {
    fn weight(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}

impl Weigh for chaski_proto::Event {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// Counters of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items queued now.
    pub len: usize,
    /// Bytes they hold (payload bytes, for messages).
    pub bytes: usize,
    /// Items dropped by the drop-oldest policy.
    pub dropped: u64,
    /// Items delivered to the application.
    pub delivered: u64,
}

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    /// What `items` weigh.
    bytes: usize,
    closed: bool,
    dropped: u64,
    delivered: u64,
    /// The task of each receiver waiting for items, by receiver id (a receiver's clone has
    /// its own, so two tasks reading one stream are both woken).
    readers: Vec<(u64, Waker)>,
    /// Tasks waiting for room (one per connection at most).
    space: Vec<Waker>,
    /// Threads blocked in `recv_timeout` (the condvar is signalled only if some are).
    waiting: usize,
}

#[derive(Debug)]
struct Channel<T> {
    inner: Mutex<Inner<T>>,
    cond: Condvar,
    /// The next clone's id.
    next_reader: AtomicU64,
    capacity: usize,
    max_bytes: usize,
    policy: SlowConsumer,
}

/// The producer side, held by the driver.
#[derive(Debug)]
pub struct MessageQueue<T: Weigh> {
    shared: Arc<Channel<T>>,
}

/// A node's lifecycle event stream ([`Handle::events`](crate::Handle::events)).
pub type Events = Messages<chaski_proto::Event>;

/// The consumer side, one per queue: a `Stream`, or blocking with [`Messages::recv_timeout`].
/// Clones are the same stream (each item goes to one of them, in order), so a program may take
/// it anew for every message (`node.messages().next().await`) at no cost.
///
/// Items leave the queue up to 256 at a time (one lock of the queue per batch, not per item),
/// into a batch every clone reads from.
#[derive(Debug)]
pub struct Messages<T: Weigh> {
    shared: Arc<Channel<T>>,
    batch: Arc<Mutex<VecDeque<T>>>,
    /// This clone's id, under which its task waits for items.
    id: u64,
}

impl<T: Weigh> Clone for Messages<T> {
    fn clone(&self) -> Self {
        Messages {
            shared: self.shared.clone(),
            batch: self.batch.clone(),
            id: self.shared.next_reader.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl<T: Weigh> Drop for Messages<T> {
    fn drop(&mut self) {
        let id = self.id;
        let mut g = lock(&self.shared);
        if !g.readers.is_empty() {
            g.readers.retain(|(r, _)| *r != id);
        }
    }
}

impl<T> Channel<T> {
    fn stats(&self) -> QueueStats {
        let g = lock(self);
        QueueStats {
            len: g.items.len(),
            bytes: g.bytes,
            dropped: g.dropped,
            delivered: g.delivered,
        }
    }

    /// Whether the queue holds as many items, or bytes, as it may.
    fn at_bound(&self, g: &Inner<T>) -> bool {
        g.items.len() >= self.capacity || g.bytes >= self.max_bytes
    }
}

impl<T> Channel<T> {
    /// Tells readers (every waiting receiver's task, blocked threads) that items arrived;
    /// releases the lock.
    fn readable(&self, mut g: MutexGuard<'_, Inner<T>>) {
        for (_, w) in g.readers.drain(..) {
            w.wake();
        }
        let waiting = g.waiting > 0;
        drop(g);
        if waiting {
            self.cond.notify_all();
        }
    }
}

fn lock<T>(s: &Channel<T>) -> MutexGuard<'_, Inner<T>> {
    // A panic while holding this lock cannot leave the queue inconsistent: recover it.
    s.inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Weigh> MessageQueue<T> {
    /// A queue of at most `capacity` items and `max_bytes` bytes ([`Weigh`]) with the given
    /// policy, and its consumer side.
    pub fn new(capacity: usize, max_bytes: usize, policy: SlowConsumer) -> (Self, Messages<T>) {
        let shared = Arc::new(Channel {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
                dropped: 0,
                delivered: 0,
                readers: Vec::new(),
                space: Vec::new(),
                waiting: 0,
            }),
            cond: Condvar::new(),
            next_reader: AtomicU64::new(1),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            policy,
        });
        (
            MessageQueue {
                shared: shared.clone(),
            },
            Messages {
                shared,
                batch: Arc::default(),
                id: 0,
            },
        )
    }

    /// Queues an item. Under drop-oldest the oldest item makes room; under back-pressure the
    /// item is always kept and the driver must stop reading while [`MessageQueue::poll_space`] is pending.
    pub fn push(&self, item: T) {
        self.push_many(std::iter::once(item));
    }

    /// Queues several items under one lock, with one wake-up (the policy as in
    /// [`MessageQueue::push`]).
    pub fn push_many(&self, items: impl IntoIterator<Item = T>) {
        let mut g = lock(&self.shared);
        for item in items {
            let w = item.weight();
            if self.shared.policy == SlowConsumer::DropOldest {
                while !g.items.is_empty()
                    && (g.items.len() >= self.shared.capacity
                        || g.bytes + w > self.shared.max_bytes)
                {
                    if let Some(old) = g.items.pop_front() {
                        g.bytes -= old.weight();
                        g.dropped += 1;
                    }
                }
            }
            g.bytes += w;
            g.items.push_back(item);
        }
        self.shared.readable(g);
    }

    /// Whether the queue holds as many items, or bytes, as it may (back-pressure only).
    #[cfg(test)]
    fn is_full(&self) -> bool {
        self.shared.policy == SlowConsumer::BackPressure && {
            let g = lock(&self.shared);
            self.shared.at_bound(&g)
        }
    }

    /// Counters.
    #[cfg(test)]
    fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// Ready once the queue has room; registers the task otherwise (every waiting task is
    /// woken when the application reads).
    pub fn poll_space(&self, cx: &Context<'_>) -> Poll<()> {
        if self.shared.policy == SlowConsumer::DropOldest {
            return Poll::Ready(());
        }
        let mut g = lock(&self.shared);
        if !self.shared.at_bound(&g) {
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
        for (_, w) in g.readers.drain(..) {
            w.wake();
        }
        drop(g);
        self.shared.cond.notify_all();
    }
}

impl<T: Weigh> Drop for MessageQueue<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T: Weigh> Messages<T> {
    /// The next item of the stream's batch, or of the queue (then up to [`BATCH`] items
    /// and about [`BATCH_BYTES`] bytes are taken as the batch); `g` is the queue, locked.
    fn take(g: &mut Inner<T>, batch: &mut VecDeque<T>) -> Option<T> {
        if let Some(item) = batch.pop_front() {
            return Some(item);
        }
        if g.items.is_empty() {
            return None;
        }
        if g.items.len() <= BATCH && g.bytes <= BATCH_BYTES {
            std::mem::swap(&mut g.items, batch);
            g.bytes = 0;
        } else {
            let mut bytes = 0;
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                let Some(item) = g.items.pop_front() else {
                    break;
                };
                bytes += item.weight();
                batch.push_back(item);
            }
            g.bytes -= bytes.min(g.bytes);
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
        // Read the clock only when there is something to wait for.
        let mut deadline = None;
        loop {
            let mut batch = self.batch();
            if let Some(item) = batch.pop_front() {
                return Some(item);
            }
            let mut g = lock(&self.shared);
            if let Some(item) = Self::take(&mut g, &mut batch) {
                return Some(item);
            }
            if g.closed {
                return None;
            }
            // Other clones use the batch meanwhile (the queue's lock is taken after it).
            drop(batch);
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
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

    /// Whether the stream has ended: the node shut down and every item was taken (nothing
    /// more will come; a receive then returns `None` at once).
    pub fn is_closed(&self) -> bool {
        if !self.batch().is_empty() {
            return false;
        }
        let g = lock(&self.shared);
        g.closed && g.items.is_empty()
    }
}

impl<T: Weigh> Stream for Messages<T> {
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
        let id = self.id;
        match g.readers.iter_mut().find(|(r, _)| *r == id) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => g.readers.push((id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

/// A blocking iterator over a queue, from [`Messages::blocking_iter`].
#[derive(Debug)]
pub struct BlockingIter<T: Weigh>(Messages<T>);

impl<T: Weigh> Messages<T> {
    /// Iterates, blocking for each item, until the node has shut down and the queue is empty
    /// (for programs without an async runtime).
    pub fn blocking_iter(&self) -> BlockingIter<T> {
        BlockingIter(self.clone())
    }
}

impl<T: Weigh> Iterator for BlockingIter<T> {
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

    impl Weigh for i32 {
        fn weight(&self) -> usize {
            4
        }
    }

    impl Weigh for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    #[test]
    fn the_byte_bound_holds_under_both_policies() {
        // Drop-oldest: the oldest go until the new item fits.
        let (q, m) = MessageQueue::new(100, 10_000, SlowConsumer::DropOldest);
        for i in 0..10u8 {
            q.push(vec![i; 3000]);
        }
        assert_eq!(
            (q.stats().len, q.stats().bytes, q.stats().dropped),
            (3, 9000, 7)
        );
        assert_eq!(m.try_recv().map(|v| v[0]), Some(7));
        // Back-pressure: full at the byte bound, whatever the count.
        let (q, m) = MessageQueue::new(100, 10_000, SlowConsumer::BackPressure);
        q.push(vec![0; 6000]);
        assert!(!q.is_full());
        q.push(vec![1; 6000]);
        assert!(q.is_full());
        assert_eq!(m.try_recv().map(|v| v[0]), Some(0));
        assert!(!q.is_full());
        assert_eq!(
            q.stats().bytes,
            0,
            "the receiver's batch is not the queue's"
        );
    }

    #[test]
    fn a_batch_takes_about_a_mebibyte_at_most() {
        let (q, m) = MessageQueue::new(100, usize::MAX, SlowConsumer::BackPressure);
        for _ in 0..8 {
            q.push(vec![0u8; 300_000]);
        }
        assert!(m.try_recv().is_some());
        // 4 × 300 KB reach 1 MiB: the other 4 stay in the queue.
        assert_eq!(q.stats().len, 4);
        assert_eq!(q.stats().bytes, 1_200_000);
    }

    #[test]
    fn every_task_reading_a_clone_is_woken() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (q, m) = MessageQueue::<i32>::new(10, usize::MAX, SlowConsumer::BackPressure);
        let other = m.clone();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut m = Box::pin(m);
        let mut other = Box::pin(other);
        // Both tasks wait, each on its own clone; polling again does not add a second entry.
        for _ in 0..3 {
            assert!(m
                .as_mut()
                .poll_next(&mut Context::from_waker(&wa))
                .is_pending());
        }
        assert!(other
            .as_mut()
            .poll_next(&mut Context::from_waker(&wb))
            .is_pending());
        q.push(1);
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            b.0.load(Ordering::SeqCst),
            1,
            "the second reader was never woken"
        );
        // A dropped receiver leaves no waker behind.
        assert!(other
            .as_mut()
            .poll_next(&mut Context::from_waker(&wb))
            .is_ready());
        assert!(other
            .as_mut()
            .poll_next(&mut Context::from_waker(&wb))
            .is_pending());
        drop(other);
        q.push(2);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn drop_oldest_keeps_the_bound_and_counts() {
        let (q, m) = MessageQueue::new(3, usize::MAX, SlowConsumer::DropOldest);
        for i in 0..10 {
            q.push(i);
        }
        assert_eq!(q.stats().len, 3);
        assert_eq!(q.stats().dropped, 7);
        assert!(!q.is_full());
        assert_eq!(m.try_recv(), Some(7));
    }

    #[test]
    fn clones_are_one_stream_in_order_and_a_clone_per_item_costs_no_batch() {
        let (q, m) = MessageQueue::new(10_000, usize::MAX, SlowConsumer::BackPressure);
        q.push_many(0..1000);
        let other = m.clone();
        assert_eq!(other.try_recv(), Some(0));
        // One batch left the queue; every clone reads it, in order.
        assert_eq!(q.stats().len, 1000 - BATCH);
        assert_eq!(m.try_recv(), Some(1));
        drop(other);
        assert_eq!(q.stats().len, 1000 - BATCH, "nothing is given back");
        // A fresh clone for every item (the README's `node.messages().next()`): in order,
        // and the queue gives up one batch at a time, not one per clone.
        let mut got = vec![0, 1];
        for _ in 2..1000 {
            got.push(m.clone().try_recv().expect("an item"));
        }
        assert_eq!(got, (0..1000).collect::<Vec<i32>>());
        assert_eq!(m.stats().delivered, 1000);
    }

    #[test]
    fn back_pressure_reports_full_until_read() {
        let (q, m) = MessageQueue::new(2, usize::MAX, SlowConsumer::BackPressure);
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
