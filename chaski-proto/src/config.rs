//! Node configuration, with documented defaults and builder-style setters.
//!
//! ```
//! use std::time::Duration;
//! use chaski_proto::{Config, OnPair};
//! let cfg = Config::default()
//!     .name("sensor-1")
//!     .ttl(16)
//!     .keepalive_interval(Duration::from_secs(2))
//!     .on_pair(OnPair::Disconnect);
//! assert_eq!(cfg.max_connections, 5);
//! assert_eq!(cfg.ttl, 16);
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the origin of a discovery does with its bootstrap link once it has paired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OnPair {
    /// Keep every link.
    #[default]
    None,
    /// Drop the link the discovery entered through, unless it shares a topic or is a pairing link.
    Disconnect,
}

/// Durations as seconds (a number, fractions allowed) in serialized configurations.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| serde::de::Error::custom(format!("{secs} is not a duration in seconds")))
    }
}

/// The longest duration a setting may have (one year): later instants overflow on some
/// platforms.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A [`Config`] setting that is not valid, from [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {why}")]
pub struct ConfigError {
    /// The setting's name (the field of [`Config`]).
    pub setting: &'static str,
    /// What is wrong with it.
    pub why: String,
}

/// What publishing does while a peer it goes to has more than
/// [`Config::congestion_limit`] bytes it has not taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnCongestion {
    /// The publish waits until that peer takes its bytes, or is dropped for taking none for
    /// `stall_timeout`. Nothing is lost; publishes to other peers' topics never wait.
    #[default]
    Wait,
    /// The message is not sent to that peer (counted in `Counters::congestion_skipped`);
    /// publishing never waits. Relays skip it too.
    Skip,
}

/// What a runtime does when the application reads messages more slowly than they arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Stop reading the sockets until the application catches up.
    #[default]
    BackPressure,
    /// Drop the oldest queued message (and count it).
    DropOldest,
}

