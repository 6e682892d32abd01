//! The async runtimes behind the harness: both expose the shared [`Handle`], so one
//! [`TestNode`] implementation serves them; each runtime only says how to block on a future
//! and how to bind a node.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};

use chaski_api::{
    Config, EdgeInfo, Event, Handle, Messages, NodeId, QueueStats, Received, Result, Service,
    ServiceError, Status,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Harness, TestNode};

/// Runs futures to completion from a plain thread.
pub trait Exec: Send + Sync + 'static {
    /// Blocks on `f`.
    fn block_on<F: Future>(&self, f: F) -> F::Output;
    /// Binds a node.
    fn bind(&self, addr: &str, config: Config) -> Result<Handle>;
}

/// A harness over an async runtime.
pub struct AsyncHarness<E: Exec>(pub Arc<E>);

/// A node of an async runtime, seen through [`TestNode`].
pub struct AsyncNode<E: Exec> {
    exec: Arc<E>,
    node: Handle,
    messages: Messages<Received>,
    events: Messages<Event>,
    shut: AtomicBool,
}

impl<E: Exec> Harness for AsyncHarness<E> {
    type Node = AsyncNode<E>;
    fn start(&self, addr: &str, config: Config) -> AsyncNode<E> {
        let node = self.0.bind(addr, config).expect("bind");
        AsyncNode {
            exec: self.0.clone(),
            messages: node.messages(),
            events: node.events(),
            node,
            shut: AtomicBool::new(false),
        }
    }
}

impl<E: Exec> TestNode for AsyncNode<E> {
    fn addr(&self) -> SocketAddr {
        self.node.local_addr()
    }
    fn id(&self) -> NodeId {
        self.node.id()
    }
    fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        self.exec.block_on(self.node.connect(addr))
    }
    fn subscribe(&self, topic: &str) -> Result<()> {
        self.exec.block_on(self.node.subscribe(topic))
    }
    fn subscriber(&self, pattern: &str) -> Result<chaski_api::Subscriber> {
        self.exec.block_on(self.node.subscriber(pattern))
    }
    fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.exec.block_on(self.node.unsubscribe(topic))
    }
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<()> {
        self.exec
            .block_on(self.node.publish(topic, Bytes::copy_from_slice(payload)))
    }
    fn publish_datagram(&self, addr: &str, topic: &str, payload: &[u8]) -> Result<()> {
        self.exec.block_on(
            self.node
                .publish_datagram(addr, topic, Bytes::copy_from_slice(payload)),
        )
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
        crate::alive("edges", self.exec.block_on(self.node.edges()))
    }
    fn local_status(&self) -> Status {
        crate::alive("local_status", self.exec.block_on(self.node.local_status()))
    }
    fn metrics(&self) -> chaski_api::Metrics {
        crate::alive("metrics", self.exec.block_on(self.node.metrics()))
    }
    fn discover(&self) -> Result<()> {
        self.exec.block_on(self.node.discover())
    }
    fn close(&self, peer: NodeId) -> Result<()> {
        self.exec.block_on(self.node.close(peer))
    }
    fn shutdown(&self) {
        let first = !self.shut.swap(true, Ordering::SeqCst);
        crate::shut_down_once(first, self.exec.block_on(self.node.shutdown()));
    }
    fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        self.exec.block_on(self.node.ping(peer, padding))
    }
    fn status(&self, addr: &str) -> Result<Status> {
        self.exec.block_on(self.node.status(addr))
    }
    fn serve(&self, name: &str, service: Service) -> Result<()> {
        self.exec.block_on(self.node.serve(name, service))
    }
    fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    {
        self.exec.block_on(self.node.attach(name, f))
    }
    fn detach(&self, name: &str) -> Result<()> {
        self.exec.block_on(self.node.detach(name))
    }
    fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R> {
        self.exec.block_on(async {
            let proxy = self.node.proxy(service).await?.with_timeout(timeout);
            proxy.call(path, args).await
        })
    }
    fn get<R: DeserializeOwned>(&self, service: &str, path: &str, timeout: Duration) -> Result<R> {
        self.exec.block_on(async {
            let proxy = self.node.proxy(service).await?.with_timeout(timeout);
            proxy.get(path).await
        })
    }
    fn handle(&self) -> Handle {
        self.node.clone()
    }
}

/// tokio, on one shared multi-threaded runtime.
pub struct Tokio(tokio::runtime::Runtime);

impl Exec for Tokio {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
    fn bind(&self, addr: &str, config: Config) -> Result<Handle> {
        self.0
            .block_on(chaski_tokio::Node::bind(addr, config))
            .map(|n| n.handle().clone())
    }
}

/// The tokio harness.
pub fn tokio() -> AsyncHarness<Tokio> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    AsyncHarness(Arc::new(Tokio(rt)))
}

/// smol, on its global executor.
pub struct Smol;

impl Exec for Smol {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        smol::block_on(f)
    }
    fn bind(&self, addr: &str, config: Config) -> Result<Handle> {
        smol::block_on(chaski_smol::Node::bind(addr, config)).map(|n| n.handle().clone())
    }
}

/// The smol harness.
pub fn smol() -> AsyncHarness<Smol> {
    AsyncHarness(Arc::new(Smol))
}
