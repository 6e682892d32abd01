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

mod runtime;

use std::ops::Deref;

use smol::Async;

pub use chaski_api::prelude::*;
use chaski_api::resolve;
pub use chaski_api::Proxy;

use runtime::{Smol, Udp};

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
    /// and starts the node's tasks on smol's global executor.
    pub async fn bind(addr: &str, config: Config) -> Result<Node> {
        config.validate()?;
        let want = resolve(addr)?;
        let (listener, udp) = chaski_api::kit::bind_std(want)?;
        let local = listener.local_addr()?;
        let (listener, udp) = (Async::new(listener)?, Async::new(udp)?);
        Ok(Node(chaski_api::start(
            Smol,
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