/// Every tunable of a node. Defaults are those of the Python original where it had one.
///
/// (De)serializable with serde: field names as here, durations in seconds (a number), every
/// field optional (missing ones take their defaults), unknown fields refused. So a TOML file
/// like this configures a node:
///
/// ```
/// let cfg: chaski_proto::Config = serde_json::from_str(
///     r#"{ "name": "sensor-1", "max_edges": 64, "keepalive_interval": 2.5 }"#,
/// ).unwrap();
/// assert_eq!(cfg.max_edges, 64);
/// assert_eq!(cfg.keepalive_interval, std::time::Duration::from_millis(2500));
/// assert_eq!(cfg.ttl, 64, "the rest are defaults");
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Human-readable node name (default: derived from the node id).
    pub name: Option<String>,
    /// Seed for the node id and all jitter; two nodes with the same seed get the same id.
    pub seed: u64,
    /// A root accepts every topic, never pairs and always forwards discoveries (default false).
    pub root: bool,
    /// Whether topics subscribed are paired from the start (the Python `paired=True`; default false).
    pub paired: bool,
    /// Hop limit for discoveries and publishes (default 64).
    pub ttl: u8,
    /// Pairing links per topic a cluster member accepts before it forwards instead (default 5).
    pub max_connections: usize,
    /// Hard bound on the edge table (default 256).
    pub max_edges: usize,
    /// Inbound connections waiting for their Hello (default 64); a new one past it drops the
    /// oldest. They never take an edge's place.
    pub max_handshakes: usize,
    /// Of those, how many may come from one IP address (default 8); a new one past it drops
    /// that address's oldest, so one host cannot take every slot.
    pub max_handshakes_per_ip: usize,
    /// Redial attempts after an edge is lost (default 32; 0 disables).
    pub reconnections: u32,
    /// First redial delay; doubles each attempt, with jitter (default 500 ms).
    #[serde(with = "seconds")]
    pub reconnect_initial: Duration,
    /// Upper bound of the redial delay (default 30 s).
    #[serde(with = "seconds")]
    pub reconnect_max: Duration,
    /// Keep-alive ping period of an idle edge (default 7 s).
    #[serde(with = "seconds")]
    pub keepalive_interval: Duration,
    /// Extra random share of the keep-alive period, from 0 to this fraction (default 0.5).
    pub keepalive_jitter: f64,
    /// A busy edge (whose traffic keeps the keep-alive from firing) is still pinged this
    /// often, so its latency stays measured for `@node`, metrics and the mesh's picture
    /// (default 15 s; 0: only idle edges are pinged).
    #[serde(with = "seconds")]
    pub latency_interval: Duration,
    /// An edge that has received nothing for this long is dropped (default 25 s).
    #[serde(with = "seconds")]
    pub idle_timeout: Duration,
    /// A connection whose Hello exchange is not done within this is closed (default 5 s).
    #[serde(with = "seconds")]
    pub handshake_timeout: Duration,
    /// A discovery that nothing answers within this makes the node the topic's anchor (default 2 s).
    #[serde(with = "seconds")]
    pub discovery_timeout: Duration,
    /// What the origin of a discovery does with its bootstrap link (default `None`).
    pub on_pair: OnPair,
    /// Default timeout of a remote call (default 10 s).
    #[serde(with = "seconds")]
    pub rpc_timeout: Duration,
    /// Timeout of a UDP status query (default 2 s).
    #[serde(with = "seconds")]
    pub status_timeout: Duration,
    /// Largest frame body accepted or sent (default 16 MiB).
    pub max_frame_len: usize,
    /// Largest UDP datagram accepted or sent (default 60 000 bytes).
    pub max_datagram_len: usize,
    /// Publish sequence numbers remembered for de-duplication: the latest 256 of each origin,
    /// for `dedup_pool / 256` origins (default 262 144: 1024 origins).
    pub dedup_pool: usize,
    /// Discovery ids remembered for de-duplication (default 4096).
    pub discovery_pool: usize,
    /// Bytes waiting to be written to one connection before it is closed (default 64 MiB).
    /// Publishing waits while a subscribed peer has more than an eighth of this waiting (at
    /// least 64 KiB); relays and replies do not wait, so a peer that lags further is dropped.
    pub max_outbound: usize,
    /// A connection whose peer takes none of the bytes waiting for it for this long is dropped
    /// as not reading (default 15 s). A slow peer that keeps taking bytes is kept.
    #[serde(with = "seconds")]
    pub stall_timeout: Duration,
    /// How long a closed connection may go without taking any of what was queued before its
    /// close (its goodbye included) before it is dropped unflushed (default 2 s).
    #[serde(with = "seconds")]
    pub linger: Duration,
    /// What publishing does while a peer it goes to is congested (default `Wait`).
    pub on_congestion: OnCongestion,
    /// Application events held before the oldest is dropped (default 65 536).
    pub max_events: usize,
    /// Messages the runtime queues for a slow application (default 16 384).
    pub message_queue: usize,
    /// What the runtime does when that queue is full (default back-pressure).
    pub slow_consumer: SlowConsumer,
    /// Topics a peer may announce (default 1024).
    pub max_peer_topics: usize,
    /// Of a peer's topics, how many may be patterns (`*`, `**`; default 32): each is matched
    /// against every message sent to that peer.
    pub max_peer_patterns: usize,
    /// Services a peer may announce (default 256).
    pub max_peer_services: usize,
    /// Length of a topic, service or name in bytes (default 256).
    pub max_name_len: usize,
    /// Remote calls of ours awaiting an answer (default 1024).
    pub max_pending_calls: usize,
    /// Requests from one peer the application has not answered yet (default 256).
    pub max_inbound_requests: usize,
    /// UDP status queries of ours awaiting an answer (default 64).
    pub max_pending_status: usize,
    /// UDP status queries this node answers per second, from everyone together (default 200;
    /// 0: none). Past it queries are dropped (counted): a flood of forged queries cannot make
    /// the node send more than this.
    pub status_replies_per_sec: u32,
    /// Largest ping padding accepted from a peer (default 1 MiB).
    pub max_ping_padding: usize,
    /// The node-wide memory budget, in bytes (default 256 MiB). Three quarters of it bound what
    /// the node holds for all its connections together ([`Config::buffer_budget`]: unfinished
    /// frames received, bytes waiting to be written, closed connections' unwritten bytes);
    /// past that, the connection holding the most is dropped. Publishing waits from half of
    /// it. The last quarter bounds the payloads the runtime queues for the application
    /// ([`Config::queue_budget`]).
    pub max_memory: usize,
    /// Largest frame accepted from a connection before its Hello (default 1 MiB).
    pub max_hello_len: usize,
    /// Shortest time between two dials the node makes by itself (redials, pairing) to one
    /// address (default 500 ms): addresses learned from peers cannot make it dial anywhere
    /// repeatedly. The application's own `connect` is not limited.
    #[serde(with = "seconds")]
    pub dial_interval: Duration,
    /// The address told to peers, when the bound one is not reachable from them (a wildcard
    /// like `0.0.0.0`, a NAT, a container). Default: the bound address; a peer that sees a
    /// wildcard address uses the address the connection came from instead.
    pub advertise: Option<SocketAddr>,
    /// Whether peers may ask this node for its edges and status over the connection (the
    /// reserved service [`NODE_SERVICE`](crate::NODE_SERVICE), used by `chaski edges`;
    /// default true). Off, such a request is answered `NotFound`.
    pub introspect: bool,
    /// How long a sender keeps a finished transfer available to receivers that miss chunks
    /// (seconds in files; default 60).
    #[serde(with = "seconds")]
    pub file_keep: Duration,
    /// How long a receiver waits without a new chunk before it asks the sender for what it
    /// misses (seconds in files; default 1).
    #[serde(with = "seconds")]
    pub file_repair_after: Duration,
    /// How long a receiver waits without any progress before it gives a transfer up
    /// (seconds in files; default 30).
    #[serde(with = "seconds")]
    pub file_timeout: Duration,
    /// Transfers a node sends at once (and keeps for repairs); default 16.
    pub max_outgoing_files: usize,
    /// Secure links (TLS 1.3, mutual authentication with the cluster CA): every connection
    /// is encrypted, the node's id is its certificate's, and plaintext peers are refused; UDP
    /// publishes are off and status is answered to the node's own host only. `None` (the default): plaintext. Not read from a file:
    /// see [`Config::secure`].
    #[serde(skip)]
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            seed: 0,
            root: false,
            paired: false,
            ttl: 64,
            max_connections: 5,
            max_edges: 256,
            max_handshakes: 64,
            max_handshakes_per_ip: 8,
            reconnections: 32,
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(7),
            latency_interval: Duration::from_secs(15),
            keepalive_jitter: 0.5,
            idle_timeout: Duration::from_secs(25),
            handshake_timeout: Duration::from_secs(5),
            discovery_timeout: Duration::from_secs(2),
            on_pair: OnPair::None,
            rpc_timeout: Duration::from_secs(10),
            status_timeout: Duration::from_secs(2),
            max_frame_len: 16 * 1024 * 1024,
            max_datagram_len: 60_000,
            dedup_pool: 262_144,
            discovery_pool: 4096,
            max_outbound: 64 * 1024 * 1024,
            stall_timeout: Duration::from_secs(15),
            linger: Duration::from_secs(2),
            on_congestion: OnCongestion::Wait,
            max_events: 65_536,
            message_queue: 16_384,
            slow_consumer: SlowConsumer::BackPressure,
            max_peer_topics: 1024,
            max_peer_patterns: 32,
            max_peer_services: 256,
            max_name_len: 256,
            max_pending_calls: 1024,
            max_inbound_requests: 256,
            max_pending_status: 64,
            status_replies_per_sec: 200,
            max_ping_padding: 1024 * 1024,
            max_memory: 256 * 1024 * 1024,
            max_hello_len: 1024 * 1024,
            dial_interval: Duration::from_millis(500),
            advertise: None,
            introspect: true,
            file_keep: Duration::from_secs(60),
            file_repair_after: Duration::from_secs(1),
            file_timeout: Duration::from_secs(30),
            max_outgoing_files: 16,
            tls: None,
        }
    }
}

