//! The conformance suite: scenarios written once against [`Harness`] and [`TestNode`], a
//! blocking, runtime-neutral view of a node, and run over real loopback sockets against every
//! runtime. Every wait has a deadline; nothing sleeps a fixed time to let things happen.
//!
//! A node that dies under a scenario fails it: every [`TestNode`] method that asks the node
//! something panics if the node no longer answers (a driver that panicked, a closed command
//! channel), and [`TestNode::shutdown`] must succeed the first time.

pub mod alloc;
pub mod async_rt;
pub mod files;
pub mod hostile;
pub mod mio_rt;
pub mod raw;
pub mod scenarios;
pub mod secure;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaski_api::{
    Config, EdgeInfo, Event, NodeId, QueueStats, Received, Result, Service, ServiceError, Status,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Starts nodes on one runtime.
pub trait Harness: Sync {
    /// The runtime's node, seen through [`TestNode`].
    type Node: TestNode;
    /// Starts a node bound to `addr` (port 0 for a free port).
    fn start(&self, addr: &str, config: Config) -> Self::Node;
}

/// A node, with blocking methods (each runtime adapts its own API).
///
/// Methods returning `Result` report the node's answer; the others panic when the node cannot
/// answer at all (it is dead), so a crashed node never passes for an idle one.
pub trait TestNode: Send + Sync {
    /// Bound address.
    fn addr(&self) -> SocketAddr;
    /// Node id.
    fn id(&self) -> NodeId;
    /// Connects; returns once the edge exists.
    fn connect(&self, addr: &str) -> Result<EdgeInfo>;
    /// Subscribes.
    fn subscribe(&self, topic: &str) -> Result<()>;
    /// Subscribes with a stream of its own (the same type on every runtime).
    fn subscriber(&self, pattern: &str) -> Result<chaski_api::Subscriber>;
    /// Unsubscribes.
    fn unsubscribe(&self, topic: &str) -> Result<()>;
    /// Publishes.
    fn publish(&self, topic: &str, payload: &[u8]) -> Result<()>;
    /// Publishes one UDP datagram to `addr`.
    fn publish_datagram(&self, addr: &str, topic: &str, payload: &[u8]) -> Result<()>;
    /// The next received message within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Received>;
    /// Counters of the received-message queue.
    fn message_stats(&self) -> QueueStats;
    /// The next lifecycle event within `timeout`.
    fn next_event(&self, timeout: Duration) -> Option<Event>;
    /// Edge snapshot; panics if the node is dead.
    fn edges(&self) -> Vec<EdgeInfo>;
    /// The node's own status; panics if the node is dead.
    fn local_status(&self) -> Status;
    /// Counters, levels and edges; panics if the node is dead.
    fn metrics(&self) -> chaski_api::Metrics;
    /// Discovers; returns once every topic is paired.
    fn discover(&self) -> Result<()>;
    /// Closes the edge to a peer.
    fn close(&self, peer: NodeId) -> Result<()>;
    /// Shuts the node down: the first call must succeed (a dead node fails the test); later
    /// calls are no-ops.
    fn shutdown(&self);
    /// Pings a peer; returns the round trip.
    fn ping(&self, peer: NodeId, padding: usize) -> Result<Duration>;
    /// UDP status of a node.
    fn status(&self, addr: &str) -> Result<Status>;
    /// Offers a service.
    fn serve(&self, name: &str, service: Service) -> Result<()>;
    /// Offers a single function.
    fn attach<A, R, F>(&self, name: &str, f: F) -> Result<()>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> std::result::Result<R, ServiceError> + Send + Sync + 'static;
    /// Withdraws a service.
    fn detach(&self, name: &str) -> Result<()>;
    /// Calls `path` of `service` (resolved among connected peers) with typed arguments.
    fn call<A: Serialize + Sync, R: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R>;
    /// Reads the attribute at `path` of `service`.
    fn get<R: DeserializeOwned>(&self, service: &str, path: &str, timeout: Duration) -> Result<R>;
    /// The node's async handle (every runtime has one), for what a blocking call cannot do,
    /// such as dropping a call halfway.
    fn handle(&self) -> chaski_api::Handle;
}

/// Checks a node's answer to a query whose failure means the node is dead.
pub fn alive<T>(what: &str, r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("the node did not answer {what}: {e} (is its driver dead?)"),
    }
}

