//! What a service method learns about the call it answers, and how a caller's cancel reaches
//! it.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use chaski_proto::{NodeId, RemoteError};

use crate::service::CallFuture;

/// What a method learns about the call it answers
/// ([`ServiceBuilder::method_with_context`](crate::ServiceBuilder::method_with_context),
/// [`ServiceBuilder::method_async_with_context`](crate::ServiceBuilder::method_async_with_context)).
///
/// ```
/// use chaski_api::{CallContext, NodeId};
/// let ctx = CallContext::new(NodeId(7), None);
/// assert_eq!(ctx.caller, NodeId(7));
/// assert!(!ctx.is_cancelled());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CallContext {
    /// The calling node.
    pub caller: NodeId,
    /// When the caller stops waiting, if it said (work past it is wasted).
    pub deadline: Option<Instant>,
    cancel: Arc<Cancel>,
}

impl CallContext {
    /// A context for calling a service directly (tests, local use); never cancelled.
    pub fn new(caller: NodeId, deadline: Option<Instant>) -> Self {
        CallContext {
            caller,
            deadline,
            cancel: Arc::default(),
        }
    }

    /// Whether the caller cancelled the call (it gave up, its deadline passed, or it is gone):
    /// nobody waits for the answer any more.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// Resolves once the caller cancels the call.
    pub async fn cancelled(&self) {
        poll_fn(|cx| self.cancel.poll_set(cx)).await
    }

    pub(crate) fn cancel_handle(&self) -> Arc<Cancel> {
        self.cancel.clone()
    }
}

/// A call's cancel flag, set by the node when the caller cancels, seen by the method.
#[derive(Debug, Default)]
pub(crate) struct Cancel(Mutex<(bool, Vec<Waker>)>);

impl Cancel {
    /// Sets the flag and wakes whoever waits for it.
    pub(crate) fn cancel(&self) {
        let wakers = match self.0.lock() {
            Ok(mut s) => {
                s.0 = true;
                std::mem::take(&mut s.1)
            }
            Err(_) => return,
        };
        for w in wakers {
            w.wake();
        }
    }

    fn is_set(&self) -> bool {
        self.0.lock().map(|s| s.0).unwrap_or(true)
    }

    fn poll_set(&self, cx: &Context<'_>) -> Poll<()> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(());
        };
        if s.0 {
            return Poll::Ready(());
        }
        if !s.1.iter().any(|w| w.will_wake(cx.waker())) {
            s.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A method's future that ends as [`RemoteError::Cancelled`] (dropping the method's future) as
/// soon as its caller cancels.
pub(crate) struct Cancellable {
    pub(crate) cancel: Arc<Cancel>,
    pub(crate) inner: CallFuture,
}

impl Future for Cancellable {
    type Output = Result<Bytes, RemoteError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.cancel.poll_set(cx).is_ready() {
            return Poll::Ready(Err(RemoteError::Cancelled));
        }
        self.inner.as_mut().poll(cx)
    }
}
