//! Routing the core's events to the application: connect/call/ping/status waiters, the message
//! queue, the lifecycle event queue, and the local services that answer requests.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use chaski_proto::{
    ConnId, Event, Node, NodeId, Received, RemoteError, RequestId, SlowConsumer, Status,
};

use crate::error::{Error, Result};
use crate::queue::{MessageQueue, Messages};
use crate::service::{CallFuture, Service};

/// The sending half of a one-shot answer.
pub type Waiter<T> = oneshot::Sender<Result<T>>;

/// A request from a peer to run on a local service; answer with
/// [`Shared::respond`](crate::Shared::respond)`(peer, id, future.await)`.
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

/// Waiters and queues of one node, shared by every runtime.
pub struct Hub {
    connects: HashMap<ConnId, Waiter<chaski_proto::EdgeInfo>>,
    calls: HashMap<RequestId, Waiter<Bytes>>,
    pings: HashMap<u64, Waiter<Duration>>,
    statuses: HashMap<u64, Waiter<Status>>,
    paired: Vec<Waiter<()>>,
    services: BTreeMap<String, Service>,
    messages: MessageQueue<Received>,
    /// Messages of this turn, handed to the queue at once by [`Hub::deliver`].
    inbox: Vec<Received>,
    events: MessageQueue<Event>,
}

impl Hub {
    /// A hub with the configured message queue, and the consumer sides of the message and
    /// event queues.
    pub fn new(cfg: &chaski_proto::Config) -> (Hub, Messages<Received>, Messages<Event>) {
        let (messages, m) =
            MessageQueue::new(cfg.message_queue, cfg.queue_budget(), cfg.slow_consumer);
        let (events, e) = MessageQueue::new(EVENT_QUEUE, usize::MAX, SlowConsumer::DropOldest);
        let hub = Hub {
            inbox: Vec::new(),
            connects: HashMap::new(),
            calls: HashMap::new(),
            pings: HashMap::new(),
            statuses: HashMap::new(),
            paired: Vec::new(),
            services: BTreeMap::new(),
            messages,
            events,
        };
        (hub, m, e)
    }

    /// The message queue (the driver checks [`MessageQueue::is_full`] before reading sockets).
    pub fn messages(&self) -> &MessageQueue<Received> {
        &self.messages
    }

    /// Waits for the edge of a `connect`.
    pub fn wait_connect(&mut self, conn: ConnId, w: Waiter<chaski_proto::EdgeInfo>) {
        self.connects.insert(conn, w);
    }

    /// Waits for the answer to a call.
    pub fn wait_call(&mut self, id: RequestId, w: Waiter<Bytes>) {
        self.calls.insert(id, w);
    }

    /// Waits for the pong of a ping.
    pub fn wait_ping(&mut self, id: u64, w: Waiter<Duration>) {
        self.pings.insert(id, w);
    }

    /// Waits for a status reply.
    pub fn wait_status(&mut self, token: u64, w: Waiter<Status>) {
        self.statuses.insert(token, w);
    }

    /// Waits until every topic of the node is paired.
    pub fn wait_paired(&mut self, node: &Node, w: Waiter<()>) {
        if node.is_paired() {
            let _ = w.send(Ok(()));
        } else {
            self.paired.push(w);
        }
    }

    /// Registers a local service by name.
    pub fn add_service(&mut self, name: &str, svc: Service) {
        self.services.insert(name.to_string(), svc);
    }

    /// Removes a local service.
    pub fn remove_service(&mut self, name: &str) -> bool {
        self.services.remove(name).is_some()
    }

    /// Hands the messages of this turn to the application's queue (one lock, one wake-up).
    pub fn deliver(&mut self) {
        if !self.inbox.is_empty() {
            self.messages.push_many(self.inbox.drain(..));
        }
    }

    /// Routes one event; returns a request for the runtime to run (spawned, so user code never
    /// runs on the driver).
    pub fn route(&mut self, node: &mut Node, ev: Event, now: Instant) -> Option<Invocation> {
        match ev {
            Event::Message(m) => self.inbox.push(m),
            Event::Request {
                peer,
                id,
                service,
                path,
                kind,
                args,
            } => match self.services.get(&service) {
                Some(svc) => {
                    return Some(Invocation {
                        peer,
                        id,
                        future: svc.invoke(&path, kind, args),
                    })
                }
                None => {
                    let _ = node.respond(peer, id, Err(RemoteError::NotFound(service)), now);
                }
            },
            Event::Response { id, result } => {
                if let Some(w) = self.calls.remove(&id) {
                    let _ = w.send(result.map_err(Error::Remote));
                }
            }
            Event::Status { token, status, .. } => {
                if let Some(w) = self.statuses.remove(&token) {
                    let _ = w.send(status.ok_or(Error::Timeout));
                }
            }
            ev => {
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
        }
        None
    }

    /// Housekeeping after a batch of events: answers paired waiters, forgets pings whose edge
    /// is gone, and cancels calls whose caller gave up.
    pub fn sweep(&mut self, node: &mut Node) {
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
            node.cancel_call(id);
        }
        self.pings.retain(|_, w| !w.is_canceled());
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
        self.events.close();
    }
}
