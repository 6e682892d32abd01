//! The blocking handle: the driver on a background thread, methods that block.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use mio::{Events, Poll, Token};
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_api::Event;
use chaski_api::{block_on, Error, Handle, Messages, Result, Service, ServiceError, Subscriber};
use chaski_proto::{Config, EdgeInfo, NodeId, Received, Status};

use crate::driver::Driver;

/// A Chaski node on a background thread, with blocking methods named as on every runtime.
/// Cheap to clone; runs until [`Node::shutdown`] or until every clone is dropped.
#[derive(Clone, Debug)]
pub struct Node {
    handle: Handle,
}

impl Node {
    /// Binds TCP and UDP on the same address (port 0 picks a free port, the same for both) and
    /// starts the node's thread.
    pub fn bind(addr: &str, config: Config) -> Result<Node> {
        let (tx, rx) = std::sync::mpsc::channel();
        let addr = addr.to_string();
        std::thread::Builder::new()
            .name("chaski-mio".into())
            .spawn(move || {
                let mut poll = match Poll::new() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(Error::from(e)));
                        return;
                    }
                };
                let mut driver = match Driver::bind(&addr, config, poll.registry(), Token(0)) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(driver.handle()));
                let mut events = Events::with_capacity(1024);
                loop {
                    if let Err(e) = poll.poll(&mut events, driver.timeout()) {
                        if e.kind() != std::io::ErrorKind::Interrupted {
                            tracing::error!(error = %e, "poll failed; the node stops");
                            break;
                        }
                    }
                    for event in events.iter() {
                        driver.handle_event(event);
                    }
                    driver.tick();
                    if driver.is_finished() {
                        break;
                    }
                }
            })?;
        let handle = rx.recv().map_err(|_| Error::ShutDown)??;
        Ok(Node { handle })
    }

    /// The async [`Handle`] underneath (the same type chaski-tokio and chaski-smol give), for
    /// code written once against every runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The bound address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.handle.id()
    }

    /// The node name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// `Name@host:port`.
    pub fn address(&self) -> String {
        self.handle.address()
    }

    /// Connects to a peer; returns once the edge exists (or the handshake timeout passed).
    pub fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        block_on(self.handle.connect(addr))
    }

    /// Subscribes to a topic; neighbours are told at once.
    pub fn subscribe(&self, topic: &str) -> Result<()> {
        block_on(self.handle.subscribe(topic))
    }

    /// Subscribes to a topic or pattern with a stream of its own
    /// ([`Handle::subscriber`](chaski_api::Handle::subscriber)): read it with
    /// [`Subscriber::recv_timeout`] or [`Subscriber::blocking_iter`]; dropping it unsubscribes.
    pub fn subscriber(&self, pattern: &str) -> Result<Subscriber> {
        block_on(self.handle.subscriber(pattern))
    }

    /// Unsubscribes from a topic.
    pub fn unsubscribe(&self, topic: &str) -> Result<()> {
        block_on(self.handle.unsubscribe(topic))
    }

    /// Publishes to subscribed neighbours and roots; blocks while a peer is congested.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<()> {
        block_on(self.handle.publish(topic, payload))
    }

    /// Sends a best-effort publish in one UDP datagram to one node.
    pub fn publish_datagram(
        &self,
        addr: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        block_on(self.handle.publish_datagram(addr, topic, payload))
    }

    /// Received messages: [`Messages::recv_timeout`], [`Messages::try_recv`] or
    /// [`Messages::blocking_iter`].
    pub fn messages(&self) -> Messages<Received> {
        self.handle.messages()
    }

    /// Lifecycle events.
    pub fn events(&self) -> Messages<Event> {
        self.handle.events()
    }

    /// Discovers peers; returns once every topic is paired.
    pub fn discover(&self) -> Result<()> {
        block_on(self.handle.discover())
    }

    /// Pings a peer with `padding` bytes each way; returns the round trip.
    pub fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        block_on(self.handle.ping(peer, padding))
    }

    /// Asks a node for its status over UDP.
    pub fn status(&self, addr: &str) -> Result<Status> {
        block_on(self.handle.status(addr))
    }

    /// This node's own status.
    pub fn local_status(&self) -> Result<Status> {
        block_on(self.handle.local_status())
    }

    /// A snapshot of every edge.
    pub fn edges(&self) -> Result<Vec<EdgeInfo>> {
        block_on(self.handle.edges())
    }

    /// Closes the edge to a peer with a goodbye.
    pub fn close(&self, peer: NodeId) -> Result<()> {
        block_on(self.handle.close(peer))
    }

    /// Says goodbye to every peer and stops the node's thread.
    pub fn shutdown(&self) -> Result<()> {
        block_on(self.handle.shutdown())
    }

    /// Offers a service under `name`.
    pub fn serve(&self, name: &str, service: Service) -> Result<()> {
        block_on(self.handle.serve(name, service))
    }

    /// Offers a single function under `name`.
    pub fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        block_on(self.handle.attach(name, f))
    }

    /// Withdraws a service.
    pub fn detach(&self, name: &str) -> Result<()> {
        block_on(self.handle.detach(name))
    }

    /// A proxy to `name`, wherever it is served in the mesh (see
    /// [`Handle::proxy`](chaski_api::Handle::proxy)): calls are spread over its servers and
    /// fail over when one is lost.
    pub fn proxy(&self, name: &str) -> Result<Proxy> {
        Ok(Proxy(block_on(self.handle.proxy(name))?))
    }

    /// A proxy to `name` on one connected peer only (see
    /// [`Handle::proxy_on`](chaski_api::Handle::proxy_on)).
    pub fn proxy_on(&self, peer: NodeId, name: &str) -> Proxy {
        Proxy(self.handle.proxy_on(peer, name))
    }
}

/// Blocking remote calls to one service, spread over its servers.
#[derive(Clone, Debug)]
pub struct Proxy(chaski_api::Proxy);

impl Proxy {
    /// The connected servers of the service, in the order their edges were established.
    pub fn servers(&self) -> Vec<NodeId> {
        block_on(self.0.servers())
    }

    /// The same proxy with another per-call timeout.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Proxy(self.0.with_timeout(timeout))
    }

    /// Calls the method at `path` with serde-typed arguments.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, path: &str, args: &A) -> Result<R> {
        block_on(self.0.call(path, args))
    }

    /// Reads the attribute at `path`.
    pub fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        block_on(self.0.get(path))
    }
}
