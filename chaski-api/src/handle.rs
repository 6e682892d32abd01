//! The async handle every runtime's `Node` is: commands to the driver, answers back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_proto::{CallKind, Config, EdgeInfo, Event, Node as Core, NodeId, Received, Status};

use crate::engine::Command;
use crate::error::{Error, Result};
use crate::queue::Messages;
use crate::resolve::resolve;
use crate::service::{decode, encode, Service};

/// Called after a command is queued, to wake a driver that sleeps in its own poll loop.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// What a runtime gives [`Handle::new`].
pub struct HandleParts {
    /// The driver's command channel.
    pub commands: async_channel::Sender<Command>,
    /// Wakes the driver after each command, if it needs that.
    pub notify: Option<Notify>,
    /// The bound address.
    pub local: SocketAddr,
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// The node's configuration (proxies' default timeout, limits checked before queueing).
    pub config: Arc<Config>,
    /// Received messages.
    pub messages: Messages<Received>,
    /// Lifecycle events.
    pub events: Messages<Event>,
}

/// A running node, as every async runtime exposes it (each runtime's `Node` dereferences to
/// this). Cheap to clone; the node runs until [`Handle::shutdown`] or until every clone is
/// dropped.
#[derive(Clone)]
pub struct Handle {
    cmds: async_channel::Sender<Command>,
    notify: Option<Notify>,
    local: SocketAddr,
    id: NodeId,
    name: String,
    config: Arc<Config>,
    messages: Messages<Received>,
    events: Messages<Event>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.local)
    }
}

impl Handle {
    /// A handle over a driver's command channel. `notify` is called after each command is
    /// queued (a driver that sleeps in its own poll loop uses it to wake up).
    pub fn new(parts: HandleParts) -> Handle {
        Handle {
            cmds: parts.commands,
            notify: parts.notify,
            local: parts.local,
            id: parts.id,
            name: parts.name,
            config: parts.config,
            messages: parts.messages,
            events: parts.events,
        }
    }

