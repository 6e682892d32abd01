//! Routing the core's events to the application: connect/call/ping/status waiters, the message
//! queue, the lifecycle event queue, and the local services that answer requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use chaski_proto::{
    ConnId, Delivery, Event, Node, NodeId, Received, RemoteError, RequestId, SlowConsumer, Status,
};

use crate::context::{CallContext, Cancel, Cancellable};
use crate::error::{Error, Result};
use crate::queue::{Events, MessageQueue, Messages};
use crate::service::{CallFuture, Service};

use super::transfers::Transfers;

/// The sending half of a one-shot answer.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// A request from a peer to run on a local service; answer with
/// [`Engine::respond`](super::Engine::respond)`(peer, id, future.await)`.
pub struct Invocation {
    /// The caller.
    pub peer: NodeId,
    /// The caller's request id.
    pub id: u64,
    /// The call.
    pub future: CallFuture,
}

/// Lifecycle events kept for the application before the oldest is dropped.
const EVENT_QUEUE: usize = 4096;

/// A subscription with a stream of its own (a `Subscriber`, to the application).
struct Sub {
    id: u64,
    pattern: String,
    queue: MessageQueue<Received>,
}

/// Waiters and queues of one node, shared by every runtime.
pub struct Hub {
    /// Subscriptions with their own streams.
    subs: Vec<Sub>,
    next_sub: u64,
    /// What `subscribe` asked for: messages it matches go to the node-wide stream.
    wide: BTreeSet<String>,
    /// Each subscriber's queue: capacity, bytes, policy (as the node-wide one).
    queue_bounds: (usize, usize, SlowConsumer),
    connects: HashMap<ConnId, Reply<chaski_proto::EdgeInfo>>,
    calls: HashMap<RequestId, Reply<Bytes>>,
    pings: HashMap<u64, Reply<Duration>>,
    statuses: HashMap<u64, Reply<Status>>,
    paired: Vec<Reply<()>>,
    /// Waiting for a server of a service: service → waiters.
    seeking: HashMap<String, Vec<Reply<()>>>,
    services: BTreeMap<String, Service>,
    /// Requests being answered, each with its cancel flag (bounded by the core's
    /// `max_inbound_requests` per peer).
    running: HashMap<(NodeId, u64), Arc<Cancel>>,
    messages: MessageQueue<Received>,
    /// Messages of this turn, handed to the queue at once by [`Hub::deliver`].
    inbox: Vec<Received>,
    events: MessageQueue<Event>,
    /// Files: receiving patterns and sending transfers.
    pub(crate) transfers: Transfers,
}

impl Hub {
    /// A hub with the configured message queue, and the consumer sides of the message and
    /// event queues.
    pub fn new(cfg: &chaski_proto::Config) -> (Hub, Messages<Received>, Events) {
        let (messages, m) =
            MessageQueue::new(cfg.message_queue, cfg.queue_budget(), cfg.slow_consumer);
        let (events, e) = MessageQueue::new(EVENT_QUEUE, usize::MAX, SlowConsumer::DropOldest);
        let hub = Hub {
            subs: Vec::new(),
            next_sub: 0,
            wide: BTreeSet::new(),
            queue_bounds: (cfg.message_queue, cfg.queue_budget(), cfg.slow_consumer),
            inbox: Vec::new(),
            connects: HashMap::new(),
            calls: HashMap::new(),
            pings: HashMap::new(),
            statuses: HashMap::new(),
            paired: Vec::new(),
            seeking: HashMap::new(),
            services: BTreeMap::new(),
            running: HashMap::new(),
            messages,
            events,
            transfers: Transfers::default(),
        };
        (hub, m, e)
    }

    /// Waits for the edge of a `connect`.
    pub fn wait_connect(&mut self, conn: ConnId, w: Reply<chaski_proto::EdgeInfo>) {
        self.connects.insert(conn, w);
    }

