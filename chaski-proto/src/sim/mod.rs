//! A deterministic in-memory network for whole meshes in one thread.
//!
//! Nodes are real [`Node`]s; links carry their bytes with a per-link latency in order (like
//! TCP), on a virtual clock. Links can be cut and healed, nodes crashed and restarted. A run is
//! reproducible from its seed.
//!
//! ```
//! use std::time::Duration;
//! use chaski_proto::{sim::Sim, Config};
//!
//! let mut sim = Sim::new(1);
//! let a = sim.add_node(Config::default().name("a"));
//! let b = sim.add_node(Config::default().name("b"));
//! sim.connect(a, b);
//! assert!(sim.run_until(Duration::from_secs(1), |s| s.connected(a, b)));
//! ```

pub mod mesh;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::id::{ConnId, NodeId};
use crate::node::{Delivery, Direction, Event, Node, Output};

/// Index of a node in the simulation.
pub type Idx = usize;

#[derive(Debug)]
enum SimEvent {
    Connect {
        from: Idx,
        conn: ConnId,
        to: SocketAddr,
    },
    Deliver {
        link: u64,
        to: Idx,
        side: usize,
        data: Bytes,
    },
    Eof {
        link: u64,
        to: Idx,
        side: usize,
    },
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Bytes,
    },
    Wake {
        node: Idx,
        at: Instant,
    },
}

#[derive(Debug)]
struct Link {
    ends: [(Idx, ConnId); 2],
    open: [bool; 2],
    /// Incarnation of each end's node when the link was made.
    gens: [u64; 2],
    /// When the last byte sent towards each side arrives (keeps each direction in order).
    busy: [Instant; 2],
}

#[derive(Debug)]
struct SimNode {
    node: Option<Node>,
    cfg: Config,
    addr: SocketAddr,
    gen: u64,
    wake: Option<Instant>,
    next_inbound: u64,
    links: HashMap<ConnId, u64>,
    events: Vec<(Instant, Event)>,
    delivered: Vec<(Instant, Delivery)>,
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    epoch: Instant,
    now: Instant,
    seq: u64,
    rng: fastrand::Rng,
    queue: BTreeMap<(Instant, u64), SimEvent>,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, Idx>,
    links: BTreeMap<u64, Link>,
    next_link: u64,
    latency: Duration,
    bandwidth: u64,
    link_latency: HashMap<(Idx, Idx), Duration>,
    cuts: BTreeSet<(Idx, Idx)>,
    cancelled_dials: BTreeSet<(Idx, ConnId)>,
    /// Keep application events per node (on by default).
    pub record_events: bool,
    /// Frames carried (TCP writes are counted per frame by the nodes; this counts deliveries).
    pub deliveries: u64,
    /// Bytes carried over TCP links.
    pub bytes: u64,
}

fn pair(a: Idx, b: Idx) -> (Idx, Idx) {
    (a.min(b), a.max(b))
}

impl Sim {
    /// An empty network; `seed` drives every node's seed and any randomness of the network.
    pub fn new(seed: u64) -> Self {
        // The one clock read of a simulation: everything after is virtual time from here.
        let epoch = Instant::now();
        Sim {
            epoch,
            now: epoch,
            seq: 0,
            rng: fastrand::Rng::with_seed(seed),
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            links: BTreeMap::new(),
            next_link: 0,
            latency: Duration::from_millis(1),
            bandwidth: 1_000_000_000,
            link_latency: HashMap::new(),
            cuts: BTreeSet::new(),
            cancelled_dials: BTreeSet::new(),
            record_events: true,
            deliveries: 0,
            bytes: 0,
        }
    }

    /// Sets the default one-way latency of every link (1 ms unless set).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Sets every link's bandwidth in bytes per second (1 GB/s unless set), so large frames take
    /// longer than small ones.
    pub fn set_bandwidth(&mut self, bytes_per_sec: u64) {
        self.bandwidth = bytes_per_sec.max(1);
    }

