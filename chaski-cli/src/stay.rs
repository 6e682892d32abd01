//! What long-running subcommands share: staying connected to configured peers, and stopping on
//! SIGINT or SIGTERM.
//!
//! The rule for configured peers (`--connect`, and `sub`'s ADDR): the command dials each until
//! it answers (back-off from 250 ms to 5 s, forever), and dials it again whenever its edge is
//! gone and the node is not redialing it itself: after the peer said goodbye (a restart), or
//! after the node's own redials gave up. A peer lost without a goodbye is redialed by the node
//! (it dialed it), with its own back-off.
//!
//! Under `on_pair = disconnect` a configured peer is the node's way into the mesh: once the
//! node has paired and let it go as `Unneeded` (the bootstrap link), it is not dialed again
//! while the node has any other edge (dialing it back would only undo the policy); if the node
//! is ever left with no edge at all, it dials it again to rejoin.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, DisconnectReason, Node, NodeId};

use crate::failure::Failure;

/// Set when nobody reads the command's standard output any more: a long-running command then
/// stops as it does on a signal.
static OUTPUT_CLOSED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Asks the running command to stop: its standard output is closed.
pub fn output_closed() {
    OUTPUT_CLOSED.notify_one();
}

/// The peers the node let go as `Unneeded` (under `on_pair = disconnect`).
pub type Released = Arc<Mutex<HashSet<NodeId>>>;

