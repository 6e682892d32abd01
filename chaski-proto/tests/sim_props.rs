//! Simulation invariants over random meshes and random command sequences.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::{Config, Delivery, NodeId};
use proptest::prelude::*;

const TOPICS: [&str; 3] = ["a", "b", "c"];

/// Hierarchical topics published on, and the subscriptions (topics and patterns) nodes pick.
const LEVELED: [&str; 3] = ["a/x", "a/y", "b/x"];
const PATTERNS: [&str; 5] = ["a/x", "a/*", "*/x", "b/**", "**"];

#[derive(Clone, Debug)]
struct Mesh {
    n: usize,
    links: Vec<(usize, usize)>,
    subs: Vec<Vec<bool>>,
    roots: Vec<bool>,
}

fn mesh() -> impl Strategy<Value = Mesh> {
    mesh_of(3, 0.5)
}

/// Meshes whose nodes each pick among `k` subscriptions, each with probability `p`.
fn mesh_of(k: usize, p: f64) -> impl Strategy<Value = Mesh> {
    (4usize..14).prop_flat_map(move |n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n), n..n * 2),
            proptest::collection::vec(proptest::collection::vec(proptest::bool::weighted(p), k), n),
            proptest::collection::vec(proptest::bool::weighted(0.1), n),
        )
            .prop_map(|(n, links, subs, roots)| Mesh {
                n,
                links,
                subs,
                roots,
            })
    })
}

fn build(seed: u64, m: &Mesh) -> Sim {
    build_with(seed, m, &TOPICS)
}

fn build_with(seed: u64, m: &Mesh, subscriptions: &[&str]) -> Sim {
    let mut sim = Sim::new(seed);
    for i in 0..m.n {
        let i = sim.add_node(Config::default().name(format!("n{i}")).root(m.roots[i]));
        for (t, &on) in subscriptions.iter().zip(&m.subs[i]) {
            if on {
                sim.turn(i, |node, now| node.subscribe(t, now)).unwrap();
            }
        }
    }
    for &(a, b) in &m.links {
        sim.connect(a, b);
    }
    sim.run_for(Duration::from_secs(3));
    sim
}

/// Checks the structural invariants of every running node.
fn check_tables(sim: &Sim) -> Result<(), TestCaseError> {
    for i in 0..sim.len() {
        if !sim.is_up(i) {
            continue;
        }
        let n = sim.node(i);
        let peers: Vec<NodeId> = n.peers().collect();
        prop_assert!(!peers.contains(&n.id()), "edge to self");
        let unique: BTreeSet<_> = peers.iter().collect();
        prop_assert_eq!(unique.len(), peers.len(), "two edges to one peer");
        prop_assert!(n.edge_count() <= n.config().max_edges);
        prop_assert!(n.connection_count() <= n.config().max_edges + 1);
        prop_assert!(n.reconnecting() <= sim.len());
    }
    Ok(())
}

/// Subscribers of `topic` reachable from `from` through nodes that subscribe or are roots.
fn expected_receivers(sim: &Sim, from: Idx, topic: &str) -> BTreeSet<Idx> {
    let ids: BTreeMap<NodeId, Idx> = (0..sim.len())
        .filter(|&i| sim.is_up(i))
        .map(|i| (sim.node(i).id(), i))
        .collect();
    let mut seen = BTreeSet::from([from]);
    let mut q = VecDeque::from([from]);
    let mut out = BTreeSet::new();
    while let Some(x) = q.pop_front() {
        let relays = x == from || sim.node(x).is_subscribed(topic) || sim.node(x).is_root();
        if !relays {
            continue;
        }
        for p in sim.node(x).peers() {
            let Some(&y) = ids.get(&p) else { continue };
            if !sim.connected(x, y) || !seen.insert(y) {
                continue;
            }
            let node = sim.node(y);
            if node.is_subscribed(topic) {
                out.insert(y);
            }
            if node.is_subscribed(topic) || node.is_root() {
                q.push_back(y);
            }
        }
    }
    out
}

