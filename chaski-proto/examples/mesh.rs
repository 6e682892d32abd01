//! A random mesh in the deterministic simulator: nodes on a few topics, random bootstrap links,
//! every node discovering at a random moment. Prints convergence: simulated time until every
//! node is paired and every topic forms one cluster, frames sent, and wall time.
//!
//! `cargo run --release -p chaski-proto --features sim --example mesh -- [NODES] [TOPICS] [SEED]`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chaski_proto::sim::{Idx, Sim};
use chaski_proto::Config;

/// For each topic, the number of clusters its subscribers form through their own edges.
fn clusters(sim: &Sim, topics: &[String], subs: &[usize]) -> Vec<usize> {
    let edges = sim.edge_set();
    (0..topics.len())
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

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let wall = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sim = Sim::new(seed);
    sim.record_events = std::env::var_os("MESH_DEBUG").is_some();
    let topics: Vec<String> = (0..k).map(|i| format!("topic{i}")).collect();
    let mut subs = Vec::new();
    for i in 0..n {
        let idx = sim.add_node(
            Config::default()
                .name(format!("n{i}"))
                .max_connections(5)
                .discovery_timeout(Duration::from_secs(2)),
        );
        let t = rng.usize(..k);
        subs.push(t);
        sim.with(idx, |node, now| node.subscribe(&topics[t], now))
            .unwrap();
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
    let mut order: Vec<(u64, Idx)> = (0..n).map(|i| (rng.u64(..5000), i)).collect();
    order.sort_unstable();
    let mut elapsed = 0;
    for (at, i) in order {
        sim.run_for(Duration::from_millis(at - elapsed));
        elapsed = at;
        let _ = sim.with(i, |node, now| node.discover(now));
    }
    let converged = sim.run_until(Duration::from_secs(120), |s| {
        (0..s.len()).all(|i| s.node(i).is_paired())
    });
    let paired_at = sim.now() - start;
    // Let the frames still in flight (Hello replies, cluster-id announcements) land.
    sim.run_for(Duration::from_secs(1));
    let counts = clusters(&sim, &topics, &subs);
    let whole = counts.iter().all(|&c| c <= 1);
    let frames = sim.frames_sent();
    println!("Chaski simulated mesh: {n} nodes, {k} topics, seed {seed}");
    println!("  bootstrap edges:            {bootstrap_edges}");
    println!("  every node paired:          {converged} after {:.3} s simulated (discovery spread over 5 s)", paired_at.as_secs_f64());
    println!("  each topic one cluster:     {whole} (clusters per topic: {counts:?})");
    println!("  edges after pairing:        {}", sim.edge_set().len());
    println!("  frames sent:                {frames}");
    println!("  bytes carried:              {}", sim.bytes);
    println!(
        "  wall time:                  {:.3} s",
        wall.elapsed().as_secs_f64()
    );
    if !whole && std::env::var_os("MESH_DEBUG").is_some() {
        for (t, topic) in topics.iter().enumerate() {
            let ids: BTreeSet<String> = (0..n)
                .filter(|&i| subs[i] == t)
                .map(|i| format!("{:?}", sim.node(i).cluster_of(topic)))
                .collect();
            println!("  {topic}: cluster ids {ids:?}");
        }
        let mut tally = std::collections::BTreeMap::new();
        for i in 0..n {
            for (_, e) in sim.events(i) {
                let key = match e {
                    chaski_proto::Event::PeerLost {
                        reason, by_peer, ..
                    } => format!("lost {reason} by_peer={by_peer}"),
                    chaski_proto::Event::ConnectFailed { error, .. } => {
                        format!("connect failed {error}")
                    }
                    chaski_proto::Event::BadPeer { reason, .. } => format!("bad peer {reason}"),
                    _ => continue,
                };
                *tally.entry(key).or_insert(0) += 1;
            }
        }
        println!("  {tally:#?}");
        let mut one_sided = 0;
        for i in 0..n {
            for p in sim.node(i).peers() {
                let j = sim.idx_of(p).unwrap();
                if !sim.connected(i, j) {
                    one_sided += 1;
                    println!("  one-sided: {i} -> {j} (topics {} / {})", subs[i], subs[j]);
                    for k in [i, j] {
                        let other = if k == i {
                            sim.node(j).id()
                        } else {
                            sim.node(i).id()
                        };
                        println!("   node {k} id {}:", sim.node(k).id());
                        for (t, e) in sim.events(k) {
                            let s = format!("{e:?}");
                            if s.contains(&format!("{other:?}"))
                                || matches!(e, chaski_proto::Event::Paired { .. })
                            {
                                println!("    {:?} {}", *t - start, &s[..s.len().min(200)]);
                            }
                        }
                    }
                }
            }
        }
        println!("  one-sided edges: {one_sided}");
    }
    if !(converged && whole) {
        std::process::exit(1);
    }
}