/// How a long-running node (`root`, `serve`, `node`) is known and stays in the mesh: its name,
/// the address it tells peers, the peers it keeps, its liveness settings (the keep-alive and
/// idle flags are `Config`'s `keepalive_interval` and `idle_timeout`, also
/// `CHASKI_KEEPALIVE_INTERVAL`/`CHASKI_IDLE_TIMEOUT`).
#[derive(Args, Debug, Clone)]
pub struct Membership {
    /// Node name.
    #[arg(long, env = "CHASKI_NAME")]
    name: Option<String>,
    /// The address peers should dial, when the bound one is not reachable from them.
    #[arg(long, env = "CHASKI_ADVERTISE")]
    advertise: Option<String>,
    /// Peers to connect to and stay connected to (repeat, or comma-separated).
    #[arg(long = "connect", env = "CHASKI_CONNECT", value_delimiter = ',')]
    connect: Vec<String>,
    /// Seconds between keep-alive pings on an idle edge (default: the configuration's, 7).
    #[arg(long)]
    keepalive: Option<f64>,
    /// Seconds of silence after which an edge is dropped (and, if this node dialed it,
    /// redialed; default: the configuration's, 25).
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Serve HTTP at ADDR: /metrics (Prometheus), /healthz, /readyz, and / (a live page of
    /// the mesh as this node sees it). A port alone binds loopback; off unless given.
    #[arg(long, env = "CHASKI_HTTP", value_name = "ADDR")]
    http: Option<String>,
    /// Per-edge series in /metrics for this many edges at most (the rest are only counted).
    #[arg(long, env = "CHASKI_METRICS_EDGES", default_value_t = 64)]
    metrics_edges: usize,
}

impl Membership {
    /// `cfg` with these settings (the name given, else the configured one, else
    /// `default_name`), validated.
    pub fn apply(&self, mut cfg: Config, default_name: Option<&str>) -> Result<Config, Failure> {
        for peer in &self.connect {
            crate::client::target("--connect", peer)?;
        }
        if let Some(addr) = &self.http {
            crate::http::http_addr(addr).map_err(|message| Failure {
                code: crate::failure::USAGE,
                message,
            })?;
        }
        match (&self.name, default_name) {
            (Some(n), _) => cfg = cfg.name(n.clone()),
            (None, Some(d)) if cfg.name.is_none() => cfg = cfg.name(d),
            _ => {}
        }
        cfg = cfg.advertise(advertised(self.advertise.as_deref())?);
        if let Some(s) = self.keepalive {
            cfg = cfg.keepalive_interval(crate::secs(s)?);
        }
        if let Some(s) = self.idle_timeout {
            cfg = cfg.idle_timeout(crate::secs(s)?);
        }
        cfg.validate().map_err(|e| usage(e.to_string()))?;
        Ok(cfg)
    }
}

fn usage(message: String) -> Failure {
    Failure {
        code: crate::failure::USAGE,
        message,
    }
}

/// The advertised address of `--advertise`, resolved (a malformed one is a usage error).
pub fn advertised(addr: Option<&str>) -> Result<Option<std::net::SocketAddr>, Failure> {
    addr.map(|a| {
        crate::client::target("--advertise", a)?;
        chaski_api::resolve(a).map_err(|e| Failure::from(e).context("--advertise"))
    })
    .transpose()
}

/// Runs a long-running node until SIGINT or SIGTERM: reports its peers on stderr, keeps the
/// configured peers of `member`, runs `tasks`; then stops them and says goodbye to every peer.
pub async fn run_until_stopped(
    node: &Node,
    member: &Membership,
    mut tasks: Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), String> {
    let released = Released::default();
    if let Some(addr) = &member.http {
        let (bound, task) = crate::http::Endpoint::start(
            node.clone(),
            addr,
            !member.connect.is_empty(),
            member.metrics_edges,
        )
        .await?;
        crate::note!("http: metrics, health and the mesh page on http://{bound}/");
        tasks.push(task);
    }
    tasks.push(tokio::spawn(watch_events(
        node.clone(),
        true,
        released.clone(),
    )));
    if !member.connect.is_empty() {
        tasks.push(tokio::spawn(keep_connected(
            node.clone(),
            member.connect.iter().map(|a| (a.clone(), None)).collect(),
            released,
        )));
    }
    let signal = stop_signal().await;
    for t in &tasks {
        t.abort();
    }
    let peers = node.edges().await.map(|e| e.len()).unwrap_or(0);
    crate::note!("{signal}: saying goodbye to {peers} peers");
    node.shutdown().await.map_err(|e| e.to_string())
}

/// Follows the node's events: notes the peers it lets go as `Unneeded` in `released`, and
/// (with `print`) reports peers found and lost, pairings and bad peers on stderr, every name
/// and reason a peer chose escaped.
pub async fn watch_events(node: Node, print: bool, released: Released) {
    use chaski_tokio::Event;
    use futures_util::StreamExt;
    let mut events = node.events();
    while let Some(ev) = events.next().await {
        if let Event::PeerLost {
            peer,
            reason: DisconnectReason::Unneeded,
            by_peer: false,
            ..
        } = &ev
        {
            released
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*peer);
        }
        if !print {
            continue;
        }
        match ev {
            Event::PeerConnected { info, .. } => {
                crate::note!("peer {} connected from {}", Escaped(&info.name), info.addr)
            }
            Event::PeerLost {
                name,
                reason,
                by_peer,
                reconnecting,
                ..
            } => crate::note!(
                "peer {} lost: {reason}{}{}",
                Escaped(&name),
                if by_peer { " (its goodbye)" } else { "" },
                if reconnecting { "; redialing" } else { "" }
            ),
            Event::Paired { topic, with } => crate::note!(
                "paired for {}{}",
                Escaped(&topic),
                if with.is_none() {
                    " (as its anchor)"
                } else {
                    ""
                }
            ),
            Event::BadPeer { reason, .. } => crate::note!("dropped a bad peer: {reason}"),
            Event::UnknownMessage { peer, kind } => crate::note!(
                "peer {peer} sent a message of a kind this version does not know ({}): skipped",
                Escaped(&kind)
            ),
            _ => {}
        }
    }
}

/// First and longest pause between two dials of one configured peer.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// How often the edges are checked.
const CHECK: Duration = Duration::from_millis(250);
/// The longest a single dial (with its handshake) may take.
const DIAL: Duration = Duration::from_secs(10);

/// One configured peer.
struct Target {
    addr: String,
    peer: Option<NodeId>,
    delay: Duration,
    next: Instant,
    /// Whether the last attempt failed (a failure streak is reported once).
    failing: bool,
}

