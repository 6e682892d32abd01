//! # chaski-smol
//!
//! A Chaski [`Node`] driven by smol and async-io: the same API, names and errors as
//! `chaski-tokio` (both are the shared [`Handle`]); messages arrive as a `Stream`.
//!
//! ```no_run
//! use chaski_smol::{Config, Node};
//! use futures_util::StreamExt;
//!
//! smol::block_on(async {
//!     let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
//!     let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;
//!     b.subscribe("news").await?;
//!     a.connect(&b.address()).await?;
//!     a.publish("news", "hello").await?;
//!     let msg = b.messages().next().await.unwrap();
//!     assert_eq!(&msg.payload[..], b"hello");
//!     Ok::<_, chaski_smol::Error>(())
//! })
//! .unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;

use std::net::SocketAddr;
use std::ops::Deref;

use smol::net::TcpListener;

type UdpSocket = smol::Async<std::net::UdpSocket>;

pub use chaski_api::{
    decode, encode, CallKind, Config, ConnectError, DisconnectReason, EdgeInfo, Error, Event,
    Handle, Messages, NodeId, OnPair, Proxy, Received, RemoteError, Result, Service, ServiceError,
    SlowConsumer, Status,
};
use chaski_api::{resolve, Engine, HandleParts, Hub};
use chaski_proto::Node as Core;

/// A Chaski node on smol. Every method is [`Handle`]'s (the same on every runtime); cheap to
/// clone; runs until [`Handle::shutdown`] or until every clone is dropped.
#[derive(Clone, Debug)]
pub struct Node(Handle);

impl Deref for Node {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

impl Node {
    /// Binds TCP and UDP on the same address (port 0 picks a free port, the same for both)
    /// and starts the node's driver on smol's global executor.
    pub async fn bind(addr: &str, config: Config) -> Result<Node> {
        let want = resolve(addr)?;
        let (listener, udp) = bind_pair(want).await?;
        let local = listener.local_addr()?;
        let config = chaski_api::seeded(config, local);
        let core = Core::new(config.clone(), Some(local));
        let (hub, messages, events) = Hub::new(&config);
        let (tx, rx) = async_channel::bounded(1024);
        let parts = HandleParts {
            commands: tx,
            notify: None,
            local,
            id: core.id(),
            name: core.name().to_string(),
            config: std::sync::Arc::new(config.clone()),
            messages,
            events,
        };
        smol::spawn(driver::Driver::new(Engine::new(core, hub), listener, udp, rx).run()).detach();
        Ok(Node(Handle::new(parts)))
    }

    /// The shared handle.
    pub fn handle(&self) -> &Handle {
        &self.0
    }
}

async fn bind_pair(want: SocketAddr) -> Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let listener = TcpListener::bind(want).await?;
        let local = listener.local_addr()?;
        match UdpSocket::bind(local) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) if want.port() == 0 => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| Error::Io("no free port".into()), Error::from))
}
