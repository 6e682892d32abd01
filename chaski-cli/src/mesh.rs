//! The picture of a mesh: nodes, links and their latencies, gathered from nodes' `@node`
//! introspection, either by walking the mesh from one address (`chaski graph`) or from one
//! node and its neighbours (the live page of `--http`).
//!
//! A node is asked once (by id, whatever address reaches it); links are merged from both
//! ends' reports. Every walk is bounded in nodes and in time; what the bounds cut is said
//! (`complete: false`, and the nodes not asked).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use chaski_tokio::{EdgeInfo, EdgeReport, Error, Node, NodeId, Status, NODE_SERVICE};

/// One node of the picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshNode {
    /// Node id (as text: it is 128 bits).
    pub id: String,
    /// Its name (as the node or its neighbours gave it; printed escaped).
    pub name: String,
    /// Where it listens, as known.
    pub addr: Option<String>,
    /// Whether it is a root.
    pub root: bool,
    /// Its topics.
    pub topics: Vec<String>,
    /// Its services.
    pub services: Vec<String>,
    /// Whether the node itself reported its edges (else it is known from its neighbours only).
    pub asked: bool,
    /// Why it could not be asked, if it was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a link is: to a root, made by pairing, dialed by configuration, or none of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// One end is a root.
    Root,
    /// A pairing link (discovery, or shared topics).
    Pairing,
    /// Dialed by the application's configuration (`--connect`).
    Configured,
    /// Anything else (a client, a service offer).
    Other,
}

impl LinkKind {
    /// The word used in text, labels and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Root => "root",
            LinkKind::Pairing => "pairing",
            LinkKind::Configured => "configured",
            LinkKind::Other => "other",
        }
    }
}

/// One link, between `a` and `b` (`a` < `b` as ids).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshLink {
    /// One end's id.
    pub a: String,
    /// The other end's id.
    pub b: String,
    /// What it is.
    pub kind: LinkKind,
    /// Half the smoothed round trip, in milliseconds (the mean of both ends' when both know).
    pub latency_ms: Option<f64>,
    /// Round-trip variance, in milliseconds.
    pub jitter_ms: Option<f64>,
    /// Frames from `a` to `b`, and back, as counted by the ends that reported.
    pub frames_ab: u64,
    /// Frames from `b` to `a`.
    pub frames_ba: u64,
    /// Frames per second from `a` to `b`, and back, since the previous picture (live page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_ab: Option<f64>,
    /// Frames per second from `b` to `a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_ba: Option<f64>,
}

/// Latency statistics over the links that have a latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Links measured.
    pub links: usize,
    /// Milliseconds.
    pub min_ms: f64,
    /// Milliseconds.
    pub max_ms: f64,
    /// Milliseconds.
    pub mean_ms: f64,
    /// Standard deviation, milliseconds.
    pub stddev_ms: f64,
}

/// The whole picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mesh {
    /// Nodes, by id.
    pub nodes: Vec<MeshNode>,
    /// Links, by their ends' ids.
    pub links: Vec<MeshLink>,
    /// Latency statistics (absent when no link has a latency yet).
    pub stats: Option<LatencyStats>,
    /// Whether every node reachable was asked (no bound cut the walk).
    pub complete: bool,
}

impl Mesh {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&MeshNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The latency between every two linked nodes, as a matrix in the order of `nodes`
    /// (`None` where there is no link).
    pub fn heatmap(&self) -> Vec<Vec<Option<f64>>> {
        let index: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut m = vec![vec![None; self.nodes.len()]; self.nodes.len()];
        for l in &self.links {
            if let (Some(&i), Some(&j)) = (index.get(l.a.as_str()), index.get(l.b.as_str())) {
                m[i][j] = l.latency_ms;
                m[j][i] = l.latency_ms;
            }
        }
        m
    }
}

/// Longest name, topic or service kept from a report (a walked node is not trusted: what it
/// reports is cut to what a peer may announce).
const MAX_TEXT: usize = 256;
/// Topics and services kept per node, and edges taken from one report.
const MAX_LIST: usize = 64;
const MAX_EDGES_PER_REPORT: usize = 4096;
/// Nodes a picture holds at most (asked or only reported).
pub const MAX_PICTURE_NODES: usize = 20_000;

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => s[..at].to_string(),
        None => s.to_string(),
    }
}