/// Publishes once from every node on every topic of `topics` and checks that each message
/// reaches exactly its expected receivers, once each.
fn check_delivery(mut sim: Sim, m: &Mesh, topics: &[&str]) -> Result<(), TestCaseError> {
    check_tables(&sim)?;
    // Edges are symmetric once settled.
    for i in 0..m.n {
        for p in sim.node(i).peers() {
            let j = sim.idx_of(p).unwrap();
            prop_assert!(sim.connected(i, j), "one-sided edge {i}->{j}");
        }
    }
    let mut expect: BTreeMap<(Idx, u64), BTreeSet<Idx>> = BTreeMap::new();
    for i in 0..m.n {
        for &t in topics {
            let payload = Bytes::from(format!("{i}/{t}"));
            // Valid topic, small payload: a publish may not be refused.
            let seq = sim.turn(i, |node, now| node.publish(t, payload, now));
            prop_assert!(seq.is_ok(), "publish refused: {:?}", seq);
            expect.insert((i, seq.unwrap()), expected_receivers(&sim, i, t));
        }
    }
    sim.run_for(Duration::from_secs(2));
    let mut got: BTreeMap<(Idx, u64), Vec<Idx>> = BTreeMap::new();
    for r in 0..m.n {
        for (_, e) in sim.delivered(r) {
            if let Delivery::Message(msg) = e {
                let origin = sim.idx_of(msg.origin.unwrap()).unwrap();
                got.entry((origin, msg.seq)).or_default().push(r);
            }
        }
    }
    for (key, want) in &expect {
        let mut have = got.remove(key).unwrap_or_default();
        have.sort_unstable();
        let unique: Vec<Idx> = have
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        prop_assert_eq!(&have, &unique, "duplicate delivery of {:?}", key);
        prop_assert_eq!(
            unique.into_iter().collect::<BTreeSet<_>>(),
            want.clone(),
            "receivers of {:?}",
            key
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_mesh_delivers_exactly_once(seed in any::<u64>(), m in mesh()) {
        let sim = build(seed, &m);
        check_delivery(sim, &m, &TOPICS)?;
    }

    /// The same with subscriptions that are patterns (`a/*`, `*/x`, `b/**`, `**`): a message
    /// reaches every node whose subscription matches its topic, through nodes that relay it
    /// (those that want it, and roots), exactly once.
    #[test]
    fn random_mesh_with_wildcard_subscribers_delivers_exactly_once(seed in any::<u64>(), m in mesh_of(PATTERNS.len(), 0.3)) {
        let sim = build_with(seed, &m, &PATTERNS);
        check_delivery(sim, &m, &LEVELED)?;
    }

    #[test]
    fn random_commands_keep_tables_sound(seed in any::<u64>(), ops in proptest::collection::vec((0u8..10, 0usize..8, 0usize..8, 0usize..3), 1..60)) {
        let mut sim = Sim::new(seed);
        for i in 0..8 {
            sim.add_node(Config::default().name(format!("n{i}")).max_edges(6).max_connections(2).discovery_timeout(Duration::from_millis(500)).root(i == 0));
        }
        for (op, a, b, t) in ops {
            let topic = TOPICS[t];
            let up = sim.is_up(a);
            match op {
                0 | 1 if up && sim.is_up(b) => { let addr = sim.addr(b); let _ = sim.turn(a, |n, now| n.connect(addr, now)); }
                2 if up => { let _ = sim.turn(a, |n, now| n.subscribe(topic, now)); }
                3 if up => { let _ = sim.turn(a, |n, now| n.unsubscribe(topic, now)); }
                4 if up => { let _ = sim.turn(a, |n, now| n.publish(topic, Bytes::from_static(b"p"), now)); }
                5 if up => { let _ = sim.turn(a, |n, now| n.discover(now)); }
                6 if up => {
                    let p = sim.node(a).peers().nth(b);
                    if let Some(p) = p { let _ = sim.turn(a, |n, now| n.close(p, now)); }
                }
                7 => if up { sim.crash(a) } else { sim.restart(a, None) },
                8 => sim.cut(a, b),
                9 => sim.heal(a, b),
                _ => {}
            }
            sim.run_for(Duration::from_millis(50 * (b as u64 + 1)));
            check_tables(&sim)?;
        }
        for a in 0..8 {
            for b in 0..8 { sim.heal(a, b); }
            if !sim.is_up(a) { sim.restart(a, None); }
        }
        sim.run_for(Duration::from_secs(60));
        check_tables(&sim)?;
        for i in 0..8 {
            for p in sim.node(i).peers() {
                let j = sim.idx_of(p).unwrap();
                prop_assert!(sim.connected(i, j), "one-sided edge {i}->{j}");
            }
        }
    }
}