/// Checks the result of a node's first shutdown.
pub fn shut_down_once(first: bool, r: Result<()>) {
    if first {
        if let Err(e) = r {
            panic!("shutdown failed: {e} (the node was already dead)");
        }
    }
}

/// Starts a node of `h` on `host` (`127.0.0.1` or `[::1]`), port 0.
pub fn start_on<H: Harness>(h: &H, host: &str, config: Config) -> H::Node {
    h.start(&format!("{host}:0"), config)
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits up to `limit` for an event matching `pred`, skipping others; returns it.
pub fn wait_event<N: TestNode>(
    node: &N,
    limit: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let end = Instant::now() + limit;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match node.next_event(left) {
            Some(e) if pred(&e) => return Some(e),
            Some(_) => {}
            None => return None,
        }
    }
    None
}

/// Declares every scenario of [`scenarios`] on IPv4 and IPv6, and every one of [`hostile`]
/// (which do not depend on the address family) on IPv4, for one harness constructor. The
/// lists are checked against the scenario sources (`registry_is_complete`), so a scenario
/// written but not registered fails the suite.
#[macro_export]
macro_rules! conformance {
    ($harness:expr) => {
        #[global_allocator]
        static ALLOC: $crate::alloc::Counting = $crate::alloc::Counting;

        $crate::for_each_scenario!([$crate::conformance] @each $harness);
    };
    (@each $harness:expr; [$($module:ident :: $name:ident),*] [$($hmodule:ident :: $hname:ident),*]) => {
        mod ipv4 {
            use super::*;
            $( #[test] fn $name() {
                let _gate = $crate::alloc::Scenario::enter();
                $crate::$module::$name(&$harness, "127.0.0.1");
            } )*
            $( #[test] fn $hname() {
                let _gate = $crate::alloc::Scenario::enter();
                $crate::$hmodule::$hname(&$harness, "127.0.0.1");
            } )*
        }
        mod ipv6 {
            use super::*;
            $( #[test] fn $name() {
                let _gate = $crate::alloc::Scenario::enter();
                $crate::$module::$name(&$harness, "[::1]");
            } )*
        }
        $crate::for_each_secure_scenario!([$crate::conformance] @secure $harness);
    };
    (@secure $harness:expr; [$($module:ident :: $name:ident),*]) => {
        /// The same scenarios with every node secure (TLS, one cluster CA), on IPv4.
        mod secure_links {
            use super::*;
            $( #[test] fn $name() {
                let _gate = $crate::alloc::Scenario::enter();
                let h = $harness;
                $crate::$module::$name(&$crate::secure::Secure::new(&h), "127.0.0.1");
            } )*
        }
    };
}

/// Calls `m!(@secure arg; [scenario, ...])` with the scenarios that also run secure: all but
/// those that need a plaintext hand-driven peer or UDP (off on a secure node).
#[macro_export]
macro_rules! for_each_secure_scenario {
    ([$($m:tt)*] @secure $arg:expr) => {
        $($m)*! { @secure $arg; [
            scenarios::single_connections,
            scenarios::star_and_graceful_shutdown,
            scenarios::edges_disconnection,
            scenarios::orphans,
            scenarios::discovery,
            scenarios::discovery_through_a_paired_node,
            scenarios::multiple_discovery,
            scenarios::subscriptions_without_disconnect,
            scenarios::subscriptions_with_disconnect,
            scenarios::root_hub_topologies,
            scenarios::ping_size,
            scenarios::message_ttl,
            scenarios::unsubscribe_stops_delivery,
            scenarios::stream_chain,
            scenarios::root_relay_and_routing,
            scenarios::four_cycle_delivers_exactly_once,
            scenarios::wildcard_subscribers,
            scenarios::subscriber_handles,
            scenarios::remote_calls,
            scenarios::services_anywhere,
            scenarios::cancels_reach_the_server,
            scenarios::attach_and_detach,
            scenarios::service_panic,
            scenarios::max_edges,
            scenarios::shutdown_flushes,
            files::files_through_a_root
        ] }
    };
}

