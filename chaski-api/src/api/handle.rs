//! The handle every runtime's `Node` is: the user API, calling the core inline.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_proto::{EdgeInfo, Metrics, Node as Core, NodeId, Received, Status};

use super::proxy::Proxy;
use super::resolve::{first_success, resolve_all};
use super::subscriber::Subscriber;
use crate::error::{Error, Result};
use crate::kit::{Engine, Keepalive, Reply, State};
use crate::queue::{Events, Messages};
use crate::service::Service;

/// A running node, as every runtime exposes it (each runtime's `Node` dereferences to this,
/// or wraps it in blocking calls). Cheap to clone; the node runs until [`Handle::shutdown`]
/// or until every clone is dropped.
///
/// Every method takes the node's lock and calls the protocol core inline: a publish is one
/// lock and at most one wake-up of the task that writes to a peer.
#[derive(Clone)]
pub struct Handle {
    engine: Arc<Engine>,
    _keepalive: Arc<Keepalive>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.engine.info();
        write!(f, "{}@{}", i.name, i.local)
    }
}

impl Handle {
    /// A handle of the node `engine` runs (the node runs while any handle lives).
    pub(crate) fn new(engine: &Arc<Engine>) -> Handle {
        Handle {
            engine: engine.clone(),
            _keepalive: engine.keepalive(),
        }
    }

