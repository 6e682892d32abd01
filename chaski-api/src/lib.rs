//! # chaski-api
//!
//! The runtime-neutral layer every Chaski runtime (tokio, smol, mio) shares, so that none of it
//! is written three times: the [`Error`] type and its mapping from the core's errors, address
//! resolution, serde-typed arguments ([`encode`], [`decode`]), [`Service`]s with named methods
//! and attributes, the bounded [`MessageQueue`] with its slow-consumer policy, and the [`Hub`]
//! that routes the core's events to whoever waits for them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod block;
mod engine;
mod error;
mod handle;
mod hub;
mod queue;
mod resolve;
mod service;

pub use block::block_on;
pub use engine::{Command, Engine, Io, Reply, WriteBatch, COMMAND_BATCH, INPUT_BATCH};
pub use error::{Error, Result};
pub use handle::{Handle, HandleParts, Notify, Proxy};
pub use hub::{Hub, Invocation, Waiter};
pub use queue::{BlockingIter, MessageQueue, Messages, QueueStats};
pub use resolve::resolve;
pub use service::{decode, encode, Service, ServiceBuilder, ServiceError};

pub use chaski_proto::{
    CallKind, Config, ConnId, ConnectError, DisconnectReason, EdgeInfo, Event, NodeId, OnPair,
    Received, RemoteError, SlowConsumer, Status,
};

/// Gives a configuration without a seed one from the clock and the bound port, so that nodes
/// started together get different ids. A configured seed is kept (reproducible ids).
pub fn seeded(config: Config, local: std::net::SocketAddr) -> Config {
    if config.seed != 0 {
        return config;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    config.seed(nanos ^ (u64::from(local.port()) << 48) ^ u64::from(std::process::id()) << 32)
}
