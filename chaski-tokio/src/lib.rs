//! # chaski-tokio
//!
//! A Chaski [`Node`] driven by tokio: one driver task per node feeds the protocol core
//! (`chaski-proto`) and carries out its outputs; each connection has one reader and one writer
//! task, and writes are coalesced.
//!
//! ```no_run
//! use chaski_tokio::{Config, Node};
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), chaski_tokio::Error> {
//! let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
//! let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;
//! b.subscribe("news").await?;
//! a.connect(&b.local_addr().to_string()).await?;
//! a.publish("news", "hello").await?;
//! let msg = b.messages().next().await.unwrap();
//! assert_eq!(&msg.payload[..], b"hello");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod node;

pub use chaski_api::{
    decode, encode, CallKind, Config, ConnectError, DisconnectReason, EdgeInfo, Error, Event,
    Handle, Messages, NodeId, OnPair, Proxy, Received, RemoteError, Result, Service, ServiceError,
    SlowConsumer, Status,
};
pub use node::Node;
