//! The tokio runtime behind the harness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chaski_api::{Config, EdgeInfo, Event, Messages, NodeId, Received, Result, Service, Status};
use chaski_tokio::Node;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Harness, TestNode};

/// Starts tokio nodes on one shared multi-threaded runtime.
pub struct Tokio {
    rt: Arc<tokio::runtime::Runtime>,
}

impl Default for Tokio {
    fn default() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Tokio { rt: Arc::new(rt) }
    }
}

/// A tokio node seen through [`TestNode`].
pub struct TokioNode {
    rt: Arc<tokio::runtime::Runtime>,
    node: Node,
    messages: Messages<Received>,
    events: Messages<Event>,
}

impl Harness for Tokio {
    type Node = TokioNode;
    fn start(&self, addr: &str, config: Config) -> TokioNode {
        let node = self.rt.block_on(Node::bind(addr, config)).expect("bind");
        TokioNode {
            rt: self.rt.clone(),
            messages: node.messages(),
            events: node.events(),
            node,
        }
    }
}

impl TestNode for TokioNode {
    fn addr(&self) -> SocketAddr {
        self.node.local_addr()
    }
    fn id(&self) -> NodeId {
        self.node.id()
    }
    fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        self.rt.block_on(self.node.connect(addr))
    }
    fn subscribe(&self, topic: &str) -> Result<()> {
        self.rt.block_on(self.node.subscribe(topic))
    }
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<u64> {
        self.rt
            .block_on(self.node.publish(topic, Bytes::copy_from_slice(payload)))
    }
    fn recv(&self, timeout: Duration) -> Option<Received> {
        self.messages.recv_timeout(timeout)
    }
    fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout)
    }
    fn edges(&self) -> Vec<EdgeInfo> {
        self.rt.block_on(self.node.edges()).unwrap_or_default()
    }
    fn discover(&self) -> Result<()> {
        self.rt.block_on(self.node.discover())
    }
    fn close(&self, peer: NodeId) -> Result<()> {
        self.rt.block_on(self.node.close(peer))
    }
    fn shutdown(&self) {
        let _ = self.rt.block_on(self.node.shutdown());
    }
    fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        self.rt.block_on(self.node.ping(peer, padding))
    }
    fn status(&self, addr: &str) -> Result<Status> {
        self.rt.block_on(self.node.status(addr))
    }
    fn serve(&self, name: &str, service: Service) -> Result<()> {
        self.rt.block_on(self.node.serve(name, service))
    }
    fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R> {
        self.rt.block_on(async {
            let proxy = self.node.proxy(service).await?.with_timeout(timeout);
            proxy.call(path, args).await
        })
    }
    fn get<R: DeserializeOwned>(&self, service: &str, path: &str, timeout: Duration) -> Result<R> {
        self.rt.block_on(async {
            let proxy = self.node.proxy(service).await?.with_timeout(timeout);
            proxy.get(path).await
        })
    }
}
