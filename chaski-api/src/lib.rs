//! # chaski-api
//!
//! What every Chaski runtime (tokio, smol, mio) shares, in two rooms, so that none of it is
//! written three times:
//!
//! - **the user's API**, at this crate's root and re-exported by each runtime crate: a running
//!   node's [`Handle`] (the same on every runtime), [`Proxy`]s to remote services and the
//!   [`Service`]s a node offers, [`Subscriber`]s and the bounded [`Messages`] streams, typed
//!   [`Error`]s, lifecycle [`Event`]s, address resolution and TLS set-up;
//! - **the runtime kit** (`kit`, hidden from these docs): the node's engine (the protocol core
//!   and the hub behind one lock), the pumps that drive connections, UDP, accepting and timers,
//!   and the small traits a runtime implements. Runtime crates build a node from it; nothing in
//!   it is reachable from a user's type.
//!
//! The kit imports the API's values (errors, streams, services); the API drives the node
//! through the kit; neither imports the other both ways.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod context;
mod error;
mod files;
#[doc(hidden)]
pub mod kit;
mod queue;
mod service;

#[cfg(feature = "pki")]
pub use api::pki;
pub use api::{
    block_on, resolve, resolve_all, tls, tls_from_dir, Files, Handle, Proxy, Subscriber, Transfer,
    CA_FILE, CERT_FILE, KEY_FILE,
};
#[doc(hidden)]
pub use api::{handle_for, start};
pub use context::CallContext;
pub use error::{Error, Result};
pub use files::{FileError, FileEvent, FileKey, FileLimits, ReceiveOptions, ReceivedFile, Sent};
pub use queue::{BlockingIter, Events, Messages, QueueStats};
pub use service::{decode, encode, Service, ServiceBuilder, ServiceError};

pub use chaski_proto::addr::AddrError;
pub use chaski_proto::tls::{Tls, TlsError, TlsIdentity};
pub use chaski_proto::{
    CallKind, CommandError, Config, ConfigError, ConnId, ConnectError, Counters, Direction,
    DisconnectReason, EdgeInfo, EdgeReport, Event, Gauges, MemoryUse, Metrics, NodeId,
    OnCongestion, OnPair, ParseNodeIdError, Received, RemoteError, RequestId, SlowConsumer, Status,
    GOODBYE_REASONS, MESSAGE_KINDS, NODE_SERVICE, RTT_BUCKETS_US,
};

/// Everything a program on any runtime names, re-exported by each runtime crate (`chaski-tokio`,
/// `chaski-smol`, `chaski-mio`) from this one list, so the three expose the same types under
/// the same names. (Each adds its own `Node`; tokio and smol add [`Proxy`], mio its blocking
/// one.)
pub mod prelude {
    pub use crate::{
        decode, encode, AddrError, BlockingIter, CallContext, CallKind, CommandError, Config,
        ConfigError, ConnId, ConnectError, Counters, Direction, DisconnectReason, EdgeInfo,
        EdgeReport, Error, Event, Events, FileError, FileEvent, FileKey, FileLimits, Files, Gauges,
        Handle, MemoryUse, Messages, Metrics, NodeId, OnCongestion, OnPair, ParseNodeIdError,
        QueueStats, ReceiveOptions, Received, ReceivedFile, RemoteError, RequestId, Result, Sent,
        Service, ServiceBuilder, ServiceError, SlowConsumer, Status, Subscriber, Tls, TlsError,
        TlsIdentity, Transfer, GOODBYE_REASONS, MESSAGE_KINDS, NODE_SERVICE, RTT_BUCKETS_US,
    };
    pub use crate::{tls, tls_from_dir};
}
