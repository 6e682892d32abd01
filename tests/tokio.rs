//! The conformance suite against chaski-tokio, IPv4 and IPv6.

use chaski_tests::scenarios as s;
use chaski_tests::tokio_rt::Tokio;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod ipv4 { use super::*; $( #[test] fn $name() { s::$name(&Tokio::default(), "127.0.0.1"); } )* }
        mod ipv6 { use super::*; $( #[test] fn $name() { s::$name(&Tokio::default(), "[::1]"); } )* }
    };
}

conformance!(
    single_connections,
    star_and_graceful_shutdown,
    edges_disconnection,
    orphans,
    discovery,
    ping_size,
    stream_chain,
    root_relay_and_routing,
    abrupt_death_and_redial,
    garbage_frame,
    remote_calls,
    udp_status,
);
