//! The blocking handle: the driver on a background thread, methods that block.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mio::{Poll, Token};
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_api::{
    block_on, Error, Events, Files, Handle, Messages, ReceiveOptions, Result, Service,
    ServiceError, Subscriber, Transfer,
};
use chaski_proto::{Config, EdgeInfo, Metrics, NodeId, Received, Status};

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
                let mut events = mio::Events::with_capacity(1024);
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
}

/// The blocking methods, each [`Handle`]'s method of the same name and arguments, waited for
/// (`block_on` for an async one): one mechanism, so that the blocking API cannot drift from
/// the async one (a test checks that every method of [`Handle`] is here).
macro_rules! blocking {
    (
        $( $(#[$doc:meta])* $kind:ident fn $name:ident $(<$($g:ident),*>)?
            (&self $(, $arg:ident : $ty:ty)*) -> $ret:ty $(where { $($w:tt)* })? ; )*
    ) => {
        impl Node {
            $(
                $(#[$doc])*
                pub fn $name $(<$($g),*>)? (&self $(, $arg: $ty)*) -> $ret $(where $($w)*)? {
                    blocking!(@call $kind self.handle.$name($($arg),*))
                }
            )*
        }
    };
    (@call wait $e:expr) => { block_on($e) };
    (@call now $e:expr) => { $e };
}

blocking! {
    /// The bound address (TCP and UDP).
    now fn local_addr(&self) -> SocketAddr;
    /// The node id.
    now fn id(&self) -> NodeId;
    /// The node name.
    now fn name(&self) -> &str;
    /// `Name@host:port`.
    now fn address(&self) -> String;
    /// Connects to a peer; returns once the edge exists (or the handshake timeout passed).
    wait fn connect(&self, addr: &str) -> Result<EdgeInfo>;
    /// Subscribes to a topic or pattern; neighbours are told at once.
    wait fn subscribe(&self, topic: &str) -> Result<()>;
    /// Subscribes to a topic or pattern with a stream of its own
    /// ([`Handle::subscriber`](chaski_api::Handle::subscriber)): read it with
    /// [`Subscriber::recv_timeout`] or [`Subscriber::blocking_iter`]; dropping it unsubscribes.
    wait fn subscriber(&self, pattern: &str) -> Result<Subscriber>;
    /// Unsubscribes from a topic.
    wait fn unsubscribe(&self, topic: &str) -> Result<()>;
    /// Publishes to subscribed neighbours and roots; blocks while a peer is congested.
    wait fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<()>;
    /// Sends a best-effort publish in one UDP datagram to one node.
    wait fn publish_datagram(&self, addr: &str, topic: &str, payload: impl Into<Bytes>) -> Result<()>;
    /// Received messages: [`Messages::recv_timeout`], [`Messages::try_recv`] or
    /// [`Messages::blocking_iter`].
    now fn messages(&self) -> Messages<Received>;
    /// Lifecycle events.
    now fn events(&self) -> Events;
    /// Discovers peers; returns once every topic is paired.
    wait fn discover(&self) -> Result<()>;
    /// Pings a peer with `padding` bytes each way; returns the round trip.
    wait fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration>;
    /// Asks a node for its status over UDP.
    wait fn status(&self, addr: &str) -> Result<Status>;
    /// This node's own status.
    wait fn local_status(&self) -> Result<Status>;
    /// A snapshot of every edge.
    wait fn edges(&self) -> Result<Vec<EdgeInfo>>;
    /// Counters, levels, memory and edges, taken together at one instant.
    wait fn metrics(&self) -> Result<Metrics>;
    /// Whether the node is redialing `peer` (it lost, without a goodbye, an edge it had dialed).
    wait fn is_redialing(&self, peer: NodeId) -> Result<bool>;
    /// Closes the edge to a peer with a goodbye.
    wait fn close(&self, peer: NodeId) -> Result<()>;
    /// Says goodbye to every peer and stops the node's thread.
    wait fn shutdown(&self) -> Result<()>;
    /// Offers a service under `name`.
    wait fn serve(&self, name: &str, service: Service) -> Result<()>;
    /// Offers a single function under `name`.
    wait fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()> where {
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static,
    };
    /// Withdraws a service.
    wait fn detach(&self, name: &str) -> Result<()>;
    /// Sends the file at `path` on `topic` (see
    /// [`Handle::send_file`](chaski_api::Handle::send_file)); [`Transfer::wait`] for its end.
    wait fn send_file(&self, topic: &str, path: impl AsRef<Path>, meta: impl Into<Bytes>) -> Result<Transfer>;
    /// Sends what `reader` gives under `name` on `topic`.
    wait fn send_stream(&self, topic: &str, name: &str, reader: impl Read + Send + 'static, meta: impl Into<Bytes>) -> Result<Transfer>;
    /// Receives the files offered on `pattern` into `dir` (see
    /// [`Handle::receive_files`](chaski_api::Handle::receive_files)): read the events with
    /// [`Files::recv_timeout`] or [`Files::blocking_iter`].
    wait fn receive_files(&self, pattern: &str, dir: impl AsRef<Path>, options: ReceiveOptions) -> Result<Files>;
}

impl Node {
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
    /// The service's name.
    pub fn service(&self) -> &str {
        self.0.service()
    }

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

#[cfg(test)]
mod tests {
    /// The public methods of a type's `impl` blocks in a source file (`pub fn` / `pub async fn`),
    /// and those of the `blocking!` list.
    fn methods(src: &str, marker: &str) -> std::collections::BTreeSet<String> {
        src.lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix(marker)?;
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                (!name.is_empty()).then_some(name)
            })
            .collect()
    }

    /// Every method of the async `Handle` has its blocking twin here, and nothing else is here
    /// (the same for `Proxy`), so the runtimes expose the same methods by the same names.
    #[test]
    fn the_blocking_node_has_every_method_of_the_handle() {
        let handle = include_str!("../../chaski-api/src/api/handle.rs");
        let handle_impl = &handle[handle.find("impl Handle {").expect("impl Handle")..];
        let handle_impl = &handle_impl[..handle_impl.find("\n}\n").expect("its end")];
        let mut async_api = methods(handle_impl, "pub async fn ");
        async_api.extend(methods(handle_impl, "pub fn "));
        // Files' methods of the handle live in a module of their own.
        let files = include_str!("../../chaski-api/src/api/files.rs");
        let files_impl = &files[files.find("impl Handle {").expect("impl Handle")..];
        async_api.extend(methods(files_impl, "pub async fn "));
        async_api.extend(methods(files_impl, "pub fn "));
        let ours = include_str!("blocking.rs");
        let mut blocking = methods(ours, "wait fn ");
        blocking.extend(methods(ours, "now fn "));
        blocking.extend(["proxy".to_string(), "proxy_on".to_string()]);
        assert_eq!(async_api, blocking);

        let proxy = include_str!("../../chaski-api/src/api/proxy.rs");
        let proxy_impl = &proxy[proxy.find("impl Proxy {").expect("impl Proxy")..];
        let mut async_proxy = methods(proxy_impl, "pub async fn ");
        async_proxy.extend(methods(proxy_impl, "pub fn "));
        let ours_proxy = &ours[ours.find("impl Proxy {").expect("our Proxy")..];
        assert_eq!(async_proxy, methods(ours_proxy, "pub fn "));
    }
}
