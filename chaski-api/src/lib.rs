//! # chaski-api
//!
//! The runtime-neutral layer every Chaski runtime (tokio, smol, mio) shares, so that none of it
//! is written three times: the [`Error`] type and its mapping from the core's errors, address
//! resolution, serde-typed arguments ([`encode`], [`decode`]), [`Service`]s with named methods
//! and attributes, the bounded [`MessageQueue`] with its slow-consumer policy, and the [`Hub`]
//! that routes the core's events to whoever waits for them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod hub;
mod queue;
mod resolve;
mod service;

pub use error::{Error, Result};
pub use hub::{Hub, Waiter};
pub use queue::{BlockingIter, MessageQueue, Messages, QueueStats};
pub use resolve::resolve;
pub use service::{decode, encode, Service, ServiceBuilder, ServiceError};

pub use chaski_proto::{
    CallKind, Config, ConnId, ConnectError, DisconnectReason, EdgeInfo, Event, NodeId, OnPair,
    Received, RemoteError, SlowConsumer, Status,
};
