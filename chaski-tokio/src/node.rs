//! The tokio `Node`: binds the sockets, starts the node's tasks, and is the shared handle.

use std::ops::Deref;

use tokio::net::{TcpListener, UdpSocket};

use chaski_api::{resolve, Handle, Result};
use chaski_proto::Config;

use crate::runtime::{Tokio, Udp};

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
    /// for both) and starts the node's tasks on the current tokio runtime.
    pub async fn bind(addr: &str, config: Config) -> Result<Node> {
        config.validate()?;
        let want = resolve(addr)?;
        let (listener, udp) = chaski_api::kit::bind_std(want)?;
        let (listener, udp) = (TcpListener::from_std(listener)?, UdpSocket::from_std(udp)?);
        let local = listener.local_addr()?;
        Ok(Node(chaski_api::start(
            Tokio(tokio::runtime::Handle::current()),
            config,
            local,
            listener,
            Udp(udp),
        )?))
    }

    /// The shared handle.
    pub fn handle(&self) -> &Handle {
        &self.0
    }
}
