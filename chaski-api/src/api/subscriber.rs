//! A subscription with a stream of its own, from [`Handle::subscriber`](crate::Handle::subscriber).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use chaski_proto::Received;

use crate::kit::Engine;
use crate::queue::{BlockingIter, Messages, QueueStats};

/// The messages one subscription's pattern matches, and nothing else: a `Stream` on async
/// runtimes, [`Subscriber::recv_timeout`] or [`Subscriber::blocking_iter`] without one. Dropping
/// it unsubscribes (unless another subscriber, or [`Handle::subscribe`](crate::Handle::subscribe),
/// still wants the same pattern). The stream ends when the node shuts down.
#[derive(Debug)]
pub struct Subscriber {
    pattern: String,
    messages: Messages<Received>,
    _registration: Registration,
}

/// Unsubscribes when the subscriber goes.
struct Registration {
    engine: Arc<Engine>,
    id: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.id)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.id;
        self.engine.turn(|s, now| {
            if let Some(pattern) = s.hub.remove_subscriber(id) {
                // A node that has shut down has nothing left to unsubscribe.
                let _ = s.core.unsubscribe(&pattern, now);
            }
        });
    }
}

impl Subscriber {
    pub(crate) fn new(
        engine: Arc<Engine>,
        id: u64,
        pattern: &str,
        messages: Messages<Received>,
    ) -> Self {
        Subscriber {
            pattern: pattern.to_string(),
            messages,
            _registration: Registration { engine, id },
        }
    }

    /// The topic or pattern subscribed to.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next message if one is queued.
    pub fn try_recv(&self) -> Option<Received> {
        self.messages.try_recv()
    }

    /// Blocks up to `timeout` for the next message; `None` on timeout or once the node has
    /// shut down and the queue is empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout)
    }

    /// Iterates, blocking for each message, until the node has shut down.
    pub fn blocking_iter(&self) -> BlockingIter<Received> {
        self.messages.blocking_iter()
    }

    /// This subscriber's queue counters.
    pub fn stats(&self) -> QueueStats {
        self.messages.stats()
    }

    /// Whether the stream has ended (the node shut down and every message was taken).
    pub fn is_closed(&self) -> bool {
        self.messages.is_closed()
    }
}

impl Stream for Subscriber {
    type Item = Received;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        Pin::new(&mut self.get_mut().messages).poll_next(cx)
    }
}
