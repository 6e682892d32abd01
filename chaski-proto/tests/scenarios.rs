//! The Python test catalogue (reference §12.1–12.6, 12.9 and the §3.6 topologies) as
//! deterministic simulation tests asserting the exact edge sets.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::{
    CallKind, Config, Delivery, DisconnectReason, Event, OnPair, RemoteCall, RemoteError,
};

const W3: Duration = Duration::from_secs(3);

/// `auto.create_nodes`: Node{i}, ttl 15, max_connections 10, no reconnection, Node0 paired.
fn create_nodes(sim: &mut Sim, subs: &[&[&str]]) -> Vec<Idx> {
    subs.iter()
        .enumerate()
        .map(|(i, topics)| {
            let cfg = Config::default()
                .name(format!("Node{i}"))
                .ttl(15)
                .max_connections(10)
                .reconnections(0)
                .discovery_timeout(Duration::from_secs(1))
                .paired(i == 0);
            let n = sim.add_node(cfg);
            for t in *topics {
                sim.turn(n, |node, now| node.subscribe(t, now)).unwrap();
            }
            n
        })
        .collect()
}

fn single(n: usize) -> Vec<&'static [&'static str]> {
    const T: [&[&str]; 8] = [
        &["A"],
        &["B"],
        &["C"],
        &["D"],
        &["E"],
        &["F"],
        &["G"],
        &["H"],
    ];
    T[..n].to_vec()
}

fn connect_all(sim: &mut Sim, pairs: &[(Idx, Idx)]) {
    for &(a, b) in pairs {
        sim.connect(a, b);
    }
    let want: Vec<(Idx, Idx)> = pairs.to_vec();
    assert!(
        sim.run_until(W3, |s| want.iter().all(|&(a, b)| s.connected(a, b))),
        "edges {:?} not established",
        pairs
    );
}

fn counts(sim: &Sim, nodes: &[Idx]) -> Vec<usize> {
    nodes.iter().map(|&n| sim.edge_count(n)).collect()
}

fn set(pairs: &[(Idx, Idx)]) -> BTreeSet<(Idx, Idx)> {
    pairs.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect()
}

/// Runs discovery on `n` and waits until all its topics are paired.
fn discover(sim: &mut Sim, n: Idx, on_pair: OnPair) {
    sim.turn(n, |node, now| node.discover_with(on_pair, now))
        .unwrap();
    assert!(
        sim.run_until(Duration::from_secs(15), |s| s.node(n).is_paired()),
        "node {n} never paired"
    );
    sim.run_for(Duration::from_millis(300));
}

// ----- 12.1 connections ---------------------------------------------------------------------

#[test]
fn single_connections() {
    let mut sim = Sim::new(1);
    let n = create_nodes(&mut sim, &single(4));
    connect_all(&mut sim, &[(0, 1), (2, 3)]);
    sim.run_for(W3);
    assert_eq!(counts(&sim, &n), [1, 1, 1, 1]);
    assert_eq!(sim.edge_set(), set(&[(0, 1), (2, 3)]));
}

#[test]
fn multiple_connections() {
    let mut sim = Sim::new(2);
    let n = create_nodes(&mut sim, &single(5));
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0)]);
    assert_eq!(counts(&sim, &n), [4, 1, 1, 1, 1]);
}

#[test]
fn disconnection_on_shutdown_reaches_every_peer() {
    let mut sim = Sim::new(3);
    let n = create_nodes(&mut sim, &single(5));
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0)]);
    sim.turn(0, |node, now| node.shutdown(now));
    assert!(sim.run_until(W3, |s| n.iter().all(|&i| s.edge_count(i) == 0)));
    // Graceful: nobody redials a node that said goodbye.
    sim.run_for(Duration::from_secs(10));
    assert_eq!(counts(&sim, &n), [0; 5]);
    for &i in &n[1..] {
        let lost = sim.events(i).iter().any(|(_, e)| {
            matches!(
                e,
                Event::PeerLost {
                    reason: DisconnectReason::Shutdown,
                    by_peer: true,
                    reconnecting: false,
                    ..
                }
            )
        });
        assert!(lost, "node {i} did not see the goodbye");
    }
}

