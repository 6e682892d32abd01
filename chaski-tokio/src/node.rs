//! The tokio `Node`: binds the sockets, starts the driver, and is the shared async handle.

use std::net::SocketAddr;
use std::ops::Deref;

use tokio::net::{TcpListener, UdpSocket};

use chaski_api::{resolve, Engine, Error, Handle, HandleParts, Hub, Result};
use chaski_proto::{Config, Node as Core};

use crate::driver::Driver;

/// A Chaski node on tokio. Every method is [`Handle`]'s (the same on every runtime); cheap to
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
    /// Binds TCP and UDP on the same address (`host:port`; port 0 picks a free port, the same
    /// for both) and starts the node's driver task on the current tokio runtime.
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
        tokio::spawn(Driver::new(Engine::new(core, hub), listener, udp, rx).run());
        Ok(Node(Handle::new(parts)))
    }

    /// The shared handle.
    pub fn handle(&self) -> &Handle {
        &self.0
    }
}

/// Binds TCP and UDP on the same port; with port 0, retries until a port is free for both.
async fn bind_pair(want: SocketAddr) -> Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let listener = TcpListener::bind(want).await?;
        let local = listener.local_addr()?;
        match UdpSocket::bind(local).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) if want.port() == 0 => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| Error::Io("no free port".into()), Error::from))
}
