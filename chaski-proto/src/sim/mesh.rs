//! A random mesh at scale: nodes on a few topics, random bootstrap links, every node
//! discovering at a random moment; measures how long until every node is paired.
//!
//! ```
//! use chaski_proto::sim::mesh::random_mesh;
//!
//! let report = random_mesh(30, 3, 7);
//! assert!(report.converged && report.one_cluster_per_topic());
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Idx, Sim};
use crate::config::Config;

/// What a [`random_mesh`] run gave.
#[derive(Debug, Clone)]
pub struct MeshReport {
    /// Nodes.
    pub nodes: usize,
    /// Topics (each node subscribes to one).
    pub topics: usize,
    /// The seed of the run.
    pub seed: u64,
    /// Edges after the bootstrap links, before discovery.
    pub bootstrap_edges: usize,
    /// Whether every node was paired within the limit (120 s simulated).
    pub converged: bool,
    /// Simulated time from the first discovery until every node was paired (discovery starts
    /// are spread over 5 s).
    pub paired_after: Duration,
    /// For each topic, how many clusters its subscribers form through their own edges.
    pub clusters: Vec<usize>,
    /// Edges at the end.
    pub edges: usize,
    /// Frames sent by all nodes.
    pub frames: u64,
    /// Bytes carried by all links.
    pub bytes: u64,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl MeshReport {
    /// Whether the subscribers of each topic form a single cluster.
    pub fn one_cluster_per_topic(&self) -> bool {
        self.clusters.iter().all(|&c| c <= 1)
    }
}

/// Runs a random mesh of `nodes` nodes over `topics` topics, reproducible from `seed`.
pub fn random_mesh(nodes: usize, topics: usize, seed: u64) -> MeshReport {
    let wall = Instant::now();
    let topics = topics.max(1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sim = Sim::new(seed);
    let names: Vec<String> = (0..topics).map(|i| format!("topic{i}")).collect();
    let mut subs = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let idx = sim.add_node(
            Config::default()
                .name(format!("n{i}"))
                .max_connections(5)
                .discovery_timeout(Duration::from_secs(2)),
        );
        let t = rng.usize(..topics);
        subs.push(t);
        // A fresh node with a valid topic name always subscribes.
        let _ = sim.turn(idx, |node, now| node.subscribe(&names[t], now));
        // A random bootstrap link to an earlier node keeps the mesh connected; a few extra
        // links make cycles.
        if i > 0 {
            sim.connect(idx, rng.usize(..i));
            if rng.f64() < 0.3 {
                sim.connect(idx, rng.usize(..i));
            }
        }
    }
    sim.run_for(Duration::from_secs(1));
    let bootstrap_edges = sim.edge_set().len();
    let start = sim.now();
    // Everyone discovers at a random moment within 5 s.
    let mut order: Vec<(u64, Idx)> = (0..nodes).map(|i| (rng.u64(..5000), i)).collect();
    order.sort_unstable();
    let mut elapsed = 0;
    for (at, i) in order {
        sim.run_for(Duration::from_millis(at - elapsed));
        elapsed = at;
        let _ = sim.turn(i, |node, now| node.discover(now));
    }
    let converged = sim.run_until(Duration::from_secs(120), |s| {
        (0..s.len()).all(|i| s.node(i).is_paired())
    });
    let paired_after = sim.now() - start;
    // Let the frames still in flight (Hello replies, cluster-id announcements) land.
    sim.run_for(Duration::from_secs(1));
    MeshReport {
        nodes,
        topics,
        seed,
        bootstrap_edges,
        converged,
        paired_after,
        clusters: clusters(&sim, topics, &subs),
        edges: sim.edge_set().len(),
        frames: sim.frames_sent(),
        bytes: sim.bytes,
        wall: wall.elapsed(),
    }
}

/// For each topic, the number of clusters its subscribers form through their own edges.
fn clusters(sim: &Sim, topics: usize, subs: &[usize]) -> Vec<usize> {
    let edges = sim.edge_set();
    (0..topics)
        .map(|t| {
            let mut left: BTreeSet<Idx> = (0..sim.len()).filter(|&i| subs[i] == t).collect();
            let mut count = 0;
            while let Some(&first) = left.iter().next() {
                count += 1;
                let mut reach = BTreeSet::from([first]);
                loop {
                    let before = reach.len();
                    for &(a, b) in &edges {
                        if subs[a] == t
                            && subs[b] == t
                            && (reach.contains(&a) || reach.contains(&b))
                        {
                            reach.insert(a);
                            reach.insert(b);
                        }
                    }
                    if reach.len() == before {
                        break;
                    }
                }
                left.retain(|i| !reach.contains(i));
            }
            count
        })
        .collect()
}