    /// The bound address (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.engine.info().local
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.engine.info().id
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.engine.info().name
    }

    /// `Name@host:port`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.name(), self.local_addr())
    }

    /// The node's engine.
    pub(super) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runs `f` on the node's state (core and hub) in a [`Engine::turn`].
    pub(super) fn turn<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        self.engine.turn(f)
    }

    /// Starts something whose answer comes later through a waiter.
    async fn turn_and_wait<T>(
        &self,
        start: impl FnOnce(&mut State, Instant, Reply<T>) -> Result<()>,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.turn(|s, now| start(s, now, tx))?;
        rx.await.map_err(|_| Error::ShutDown)?
    }

    /// Connects to a peer; returns once the edge exists (both Hellos crossed).
    ///
    /// A host name is resolved without blocking, and each of its addresses is tried in turn
    /// until one gives an edge.
    pub async fn connect(&self, addr: &str) -> Result<EdgeInfo> {
        let addrs = resolve_all(addr).await?;
        first_success(addrs, |addr| {
            self.turn_and_wait(move |s, now, w| {
                let conn = s.core.connect(addr, now)?;
                s.hub.wait_connect(conn, w);
                Ok(())
            })
        })
        .await
    }

    /// Subscribes to a topic, or to a pattern (`sensors/*/temperature`, `sensors/**`);
    /// neighbours are told at once. What it matches arrives on [`Handle::messages`], the
    /// node-wide stream (see [`Handle::subscriber`] for a stream of its own).
    pub async fn subscribe(&self, topic: &str) -> Result<()> {
        self.turn(|s, now| {
            s.core.subscribe(topic, now)?;
            s.hub.subscribe_wide(topic);
            Ok(())
        })
    }

    /// Subscribes to a topic or a pattern with a stream of its own: the [`Subscriber`] yields
    /// only what its pattern matches (those messages reach [`Handle::messages`] only if
    /// [`Handle::subscribe`] asked for them too), and unsubscribes when dropped.
    ///
    /// ```no_run
    /// # async fn f(node: chaski_api::Handle) -> chaski_api::Result<()> {
    /// use futures_util::StreamExt;
    /// let mut temps = node.subscriber("sensors/*/temperature").await?;
    /// while let Some(m) = temps.next().await {
    ///     println!("{}: {:?}", m.topic, m.payload);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscriber(&self, pattern: &str) -> Result<Subscriber> {
        let (id, messages) = self.turn(|s, now| -> Result<_> {
            s.core.subscribe(pattern, now)?;
            Ok(s.hub.add_subscriber(pattern))
        })?;
        Ok(Subscriber::new(self.engine.clone(), id, pattern, messages))
    }

    /// Unsubscribes from what [`Handle::subscribe`] asked for; neighbours are told at once (a
    /// [`Subscriber`] of the same pattern keeps it until it is dropped).
    pub async fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.turn(|s, now| {
            if s.hub.unsubscribe_wide(topic) {
                s.core.unsubscribe(topic, now)?;
            }
            Ok(())
        })
    }

    /// Publishes to the neighbours subscribed to `topic` (and roots).
    ///
    /// The message is encoded into each peer's outbound buffer at once; the call returns
    /// without waiting for it to be written. It waits only while a peer it goes to has more
    /// than [`Config::congestion_limit`](chaski_proto::Config::congestion_limit) bytes it has not taken; a peer that takes nothing for
    /// `stall_timeout` is dropped, which ends the wait. Other peers and other calls are never
    /// held by it.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        Core::check_publish(&self.engine.info().config, topic, payload.len())?;
        let mut payload = Some(payload);
        poll_fn(|cx| {
            self.turn(|s, now| {
                if s.publish_waits(topic, cx) {
                    return Poll::Pending;
                }
                let Some(p) = payload.take() else {
                    return Poll::Ready(Ok(()));
                };
                Poll::Ready(
                    s.core
                        .publish(topic, p, now)
                        .map(|_| ())
                        .map_err(Error::from),
                )
            })
        })
        .await
    }

    /// Sends a best-effort publish in one UDP datagram to one node (never relayed).
    pub async fn publish_datagram(
        &self,
        addr: &str,
        topic: &str,
        payload: impl Into<Bytes>,
    ) -> Result<()> {
        let addr = resolve_all(addr).await?[0];
        let payload = payload.into();
        Ok(self.turn(|s, _| s.core.publish_datagram(addr, topic, payload))?)
    }

    /// Received messages, from a bounded queue (see [`Config::slow_consumer`](chaski_proto::Config::slow_consumer)).
    pub fn messages(&self) -> Messages<Received> {
        self.engine.info().messages.clone()
    }

    /// Lifecycle events (peer connected / lost, paired, latency, bad peers); oldest dropped
    /// first when nobody reads them.
    pub fn events(&self) -> Events {
        self.engine.info().events.clone()
    }

    /// Discovers peers for every unpaired topic; returns once every topic is paired (by a peer,
    /// or as the topic's anchor after the discovery timeout).
    pub async fn discover(&self) -> Result<()> {
        self.turn_and_wait(|s, now, w| {
            s.core.discover(now)?;
            s.hub.wait_paired(&s.core, w);
            Ok(())
        })
        .await
    }

    /// Pings a peer with `padding` bytes each way; returns the round trip.
    pub async fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration> {
        self.turn_and_wait(|s, now, w| {
            let id = s.core.ping(peer, padding, now)?;
            s.hub.wait_ping(id, w);
            Ok(())
        })
        .await
    }

    /// Asks a node for its status over UDP.
    pub async fn status(&self, addr: &str) -> Result<Status> {
        let addr = resolve_all(addr).await?[0];
        self.turn_and_wait(|s, now, w| {
            let token = s.core.query_status(addr, now)?;
            s.hub.wait_status(token, w);
            Ok(())
        })
        .await
    }

    /// This node's own status.
    pub async fn local_status(&self) -> Result<Status> {
        self.turn(|s, _| {
            if s.is_finished() {
                return Err(Error::ShutDown);
            }
            Ok(s.core.status())
        })
    }

    /// A snapshot of every edge.
    pub async fn edges(&self) -> Result<Vec<EdgeInfo>> {
        self.turn(|s, _| {
            if s.is_finished() {
                return Err(Error::ShutDown);
            }
            Ok(s.core.edges())
        })
    }

    /// Counters, levels, memory and edges, taken together at one instant (what `chaski node
    /// --http` serves as Prometheus metrics).
    pub async fn metrics(&self) -> Result<Metrics> {
        self.turn(|s, _| {
            if s.is_finished() {
                return Err(Error::ShutDown);
            }
            Ok(s.core.metrics())
        })
    }

    /// Whether the node is redialing `peer` (it lost, without a goodbye, an edge it had dialed).
    pub async fn is_redialing(&self, peer: NodeId) -> Result<bool> {
        self.turn(|s, _| {
            if s.is_finished() {
                return Err(Error::ShutDown);
            }
            Ok(s.core.is_redialing(peer))
        })
    }

    /// Closes the edge to a peer with a goodbye; it is not redialed.
    pub async fn close(&self, peer: NodeId) -> Result<()> {
        Ok(self.turn(|s, now| s.core.close(peer, now))?)
    }

    /// Says goodbye to every peer and returns once every connection is closed (what was
    /// queued for a peer is written first, for at most `linger` without progress).
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let already = self.turn(|s, now| {
            if s.core.is_shut_down() && s.is_finished() {
                return true;
            }
            s.core.shutdown(now);
            if let Some(w) = s.wait_finished(tx) {
                let _ = w.send(Ok(()));
            }
            false
        });
        if already {
            return Err(Error::ShutDown);
        }
        rx.await.map_err(|_| Error::ShutDown)?
    }

    /// Offers a service under `name`.
    pub async fn serve(&self, name: &str, service: Service) -> Result<()> {
        self.turn(|s, now| {
            s.core.serve(name, now)?;
            s.hub.add_service(name, service);
            Ok(())
        })
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
        self.turn(|s, now| {
            s.hub.remove_service(name);
            Ok(s.core.unserve(name, now)?)
        })
    }

    /// A proxy to the service `name`, wherever it is served in the mesh. Returns once a server
    /// is connected: at once if a neighbour serves it, else after a search through the mesh
    /// has made one dial this node (which must listen); [`Error::NoService`] if none answers
    /// within `discovery_timeout`.
    ///
    /// Each call goes to the server with the fewest calls of this node in flight (then the
    /// lowest latency), and moves to another server when its own is lost, busy or stops
    /// serving, within the call's deadline.
    ///
    /// ```no_run
    /// # async fn f(node: chaski_api::Handle) -> chaski_api::Result<()> {
    /// let math = node.proxy("math").await?;
    /// let sum: i64 = math.call("add", &(2, 3)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn proxy(&self, name: &str) -> Result<Proxy> {
        let found = self
            .turn_and_wait(|s, now, w| {
                match s.core.seek_service(name, now) {
                    Ok(Some(_)) => {
                        let _ = w.send(Ok(()));
                    }
                    Ok(None) => s.hub.wait_service(name, w),
                    Err(chaski_proto::CommandError::NoEdges) => {
                        return Err(Error::NoService(name.to_string()))
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            })
            .await;
        found?;
        let timeout = self.engine.info().config.rpc_timeout;
        Ok(Proxy::new(&self.engine, name, None, timeout))
    }

    /// A proxy to the service `name` on one connected peer only: no search, no spreading, no
    /// failover (a call fails as `Disconnected` when that edge goes). For a particular node,
    /// e.g. its built-in [`NODE_SERVICE`](chaski_proto::NODE_SERVICE):
    ///
    /// ```no_run
    /// # async fn f(node: chaski_api::Handle, peer: chaski_api::NodeId) -> chaski_api::Result<()> {
    /// let edges: Vec<chaski_api::EdgeReport> =
    ///     node.proxy_on(peer, "@node").call("edges", &()).await?;
    /// # Ok(()) }
    /// ```
    pub fn proxy_on(&self, peer: NodeId, name: &str) -> Proxy {
        let timeout = self.engine.info().config.rpc_timeout;
        Proxy::new(&self.engine, name, Some(peer), timeout)
    }
}

/// Starts a node on runtime `R` over sockets bound at `local` (what every async runtime's
/// `Node::bind` does once it has its sockets); gives its handle.
#[doc(hidden)]
pub fn start<R: crate::kit::Runtime>(
    rt: R,
    config: chaski_proto::Config,
    local: SocketAddr,
    listener: R::Listener,
    udp: R::Udp,
) -> Result<Handle> {
    let engine = crate::kit::spawn(rt, config, local, listener, udp)?;
    Ok(Handle::new(&engine))
}

/// A handle of the node `engine` runs (for a runtime that drives the engine itself, as the
/// mio driver does).
#[doc(hidden)]
pub fn handle_for(engine: &Arc<Engine>) -> Handle {
    Handle::new(engine)
}