macro_rules! setters {
    ($($(#[$m:meta])* $field:ident : $ty:ty),* $(,)?) => {
        impl Config {
            $(
                $(#[$m])*
                #[must_use]
                pub fn $field(mut self, v: $ty) -> Self {
                    self.$field = v;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`Config::seed`].
    seed: u64,
    /// Sets [`Config::root`].
    root: bool,
    /// Sets [`Config::paired`].
    paired: bool,
    /// Sets [`Config::ttl`].
    ttl: u8,
    /// Sets [`Config::max_connections`].
    max_connections: usize,
    /// Sets [`Config::max_edges`].
    max_edges: usize,
    /// Sets [`Config::max_handshakes`].
    max_handshakes: usize,
    /// Sets [`Config::max_handshakes_per_ip`].
    max_handshakes_per_ip: usize,
    /// Sets [`Config::reconnections`].
    reconnections: u32,
    /// Sets [`Config::reconnect_initial`].
    reconnect_initial: Duration,
    /// Sets [`Config::reconnect_max`].
    reconnect_max: Duration,
    /// Sets [`Config::keepalive_interval`].
    keepalive_interval: Duration,
    /// Sets [`Config::keepalive_jitter`].
    keepalive_jitter: f64,
    /// Sets [`Config::latency_interval`].
    latency_interval: Duration,
    /// Sets [`Config::idle_timeout`].
    idle_timeout: Duration,
    /// Sets [`Config::handshake_timeout`].
    handshake_timeout: Duration,
    /// Sets [`Config::discovery_timeout`].
    discovery_timeout: Duration,
    /// Sets [`Config::on_pair`].
    on_pair: OnPair,
    /// Sets [`Config::rpc_timeout`].
    rpc_timeout: Duration,
    /// Sets [`Config::status_timeout`].
    status_timeout: Duration,
    /// Sets [`Config::max_frame_len`].
    max_frame_len: usize,
    /// Sets [`Config::max_datagram_len`].
    max_datagram_len: usize,
    /// Sets [`Config::dedup_pool`].
    dedup_pool: usize,
    /// Sets [`Config::discovery_pool`].
    discovery_pool: usize,
    /// Sets [`Config::max_outbound`].
    max_outbound: usize,
    /// Sets [`Config::stall_timeout`].
    stall_timeout: Duration,
    /// Sets [`Config::linger`].
    linger: Duration,
    /// Sets [`Config::on_congestion`].
    on_congestion: OnCongestion,
    /// Sets [`Config::max_events`].
    max_events: usize,
    /// Sets [`Config::message_queue`].
    message_queue: usize,
    /// Sets [`Config::slow_consumer`].
    slow_consumer: SlowConsumer,
    /// Sets [`Config::max_peer_topics`].
    max_peer_topics: usize,
    /// Sets [`Config::max_peer_patterns`].
    max_peer_patterns: usize,
    /// Sets [`Config::max_peer_services`].
    max_peer_services: usize,
    /// Sets [`Config::max_name_len`].
    max_name_len: usize,
    /// Sets [`Config::max_pending_calls`].
    max_pending_calls: usize,
    /// Sets [`Config::max_inbound_requests`].
    max_inbound_requests: usize,
    /// Sets [`Config::max_pending_status`].
    max_pending_status: usize,
    /// Sets [`Config::status_replies_per_sec`].
    status_replies_per_sec: u32,
    /// Sets [`Config::max_ping_padding`].
    max_ping_padding: usize,
    /// Sets [`Config::max_memory`].
    max_memory: usize,
    /// Sets [`Config::max_hello_len`].
    max_hello_len: usize,
    /// Sets [`Config::dial_interval`].
    dial_interval: Duration,
    /// Sets [`Config::advertise`].
    advertise: Option<SocketAddr>,
    /// Sets [`Config::introspect`].
    introspect: bool,
    /// Sets [`Config::file_keep`].
    file_keep: Duration,
    /// Sets [`Config::file_repair_after`].
    file_repair_after: Duration,
    /// Sets [`Config::file_timeout`].
    file_timeout: Duration,
    /// Sets [`Config::max_outgoing_files`].
    max_outgoing_files: usize,
}

impl Config {
    /// Makes the node secure with `tls` ([`Config::tls`]).
    #[must_use]
    pub fn secure(mut self, tls: crate::tls::Tls) -> Self {
        self.tls = Some(std::sync::Arc::new(tls));
        self
    }
}

impl Config {
    /// Bytes waiting for one connection above which publishing to its peer waits: an eighth
    /// of [`Config::max_outbound`], at least 64 KiB (and at most `max_outbound`).
    ///
    /// ```
    /// let cfg = chaski_proto::Config::default().max_outbound(8 << 20);
    /// assert_eq!(cfg.congestion_limit(), 1 << 20);
    /// ```
    pub fn congestion_limit(&self) -> usize {
        (self.max_outbound / 8)
            .max(64 * 1024)
            .min(self.max_outbound)
    }

    /// Bytes the node may hold for its connections together: three quarters of
    /// [`Config::max_memory`].
    pub fn buffer_budget(&self) -> usize {
        self.max_memory - self.queue_budget()
    }

    /// Bytes of payload the runtime may queue for the application: a quarter of
    /// [`Config::max_memory`].
    pub fn queue_budget(&self) -> usize {
        self.max_memory / 4
    }

    /// Checks every setting once; the error names the first that is wrong and why.
    ///
    /// ```
    /// use chaski_proto::Config;
    /// assert!(Config::default().validate().is_ok());
    /// let err = Config::default().keepalive_jitter(f64::NAN).validate().unwrap_err();
    /// assert_eq!(err.setting, "keepalive_jitter");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting: &'static str, why: String| Err(ConfigError { setting, why });
        let positive = [
            ("max_edges", self.max_edges),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
            ("max_connections", self.max_connections),
            ("max_frame_len", self.max_frame_len),
            ("max_datagram_len", self.max_datagram_len),
            ("dedup_pool", self.dedup_pool),
            ("discovery_pool", self.discovery_pool),
            ("max_outbound", self.max_outbound),
            ("max_events", self.max_events),
            ("message_queue", self.message_queue),
            ("max_name_len", self.max_name_len),
            ("max_pending_calls", self.max_pending_calls),
            ("max_inbound_requests", self.max_inbound_requests),
            ("max_pending_status", self.max_pending_status),
            ("max_hello_len", self.max_hello_len),
            ("max_outgoing_files", self.max_outgoing_files),
        ];
        for (setting, v) in positive {
            if v == 0 {
                return bad(setting, "must be at least 1".into());
            }
        }
        let durations = [
            ("reconnect_initial", self.reconnect_initial),
            ("reconnect_max", self.reconnect_max),
            ("keepalive_interval", self.keepalive_interval),
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("discovery_timeout", self.discovery_timeout),
            ("rpc_timeout", self.rpc_timeout),
            ("status_timeout", self.status_timeout),
            ("stall_timeout", self.stall_timeout),
            ("file_repair_after", self.file_repair_after),
            ("file_timeout", self.file_timeout),
        ];
        for (setting, v) in durations {
            if v.is_zero() {
                return bad(setting, "must be longer than zero".into());
            }
            if v > MAX_DURATION {
                return bad(setting, format!("{v:?} is over the limit of one year"));
            }
        }
        if self.linger > MAX_DURATION
            || self.dial_interval > MAX_DURATION
            || self.file_keep > MAX_DURATION
        {
            let setting = if self.linger > MAX_DURATION {
                "linger"
            } else if self.dial_interval > MAX_DURATION {
                "dial_interval"
            } else {
                "file_keep"
            };
            return bad(setting, "is over the limit of one year".into());
        }
        if !(0.0..=10.0).contains(&self.keepalive_jitter) {
            return bad(
                "keepalive_jitter",
                format!("{} is not a fraction from 0 to 10", self.keepalive_jitter),
            );
        }
        if self.reconnect_max < self.reconnect_initial {
            return bad(
                "reconnect_max",
                "must not be shorter than reconnect_initial".into(),
            );
        }
        if self.idle_timeout < self.keepalive_interval {
            return bad(
                "idle_timeout",
                "must not be shorter than keepalive_interval (an idle edge is pinged first)".into(),
            );
        }
        if self.max_frame_len > u32::MAX as usize {
            return bad("max_frame_len", "must fit the 32-bit length prefix".into());
        }
        if self.max_datagram_len > 65_507 {
            return bad(
                "max_datagram_len",
                "must fit one UDP datagram (65 507 bytes)".into(),
            );
        }
        if self.buffer_budget() < 2 * self.max_frame_len.max(self.congestion_limit()) {
            return bad(
                "max_memory",
                format!(
                    "{} bytes leave {} for connections: at least two frames of max_frame_len \
                     (and two congestion limits) must fit",
                    self.max_memory,
                    self.buffer_budget()
                ),
            );
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.len() > self.max_name_len {
                return bad(
                    "name",
                    format!("must be 1 to max_name_len ({}) bytes", self.max_name_len),
                );
            }
        }
        if let Some(a) = self.advertise {
            if a.ip().is_unspecified() || a.port() == 0 {
                return bad(
                    "advertise",
                    format!("{a} is not an address a peer can dial"),
                );
            }
        }
        Ok(())
    }

    /// Sets [`Config::name`].
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}
