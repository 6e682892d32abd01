//! The blocking mio node behind the harness (its own API is already blocking).

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use chaski_api::{
    Config, EdgeInfo, Event, Messages, NodeId, QueueStats, Received, Result, Service, ServiceError,
    Status,
};
use chaski_mio::Node;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Harness, TestNode};

/// Starts blocking mio nodes.
pub struct Mio;

/// A mio node with its queues.
pub struct MioNode {
    node: Node,
    messages: Messages<Received>,
    events: Messages<Event>,
    shut: AtomicBool,
}

impl Harness for Mio {
    type Node = MioNode;
    fn start(&self, addr: &str, config: Config) -> MioNode {
        let node = Node::bind(addr, config).expect("bind");
        MioNode {
            messages: node.messages(),
            events: node.events(),
            node,
            shut: AtomicBool::new(false),
        }
    }
}

impl TestNode for MioNode {
    fn addr(&self) -> SocketAddr {
        self.node.local_addr()
    }
    fn id(&self) -> NodeId {
        self.node.id()
    }
    fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        self.node.connect(addr)
    }
    fn subscribe(&self, topic: &str) -> Result<()> {
        self.node.subscribe(topic)
    }
    fn subscriber(&self, pattern: &str) -> Result<chaski_api::Subscriber> {
        self.node.subscriber(pattern)
    }
    fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.node.unsubscribe(topic)
    }
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<()> {
        self.node.publish(topic, payload.to_vec())
    }
    fn publish_datagram(&self, addr: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.node.publish_datagram(addr, topic, payload.to_vec())
    }
    fn message_stats(&self) -> QueueStats {
        self.messages.stats()
    }
    fn recv(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout)
    }
    fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout)
    }
    fn edges(&self) -> Vec<EdgeInfo> {
        crate::alive("edges", self.node.edges())
    }
    fn local_status(&self) -> Status {
        crate::alive("local_status", self.node.local_status())
    }
    fn metrics(&self) -> chaski_api::Metrics {
        crate::alive("metrics", self.node.metrics())
    }
    fn discover(&self) -> Result<()> {
        self.node.discover()
    }
    fn close(&self, peer: NodeId) -> Result<()> {
        self.node.close(peer)
    }
    fn shutdown(&self) {
        let first = !self.shut.swap(true, Ordering::SeqCst);
        crate::shut_down_once(first, self.node.shutdown());
    }
    fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        self.node.ping(peer, padding)
    }
    fn status(&self, addr: &str) -> Result<Status> {
        self.node.status(addr)
    }
    fn serve(&self, name: &str, service: Service) -> Result<()> {
        self.node.serve(name, service)
    }
    fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        self.node.attach(name, f)
    }
    fn detach(&self, name: &str) -> Result<()> {
        self.node.detach(name)
    }
    fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R> {
        self.node
            .proxy(service)?
            .with_timeout(timeout)
            .call(path, args)
    }
    fn get<R: DeserializeOwned>(&self, service: &str, path: &str, timeout: Duration) -> Result<R> {
        self.node.proxy(service)?.with_timeout(timeout).get(path)
    }
    fn handle(&self) -> chaski_api::Handle {
        self.node.handle().clone()
    }
}