#[test]
fn edges_disconnection() {
    let mut sim = Sim::new(4);
    let n = create_nodes(&mut sim, &single(6));
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]);
    // 0→5 duplicates the existing 5→0 edge: refused, nothing changes.
    let dup = sim.connect(0, 5);
    connect_all(&mut sim, &[(1, 5), (2, 5), (3, 5), (4, 5)]);
    sim.run_for(W3);
    assert!(sim.events(0).iter().any(|(_, e)| matches!(e, Event::ConnectFailed { conn, error: chaski_proto::ConnectError::Duplicate, .. } if *conn == dup)));
    assert_eq!(counts(&sim, &n), [5, 2, 2, 2, 2, 5]);
    let peers: Vec<_> = sim.node(0).peers().collect();
    for (k, p) in peers.into_iter().enumerate() {
        sim.turn(0, |node, now| node.close(p, now)).unwrap();
        sim.run_for(W3);
        assert_eq!(sim.edge_count(0), 4 - k);
    }
    assert_eq!(counts(&sim, &n), [0, 1, 1, 1, 1, 4]);
    assert_eq!(sim.edge_set(), set(&[(1, 5), (2, 5), (3, 5), (4, 5)]));
}

#[test]
fn edges_client_orphan() {
    let mut sim = Sim::new(5);
    let n = create_nodes(&mut sim, &single(5));
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0)]);
    for &c in &n[1..] {
        let p = sim.node(c).peers().next().unwrap();
        sim.turn(c, |node, now| node.close(p, now)).unwrap();
    }
    assert!(sim.run_until(W3, |s| n.iter().all(|&i| s.edge_count(i) == 0)));
    sim.run_for(Duration::from_secs(10));
    assert_eq!(counts(&sim, &n), [0; 5]);
}

#[test]
fn edges_server_orphan() {
    let mut sim = Sim::new(6);
    let n = create_nodes(&mut sim, &single(5));
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0)]);
    for p in sim.node(0).peers().collect::<Vec<_>>() {
        sim.turn(0, |node, now| node.close(p, now)).unwrap();
    }
    assert!(sim.run_until(W3, |s| n.iter().all(|&i| s.edge_count(i) == 0)));
    sim.run_for(Duration::from_secs(10));
    assert_eq!(counts(&sim, &n), [0; 5]);
}

/// Runs until node `n` has a `Request` event, answers it with `answer(args)`, and returns the
/// request's (path, kind).
fn serve_one(
    sim: &mut Sim,
    n: Idx,
    answer: impl Fn(&Bytes) -> Result<Bytes, RemoteError>,
) -> (String, CallKind) {
    let mut seen = 0;
    assert!(sim.run_until(W3, |s| {
        s.delivered(n)
            .iter()
            .any(|(_, e)| matches!(e, Delivery::Request { .. }))
    }));
    let evs = sim.take_delivered(n);
    for (_, e) in evs {
        if let Delivery::Request {
            peer,
            id,
            path,
            kind,
            args,
            ..
        } = e
        {
            seen += 1;
            let r = answer(&args);
            sim.turn(n, |node, now| node.respond(peer, id, r, now))
                .unwrap();
            assert_eq!(seen, 1);
            return (path, kind);
        }
    }
    unreachable!()
}

fn response(sim: &mut Sim, n: Idx, id: chaski_proto::RequestId) -> Result<Bytes, RemoteError> {
    let mut out = None;
    assert!(sim.run_until(Duration::from_secs(30), |s| {
        s.delivered(n)
            .iter()
            .any(|(_, e)| matches!(e, Delivery::Response { id: i, .. } if *i == id))
    }));
    for (_, e) in sim.delivered(n) {
        if let Delivery::Response { id: i, result } = e {
            if *i == id {
                out = Some(result.clone());
            }
        }
    }
    out.unwrap()
}

