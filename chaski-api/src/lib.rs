//! # chaski-api
//!
//! The runtime-neutral layer every Chaski runtime (tokio, smol, mio) shares, so that none of it
//! is written three times: the [`Error`] type and its mapping from the core's errors, address
//! resolution, serde-typed arguments ([`encode`], [`decode`]), [`Service`]s with named methods
//! and attributes, the bounded [`MessageQueue`] with its slow-consumer policy, and the [`Hub`]
//! that routes the core's events to whoever waits for them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bind;
mod block;
mod engine;
mod error;
mod handle;
mod hub;
mod queue;
mod resolve;
mod service;

pub use bind::bind_std;
pub use block::block_on;
pub use engine::{
    Command, Engine, Input, Io, Reply, StreamIo, WriteBatch, COMMAND_BATCH, INPUT_BATCH,
};
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

/// Capacity of a node's command channel (handles wait when it is full).
pub const COMMAND_QUEUE: usize = 1024;

/// Everything a runtime needs to run a node bound at `local`: the engine (core and hub), the
/// parts of its [`Handle`], and the command channel its driver reads. `notify` wakes a driver
/// that sleeps in its own poll loop (mio); async drivers pass `None`.
pub fn start(
    config: Config,
    local: std::net::SocketAddr,
    notify: Option<Notify>,
) -> (Engine, HandleParts, async_channel::Receiver<Command>) {
    let config = seeded(config, local);
    let core = chaski_proto::Node::new(config.clone(), Some(local));
    let (hub, messages, events) = Hub::new(&config);
    let (tx, rx) = async_channel::bounded(COMMAND_QUEUE);
    let parts = HandleParts {
        commands: tx,
        notify,
        local,
        id: core.id(),
        name: core.name().to_string(),
        config: std::sync::Arc::new(config),
        messages,
        events,
    };
    (Engine::new(core, hub), parts, rx)
}

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
