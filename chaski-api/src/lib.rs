//! # chaski-api
//!
//! The runtime layer every Chaski runtime (tokio, smol, mio) shares, so that none of it is
//! written three times: the node's [`Shared`] state (the protocol core and the [`Hub`] behind
//! one lock, called inline by handles and tasks), the pumps that drive a connection, the UDP
//! socket, accepting and timers over a small [`Runtime`] trait, the user API ([`Handle`],
//! [`Proxy`], [`Service`]s, [`Error`]), address resolution, serde-typed arguments ([`encode`],
//! [`decode`]) and the bounded [`Messages`] queue with its slow-consumer policy.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bind;
mod block;
mod error;
mod handle;
mod hub;
mod queue;
mod resolve;
mod runtime;
mod service;
mod shared;
mod tasks;

pub use bind::bind_std;
pub use block::block_on;
pub use error::{Error, Result};
pub use handle::{Handle, Proxy};
pub use hub::{Hub, Invocation, Waiter};
pub use queue::{BlockingIter, MessageQueue, Messages, QueueStats};
pub use resolve::{resolve, resolve_all};
pub use runtime::{retry_until_ready, Runtime, TcpIo, UdpIo};
pub use service::{decode, encode, Service, ServiceBuilder, ServiceError};
pub use shared::{Backend, Info, Shared, State, Timers};
pub use tasks::{start, TIMER_SLACK};

pub use chaski_proto::{
    CallKind, Config, ConnId, ConnectError, DisconnectReason, EdgeInfo, Event, NodeId,
    OnCongestion, OnPair, Received, RemoteError, SlowConsumer, Status,
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