#[test]
fn response_echo_rpc() {
    let mut sim = Sim::new(7);
    let _ = create_nodes(&mut sim, &single(2));
    connect_all(&mut sim, &[(1, 0)]);
    sim.turn(1, |node, now| node.serve("echo", now)).unwrap();
    sim.run_for(Duration::from_millis(10));
    let peer = sim.node(1).id();
    assert_eq!(sim.node(0).find_service("echo"), Some(peer));
    let payload = Bytes::from_static(b"{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}");
    let id = sim
        .turn(0, |node, now| {
            node.call(
                peer,
                RemoteCall {
                    service: "echo",
                    path: "",
                    kind: CallKind::Call,
                    args: payload.clone(),
                },
                None,
                now,
            )
        })
        .unwrap();
    serve_one(&mut sim, 1, |a| Ok(a.clone()));
    assert_eq!(response(&mut sim, 0, id), Ok(payload));
}

// ----- 12.2 discovery -----------------------------------------------------------------------

#[test]
fn no_discovery_becomes_anchor() {
    let mut sim = Sim::new(8);
    let n = create_nodes(&mut sim, &single(2));
    connect_all(&mut sim, &[(0, 1)]);
    let start = sim.now();
    discover(&mut sim, 1, OnPair::None);
    let anchored = sim.events(1).iter().find_map(|(t, e)| match e {
        Event::Paired { topic, with: None } if topic == "B" => Some(*t),
        _ => None,
    });
    assert!(anchored.expect("no anchor event") - start >= Duration::from_secs(1));
    assert_eq!(counts(&sim, &n), [1, 1]);
    assert!(sim.connected(0, 1));
}

#[test]
fn single_server_connect_discovery() {
    let mut sim = Sim::new(9);
    let n = create_nodes(&mut sim, &[&["A"], &["B"], &["B"]]);
    connect_all(&mut sim, &[(0, 1), (0, 2)]);
    assert_eq!(counts(&sim, &n), [2, 1, 1]);
    sim.turn(1, |node, now| node.set_paired("B", now)).unwrap();
    discover(&mut sim, 2, OnPair::None);
    assert_eq!(counts(&sim, &n), [2, 2, 2]);
    assert_eq!(sim.edge_set(), set(&[(0, 1), (0, 2), (1, 2)]));
    let with = sim.events(2).iter().find_map(|(_, e)| match e {
        Event::Paired { with, .. } => Some(*with),
        _ => None,
    });
    assert_eq!(with, Some(Some(sim.node(1).id())));
}

#[test]
fn single_discovery() {
    let mut sim = Sim::new(10);
    let n = create_nodes(&mut sim, &[&["A"], &["B"], &["B"]]);
    connect_all(&mut sim, &[(1, 0), (2, 0)]);
    discover(&mut sim, 1, OnPair::None);
    discover(&mut sim, 2, OnPair::None);
    assert_eq!(counts(&sim, &n), [2, 2, 2]);
    assert_eq!(sim.edge_set(), set(&[(0, 1), (0, 2), (1, 2)]));
}

#[test]
fn single_discovery_with_disconnection() {
    let mut sim = Sim::new(11);
    let n = create_nodes(&mut sim, &[&["A"], &["B"], &["B"]]);
    connect_all(&mut sim, &[(1, 0), (2, 0)]);
    sim.turn(1, |node, now| node.set_paired("B", now)).unwrap();
    discover(&mut sim, 2, OnPair::Disconnect);
    assert_eq!(counts(&sim, &n), [1, 2, 1]);
    assert_eq!(sim.edge_set(), set(&[(0, 1), (1, 2)]));
}

#[test]
fn multiple_discovery() {
    let mut sim = Sim::new(12);
    let n = create_nodes(
        &mut sim,
        &[&["A"], &["B"], &["B"], &["B"], &["B"], &["B"], &["B"]],
    );
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]);
    for i in 1..=6 {
        discover(&mut sim, i, OnPair::None);
    }
    sim.run_for(W3);
    assert_eq!(counts(&sim, &n), [6, 6, 2, 2, 2, 2, 2]);
    let mut want: Vec<(Idx, Idx)> = (1..=6).map(|i| (0, i)).collect();
    want.extend((2..=6).map(|j| (1, j)));
    assert_eq!(sim.edge_set(), set(&want));
}

