//! Faults in the simulator: partitions and heals, a node crashing and restarting in the middle
//! of a stream of publishes, links cut during discovery. Asserted: edges come back within the
//! back-off bound after a heal; nothing is delivered twice; every message published while its
//! path was connected is delivered exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::Config;
use proptest::prelude::*;

fn cfg(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnect_initial(Duration::from_millis(500))
        .reconnect_max(Duration::from_secs(4))
}

/// The longest wait for a redial after a heal: the capped back-off plus its jitter (up to 50%),
/// plus the handshake over the links.
const REDIAL_BOUND: Duration = Duration::from_secs(7);

/// Per receiver, how many times each payload arrived.
fn tally(sim: &Sim, i: Idx) -> BTreeMap<Bytes, usize> {
    let mut t = BTreeMap::new();
    for (_, payload) in sim.received(i) {
        *t.entry(payload).or_insert(0) += 1;
    }
    t
}

fn publish(sim: &mut Sim, from: Idx, label: &str, k: usize) -> Bytes {
    let payload = Bytes::from(format!("{label}-{k}"));
    let p = payload.clone();
    sim.turn(from, |node, now| node.publish("t", p, now))
        .unwrap();
    payload
}

/// A chain a - b - c - d, all subscribed to "t".
fn chain(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    for name in ["a", "b", "c", "d"] {
        let i = sim.add_node(cfg(name));
        sim.turn(i, |node, now| node.subscribe("t", now)).unwrap();
    }
    for (x, y) in [(0, 1), (1, 2), (2, 3)] {
        sim.connect(x, y);
    }
    assert!(sim.run_until(Duration::from_secs(2), |s| s.connected(0, 1)
        && s.connected(1, 2)
        && s.connected(2, 3)));
    sim
}

#[test]
fn a_partition_heals_within_the_backoff_bound_and_the_stream_resumes() {
    let mut sim = chain(1);
    let mut before = Vec::new();
    for k in 0..20 {
        before.push(publish(&mut sim, 0, "before", k));
        sim.run_for(Duration::from_millis(10));
    }
    sim.cut(1, 2);
    // During the partition: nothing crosses; nothing is queued to arrive twice later.
    let mut during = Vec::new();
    for k in 0..20 {
        during.push(publish(&mut sim, 0, "during", k));
        sim.run_for(Duration::from_millis(10));
    }
    // Let the redials fail a few times, so the back-off has grown.
    sim.run_for(Duration::from_secs(10));
    assert!(!sim.connected(1, 2));
    sim.heal(1, 2);
    let healed_at = sim.elapsed();
    assert!(
        sim.run_until(REDIAL_BOUND, |s| s.connected(1, 2)),
        "no edge within {REDIAL_BOUND:?} of the heal"
    );
    let took = sim.elapsed() - healed_at;
    let mut after = Vec::new();
    for k in 0..20 {
        after.push(publish(&mut sim, 0, "after", k));
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_secs(1));
    for i in 1..4 {
        let t = tally(&sim, i);
        assert!(
            !t.is_empty() && t.values().all(|&n| n == 1),
            "node {i} got nothing or a duplicate: {t:?}"
        );
        for p in before.iter().chain(&after) {
            assert_eq!(t.get(p), Some(&1), "node {i} missed {p:?}");
        }
        for p in &during {
            // b was still connected to a; c and d were cut off.
            let expect = usize::from(i == 1);
            assert_eq!(t.get(p).copied().unwrap_or(0), expect, "node {i}, {p:?}");
        }
    }
    eprintln!("edge back {took:?} after the heal");
}