fn clip_list<'a>(l: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    l.into_iter()
        .filter(|t| *t != "@")
        .take(MAX_LIST)
        .map(|t| clip(t))
        .collect()
}

/// Gathers reports into a [`Mesh`].
#[derive(Debug, Default)]
pub struct MeshBuilder {
    nodes: BTreeMap<NodeId, MeshNode>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Ids never to show (the asking client).
    hidden: BTreeSet<NodeId>,
    /// A bound left something out.
    cut: bool,
}

/// A link as reported so far.
#[derive(Debug, Default)]
struct Link {
    kind: Option<LinkKind>,
    latency: Vec<f64>,
    jitter: Vec<f64>,
    ab: u64,
    ba: u64,
}

/// What one node says of itself.
#[derive(Clone, Debug)]
pub struct SelfReport {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Where it was reached (or listens).
    pub addr: Option<String>,
    /// Whether it is a root.
    pub root: bool,
    /// Its topics.
    pub topics: Vec<String>,
    /// Its services.
    pub services: Vec<String>,
}

impl SelfReport {
    /// From a node's status, reached at `addr`.
    pub fn from_status(s: Status, addr: Option<String>) -> Self {
        SelfReport {
            id: s.id,
            name: s.name,
            addr,
            root: s.root,
            // A root's own topic `@` is how it says it is a root, not a subscription.
            topics: clip_list(s.paired.keys()),
            services: clip_list(&s.services),
        }
    }
}

impl MeshBuilder {
    /// A builder that leaves `hidden` out of the picture (the asking client).
    pub fn new(hidden: impl IntoIterator<Item = NodeId>) -> Self {
        MeshBuilder {
            hidden: hidden.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Whether `id` reported its own edges.
    pub fn asked(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.asked)
    }

    /// Records that `id` (known from a neighbour) could not be asked.
    pub fn failed(&mut self, id: NodeId, error: String) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.error = Some(error);
        }
    }

    /// Adds what one node says of itself and of its edges.
    pub fn add(&mut self, me: SelfReport, edges: &[EdgeReport]) {
        let id = me.id;
        if self.hidden.contains(&id) {
            return;
        }
        if !self.nodes.contains_key(&id) && self.nodes.len() >= MAX_PICTURE_NODES {
            self.cut = true;
            return;
        }
        let node = MeshNode {
            id: id.to_string(),
            name: clip(&me.name),
            addr: me
                .addr
                .or_else(|| self.nodes.get(&id).and_then(|n| n.addr.clone())),
            root: me.root,
            topics: me.topics,
            services: me.services,
            asked: true,
            error: None,
        };
        self.nodes.insert(id, node);
        if edges.len() > MAX_EDGES_PER_REPORT {
            self.cut = true;
        }
        for e in edges
            .iter()
            .take(MAX_EDGES_PER_REPORT)
            .filter(|e| !self.hidden.contains(&e.id))
        {
            if !self.nodes.contains_key(&e.id) {
                if self.nodes.len() >= MAX_PICTURE_NODES {
                    self.cut = true;
                    continue;
                }
                self.nodes.insert(
                    e.id,
                    MeshNode {
                        id: e.id.to_string(),
                        name: clip(&e.name),
                        addr: e.listen.map(|a| a.to_string()),
                        root: e.root,
                        topics: clip_list(&e.topics),
                        services: clip_list(&e.services),
                        asked: false,
                        error: None,
                    },
                );
            }
            let kind = if e.root || me.root {
                LinkKind::Root
            } else if e.pairing {
                LinkKind::Pairing
            } else if e.configured {
                LinkKind::Configured
            } else {
                LinkKind::Other
            };
            let key = (id.min(e.id), id.max(e.id));
            let link = self.links.entry(key).or_default();
            link.kind = Some(link.kind.map_or(kind, |k| k.min(kind)));
            let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
            link.latency.extend(ms(e.latency_us));
            link.jitter.extend(ms(e.jitter_us));
            let (ab, ba) = if id < e.id {
                (e.frames_out, e.frames_in)
            } else {
                (e.frames_in, e.frames_out)
            };
            link.ab = link.ab.max(ab);
            link.ba = link.ba.max(ba);
        }
    }

    /// Adds a node's own view of itself and its edges, as its metrics give them.
    pub fn add_local(&mut self, me: SelfReport, edges: &[EdgeInfo]) {
        let reports: Vec<EdgeReport> = edges.iter().cloned().map(EdgeInfo::into_report).collect();
        self.add(me, &reports);
    }

    /// The picture (`complete`: nothing was cut by a bound).
    pub fn finish(self, complete: bool) -> Mesh {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let links: Vec<MeshLink> = self
            .links
            .into_iter()
            .filter(|((a, b), _)| self.nodes.contains_key(a) && self.nodes.contains_key(b))
            .map(|((a, b), l)| MeshLink {
                a: a.to_string(),
                b: b.to_string(),
                kind: l.kind.unwrap_or(LinkKind::Other),
                latency_ms: mean(&l.latency),
                jitter_ms: mean(&l.jitter),
                frames_ab: l.ab,
                frames_ba: l.ba,
                rate_ab: None,
                rate_ba: None,
            })
            .collect();
        let lat: Vec<f64> = links.iter().filter_map(|l| l.latency_ms).collect();
        let stats = mean(&lat).map(|m| {
            let var = lat.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / lat.len() as f64;
            LatencyStats {
                links: lat.len(),
                min_ms: lat.iter().copied().fold(f64::INFINITY, f64::min),
                max_ms: lat.iter().copied().fold(0.0, f64::max),
                mean_ms: m,
                stddev_ms: var.sqrt(),
            }
        });
        Mesh {
            nodes: self.nodes.into_values().collect(),
            links,
            stats,
            complete: complete && !self.cut,
        }
    }
}

