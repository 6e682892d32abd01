//! The conformance suite: scenarios written once against [`Harness`] and [`TestNode`], a
//! blocking, runtime-neutral view of a node, and run over real loopback sockets against every
//! runtime. Every wait has a deadline; nothing sleeps a fixed time to let things happen.

pub mod async_rt;
pub mod mio_rt;
pub mod raw;
pub mod scenarios;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaski_api::{Config, EdgeInfo, Event, NodeId, Received, Result, Service, Status};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Starts nodes on one runtime.
pub trait Harness: Sync {
    /// The runtime's node, seen through [`TestNode`].
    type Node: TestNode;
    /// Starts a node bound to `addr` (port 0 for a free port).
    fn start(&self, addr: &str, config: Config) -> Self::Node;
}

/// A node, with blocking methods (each runtime adapts its own API).
pub trait TestNode: Send + Sync {
    /// Bound address.
    fn addr(&self) -> SocketAddr;
    /// Node id.
    fn id(&self) -> NodeId;
    /// Connects; returns once the edge exists.
    fn connect(&self, addr: &str) -> Result<EdgeInfo>;
    /// Subscribes.
    fn subscribe(&self, topic: &str) -> Result<()>;
    /// Publishes.
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<()>;
    /// The next received message within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Received>;
    /// The next lifecycle event within `timeout`.
    fn next_event(&self, timeout: Duration) -> Option<Event>;
    /// Edge snapshot.
    fn edges(&self) -> Vec<EdgeInfo>;
    /// Discovers; returns once every topic is paired.
    fn discover(&self) -> Result<()>;
    /// Closes the edge to a peer.
    fn close(&self, peer: NodeId) -> Result<()>;
    /// Shuts the node down.
    fn shutdown(&self);
    /// Pings a peer; returns the round trip.
    fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration>;
    /// UDP status of a node.
    fn status(&self, addr: &str) -> Result<Status>;
    /// Offers a service.
    fn serve(&self, name: &str, service: Service) -> Result<()>;
    /// Calls `path` of `service` (resolved among connected peers) with typed arguments.
    fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R>;
    /// Reads the attribute at `path` of `service`.
    fn get<R: DeserializeOwned>(&self, service: &str, path: &str, timeout: Duration) -> Result<R>;
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Declares the whole conformance suite, IPv4 and IPv6, for one harness constructor.
#[macro_export]
macro_rules! conformance {
    ($harness:expr) => {
        $crate::conformance!(@each $harness;
            single_connections, star_and_graceful_shutdown, edges_disconnection, orphans,
            discovery, ping_size, stream_chain, root_relay_and_routing, abrupt_death_and_redial,
            garbage_frame, remote_calls, udp_status);
    };
    (@each $harness:expr; $($name:ident),*) => {
        mod ipv4 {
            use super::*;
            $( #[test] fn $name() { $crate::scenarios::$name(&$harness, "127.0.0.1"); } )*
        }
        mod ipv6 {
            use super::*;
            $( #[test] fn $name() { $crate::scenarios::$name(&$harness, "[::1]"); } )*
        }
    };
}

/// The code blocks of `README.md`, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