#[test]
fn a_crash_and_restart_mid_stream_loses_only_what_had_no_path_and_duplicates_nothing() {
    let mut sim = chain(2);
    let mut before = Vec::new();
    for k in 0..20 {
        before.push(publish(&mut sim, 0, "before", k));
        sim.run_for(Duration::from_millis(5));
    }
    // Every message so far has landed: the links are a few milliseconds long.
    sim.run_for(Duration::from_millis(100));
    // c dies in the middle of a burst.
    let mut burst = Vec::new();
    for k in 0..20 {
        if k == 10 {
            sim.crash(2);
        }
        burst.push(publish(&mut sim, 0, "burst", k));
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(2));
    sim.restart(2, None);
    sim.turn(2, |node, now| node.subscribe("t", now)).unwrap();
    // b redials the restarted c by its back-off (b had dialed c); c dials d again, as a
    // restarted program does from its own configuration (only the side that dialed redials).
    sim.connect(2, 3);
    assert!(
        sim.run_until(REDIAL_BOUND, |s| s.connected(1, 2) && s.connected(2, 3)),
        "c's edges did not come back"
    );
    let mut after = Vec::new();
    for k in 0..20 {
        after.push(publish(&mut sim, 0, "after", k));
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(Duration::from_secs(1));
    for i in [1, 2, 3] {
        let t = tally(&sim, i);
        assert!(
            !t.is_empty() && t.values().all(|&n| n == 1),
            "node {i} got nothing or a duplicate: {t:?}"
        );
        for p in &after {
            assert_eq!(t.get(p), Some(&1), "node {i} missed {p:?}");
        }
    }
    // Published while the whole path was up: delivered exactly once (c's pre-crash log is gone
    // with it; b and d keep theirs).
    for i in [1, 3] {
        let t = tally(&sim, i);
        for p in &before {
            assert_eq!(t.get(p), Some(&1), "node {i} missed {p:?}");
        }
    }
    // b is connected to a throughout: it has the whole burst.
    let b = tally(&sim, 1);
    for p in &burst {
        assert_eq!(b.get(p), Some(&1), "b missed {p:?}");
    }
    // d had no path after the crash: the second half of the burst never reaches it.
    let d = tally(&sim, 3);
    for p in &burst[11..] {
        assert_eq!(d.get(p), None, "d got {p:?} without a path");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Links cut while discovery runs, healed later: every node still ends paired, with no edge
    /// to itself and at most one edge per peer, and after the heals every link that was up when it
    /// was cut comes back within the back-off bound.
    #[test]
    fn links_cut_during_discovery_still_converge(
        seed in 0u64..1000,
        cuts in proptest::collection::vec((0usize..8, 0usize..8, 0u64..3000), 1..6),
    ) {
        let n = 8;
        let mut sim = Sim::new(seed);
        for i in 0..n {
            let idx = sim.add_node(cfg(&format!("n{i}")).discovery_timeout(Duration::from_millis(500)));
            let topic = if i % 2 == 0 { "even" } else { "odd" };
            sim.turn(idx, |node, now| node.subscribe(topic, now)).unwrap();
            if i > 0 {
                sim.connect(idx, i - 1);
            }
        }
        sim.run_for(Duration::from_secs(1));
        for i in 0..n {
            let _ = sim.turn(i, |node, now| node.discover(now));
        }
        let mut at = 0;
        let mut cut_pairs = Vec::new();
        let mut sorted = cuts.clone();
        sorted.sort_by_key(|c| c.2);
        for (a, b, t) in sorted {
            sim.run_for(Duration::from_millis(t - at));
            at = t;
            if a != b {
                let was_up = sim.connected(a, b);
                sim.cut(a, b);
                cut_pairs.push((a, b, was_up));
            }
        }
        sim.run_for(Duration::from_secs(2));
        for &(a, b, _) in &cut_pairs {
            sim.heal(a, b);
        }
        // Every link that was up when it was cut is redialed once healed.
        let back = sim.run_until(REDIAL_BOUND, |s| {
            cut_pairs.iter().all(|&(a, b, up)| !up || s.connected(a, b))
        });
        prop_assert!(back, "a cut link did not come back: {:?}", cut_pairs);
        // Routing over what the faults left: a publish on each topic reaches exactly the
        // nodes joined to its publisher through subscribers of that topic, each exactly once.
        // (Being "paired" proves nothing here: a node whose discovery was cut anchors alone.)
        for (publisher, topic) in [(0usize, "even"), (1, "odd")] {
            let mut reach = std::collections::BTreeSet::from([publisher]);
            let mut grew = true;
            while grew {
                grew = false;
                for a in (0..n).filter(|a| a % 2 == publisher % 2) {
                    if !reach.contains(&a)
                        && reach.iter().any(|&b| sim.connected(a, b) && sim.connected(b, a))
                    {
                        reach.insert(a);
                        grew = true;
                    }
                }
            }
            let before: Vec<usize> = (0..n).map(|i| sim.received(i).len()).collect();
            let payload = format!("after the faults on {topic}");
            sim.turn(publisher, |node, now| node.publish(topic, bytes::Bytes::from(payload.clone()), now))
                .unwrap();
            let all = sim.run_until(Duration::from_secs(5), |s| {
                reach.iter().filter(|&&i| i != publisher).all(|&i| s.received(i).len() > before[i])
            });
            prop_assert!(all, "{topic}: not delivered to every node joined to the publisher");
            sim.run_for(Duration::from_millis(500));
            for (i, &seen) in before.iter().enumerate() {
                let got = sim.received(i)[seen..]
                    .iter()
                    .filter(|(t, p)| t == topic && p[..] == *payload.as_bytes())
                    .count();
                let want = usize::from(reach.contains(&i) && i != publisher);
                prop_assert_eq!(got, want, "{}: node {} got it {} times", topic, i, got);
            }
        }
        for i in 0..n {
            let node = sim.node(i);
            let peers: Vec<_> = node.peers().collect();
            prop_assert!(!peers.contains(&node.id()));
            let unique: std::collections::BTreeSet<_> = peers.iter().collect();
            prop_assert_eq!(unique.len(), peers.len());
            prop_assert!(node.edge_count() <= node.config().max_edges);
        }
    }
}

/// Two nodes seek one topic through a root, the second joining only after the first's
/// discovery went out: they still end in one cluster (whichever has the smaller id), where
/// both used to anchor apart for good.
#[test]
fn a_seeker_that_missed_an_earlier_discovery_still_pairs() {
    for (first_seed, second_seed) in [(11, 12), (12, 11)] {
        let mut sim = Sim::new(7);
        let root = sim.add_node(Config::default().name("root").root(true));
        let a = sim.add_node(cfg("a").seed(first_seed));
        let b = sim.add_node(cfg("b").seed(second_seed));
        for i in [a, b] {
            sim.turn(i, |node, now| node.subscribe("t", now)).unwrap();
        }
        sim.connect(a, root);
        assert!(sim.run_until(Duration::from_secs(1), |s| s.connected(a, root)));
        sim.turn(a, |node, now| node.discover(now)).unwrap();
        // b connects while a's discovery is under way: it never hears it.
        sim.run_for(Duration::from_millis(500));
        sim.connect(b, root);
        assert!(sim.run_until(Duration::from_secs(1), |s| s.connected(b, root)));
        sim.turn(b, |node, now| node.discover(now)).unwrap();
        assert!(
            sim.run_until(Duration::from_secs(10), |s| s.connected(a, b)),
            "a and b never paired (seeds {first_seed}, {second_seed})"
        );
        let (ca, cb) = (sim.node(a).cluster_of("t"), sim.node(b).cluster_of("t"));
        assert!(ca.is_some() && ca == cb, "two clusters: {ca:?} and {cb:?}");
    }
}