// ----- 12.3 subscriptions -------------------------------------------------------------------

#[test]
fn single_subscription_no_disconnect() {
    let mut sim = Sim::new(13);
    let _ = create_nodes(&mut sim, &[&["A"], &["B"], &["C"], &["A"], &["B"], &["C"]]);
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]);
    for i in 1..=5 {
        discover(&mut sim, i, OnPair::None);
    }
    let want = set(&[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 4), (2, 5)]);
    assert_eq!(sim.edge_set(), want);
}

#[test]
fn single_subscription_with_disconnect() {
    let mut sim = Sim::new(14);
    let _ = create_nodes(
        &mut sim,
        &[&["A"], &["B"], &["C"], &["A", "C"], &["B", "A"], &["C"]],
    );
    connect_all(&mut sim, &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]);
    for i in 1..=5 {
        discover(&mut sim, i, OnPair::Disconnect);
    }
    sim.run_for(W3);
    // Anchors 1 (B) and 2 (C) keep node 0; 3 and 4 keep it (shared A); 5 drops it.
    let want = set(&[(0, 1), (0, 2), (0, 3), (0, 4), (2, 3), (1, 4), (2, 5)]);
    assert_eq!(sim.edge_set(), want);
    assert!(!sim.connected(0, 5));
}

// ----- 12.4 functions -----------------------------------------------------------------------

#[test]
fn ping_size_raises_latency_and_reset_clears_it() {
    let mut sim = Sim::new(15);
    sim.set_bandwidth(50_000_000);
    let _ = create_nodes(&mut sim, &single(3));
    connect_all(&mut sim, &[(1, 0), (2, 0)]);
    let (p1, p2) = (sim.node(1).id(), sim.node(2).id());
    sim.turn(0, |node, now| node.ping(p1, 0, now)).unwrap();
    sim.turn(0, |node, now| node.ping(p2, 100_000, now))
        .unwrap();
    assert!(sim.run_until(Duration::from_secs(1), |s| {
        let e = s.node(0).edges();
        e.len() == 2 && e.iter().all(|e| e.latency.is_some())
    }));
    let l1 = sim.node(0).edge_info(p1).unwrap().latency.unwrap();
    let l2 = sim.node(0).edge_info(p2).unwrap().latency.unwrap();
    assert!(l2 > l1, "{l2:?} should exceed {l1:?}");
    sim.turn(0, |node, _| {
        node.reset_latency(p1).unwrap();
        node.reset_latency(p2).unwrap();
    });
    assert_eq!(sim.node(0).edge_info(p1).unwrap().latency, None);
    assert_eq!(sim.node(0).edge_info(p2).unwrap().latency, None);
}