/// The bounds of a walk.
#[derive(Clone, Copy, Debug)]
pub struct WalkLimits {
    /// Nodes asked at most.
    pub max_nodes: usize,
    /// Nodes asked at once.
    pub parallel: usize,
    /// Time one node may take (dial, two calls).
    pub per_node: Duration,
    /// Time the whole walk may take.
    pub total: Duration,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_nodes: 1000,
            parallel: 32,
            per_node: Duration::from_secs(3),
            total: Duration::from_secs(20),
        }
    }
}

/// What asking one node gave.
type Answer = (
    String,
    Option<NodeId>,
    Result<(SelfReport, Vec<EdgeReport>), Error>,
);

/// Asks the node at `addr`: dials it, calls `@node` `status` and `edges`, closes the edge.
async fn ask(client: &Node, addr: String, expect: Option<NodeId>, limit: Duration) -> Answer {
    let out = tokio::time::timeout(limit, async {
        let edge = client.connect(&addr).await?;
        let proxy = client.proxy_on(edge.id, NODE_SERVICE).with_timeout(limit);
        let got = async {
            let status: Status = proxy.call("status", &()).await?;
            let edges: Vec<EdgeReport> = proxy.call("edges", &()).await?;
            Ok::<_, Error>((SelfReport::from_status(status, Some(addr.clone())), edges))
        }
        .await;
        let _ = client.close(edge.id).await;
        got
    })
    .await
    .unwrap_or(Err(Error::Timeout));
    (addr, expect, out)
}

/// Walks the mesh from `start` through each node's `@node` introspection: every node found
/// with a listening address is asked once, up to `limits`.
pub async fn walk(client: &Node, start: &str, limits: WalkLimits) -> Result<Mesh, Error> {
    walk_from(client, &[start.to_string()], limits).await
}