    /// Sets the one-way latency between two nodes.
    pub fn set_link_latency(&mut self, a: Idx, b: Idx, latency: Duration) {
        self.link_latency.insert(pair(a, b), latency);
    }

    fn lat(&self, a: Idx, b: Idx) -> Duration {
        *self.link_latency.get(&pair(a, b)).unwrap_or(&self.latency)
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// Adds a node; unless `cfg.seed` is set (non-zero), its seed comes from the simulation's.
    pub fn add_node(&mut self, mut cfg: Config) -> Idx {
        let idx = self.nodes.len();
        if cfg.seed == 0 {
            cfg.seed = self.rng.u64(..);
        }
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 1, (idx >> 8) as u8, idx as u8)),
            7000 + (idx >> 16) as u16,
        );
        let node =
            Node::new(cfg.clone(), Some(addr)).expect("a simulated node needs a valid Config");
        self.by_addr.insert(addr, idx);
        self.nodes.push(SimNode {
            node: Some(node),
            cfg,
            addr,
            gen: 0,
            wake: None,
            next_inbound: 0,
            links: HashMap::new(),
            events: Vec::new(),
            delivered: Vec::new(),
        });
        idx
    }

    /// Number of nodes (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's listening address.
    pub fn addr(&self, i: Idx) -> SocketAddr {
        self.nodes[i].addr
    }

    /// The node (panics if it is crashed: a test bug, not a protocol event).
    pub fn node(&self, i: Idx) -> &Node {
        self.nodes[i].node.as_ref().expect("node is crashed")
    }

    /// Whether the node is running.
    pub fn is_up(&self, i: Idx) -> bool {
        self.nodes[i].node.is_some()
    }

    /// The index of the node with this id.
    pub fn idx_of(&self, id: NodeId) -> Option<Idx> {
        self.nodes
            .iter()
            .position(|n| n.node.as_ref().is_some_and(|n| n.id() == id))
    }

    /// Runs a command on a node at the current virtual time, then carries out its outputs.
    pub fn turn<R>(&mut self, i: Idx, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let node = self.nodes[i].node.as_mut().expect("node is crashed");
        let r = f(node, now);
        self.drain(i);
        r
    }

    /// `a` dials `b`.
    pub fn connect(&mut self, a: Idx, b: Idx) -> ConnId {
        let addr = self.addr(b);
        self.turn(a, |n, now| n.connect(addr, now))
            .expect("connect refused")
    }

    /// Every event node `i` produced so far, with its time.
    pub fn events(&self, i: Idx) -> &[(Instant, Event)] {
        &self.nodes[i].events
    }

    /// Takes node `i`'s recorded events.
    pub fn take_events(&mut self, i: Idx) -> Vec<(Instant, Event)> {
        std::mem::take(&mut self.nodes[i].events)
    }

    /// Everything node `i` handed its application so far (messages, requests, answers), with
    /// its time.
    pub fn delivered(&self, i: Idx) -> &[(Instant, Delivery)] {
        &self.nodes[i].delivered
    }

    /// Takes what node `i` handed its application.
    pub fn take_delivered(&mut self, i: Idx) -> Vec<(Instant, Delivery)> {
        std::mem::take(&mut self.nodes[i].delivered)
    }

    /// Whether both `a` and `b` hold an edge to each other.
    pub fn connected(&self, a: Idx, b: Idx) -> bool {
        match (&self.nodes[a].node, &self.nodes[b].node) {
            (Some(x), Some(y)) => x.is_connected_to(y.id()) && y.is_connected_to(x.id()),
            _ => false,
        }
    }

    /// Edge count of node `i` (0 if crashed).
    pub fn edge_count(&self, i: Idx) -> usize {
        self.nodes[i].node.as_ref().map_or(0, |n| n.edge_count())
    }

    /// Every pair (a < b) connected on both sides.
    pub fn edge_set(&self) -> BTreeSet<(Idx, Idx)> {
        let mut set = BTreeSet::new();
        let ids: HashMap<NodeId, Idx> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.as_ref().map(|n| (n.id(), i)))
            .collect();
        for (a, n) in self.nodes.iter().enumerate() {
            let Some(n) = &n.node else { continue };
            for p in n.peers() {
                if let Some(&b) = ids.get(&p) {
                    if a < b && self.connected(a, b) {
                        set.insert((a, b));
                    }
                }
            }
        }
        set
    }

    /// Cuts the link between `a` and `b`: open connections between them reset on both sides, and
    /// dials between them fail until [`Sim::heal`].
    pub fn cut(&mut self, a: Idx, b: Idx) {
        self.cuts.insert(pair(a, b));
        let dead: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| pair(l.ends[0].0, l.ends[1].0) == pair(a, b))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(l) = self.links.remove(&id) {
                for side in 0..2 {
                    let (n, conn) = l.ends[side];
                    if l.open[side] && self.nodes[n].gen == l.gens[side] {
                        self.nodes[n].links.remove(&conn);
                        let now = self.now;
                        if let Some(node) = self.nodes[n].node.as_mut() {
                            node.handle_closed(conn, now);
                        }
                        self.drain(n);
                    }
                }
            }
        }
    }

    /// Heals a cut link.
    pub fn heal(&mut self, a: Idx, b: Idx) {
        self.cuts.remove(&pair(a, b));
    }

    /// Kills node `i` without goodbyes; its peers see their connections reset.
    pub fn crash(&mut self, i: Idx) {
        self.nodes[i].node = None;
        self.nodes[i].wake = None;
        self.nodes[i].links.clear();
        let gen = self.nodes[i].gen;
        let dead: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| (0..2).any(|s| l.ends[s].0 == i && l.gens[s] == gen))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            let mut eofs = Vec::new();
            let Some(l) = self.links.get_mut(&id) else {
                continue;
            };
            for side in 0..2 {
                if l.ends[side].0 == i {
                    l.open[side] = false;
                    let other = 1 - side;
                    if l.open[other] {
                        eofs.push((l.ends[other].0, other));
                    }
                }
            }
            for (to, side) in eofs {
                let lat = self.lat(i, to);
                self.schedule(lat, SimEvent::Eof { link: id, to, side });
            }
        }
    }

    /// Restarts a crashed node on the same address; `cfg` replaces its configuration if given
    /// (the same seed gives the same node id).
    pub fn restart(&mut self, i: Idx, cfg: Option<Config>) {
        if let Some(c) = cfg {
            self.nodes[i].cfg = c;
        }
        let n = &mut self.nodes[i];
        n.gen += 1;
        n.node = Some(
            Node::new(n.cfg.clone(), Some(n.addr)).expect("a simulated node needs a valid Config"),
        );
        n.links.clear();
        self.drain(i);
    }

    fn schedule(&mut self, after: Duration, ev: SimEvent) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), ev);
    }

    /// Puts `data`, written by node `i` on `conn`, on the wire.
    fn transmit(&mut self, i: Idx, conn: ConnId, data: Bytes) {
        let Some(&link) = self.nodes[i].links.get(&conn) else {
            return;
        };
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let side = usize::from(l.ends[0] != (i, conn));
        let to = l.ends[1 - side].0;
        self.bytes += data.len() as u64;
        let wire = Duration::from_nanos(
            (data.len() as u64).saturating_mul(1_000_000_000) / self.bandwidth,
        );
        let at = (self.now + self.lat(i, to) + wire).max(l.busy[1 - side]);
        if let Some(l) = self.links.get_mut(&link) {
            l.busy[1 - side] = at;
        }
        self.seq += 1;
        let ev = SimEvent::Deliver {
            link,
            to,
            side: 1 - side,
            data,
        };
        self.queue.insert((at, self.seq), ev);
    }

    /// Node `i` closes `conn`: what was queued before the close leaves first.
    fn close_link(&mut self, i: Idx, conn: ConnId) -> Option<u64> {
        if let Some(node) = self.nodes[i].node.as_mut() {
            let data = node.take_outbound(conn, self.now);
            if !data.is_empty() {
                self.transmit(i, conn, data);
            }
        }
        self.nodes[i].links.remove(&conn)
    }

    /// Carries out node `i`'s outputs and re-arms its timer.
    fn drain(&mut self, i: Idx) {
        loop {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            let Some(out) = node.poll_output() else { break };
            match out {
                Output::Transmit { conn } => {
                    let data = node.take_outbound(conn, self.now);
                    self.transmit(i, conn, data);
                }
                Output::Datagram { to, data } => {
                    let from = self.nodes[i].addr;
                    let lat = self
                        .by_addr
                        .get(&to)
                        .map_or(self.latency, |&t| self.lat(i, t));
                    self.schedule(lat, SimEvent::Datagram { from, to, data });
                }
                Output::Dial { conn, addr } => {
                    let lat = self
                        .by_addr
                        .get(&addr)
                        .map_or(self.latency, |&t| self.lat(i, t));
                    self.schedule(
                        lat,
                        SimEvent::Connect {
                            from: i,
                            conn,
                            to: addr,
                        },
                    );
                }
                Output::Close { conn } => match self.close_link(i, conn) {
                    Some(link) => {
                        let lat = self
                            .links
                            .get(&link)
                            .map_or(self.latency, |l| self.lat(l.ends[0].0, l.ends[1].0));
                        if let Some(l) = self.links.get_mut(&link) {
                            let side = usize::from(l.ends[0] != (i, conn));
                            l.open[side] = false;
                            let to = l.ends[1 - side].0;
                            if l.open[1 - side] {
                                let at = (self.now + lat).max(l.busy[1 - side]);
                                self.seq += 1;
                                let ev = SimEvent::Eof {
                                    link,
                                    to,
                                    side: 1 - side,
                                };
                                self.queue.insert((at, self.seq), ev);
                            } else {
                                self.links.remove(&link);
                            }
                        }
                    }
                    None => {
                        self.cancelled_dials.insert((i, conn));
                    }
                },
                // Reading is never held here: links deliver whatever they carry.
                Output::Resume { .. } => {}
                Output::Event(ev) => {
                    if self.record_events {
                        let now = self.now;
                        self.nodes[i].events.push((now, ev));
                    }
                }
                Output::Deliver(d) => {
                    if self.record_events {
                        let now = self.now;
                        self.nodes[i].delivered.push((now, d));
                    }
                }
            }
        }
        let wake = self.nodes[i].node.as_ref().and_then(|n| n.poll_timeout());
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(at) = wake {
                let at = at.max(self.now);
                self.seq += 1;
                self.queue
                    .insert((at, self.seq), SimEvent::Wake { node: i, at });
                self.nodes[i].wake = Some(at);
            }
        }
    }

    /// Processes the next scheduled event; `false` if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), ev)) = self.queue.pop_first() else {
            return false;
        };
        self.now = self.now.max(at);
        let now = self.now;
        match ev {
            SimEvent::Wake { node, at } => {
                if self.nodes[node].wake != Some(at) {
                    return true;
                }
                self.nodes[node].wake = None;
                if let Some(n) = self.nodes[node].node.as_mut() {
                    n.handle_timeout(now);
                }
                self.drain(node);
            }
            SimEvent::Connect { from, conn, to } => {
                if self.cancelled_dials.remove(&(from, conn)) {
                    return true;
                }
                let target = self.by_addr.get(&to).copied();
                let reachable = target.filter(|&t| {
                    self.nodes[t].node.is_some() && !self.cuts.contains(&pair(from, t))
                });
                let from_up = self.nodes[from].node.is_some();
                match (reachable, from_up) {
                    (Some(t), true) => {
                        self.next_link += 1;
                        let link = self.next_link;
                        self.nodes[t].next_inbound += 1;
                        let inbound = ConnId(self.nodes[t].next_inbound);
                        self.links.insert(
                            link,
                            Link {
                                ends: [(from, conn), (t, inbound)],
                                open: [true, true],
                                gens: [self.nodes[from].gen, self.nodes[t].gen],
                                busy: [now, now],
                            },
                        );
                        self.nodes[from].links.insert(conn, link);
                        self.nodes[t].links.insert(inbound, link);
                        let from_addr = self.nodes[from].addr;
                        if let Some(n) = self.nodes[t].node.as_mut() {
                            n.handle_connected(inbound, from_addr, Direction::Inbound, now);
                        }
                        self.drain(t);
                        if let Some(n) = self.nodes[from].node.as_mut() {
                            n.handle_connected(conn, to, Direction::Outbound, now);
                        }
                        self.drain(from);
                    }
                    (None, true) => {
                        if let Some(n) = self.nodes[from].node.as_mut() {
                            n.handle_dial_failed(conn, "connection refused", now);
                        }
                        self.drain(from);
                    }
                    _ => {}
                }
            }
            SimEvent::Deliver {
                link,
                to,
                side,
                data,
            } => {
                let Some(l) = self.links.get(&link) else {
                    return true;
                };
                if !l.open[side] || self.nodes[to].gen != l.gens[side] {
                    return true;
                }
                let conn = l.ends[side].1;
                self.deliveries += 1;
                if let Some(n) = self.nodes[to].node.as_mut() {
                    n.handle_bytes(conn, &data, now);
                }
                self.drain(to);
            }
            SimEvent::Eof { link, to, side } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return true;
                };
                if !l.open[side] || self.nodes[to].gen != l.gens[side] {
                    return true;
                }
                l.open[side] = false;
                let conn = l.ends[side].1;
                if !l.open[1 - side] {
                    self.links.remove(&link);
                }
                self.nodes[to].links.remove(&conn);
                if let Some(n) = self.nodes[to].node.as_mut() {
                    n.handle_closed(conn, now);
                }
                self.drain(to);
            }
            SimEvent::Datagram { from, to, data } => {
                let Some(&t) = self.by_addr.get(&to) else {
                    return true;
                };
                let f = self.by_addr.get(&from).copied();
                if f.is_some_and(|f| self.cuts.contains(&pair(f, t))) {
                    return true;
                }
                if let Some(n) = self.nodes[t].node.as_mut() {
                    n.handle_datagram(from, &data, now);
                }
                self.drain(t);
            }
        }
        true
    }

    /// Runs until virtual time has advanced by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self
            .queue
            .first_key_value()
            .is_some_and(|((t, _), _)| *t <= end)
        {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Runs until `cond` holds (checked after every event) or `limit` of virtual time passes.
    /// Returns whether `cond` held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        if cond(self) {
            return true;
        }
        while self
            .queue
            .first_key_value()
            .is_some_and(|((t, _), _)| *t <= end)
        {
            self.step();
            if cond(self) {
                return true;
            }
        }
        self.now = self.now.max(end);
        cond(self)
    }

    /// Frames sent by all running nodes so far.
    pub fn frames_sent(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|n| n.counters().frames_sent)
            .sum()
    }

    /// Messages received by node `i` (from what it delivered), as (topic, payload) pairs.
    pub fn received(&self, i: Idx) -> Vec<(String, Bytes)> {
        self.nodes[i]
            .delivered
            .iter()
            .filter_map(|(_, d)| match d {
                Delivery::Message(m) => Some((m.topic.clone(), m.payload.clone())),
                _ => None,
            })
            .collect()
    }
}