    /// Waits for the answer to a call.
    pub fn wait_call(&mut self, id: RequestId, w: Reply<Bytes>) {
        self.calls.insert(id, w);
    }

    /// Cancels a call whose caller stopped waiting (its future was dropped): the core tells
    /// the server. `false` if it was answered already.
    pub fn abandon_call(&mut self, node: &mut Node, id: RequestId, now: Instant) -> bool {
        self.calls.remove(&id).is_some() && node.cancel_call(id, now)
    }

    /// Waits for the pong of a ping.
    pub fn wait_ping(&mut self, id: u64, w: Reply<Duration>) {
        self.pings.insert(id, w);
    }

    /// Waits for a status reply.
    pub fn wait_status(&mut self, token: u64, w: Reply<Status>) {
        self.statuses.insert(token, w);
    }

    /// Waits until every topic of the node is paired.
    pub fn wait_paired(&mut self, node: &Node, w: Reply<()>) {
        if node.is_paired() {
            let _ = w.send(Ok(()));
        } else {
            self.paired.push(w);
        }
    }

    /// Waits until a server of `service` is connected ([`Node::seek_service`]).
    pub fn wait_service(&mut self, service: &str, w: Reply<()>) {
        self.seeking.entry(service.to_string()).or_default().push(w);
    }

    /// The request `(peer, id)` was answered: it can no longer be cancelled.
    pub fn answered(&mut self, peer: NodeId, id: u64) {
        self.running.remove(&(peer, id));
    }

    /// Registers a local service by name.
    pub fn add_service(&mut self, name: &str, svc: Service) {
        self.services.insert(name.to_string(), svc);
    }

    /// Removes a local service.
    pub fn remove_service(&mut self, name: &str) -> bool {
        self.services.remove(name).is_some()
    }

    /// Hands the messages of this turn to the application: each subscriber's stream gets what
    /// its pattern matches, the node-wide stream what `subscribe` asked for (one lock and one
    /// wake-up per queue).
    pub fn deliver(&mut self) {
        if self.inbox.is_empty() {
            return;
        }
        if self.subs.is_empty() {
            // Every subscription is the node-wide stream's: the common case, as it was.
            self.messages.push_many(self.inbox.drain(..));
            return;
        }
        let mut each: Vec<Vec<Received>> = vec![Vec::new(); self.subs.len()];
        let mut wide = Vec::new();
        for m in self.inbox.drain(..) {
            for (s, batch) in self.subs.iter().zip(&mut each) {
                if chaski_proto::topic::matches(&s.pattern, &m.topic) {
                    batch.push(m.clone());
                }
            }
            if self.wide.contains(&m.topic)
                || self
                    .wide
                    .iter()
                    .any(|p| chaski_proto::topic::matches(p, &m.topic))
            {
                wide.push(m);
            }
        }
        for (s, batch) in self.subs.iter().zip(each) {
            if !batch.is_empty() {
                s.queue.push_many(batch);
            }
        }
        if !wide.is_empty() {
            self.messages.push_many(wide);
        }
    }

    /// `subscribe` asked for `topic` (its messages go to the node-wide stream).
    pub fn subscribe_wide(&mut self, topic: &str) {
        self.wide.insert(topic.to_string());
    }

    /// `unsubscribe` of `topic`: whether the node should stop subscribing to it (no subscriber
    /// holds the same pattern).
    pub fn unsubscribe_wide(&mut self, topic: &str) -> bool {
        self.wide.remove(topic);
        !self.subs.iter().any(|s| s.pattern == topic) && !self.transfers.holds(topic)
    }

    /// A new subscriber of `pattern`: its id and its stream.
    pub fn add_subscriber(&mut self, pattern: &str) -> (u64, Messages<Received>) {
        let (capacity, bytes, policy) = self.queue_bounds;
        let (queue, messages) = MessageQueue::new(capacity, bytes, policy);
        self.next_sub += 1;
        let id = self.next_sub;
        self.subs.push(Sub {
            id,
            pattern: pattern.to_string(),
            queue,
        });
        (id, messages)
    }