/// Calls `m!(@each arg; [module::scenario, ...] [hostile::scenario, ...])` with every
/// registered scenario (both families, then IPv4 only), for `for_each_scenario!([m] @each arg)`.
#[macro_export]
macro_rules! for_each_scenario {
    ([$($m:tt)*] @each $arg:expr) => {
        $($m)*! { @each $arg; [
            scenarios::single_connections,
            scenarios::star_and_graceful_shutdown,
            scenarios::edges_disconnection,
            scenarios::orphans,
            scenarios::discovery,
            scenarios::discovery_through_a_paired_node,
            scenarios::multiple_discovery,
            scenarios::subscriptions_without_disconnect,
            scenarios::subscriptions_with_disconnect,
            scenarios::root_hub_topologies,
            scenarios::ping_size,
            scenarios::message_ttl,
            scenarios::unsubscribe_stops_delivery,
            scenarios::stream_chain,
            scenarios::root_relay_and_routing,
            scenarios::four_cycle_delivers_exactly_once,
            scenarios::wildcard_subscribers,
            scenarios::subscriber_handles,
            scenarios::abrupt_death_and_redial,
            scenarios::redial_while_the_peer_is_down,
            scenarios::redial_gives_up,
            scenarios::no_redial_after_goodbye_or_close,
            scenarios::the_accepting_side_does_not_redial,
            scenarios::garbage_frame,
            scenarios::a_second_connection_moves_the_edge_at_once,
            scenarios::a_get_sends_null_arguments,
            scenarios::remote_calls,
            scenarios::crash_mid_call,
            scenarios::services_anywhere,
            scenarios::cancels_reach_the_server,
            scenarios::attach_and_detach,
            scenarios::service_panic,
            scenarios::udp_status,
            scenarios::udp_publish,
            scenarios::max_edges,
            scenarios::shutdown_flushes,
            files::files_through_a_root,
            files::files_refused_renamed_and_confined,
            files::a_cancelled_transfer_leaves_nothing,
            files::hostile_file_frames_leave_nothing
        ] [
            hostile::huge_length_prefix,
            hostile::slow_loris,
            hostile::name_floods,
            hostile::request_flood,
            hostile::slow_consumer_drop_oldest,
            hostile::slow_consumer_back_pressure,
            hostile::peer_that_stops_reading,
            hostile::stalled_peer_holds_nothing_else,
            hostile::idle_sockets_cannot_lock_out_peers,
            hostile::hostile_peers_stay_within_the_memory_budget,
            hostile::connection_churn,
            secure::strangers_are_refused,
            secure::ids_cannot_be_claimed
        ] }
    };
}

/// The names registered in [`for_each_scenario`], as `module::name`.
pub fn registered() -> Vec<String> {
    macro_rules! names {
        (@each $unit:expr; [$($module:ident :: $name:ident),*] [$($h:ident :: $hn:ident),*]) => {
            vec![
                $(concat!(stringify!($module), "::", stringify!($name)).to_string(),)*
                $(concat!(stringify!($h), "::", stringify!($hn)).to_string(),)*
            ]
        };
    }
    for_each_scenario!([names] @each ())
}

/// The public scenario functions (`pub fn name<H: Harness>`) found in the scenario sources.
pub fn defined() -> Vec<String> {
    let mut out = Vec::new();
    for (module, src) in [
        ("scenarios", include_str!("scenarios.rs")),
        ("files", include_str!("files.rs")),
        ("hostile", include_str!("hostile.rs")),
        ("secure", include_str!("secure.rs")),
    ] {
        for line in src.lines() {
            if let Some(rest) = line.strip_prefix("pub fn ") {
                if let Some((name, tail)) = rest.split_once('<') {
                    if tail.starts_with("H: Harness>") {
                        out.push(format!("{module}::{name}"));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// The README's quick start is `chaski-tokio/examples/quickstart.rs` word for word (CI runs
    /// the example; `cargo test` runs the README's block as a doctest).
    #[test]
    fn the_readme_quick_start_is_the_example() {
        let readme = include_str!("../../README.md");
        let from = readme
            .find("## Quick start (tokio)")
            .expect("a quick start section");
        let block = &readme[from..];
        let start = block.find("```rust\n").expect("its code block") + "```rust\n".len();
        let end = start + block[start..].find("```\n").expect("the block's end");
        let example: String = include_str!("../../chaski-tokio/examples/quickstart.rs")
            .lines()
            .filter(|l| !l.starts_with("//!"))
            .skip_while(|l| l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(block[start..end], example);
    }

    #[test]
    fn registry_is_complete() {
        let mut defined = super::defined();
        let mut registered = super::registered();
        defined.sort();
        registered.sort();
        assert!(defined.len() > 30, "found only {defined:?}");
        assert_eq!(
            defined, registered,
            "every scenario must be registered in for_each_scenario!"
        );
    }
}

/// The code blocks of `README.md`, compiled as doctests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
