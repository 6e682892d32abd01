//! The runtime kit: what a runtime crate (chaski-tokio, chaski-smol, chaski-mio) builds a
//! node from, written once. Not for applications (their API is the crate root).
//!
//! - [`Engine`]: the node's state, the protocol core and the [`Hub`] behind one lock, and the
//!   pumps that drive a connection, the UDP socket, accepting and timers;
//! - [`Runtime`] (async runtimes: spawn, sockets, timers) and [`Launcher`] (how a runtime
//!   starts dials and service calls); [`spawn`] starts a node on a [`Runtime`];
//! - [`Hub`]: the core's deliveries and events routed to the application's streams and
//!   waiters, and local services;
//! - [`bind_std`]: the node's sockets, bound once for every runtime.

mod bind;
mod connection;
mod datagrams;
mod engine;
pub(crate) mod file_io;
mod hub;
mod runtime;
mod tasks;
pub(crate) mod transfers;

pub use bind::bind_std;
pub use engine::{Engine, Info, Keepalive, Launcher, State, TimerWait};
pub use hub::{Hub, Invocation, Reply};
pub use runtime::{retry_until_ready, Runtime, TcpIo, UdpIo};
pub use tasks::{spawn, TIMER_SLACK};

use chaski_proto::Config;

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
            .map(|_| super::seeded(chaski_proto::Config::default(), at).seed)
            .collect();
        assert_eq!(
            seeds.len(),
            100,
            "the same address gave the same seed twice"
        );
        assert_eq!(
            super::seeded(chaski_proto::Config::default().seed(7), at).seed,
            7
        );
    }
}