    /// Whether anything still wants the messages or files of `pattern` (`subscribe`, a
    /// subscriber, a receiving pattern).
    pub(crate) fn wants(&self, pattern: &str) -> bool {
        self.wide.contains(pattern)
            || self.subs.iter().any(|s| s.pattern == pattern)
            || self.transfers.holds(pattern)
    }

    /// A subscriber was dropped: the pattern the node should stop subscribing to, if nothing
    /// else wants it (another subscriber, or `subscribe`).
    pub fn remove_subscriber(&mut self, id: u64) -> Option<String> {
        let pos = self.subs.iter().position(|s| s.id == id)?;
        let gone = self.subs.remove(pos);
        let still = self.wide.contains(&gone.pattern)
            || self.subs.iter().any(|s| s.pattern == gone.pattern)
            || self.transfers.holds(&gone.pattern);
        (!still).then_some(gone.pattern)
    }

    /// Ready while every queue has room (back-pressure): registers the task with each full one.
    pub fn poll_space(&self, cx: &Context<'_>) -> Poll<()> {
        let mut ready = self.messages.poll_space(cx).is_ready();
        for s in &self.subs {
            ready &= s.queue.poll_space(cx).is_ready();
        }
        ready &= self.transfers.poll_space(cx);
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// A lifecycle event: answers the connect or ping it finishes, then joins the application's
    /// event stream.
    pub fn event(&mut self, ev: Event) {
        match &ev {
            Event::PeerConnected { conn, info, .. } => {
                if let Some(w) = self.connects.remove(conn) {
                    let _ = w.send(Ok((**info).clone()));
                }
            }
            Event::ConnectFailed { conn, error, .. } => {
                if let Some(w) = self.connects.remove(conn) {
                    let _ = w.send(Err(Error::Connect(error.clone())));
                }
            }
            Event::Latency { ping, rtt, .. } => {
                if let Some(w) = self.pings.remove(ping) {
                    let _ = w.send(Ok(*rtt));
                }
            }
            _ => {}
        }
        self.events.push(ev);
    }

    /// What the application asked for, to its stream or waiter; a request for a local service
    /// comes back as an [`Invocation`] for the runtime to run (spawned, so user code never runs
    /// on the driver).
    pub fn delivery(&mut self, node: &mut Node, d: Delivery, now: Instant) -> Option<Invocation> {
        let d = self.transfers.delivery(node, d)?;
        match d {
            Delivery::Message(m) => self.inbox.push(m),
            Delivery::Request {
                peer,
                id,
                service,
                path,
                kind,
                args,
                deadline,
                ..
            } => match self.services.get(&service) {
                Some(svc) => {
                    let ctx = CallContext::new(peer, deadline);
                    let cancel = ctx.cancel_handle();
                    self.running.insert((peer, id), cancel.clone());
                    let inner = svc.invoke(ctx, &path, kind, args);
                    return Some(Invocation {
                        peer,
                        id,
                        future: Box::pin(Cancellable { cancel, inner }),
                    });
                }
                None => {
                    let _ = node.respond(peer, id, Err(RemoteError::NotFound(service)), now);
                }
            },
            Delivery::Response { id, result } => {
                if let Some(w) = self.calls.remove(&id) {
                    let _ = w.send(result.map_err(Error::Remote));
                }
            }
            Delivery::Cancelled { peer, id } => {
                if let Some(c) = self.running.remove(&(peer, id)) {
                    c.cancel();
                }
            }
            Delivery::ServiceFound { service, peer } => {
                for w in self.seeking.remove(&service).unwrap_or_default() {
                    let _ = w.send(match peer {
                        Some(_) => Ok(()),
                        None => Err(Error::NoService(service.clone())),
                    });
                }
            }
            Delivery::Status { token, status, .. } => {
                if let Some(w) = self.statuses.remove(&token) {
                    let _ = w.send(status.ok_or(Error::Timeout));
                }
            }
            _ => {}
        }
        None
    }

    /// Housekeeping after a batch of events: answers paired waiters, forgets pings whose edge
    /// is gone, and cancels calls whose caller gave up.
    pub fn sweep(&mut self, node: &mut Node, now: Instant) {
        if !self.paired.is_empty() && node.is_paired() {
            for w in self.paired.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        self.paired.retain(|w| !w.is_canceled());
        let gone: Vec<RequestId> = self
            .calls
            .iter()
            .filter(|(_, w)| w.is_canceled())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.calls.remove(&id);
            node.cancel_call(id, now);
        }
        self.pings.retain(|_, w| !w.is_canceled());
        self.seeking.retain(|_, ws| {
            ws.retain(|w| !w.is_canceled());
            !ws.is_empty()
        });
        self.connects.retain(|_, w| !w.is_canceled());
        self.statuses.retain(|_, w| !w.is_canceled());
    }

    /// Fails every waiter with [`Error::ShutDown`] and ends the queues.
    pub fn shutdown(&mut self) {
        for (_, w) in self.connects.drain() {
            let _ = w.send(Err(Error::ShutDown));
        }
        for (_, w) in self.calls.drain() {
            let _ = w.send(Err(Error::ShutDown));
        }
        for (_, w) in self.pings.drain() {
            let _ = w.send(Err(Error::ShutDown));
        }
        for (_, w) in self.statuses.drain() {
            let _ = w.send(Err(Error::ShutDown));
        }
        for w in self.paired.drain(..) {
            let _ = w.send(Err(Error::ShutDown));
        }
        self.messages.close();
        for s in &self.subs {
            s.queue.close();
        }
        self.events.close();
        self.transfers.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn message(topic: &str) -> Received {
        Received {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            origin: None,
            seq: 0,
            hops: 1,
            from: None,
        }
    }

    #[test]
    fn subscribers_get_their_matches_and_a_full_one_holds_the_readers() {
        let cfg = chaski_proto::Config::default().message_queue(2);
        let mut node = Node::new(cfg.clone(), None).unwrap();
        let (mut hub, wide, _events) = Hub::new(&cfg);
        let (id, temps) = hub.add_subscriber("sensors/*/t");
        hub.subscribe_wide("alerts/**");
        let now = Instant::now();
        for t in ["sensors/a/t", "alerts/x", "sensors/b/h", "sensors/c/t"] {
            assert!(hub
                .delivery(&mut node, Delivery::Message(message(t)), now)
                .is_none());
        }
        hub.deliver();
        let got: Vec<String> = std::iter::from_fn(|| temps.try_recv())
            .map(|m| m.topic)
            .collect();
        assert_eq!(got, ["sensors/a/t", "sensors/c/t"]);
        assert_eq!(wide.try_recv().map(|m| m.topic), Some("alerts/x".into()));
        assert!(
            wide.try_recv().is_none(),
            "a subscriber's message reached the node-wide stream"
        );
        // Back-pressure: a full subscriber queue holds the readers until it is read.
        let cx = Context::from_waker(Waker::noop());
        assert!(hub.poll_space(&cx).is_ready());
        for t in ["sensors/d/t", "sensors/e/t"] {
            hub.delivery(&mut node, Delivery::Message(message(t)), now);
        }
        hub.deliver();
        assert!(hub.poll_space(&cx).is_pending());
        assert!(temps.try_recv().is_some());
        assert!(hub.poll_space(&cx).is_ready());
        // The last subscriber of a pattern gone: the node should unsubscribe it.
        let (other, _s) = hub.add_subscriber("alerts/**");
        assert_eq!(
            hub.remove_subscriber(other),
            None,
            "subscribe() still wants it"
        );
        assert_eq!(hub.remove_subscriber(id), Some("sensors/*/t".into()));
        assert!(hub.unsubscribe_wide("alerts/**"));
    }
}