/// Dials `addr` until it answers (back-off as in the module docs) or `deadline` passes.
pub async fn connect_retrying(
    node: &Node,
    addr: &str,
    deadline: Option<Instant>,
) -> Result<chaski_tokio::EdgeInfo, String> {
    let mut delay = FIRST_RETRY;
    loop {
        let err = match tokio::time::timeout(DIAL, node.connect(addr)).await {
            Ok(Ok(edge)) => return Ok(edge),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        let next = Instant::now() + delay;
        if deadline.is_some_and(|d| next > d) {
            return Err(format!("cannot connect to {addr}: {err}"));
        }
        if delay == FIRST_RETRY {
            crate::note!("cannot connect to {addr} yet ({err}); retrying");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(LAST_RETRY);
    }
}

/// Keeps `node` connected to every one of `targets` (address, and the peer already connected
/// there if any), by the rule in the module docs (`released`: the peers the node let go as
/// `Unneeded`, from [`watch_events`]). Runs until the node shuts down.
pub async fn keep_connected(
    node: Node,
    targets: Vec<(String, Option<NodeId>)>,
    released: Released,
) {
    let mut targets: Vec<Target> = targets
        .into_iter()
        .map(|(addr, peer)| Target {
            addr,
            peer,
            delay: FIRST_RETRY,
            next: Instant::now(),
            failing: false,
        })
        .collect();
    loop {
        let Ok(edges) = node.edges().await else {
            return; // shut down
        };
        for t in &mut targets {
            if t.peer.is_some_and(|p| edges.iter().any(|e| e.id == p)) {
                continue;
            }
            // Let go as the bootstrap link it was: not dialed back while the node is in the
            // mesh by other edges.
            if let Some(p) = t.peer {
                let mut gone = released.lock().unwrap_or_else(|p| p.into_inner());
                if gone.contains(&p) {
                    if !edges.is_empty() {
                        continue;
                    }
                    gone.remove(&p);
                }
            }
            // Lost without a goodbye: the node redials it itself, by its own back-off.
            if let Some(p) = t.peer {
                match node.is_redialing(p).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(_) => return, // shut down
                }
            }
            if let Some(p) = t.peer.take() {
                crate::note!("lost {} ({p:#}); dialing it again", t.addr);
            }
            if Instant::now() < t.next {
                continue;
            }
            match tokio::time::timeout(DIAL, node.connect(&t.addr)).await {
                Ok(Ok(edge)) => {
                    crate::note!("connected to {} at {}", Escaped(&edge.name), t.addr);
                    t.peer = Some(edge.id);
                    t.delay = FIRST_RETRY;
                    t.failing = false;
                }
                // Already connected there (the node's own redial reached a restarted peer,
                // under a new id): adopt that edge.
                Ok(Err(chaski_tokio::Error::Connect(chaski_tokio::ConnectError::Duplicate))) => {
                    t.peer = edge_at(&node, &t.addr).await;
                    t.failing = false;
                }
                failed => {
                    if !t.failing {
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        crate::note!("cannot connect to {} ({why}); retrying", t.addr);
                    }
                    t.failing = true;
                    t.next = Instant::now() + t.delay;
                    t.delay = (t.delay * 2).min(LAST_RETRY);
                }
            }
        }
        tokio::time::sleep(CHECK).await;
    }
}

/// The peer of the edge to `addr` (dialed there, or listening there), if any.
async fn edge_at(node: &Node, addr: &str) -> Option<NodeId> {
    let addrs = chaski_api::resolve_all(addr).await.ok()?;
    let edges = node.edges().await.ok()?;
    edges
        .iter()
        .find(|e| addrs.contains(&e.addr) || e.listen.is_some_and(|l| addrs.contains(&l)))
        .map(|e| e.id)
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (`docker stop`), or for the command's standard output
/// to close ([`output_closed`]); gives its name.
pub async fn stop_signal() -> &'static str {
    tokio::select! {
        s = signal() => s,
        _ = OUTPUT_CLOSED.notified() => "output closed",
    }
}

/// Waits for SIGINT or SIGTERM; gives the signal's name.
async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