/// [`walk`] from several addresses (parts of a mesh that may not be linked); fails only if
/// none of them answers.
pub async fn walk_from(
    client: &Node,
    starts: &[String],
    limits: WalkLimits,
) -> Result<Mesh, Error> {
    let deadline = Instant::now() + limits.total;
    let mut b = MeshBuilder::new([client.id()]);
    let mut queue: VecDeque<(String, Option<NodeId>)> =
        starts.iter().map(|s| (s.clone(), None)).collect();
    let mut tried_addrs: BTreeSet<String> = BTreeSet::new();
    let mut tried_ids: BTreeSet<NodeId> = BTreeSet::new();
    let mut asking = FuturesUnordered::new();
    let mut asked = 0usize;
    let mut first_error = None;
    let mut answered = false;
    let mut cut = false;
    loop {
        while asking.len() < limits.parallel.max(1) {
            let Some((addr, expect)) = queue.pop_front() else {
                break;
            };
            if asked >= limits.max_nodes {
                cut = true;
                break;
            }
            if !tried_addrs.insert(addr.clone()) || expect.is_some_and(|id| !tried_ids.insert(id)) {
                continue;
            }
            asked += 1;
            asking.push(ask(client, addr, expect, limits.per_node));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let next = match tokio::time::timeout(left, asking.next()).await {
            Ok(Some(answer)) => answer,
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        };
        match next {
            (_, _, Ok((me, edges))) => {
                answered = true;
                tried_ids.insert(me.id);
                if b.asked(me.id) {
                    continue;
                }
                for e in edges.iter().take(MAX_EDGES_PER_REPORT) {
                    // Never more waiting than may still be asked.
                    if queue.len() + asked >= limits.max_nodes {
                        cut = true;
                        break;
                    }
                    if let Some(listen) = e.listen {
                        if e.id != client.id() && !tried_ids.contains(&e.id) {
                            queue.push_back((listen.to_string(), Some(e.id)));
                        }
                    }
                }
                b.add(me, &edges);
            }
            (addr, expect, Err(e)) => {
                tracing::debug!(%addr, error = %e, "could not ask a node");
                match expect {
                    Some(id) => b.failed(id, e.to_string()),
                    None => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    if let (false, Some(e)) = (answered, first_error) {
        // No start could be asked: there is no picture.
        return Err(e);
    }
    cut |= !queue.is_empty();
    Ok(b.finish(!cut))
}

/// The mesh as one node sees it: itself and its edges, and each neighbour's edges asked over
/// the edge that is already there (no new connection), for at most `limit`.
pub async fn local_view(node: &Node, limit: Duration) -> Result<Mesh, Error> {
    let m = node.metrics().await?;
    let status = node.local_status().await?;
    let mut b = MeshBuilder::new([]);
    let me = SelfReport::from_status(status, Some(node.local_addr().to_string()));
    b.add_local(me, &m.edges);
    let asks = m.edges.iter().map(|e| {
        let proxy = node.proxy_on(e.id, NODE_SERVICE).with_timeout(limit);
        let info = e.clone();
        async move {
            let edges: Result<Vec<EdgeReport>, Error> = proxy.call("edges", &()).await;
            (info, edges)
        }
    });
    let answers: Vec<_> = tokio::time::timeout(limit, futures_util::future::join_all(asks))
        .await
        .unwrap_or_default();
    let mut complete = answers.len() == m.edges.len();
    for (info, edges) in answers {
        match edges {
            Ok(edges) => {
                let me = SelfReport {
                    id: info.id,
                    name: info.name.clone(),
                    addr: info.listen.map(|a| a.to_string()),
                    root: info.root,
                    topics: clip_list(&info.topics),
                    services: clip_list(&info.services),
                };
                b.add(me, &edges);
            }
            Err(e) => {
                complete = false;
                b.failed(info.id, e.to_string());
            }
        }
    }
    Ok(b.finish(complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u128, name: String) -> EdgeReport {
        EdgeReport {
            id: NodeId(id),
            name,
            addr: "127.0.0.1:1".parse().unwrap(),
            listen: None,
            topics: vec!["t".repeat(1000); 500],
            services: vec![],
            root: false,
            pairing: true,
            outbound: false,
            rtt_us: None,
            latency_us: Some(100),
            jitter_us: None,
            configured: false,
            frames_out: 1,
            frames_in: 2,
            bytes_out: 0,
            bytes_in: 0,
        }
    }

    /// A walked node is not trusted: what it reports is cut to bounds, and the picture says
    /// it is incomplete.
    #[test]
    fn a_hostile_report_is_cut_to_bounds() {
        let mut b = MeshBuilder::new([]);
        let me = SelfReport {
            id: NodeId(1),
            name: "x".repeat(100_000),
            addr: None,
            root: false,
            topics: vec![],
            services: vec![],
        };
        let edges: Vec<EdgeReport> = (2..MAX_EDGES_PER_REPORT as u128 + 100)
            .map(|i| report(i, "y".repeat(10_000)))
            .collect();
        b.add(me, &edges);
        let m = b.finish(true);
        assert!(!m.complete);
        assert_eq!(m.nodes.len(), MAX_EDGES_PER_REPORT + 1);
        assert!(m.nodes.iter().all(|n| n.name.len() <= MAX_TEXT));
        assert!(m.nodes.iter().all(|n| n.topics.len() <= MAX_LIST));
        assert!(m
            .nodes
            .iter()
            .flat_map(|n| &n.topics)
            .all(|t| t.len() <= MAX_TEXT));
        assert_eq!(m.links.len(), MAX_EDGES_PER_REPORT);
    }
}
