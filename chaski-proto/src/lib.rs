//! # chaski-proto
//!
//! The Chaski protocol as a pure state machine, in the style of `quinn-proto`: no sockets, no
//! clock, no threads, no files and no ambient randomness. A runtime feeds a [`Node`] its inputs
//! (connections, bytes, datagrams, timer ticks and user commands, each with an explicit `now`),
//! then drains [`Node::poll_output`] until it returns `None`, and sleeps until
//! [`Node::poll_timeout`] or the next socket event.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use chaski_proto::{Config, Node, Output};
//!
//! let now = Instant::now();
//! let listen = "127.0.0.1:8511".parse().unwrap();
//! let mut node = Node::new(Config::default().name("a").seed(7), Some(listen)).unwrap();
//! node.subscribe("news", now).unwrap();
//! let conn = node.connect("127.0.0.1:8512".parse().unwrap(), now).unwrap();
//! // The core asks its runtime to dial.
//! assert!(matches!(node.poll_output(), Some(Output::Dial { conn: c, .. }) if c == conn));
//! // It also wants a timer: the dial must finish within the handshake timeout.
//! assert_eq!(node.poll_timeout(), Some(now + Duration::from_secs(5)));
//! node.handle_timeout(now + Duration::from_secs(5));
//! while let Some(out) = node.poll_output() {
//!     println!("{out:?}");
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod codec;
pub mod config;
pub mod dedup;
pub mod error;
pub mod files;
pub mod id;
pub mod latency;
pub mod message;
pub mod node;
pub mod patterns;
#[cfg(feature = "sim")]
pub mod sim;
pub mod text;
pub mod tls;
pub mod topic;

pub use addr::{parse_addr, Host, PeerAddr};
pub use codec::{encode_frame, FrameDecoder};
pub use config::{Config, ConfigError, OnCongestion, OnPair, SlowConsumer};
pub use error::{CodecError, CommandError, ConnectError};
pub use id::{ConnId, NodeId, ParseNodeIdError, RequestId};
pub use message::{
    CallKind, DisconnectReason, EdgeReport, Message, RemoteError, Status, MESSAGE_KINDS,
    PROTOCOL_VERSION,
};
pub use node::{
    Counters, Delivery, Direction, EdgeInfo, Event, Gauges, MemoryUse, Metrics, Node, Output,
    Received, RemoteCall, GOODBYE_REASONS, NODE_SERVICE, ROOT_TOPIC, RTT_BUCKETS_US,
};
