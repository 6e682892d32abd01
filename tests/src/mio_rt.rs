//! The blocking mio node behind the harness (its own API is already blocking).

use std::net::SocketAddr;
use std::time::Duration;

use chaski_api::{Config, EdgeInfo, Event, Messages, NodeId, Received, Result, Service, Status};
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
}

impl Harness for Mio {
    type Node = MioNode;
    fn start(&self, addr: &str, config: Config) -> MioNode {
        let node = Node::bind(addr, config).expect("bind");
        MioNode {
            messages: node.messages(),
            events: node.events(),
            node,
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
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<()> {
        self.node.publish(topic, payload.to_vec())
    }
    fn recv(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout)
    }
    fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout)
    }
    fn edges(&self) -> Vec<EdgeInfo> {
        self.node.edges().unwrap_or_default()
    }
    fn discover(&self) -> Result<()> {
        self.node.discover()
    }
    fn close(&self, peer: NodeId) -> Result<()> {
        self.node.close(peer)
    }
    fn shutdown(&self) {
        let _ = self.node.shutdown();
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
}