    /// The bound address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Name@host:port`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.name, self.local)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .await
            .map_err(|_| Error::ShutDown)?;
        self.wake();
        rx.await.map_err(|_| Error::ShutDown)?
    }

    /// Connects to a peer; returns once the edge exists (both Hellos crossed).
    pub async fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        let addr = resolve(addr)?;
        self.ask(|w| Command::Connect(addr, w)).await
    }

    /// Subscribes to a topic; neighbours are told at once.
    pub async fn subscribe(&self, topic: &str) -> Result<()> {
        self.ask(|r| Command::Subscribe(topic.to_string(), r)).await
    }

    /// Unsubscribes from a topic; neighbours are told at once.
    pub async fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.ask(|r| Command::Unsubscribe(topic.to_string(), r))
            .await
    }

    /// Publishes to the neighbours subscribed to `topic` (and roots); waits while a peer's
    /// connection is congested. Returns the message's sequence number.
    ///
    /// The arguments are checked here (an error returns at once); the message is then queued
    /// for the node without waiting for it to be written, so a loop of publishes is not a loop
    /// of round trips. When the queue is full or a peer is congested, this waits.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        Core::check_publish(&self.config, topic, payload.len())?;
        self.send(Command::Publish(topic.to_string(), payload))
            .await
    }

    /// Queues a command that needs no answer.
    async fn send(&self, cmd: Command) -> Result<()> {
        self.cmds.send(cmd).await.map_err(|_| Error::ShutDown)?;
        self.wake();
        Ok(())
    }

    /// Wakes a driver that sleeps in its own poll loop, once per batch: only the command that
    /// made the queue non-empty wakes it (the driver empties the queue whenever it wakes).
    fn wake(&self) {
        if let Some(n) = &self.notify {
            if self.cmds.len() <= 1 {
                n();
            }
        }
    }

    /// Sends a best-effort publish in one UDP datagram to one node (never relayed).
    pub async fn publish_datagram(
        &self,
        addr: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        let addr = resolve(addr)?;
        let payload = payload.into();
        self.ask(|r| Command::PublishDatagram(addr, topic.to_string(), payload, r))
            .await
    }

    /// Received messages, from a bounded queue (see [`Config::slow_consumer`]).
    pub fn messages(&self) -> Messages<Received> {
        self.messages.clone()
    }

    /// Lifecycle events (peer connected / lost, paired, latency, bad peers); oldest dropped
    /// first when nobody reads them.
    pub fn events(&self) -> Messages<Event> {
        self.events.clone()
    }

    /// Discovers peers for every unpaired topic; returns once every topic is paired (by a peer,
    /// or as the topic's anchor after the discovery timeout).
    pub async fn discover(&self) -> Result<()> {
        self.ask(Command::Discover).await
    }

    /// Pings a peer with `padding` bytes each way; returns the round trip.
    pub async fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        self.ask(|w| Command::Ping(peer, padding, w)).await
    }

    /// Asks a node for its status over UDP.
    pub async fn status(&self, addr: &str) -> Result<Status> {
        let addr = resolve(addr)?;
        self.ask(|w| Command::Status(addr, w)).await
    }

    /// This node's own status.
    pub async fn local_status(&self) -> Result<Status> {
        self.ask(Command::LocalStatus).await
    }

    /// A snapshot of every edge.
    pub async fn edges(&self) -> Result<Vec<EdgeInfo>> {
        self.ask(Command::Edges).await
    }

    /// Closes the edge to a peer with a goodbye; it is not redialed.
    pub async fn close(&self, peer: NodeId) -> Result<()> {
        self.ask(|r| Command::Close(peer, r)).await
    }

    /// Says goodbye to every peer, ends every task, reconnects nothing.
    pub async fn shutdown(&self) -> Result<()> {
        self.ask(Command::Shutdown).await
    }

    /// Offers a service under `name`.
    pub async fn serve(&self, name: &str, service: Service) -> Result<()> {
        self.ask(|r| Command::Serve(name.to_string(), service, r))
            .await
    }

    /// Offers a single function under `name` (called with the empty path).
    pub async fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, crate::ServiceError> + Send + Sync + 'static,
    {
        self.serve(name, Service::function(f)).await
    }

    /// Withdraws a service or attached function.
    pub async fn detach(&self, name: &str) -> Result<()> {
        self.ask(|r| Command::Unserve(name.to_string(), r)).await
    }

    /// A proxy to the service `name` on the first connected peer that offers it.
    pub async fn proxy(&self, name: &str) -> Result<Proxy> {
        let peer = self
            .ask(|r| Command::FindService(name.to_string(), r))
            .await?
            .ok_or_else(|| Error::NoService(name.to_string()))?;
        Ok(Proxy {
            node: self.clone(),
            peer,
            service: name.to_string(),
            timeout: self.config.rpc_timeout,
        })
    }
}

/// Remote calls to one service on one peer.
#[derive(Clone, Debug)]
pub struct Proxy {
    node: Handle,
    peer: NodeId,
    service: String,
    timeout: Duration,
}

impl Proxy {
    /// The serving peer.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The same proxy with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn raw(&self, path: &str, kind: CallKind, args: Bytes) -> Result<Bytes> {
        let (peer, timeout) = (self.peer, Some(self.timeout));
        let service = self.service.clone();
        let path = path.to_string();
        // Dropping this future drops the waiter; the driver then cancels the call.
        self.node
            .ask(|reply| Command::Call {
                peer,
                service,
                path,
                kind,
                args,
                timeout,
                reply,
            })
            .await
    }

    /// Calls the method at `path` (dotted for nested services) with serde-typed arguments
    /// (a tuple for several, `()` for none).
    pub async fn call<A: Serialize, R: DeserializeOwned>(&self, path: &str, args: &A) -> Result<R> {
        let out = self.raw(path, CallKind::Call, encode(args)?).await?;
        decode(&out)
    }

    /// Reads the attribute at `path`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        let out = self.raw(path, CallKind::Get, Bytes::new()).await?;
        decode(&out)
    }
}
