//! # chaski-api
//!
//! The runtime layer every Chaski runtime (tokio, smol, mio) shares, so that none of it is
//! written three times: the node's [`Engine`] state (the protocol core and the [`Hub`] behind
//! one lock, called inline by handles and tasks), the pumps that drive a connection, the UDP
//! socket, accepting and timers over a small [`Runtime`] trait, the user API ([`Handle`],
//! [`Proxy`], [`Service`]s, [`Error`]), address resolution, serde-typed arguments ([`encode`],
//! [`decode`]) and the bounded [`Messages`] queue with its slow-consumer policy.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bind;
mod block;
mod context;
mod datagrams;
mod error;
mod handle;
mod hub;
mod queue;
mod resolve;
mod runtime;
mod secure;
mod service;
mod shared;
mod subscriber;
mod tasks;

pub use bind::bind_std;
pub use block::block_on;
pub use error::{Error, Result};
pub use handle::{Handle, Proxy};
pub use hub::{Hub, Invocation, Reply};
pub use queue::{BlockingIter, MessageQueue, Messages, QueueStats};
pub use resolve::{resolve, resolve_all};
pub use secure::{tls, tls_from_dir, CA_FILE, CERT_FILE, KEY_FILE};
#[cfg(feature = "pki")]
pub mod pki;
pub use runtime::{retry_until_ready, Runtime, TcpIo, UdpIo};
pub use service::{decode, encode, CallContext, Service, ServiceBuilder, ServiceError};
pub use shared::{Engine, Info, Launcher, State, TimerWait};
pub use subscriber::Subscriber;

pub(crate) use chaski_proto::topic::matches as topic_matches;
pub use tasks::{start, TIMER_SLACK};

pub use chaski_proto::addr::AddrError;
pub use chaski_proto::tls::{Tls, TlsError, TlsIdentity};
pub use chaski_proto::{
    CallKind, CommandError, Config, ConfigError, ConnId, ConnectError, Direction, DisconnectReason,
    EdgeInfo, EdgeReport, Event, NodeId, OnCongestion, OnPair, ParseNodeIdError, Received,
    RemoteError, RequestId, SlowConsumer, Status, NODE_SERVICE,
};

/// Everything a program on any runtime names, re-exported by each runtime crate (`chaski-tokio`,
/// `chaski-smol`, `chaski-mio`) from this one list, so the three expose the same types under
/// the same names. (Each adds its own `Node`; tokio and smol add [`Proxy`], mio its blocking
/// one.)
pub mod prelude {
    pub use crate::{
        decode, encode, AddrError, BlockingIter, CallContext, CallKind, CommandError, Config,
        ConfigError, ConnId, ConnectError, Direction, DisconnectReason, EdgeInfo, EdgeReport,
        Error, Event, Handle, Messages, NodeId, OnCongestion, OnPair, ParseNodeIdError, QueueStats,
        Received, RemoteError, RequestId, Result, Service, ServiceBuilder, ServiceError,
        SlowConsumer, Status, Subscriber, Tls, TlsError, TlsIdentity, NODE_SERVICE,
    };
    pub use crate::{tls, tls_from_dir};
}

/// Gives a configuration without a seed one drawn from the operating system's randomness
/// (through the standard library's hash keys), so that node ids are neither guessable nor
/// repeated. A configured seed is kept (reproducible ids).
pub fn seeded(config: Config, local: std::net::SocketAddr) -> Config {
    use std::hash::BuildHasher;
    if config.seed != 0 {
        return config;
    }
    let random = std::collections::hash_map::RandomState::new().hash_one(local);
    config.seed(random.max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unseeded_configs_get_distinct_random_seeds_and_a_seed_is_kept() {
        let at: std::net::SocketAddr = "127.0.0.1:8511".parse().unwrap();
        let seeds: std::collections::BTreeSet<u64> = (0..100)
            .map(|_| crate::seeded(crate::Config::default(), at).seed)
            .collect();
        assert_eq!(
            seeds.len(),
            100,
            "the same address gave the same seed twice"
        );
        assert_eq!(crate::seeded(crate::Config::default().seed(7), at).seed, 7);
    }
}