#[test]
fn message_ttl_limits_hops() {
    let mut sim = Sim::new(16);
    let nodes: Vec<Idx> = (0..6)
        .map(|i| {
            let n = sim.add_node(Config::default().name(format!("n{i}")).ttl(3));
            sim.turn(n, |node, now| node.subscribe("t", now)).unwrap();
            n
        })
        .collect();
    let line: Vec<(Idx, Idx)> = (0..5).map(|i| (i, i + 1)).collect();
    connect_all(&mut sim, &line);
    sim.run_for(Duration::from_millis(50));
    sim.turn(0, |node, now| {
        node.publish("t", Bytes::from_static(b"x"), now)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(1));
    let got: Vec<usize> = nodes.iter().map(|&n| sim.received(n).len()).collect();
    assert_eq!(got, [0, 1, 1, 1, 0, 0]);
}

// ----- 12.5 remote --------------------------------------------------------------------------

#[test]
fn remote_calls_errors_and_sequence() {
    let mut sim = Sim::new(17);
    let _ = create_nodes(&mut sim, &single(2));
    connect_all(&mut sim, &[(1, 0)]);
    sim.turn(0, |node, now| node.serve("os", now)).unwrap();
    sim.run_for(Duration::from_millis(10));
    let server = sim.node(0).id();
    // Unknown service: answered by the core, no application involved.
    let id = sim
        .turn(1, |n, now| {
            n.call(
                server,
                RemoteCall {
                    service: "json",
                    path: "dumps",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                None,
                now,
            )
        })
        .unwrap();
    assert_eq!(
        response(&mut sim, 1, id),
        Err(RemoteError::NotFound("json".into()))
    );
    // Nested path, attribute get, unknown method, failure: decided by the serving application.
    let id = sim
        .turn(1, |n, now| {
            n.call(
                server,
                RemoteCall {
                    service: "os",
                    path: "path.sep",
                    kind: CallKind::Get,
                    args: Bytes::new(),
                },
                None,
                now,
            )
        })
        .unwrap();
    let (path, kind) = serve_one(&mut sim, 0, |_| Ok(Bytes::from_static(b"/")));
    assert_eq!((path.as_str(), kind), ("path.sep", CallKind::Get));
    assert_eq!(response(&mut sim, 1, id), Ok(Bytes::from_static(b"/")));
    let id = sim
        .turn(1, |n, now| {
            n.call(
                server,
                RemoteCall {
                    service: "os",
                    path: "nope",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                None,
                now,
            )
        })
        .unwrap();
    serve_one(&mut sim, 0, |_| {
        Err(RemoteError::NoSuchMethod("nope".into()))
    });
    assert_eq!(
        response(&mut sim, 1, id),
        Err(RemoteError::NoSuchMethod("nope".into()))
    );
    // Ten sequential calls.
    for k in 0..10u8 {
        let id = sim
            .turn(1, |n, now| {
                n.call(
                    server,
                    RemoteCall {
                        service: "os",
                        path: "listdir",
                        kind: CallKind::Call,
                        args: Bytes::from(vec![k]),
                    },
                    None,
                    now,
                )
            })
            .unwrap();
        serve_one(&mut sim, 0, |a| Ok(a.clone()));
        assert_eq!(response(&mut sim, 1, id), Ok(Bytes::from(vec![k])));
    }
    // A call nobody answers times out.
    let t0 = sim.now();
    let id = sim
        .turn(1, |n, now| {
            n.call(
                server,
                RemoteCall {
                    service: "os",
                    path: "slow",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                Some(Duration::from_secs(2)),
                now,
            )
        })
        .unwrap();
    assert_eq!(response(&mut sim, 1, id), Err(RemoteError::Timeout));
    assert!(sim.now() - t0 >= Duration::from_secs(2));
    // The server's peer crashes mid-call: Disconnected, at once.
    let id = sim
        .turn(1, |n, now| {
            n.call(
                server,
                RemoteCall {
                    service: "os",
                    path: "slow",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                None,
                now,
            )
        })
        .unwrap();
    sim.run_for(Duration::from_millis(5));
    let t0 = sim.now();
    sim.crash(0);
    assert_eq!(response(&mut sim, 1, id), Err(RemoteError::Disconnected));
    assert!(sim.now() - t0 < Duration::from_millis(100));
}

// ----- 12.6 streamer ------------------------------------------------------------------------

#[test]
fn stream_chain_six_nodes_in_order_over_five_hops() {
    let mut sim = Sim::new(18);
    let nodes: Vec<Idx> = (0..6)
        .map(|i| {
            let n = sim.add_node(
                Config::default()
                    .name(format!("Producer{i}"))
                    .reconnections(0),
            );
            sim.turn(n, |node, now| node.subscribe("topic1", now))
                .unwrap();
            n
        })
        .collect();
    let line: Vec<(Idx, Idx)> = (0..5).map(|i| (i, i + 1)).collect();
    connect_all(&mut sim, &line);
    sim.run_for(Duration::from_millis(300));
    for k in 0..6 {
        let msg = Bytes::from(format!("test{k}"));
        sim.turn(0, |node, now| node.publish("topic1", msg, now))
            .unwrap();
        assert!(sim.run_until(W3, |s| s.received(5).len() == k + 1));
    }
    let got: Vec<String> = sim
        .delivered(nodes[5])
        .iter()
        .filter_map(|(_, e)| match e {
            Delivery::Message(m) => {
                assert_eq!(m.hops, 5);
                Some(String::from_utf8(m.payload.to_vec()).unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, ["test0", "test1", "test2", "test3", "test4", "test5"]);
    // Every intermediate node got each message exactly once too.
    for &n in &nodes[1..5] {
        assert_eq!(sim.received(n).len(), 6);
    }
    assert_eq!(sim.received(0).len(), 0);
}

#[test]
fn root_relays_any_topic() {
    let mut sim = Sim::new(19);
    let root = sim.add_node(Config::default().name("chain0").root(true));
    let c1 = sim.add_node(Config::default().name("chain1"));
    let c2 = sim.add_node(Config::default().name("chain2"));
    for n in [c1, c2] {
        sim.turn(n, |node, now| node.subscribe("topic1", now))
            .unwrap();
    }
    connect_all(&mut sim, &[(c1, root), (c2, root)]);
    sim.turn(c1, |node, now| {
        node.publish("topic1", Bytes::from_static(b"test0"), now)
    })
    .unwrap();
    assert!(sim.run_until(W3, |s| s.received(c2).len() == 1));
    for k in 1..6 {
        let msg = Bytes::from(format!("test{k}"));
        sim.turn(root, |node, now| node.publish("topic1", msg, now))
            .unwrap();
    }
    assert!(sim.run_until(W3, |s| s.received(c2).len() == 6));
    let got: Vec<Bytes> = sim.received(c2).into_iter().map(|(_, p)| p).collect();
    let want: Vec<Bytes> = (0..6).map(|k| Bytes::from(format!("test{k}"))).collect();
    assert_eq!(got, want);
    assert_eq!(sim.received(root).len(), 0);
}

// ----- 12.9 further scenarios ---------------------------------------------------------------

fn subscribed(sim: &mut Sim, names: &[(&str, &str)]) -> Vec<Idx> {
    names
        .iter()
        .map(|(name, topic)| {
            let n = sim.add_node(Config::default().name(*name).reconnections(0));
            sim.turn(n, |node, now| node.subscribe(topic, now)).unwrap();
            n
        })
        .collect()
}

#[test]
fn triangle_and_square_deliver_exactly_once() {
    let mut sim = Sim::new(20);
    let n = subscribed(&mut sim, &[("A", "t"), ("C", "t"), ("D", "t")]);
    connect_all(&mut sim, &[(n[0], n[1]), (n[1], n[2]), (n[2], n[0])]);
    sim.turn(n[0], |node, now| {
        node.publish("t", Bytes::from_static(b"x"), now)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        [
            sim.received(n[0]).len(),
            sim.received(n[1]).len(),
            sim.received(n[2]).len()
        ],
        [0, 1, 1]
    );

    // A cycle of four: relays skip the origin, and the origin records its own message, so it
    // never gets it back; the opposite node gets two copies and drops one.
    let mut sim = Sim::new(21);
    let n = subscribed(&mut sim, &[("A", "t"), ("B", "t"), ("C", "t"), ("D", "t")]);
    connect_all(
        &mut sim,
        &[(n[0], n[1]), (n[1], n[2]), (n[2], n[3]), (n[3], n[0])],
    );
    sim.turn(n[0], |node, now| {
        node.publish("t", Bytes::from_static(b"x"), now)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(1));
    let got: Vec<usize> = n.iter().map(|&i| sim.received(i).len()).collect();
    assert_eq!(got, [0, 1, 1, 1]);
    assert_eq!(sim.node(n[2]).counters().duplicates, 1);
    assert_eq!(sim.node(n[0]).counters().duplicates, 0);
}

#[test]
fn non_subscribed_relay_blocks_propagation() {
    let mut sim = Sim::new(22);
    let n = subscribed(&mut sim, &[("A", "t"), ("B", "x"), ("C", "t")]);
    connect_all(&mut sim, &[(n[0], n[1]), (n[1], n[2])]);
    let before = sim.deliveries;
    sim.turn(n[0], |node, now| {
        node.publish("t", Bytes::from_static(b"x"), now)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.received(n[2]).len(), 0);
    assert_eq!(sim.received(n[1]).len(), 0);
    // Sender-side routing: nothing was even sent to B.
    assert_eq!(sim.deliveries, before);
}

#[test]
fn abrupt_death_is_noticed_at_once_and_healed_by_redial() {
    let mut sim = Sim::new(23);
    let a = sim.add_node(Config::default().name("a"));
    let b = sim.add_node(Config::default().name("b").seed(99));
    connect_all(&mut sim, &[(a, b)]);
    sim.crash(b);
    let t0 = sim.now();
    assert!(sim.run_until(Duration::from_secs(1), |s| s.edge_count(a) == 0));
    assert!(sim.now() - t0 <= Duration::from_millis(10));
    let lost = sim.events(a).iter().any(|(_, e)| {
        matches!(
            e,
            Event::PeerLost {
                reason: DisconnectReason::ConnectionLost,
                reconnecting: true,
                ..
            }
        )
    });
    assert!(lost);
    // Redials fail while b is down, then succeed once it listens again.
    sim.run_for(Duration::from_secs(5));
    assert!(sim.node(a).reconnecting() == 1);
    sim.restart(b, None);
    let t1 = sim.now();
    assert!(sim.run_until(Duration::from_secs(31), |s| s.connected(a, b)));
    assert!(sim.now() - t1 <= Duration::from_secs(30), "back-off bound");
    let reconnected = sim.events(a).iter().any(|(_, e)| {
        matches!(
            e,
            Event::PeerConnected {
                reconnected: true,
                ..
            }
        )
    });
    assert!(reconnected);
    assert_eq!(sim.node(a).reconnecting(), 0);
}

// ----- §3.6 observed topologies -------------------------------------------------------------

fn hub(seed: u64, topics: &[&str], max_connections: usize) -> (Sim, Idx, Vec<Idx>) {
    let mut sim = Sim::new(seed);
    let root = sim.add_node(Config::default().name("Root").root(true));
    let mut nodes = Vec::new();
    for (i, t) in topics.iter().enumerate() {
        let n = sim.add_node(
            Config::default()
                .name(format!("N{}", i + 1))
                .max_connections(max_connections)
                .discovery_timeout(Duration::from_millis(300)),
        );
        sim.turn(n, |node, now| node.subscribe(t, now)).unwrap();
        connect_all(&mut sim, &[(n, root)]);
        discover(&mut sim, n, OnPair::Disconnect);
        nodes.push(n);
    }
    (sim, root, nodes)
}

#[test]
fn root_hub_two_topics() {
    let (sim, r, n) = hub(24, &["A", "B", "A", "B", "A", "B", "A"], 5);
    let want = set(&[
        (r, n[0]),
        (r, n[1]),
        (n[0], n[2]),
        (n[0], n[4]),
        (n[0], n[6]),
        (n[1], n[3]),
        (n[1], n[5]),
    ]);
    assert_eq!(sim.edge_set(), want);
    assert!(n.iter().all(|&i| sim.node(i).is_paired()));
}

#[test]
fn saturated_members_forward_so_clusters_do_not_fragment() {
    let (sim, r, n) = hub(25, &["A"; 7], 2);
    // Python fragments this into {N1,N2,N3}, {N4,N5,N6}, {N7}; forwarding keeps one cluster.
    let edges = sim.edge_set();
    let mut reach = BTreeSet::from([n[0]]);
    loop {
        let before = reach.len();
        for &(a, b) in &edges {
            if a != r && b != r && (reach.contains(&a) || reach.contains(&b)) {
                reach.insert(a);
                reach.insert(b);
            }
        }
        if reach.len() == before {
            break;
        }
    }
    assert_eq!(reach.len(), 7, "A-cluster fragmented: {edges:?}");
    // Only the anchor keeps its root link.
    let root_links: Vec<_> = edges.iter().filter(|(a, b)| *a == r || *b == r).collect();
    assert_eq!(root_links.len(), 1);
}

#[test]
fn clusters_formed_apart_merge_through_one_origin() {
    // Two clusters of "t" formed without knowing of each other: {a1, m1} and {a2, m2}. A newcomer
    // linked to both discovers: one member of each answers, the newcomer accepts both links (they
    // come from different clusters), and the smaller cluster id spreads to all.
    let mut sim = Sim::new(26);
    let nodes: Vec<Idx> = ["a1", "m1", "a2", "m2", "x", "y", "new"]
        .iter()
        .map(|n| {
            sim.add_node(
                Config::default()
                    .name(*n)
                    .discovery_timeout(Duration::from_secs(1)),
            )
        })
        .collect();
    let [a1, m1, a2, m2, x, y, new] = nodes[..] else {
        unreachable!()
    };
    for n in [a1, m1, a2, m2, new] {
        sim.turn(n, |node, now| node.subscribe("t", now)).unwrap();
    }
    for n in [x, y] {
        sim.turn(n, |node, now| node.subscribe("other", now))
            .unwrap();
    }
    sim.turn(a1, |node, now| node.set_paired("t", now)).unwrap();
    sim.turn(a2, |node, now| node.set_paired("t", now)).unwrap();
    connect_all(&mut sim, &[(m1, a1), (m2, a2)]);
    discover(&mut sim, m1, OnPair::None);
    discover(&mut sim, m2, OnPair::None);
    let c1 = sim.node(m1).cluster_of("t").unwrap();
    let c2 = sim.node(m2).cluster_of("t").unwrap();
    assert_ne!(c1, c2);
    // The newcomer reaches each cluster only through a non-member relay.
    connect_all(&mut sim, &[(new, x), (x, a1), (new, y), (y, a2)]);
    discover(&mut sim, new, OnPair::None);
    sim.run_for(W3);
    assert!(
        sim.connected(new, a1) && sim.connected(new, a2),
        "{:?}",
        sim.edge_set()
    );
    let smallest = c1.min(c2);
    for n in [a1, m1, a2, m2, new] {
        assert_eq!(sim.node(n).cluster_of("t"), Some(smallest), "node {n}");
    }
}

#[test]
fn random_meshes_converge_to_one_cluster_per_topic() {
    for seed in 0..6u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut sim = Sim::new(seed);
        sim.record_events = false;
        let n = 60;
        let subs: Vec<usize> = (0..n).map(|_| rng.usize(..3)).collect();
        for (i, &t) in subs.iter().enumerate() {
            let idx = sim.add_node(Config::default().name(format!("n{i}")));
            sim.turn(idx, |node, now| node.subscribe(&format!("t{t}"), now))
                .unwrap();
            if i > 0 {
                sim.connect(idx, rng.usize(..i));
            }
        }
        sim.run_for(Duration::from_secs(1));
        for i in 0..n {
            sim.run_for(Duration::from_millis(rng.u64(..100)));
            sim.turn(i, |node, now| node.discover(now)).unwrap();
        }
        assert!(sim.run_until(Duration::from_secs(30), |s| (0..n)
            .all(|i| s.node(i).is_paired())));
        sim.run_for(Duration::from_secs(1));
        let edges = sim.edge_set();
        for t in 0..3 {
            let members: BTreeSet<Idx> = (0..n).filter(|&i| subs[i] == t).collect();
            let Some(&first) = members.iter().next() else {
                continue;
            };
            let mut reach = BTreeSet::from([first]);
            loop {
                let before = reach.len();
                for &(a, b) in &edges {
                    if members.contains(&a)
                        && members.contains(&b)
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
            assert_eq!(reach, members, "seed {seed}: topic t{t} split");
        }
    }
}
