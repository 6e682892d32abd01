//! Node-wide bounds against hostile peers: one memory budget for every connection, status
//! replies never larger than their query, dials of the node's own bounded in rate, addresses a
//! peer cannot reach, and settings checked once.

use super::behaviour::{dials, discovery_frame};
use super::*;

const MIB: usize = 1 << 20;

/// A frame header announcing `len` body bytes, followed by `have` of them.
fn unfinished_frame(len: usize, have: usize) -> Vec<u8> {
    let mut v = (len as u32).to_be_bytes().to_vec();
    v.resize(4 + have, 0xA5);
    v
}

fn shed_events(outs: &[Output]) -> usize {
    outs.iter()
        .filter(|o| {
            matches!(o, Output::Event(Event::BadPeer { reason: DisconnectReason::LimitExceeded(r), .. })
                if r == "node memory budget")
        })
        .count()
}

/// The running totals agree with a recount, and stay within the budget.
fn check_memory(n: &Node) {
    let m = n.memory();
    assert_eq!(m, n.memory_recounted(), "running totals drifted");
    assert!(m.inbound + m.outbound <= m.budget, "over the budget: {m:?}");
}

#[test]
fn frames_before_the_hello_are_held_to_max_hello_len() {
    let (mut n, now) = node(Config::default().max_hello_len(64 * 1024));
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &unfinished_frame(100_000, 10), now);
    let outs = drain(&mut n);
    assert!(
        closed(&outs, ConnId(1)),
        "a big frame before the Hello was kept"
    );
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::ProtocolError(_)))
    ));
    assert_eq!(n.memory().inbound, 0);
    // After its Hello, a peer may send frames up to max_frame_len.
    peer(&mut n, 2, 7, &[], now);
    n.handle_bytes(ConnId(2), &unfinished_frame(100_000, 50_000), now);
    assert!(n.is_connected_to(NodeId(7)));
    assert_eq!(n.memory().inbound, 50_004);
    check_memory(&n);
    n.handle_closed(ConnId(2), now);
    assert_eq!(n.memory().inbound, 0);
}

#[test]
fn many_peers_pushing_unfinished_frames_stay_within_the_budget() {
    // 32 MiB in all: 24 MiB for connections.
    let cfg = Config::default()
        .max_memory(32 * MIB)
        .max_frame_len(4 * MIB)
        .max_outbound(16 * MIB);
    let (mut n, now) = node(cfg);
    assert_eq!(n.memory().budget, 24 * MIB);
    let mut shed = 0;
    for c in 1..=20u64 {
        peer(&mut n, c, 100 + c as u128, &["t"], now);
        // Most of a 4 MiB frame, 64 KiB at a time, never finished.
        let chunk = vec![0xA5; 64 * 1024];
        n.handle_bytes(ConnId(c), &(4 * MIB as u32).to_be_bytes(), now);
        for _ in 0..48 {
            n.handle_bytes(ConnId(c), &chunk, now);
            check_memory(&n);
        }
        shed += shed_events(&drain(&mut n));
    }
    // 20 × 3 MiB pushed against 24 MiB: at least 12 peers had to go, and the rest fit.
    assert!(shed >= 12, "only {shed} dropped");
    assert_eq!(n.counters().memory_shed, shed as u64);
    assert!(n.connection_count() <= 8);
    // A new peer still gets in, and its whole frames still count.
    peer(&mut n, 50, 999, &["t"], now);
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    let p = frame(&Message::Publish(crate::message::Publish {
        origin: NodeId(999),
        seq: 1,
        topic: "t".into(),
        ttl: 1,
        hops: 1,
        payload: Bytes::from_static(b"still heard"),
    }));
    n.handle_bytes(ConnId(50), &p, now);
    assert!(drain(&mut n).iter().any(
        |o| matches!(o, Output::Deliver(Delivery::Message(m)) if &m.payload[..] == b"still heard")
    ));
    check_memory(&n);
}

#[test]
fn outbound_bytes_hold_publishers_from_half_the_budget_and_relays_shed_the_biggest() {
    // 24 MiB for connections: publishing waits from 12 MiB waiting, resumes under 6 MiB.
    let cfg = Config::default()
        .max_memory(32 * MIB)
        .max_frame_len(2 * MIB)
        .max_outbound(64 * MIB)
        .ttl(8);
    let (mut n, now) = node(cfg);
    n.subscribe("a", now).unwrap();
    peer(&mut n, 1, 7, &["a"], now);
    peer(&mut n, 2, 8, &["a"], now);
    peer(&mut n, 3, 9, &["b"], now);
    drain(&mut n);
    let mib = Bytes::from(vec![1u8; MIB]);
    let mut published = 0;
    while !n.publish_would_wait("b") {
        n.publish("a", mib.clone(), now).unwrap();
        published += 1;
        check_memory(&n);
        assert!(published < 20, "publishing never waited");
    }
    // Two non-reading subscribers, 1 MiB (and a header) each per publish: held once over
    // 12 MiB, for every topic (the budget is the node's).
    assert_eq!(published, 6);
    assert!(n.publish_would_wait("a"));
    let released = n.congestion_released();
    // Peer 7 reads everything: 6 MiB still wait, over a quarter: publishers still wait.
    let waiting = n.outbound(ConnId(1)).len();
    n.advance(ConnId(1), waiting, now);
    assert!(n.publish_would_wait("a"));
    assert_eq!(n.congestion_released(), released);
    // Peer 8 reads one message: under a quarter, publishers go on.
    n.advance(ConnId(2), MIB, now);
    assert!(
        n.congestion_released() > released,
        "waiting publishers not woken"
    );
    assert!(!n.publish_would_wait("a"));
    // Relays do not wait: peer 9 publishes on "a" through this node to 7 and 8, who stop
    // reading. The node drops the peer that holds the most, and stays within its budget.
    let mut shed = 0;
    for seq in 1..=40 {
        let p = frame(&Message::Publish(crate::message::Publish {
            origin: NodeId(9),
            seq,
            topic: "a".into(),
            ttl: 8,
            hops: 1,
            payload: mib.clone(),
        }));
        n.handle_bytes(ConnId(3), &p, now);
        check_memory(&n);
        shed += shed_events(&raw_events(&mut n));
    }
    assert!(shed >= 1, "nothing was dropped");
    assert!(!n.is_connected_to(NodeId(8)), "the biggest holder stayed");
    assert!(n.is_connected_to(NodeId(9)), "the publisher was dropped");
}

/// Events among the raw outputs (without taking any bytes).
fn raw_events(n: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| n.poll_output())
        .filter_map(|o| match o {
            crate::Output::Event(e) => Some(Output::Event(e)),
            _ => None,
        })
        .collect()
}

#[test]
fn closed_connections_bytes_count_and_the_biggest_holder_goes_first() {
    let cfg = Config::default()
        .max_memory(32 * MIB)
        .max_frame_len(2 * MIB)
        .max_outbound(64 * MIB);
    let (mut n, now) = node(cfg);
    peer(&mut n, 1, 7, &["a"], now);
    peer(&mut n, 2, 8, &["b"], now);
    drain(&mut n);
    let mib = Bytes::from(vec![1u8; MIB]);
    for _ in 0..20 {
        n.publish("a", mib.clone(), now).unwrap();
    }
    // Peer 7 is closed with 20 MiB it has not taken: they still count.
    n.close(NodeId(7), now).unwrap();
    raw_events(&mut n);
    assert_eq!(n.closing_count(), 1);
    assert!(
        n.memory().outbound > 20 * MIB,
        "a closing connection's bytes are not counted"
    );
    check_memory(&n);
    let bad = n.counters().bad_peers;
    // 5 MiB for peer 8 takes the node over 24 MiB: the closed connection holds the most, so
    // its bytes go (not peer 8), and the runtime is told again to close it.
    let mut outs = Vec::new();
    for _ in 0..5 {
        n.publish("b", mib.clone(), now).unwrap();
        outs.extend(std::iter::from_fn(|| n.poll_output()));
        check_memory(&n);
    }
    assert_eq!(n.closing_count(), 0);
    assert!(n.is_connected_to(NodeId(8)));
    assert!(outs
        .iter()
        .any(|o| matches!(o, crate::Output::Close { conn } if *conn == ConnId(1))));
    assert_eq!(n.counters().memory_shed, 1);
    assert_eq!(
        n.counters().bad_peers,
        bad,
        "dropping a closed connection's bytes is no bad peer"
    );
    assert!(n.memory().outbound < 6 * MIB);
    // A small closed connection (peer 9, 2 MiB) stays when an open one holds more.
    peer(&mut n, 3, 9, &["c"], now);
    raw_events(&mut n);
    for _ in 0..2 {
        n.publish("c", mib.clone(), now).unwrap();
    }
    n.close(NodeId(9), now).unwrap();
    raw_events(&mut n);
    assert_eq!(n.closing_count(), 1);
    // Peer 8 past the budget: it goes, as a bad peer named in the event.
    let mut events = Vec::new();
    for _ in 0..20 {
        n.publish("b", mib.clone(), now).unwrap();
        events.extend(raw_events(&mut n));
        check_memory(&n);
    }
    assert!(!n.is_connected_to(NodeId(8)));
    assert!(events.iter().any(|o| matches!(
        o,
        Output::Event(Event::BadPeer { peer: Some(p), reason: DisconnectReason::LimitExceeded(r), .. })
            if *p == NodeId(8) && r == "node memory budget"
    )));
    assert_eq!(n.counters().memory_shed, 2);
    assert_eq!(n.counters().bad_peers, bad + 1);
    // Peer 9's 2 MiB stay (the smaller closed connection was not dropped first), and peer
    // 8's connection holds only its goodbye.
    assert_eq!(n.closing_count(), 2);
    let left = n.memory().outbound;
    assert!(
        (2 * MIB..2 * MIB + 1024).contains(&left),
        "{left} bytes left to write"
    );
}

#[test]
fn a_status_reply_is_never_larger_than_its_query() {
    let (mut n, now) = node(Config::default());
    for i in 0..200 {
        n.subscribe(&format!("{i:0>100}"), now).unwrap();
    }
    drain(&mut n);
    let query = |pad: usize| {
        crate::codec::encode_value(&crate::message::Datagram::StatusRequest {
            token: 1,
            padding: vec![0; pad].into(),
        })
        .unwrap()
    };
    let reply = |n: &mut Node, q: &[u8]| {
        n.handle_datagram(addr(1), q, now);
        drain(n).into_iter().find_map(|o| match o {
            Output::Datagram { data, .. } => Some(data),
            _ => None,
        })
    };
    let status = |data: &Bytes| match crate::codec::decode_value(data).unwrap() {
        crate::message::Datagram::StatusReply { status, .. } => status,
        other => panic!("not a status reply: {other:?}"),
    };
    // An unpadded query (a forged source's cheapest) gets nothing: not even the brief status
    // fits in it.
    let tiny = query(0);
    assert!(
        reply(&mut n, &tiny).is_none(),
        "a reply larger than a bare query"
    );
    // A query of 1200 bytes gets the brief status: no topics, marked truncated.
    let q = query(1180);
    let r = reply(&mut n, &q).expect("a brief reply");
    assert!(r.len() <= q.len());
    let s = status(&r);
    assert!(s.truncated && s.paired.is_empty());
    assert_eq!(s.id, n.id());
    // A query as large as the whole status gets all of it.
    let q = query(40_000);
    let r = reply(&mut n, &q).expect("a full reply");
    assert!(r.len() <= q.len());
    let s = status(&r);
    assert!(!s.truncated);
    assert_eq!(s.paired.len(), 200);
}

#[test]
fn a_truncated_status_is_asked_again_once_with_a_full_size_query() {
    let (mut n, now) = node(Config::default());
    let token = n.query_status(addr(5), now).unwrap();
    let outs = drain(&mut n);
    let [Output::Datagram { to, data }] = outs.as_slice() else {
        panic!("expected one query: {outs:?}")
    };
    assert_eq!(
        (*to, data.len()),
        (addr(5), crate::message::STATUS_QUERY_LEN)
    );
    let reply = |truncated: bool| {
        crate::codec::encode_value(&crate::message::Datagram::StatusReply {
            token,
            status: crate::message::Status {
                truncated,
                ..Default::default()
            },
        })
        .unwrap()
    };
    n.handle_datagram(addr(5), &reply(true), now);
    let outs = drain(&mut n);
    let [Output::Datagram { data, .. }] = outs.as_slice() else {
        panic!("expected the query again: {outs:?}")
    };
    assert_eq!(data.len(), n.config().max_datagram_len);
    // Truncated again: delivered as it is, not asked a third time.
    n.handle_datagram(addr(5), &reply(true), now);
    let outs = drain(&mut n);
    assert!(matches!(
        outs.as_slice(),
        [Output::Deliver(Delivery::Status { status: Some(s), .. })] if s.truncated
    ));
}

#[test]
fn addresses_named_by_peers_are_dialed_at_a_bounded_rate() {
    let interval = Duration::from_millis(500);
    let (mut n, now) = node(Config::default().paired(true).dial_interval(interval));
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    // A peer names one address under 100 made-up origins: it is dialed once.
    let mut dialed = 0;
    for origin in 0..100u128 {
        n.handle_bytes(
            ConnId(1),
            &discovery_frame(1000 + origin, 1, "t", 1, 6050),
            now,
        );
        let outs = drain(&mut n);
        for o in &outs {
            if let Output::Dial { conn, .. } = o {
                n.handle_dial_failed(*conn, "refused", now);
            }
        }
        dialed += dials(&outs).len();
        drain(&mut n);
    }
    assert_eq!(dialed, 1);
    // After the interval, once more.
    let later = now + interval;
    n.handle_bytes(ConnId(1), &discovery_frame(5000, 1, "t", 1, 6050), later);
    assert_eq!(dials(&drain(&mut n)), vec![addr(6050)]);
}

#[test]
fn a_redial_waits_for_the_dial_interval() {
    let interval = Duration::from_secs(3);
    let (mut n, now) = node(
        Config::default()
            .dial_interval(interval)
            .reconnect_initial(Duration::from_millis(100))
            .reconnect_max(Duration::from_millis(100)),
    );
    let c = dialed(&mut n, 7, &[], now);
    n.handle_closed(c, now);
    drain(&mut n);
    let mut at = Vec::new();
    let mut t = now;
    while at.len() < 3 {
        t = n.poll_timeout().expect("a redial timer");
        n.handle_timeout(t);
        for o in drain(&mut n) {
            if let Output::Dial { conn, .. } = o {
                at.push(t);
                n.handle_dial_failed(conn, "refused", t);
            }
        }
        assert!(t < now + Duration::from_secs(60));
    }
    // The first comes after its back-off; each next one an interval after the one before.
    assert!(at[0] - now <= Duration::from_millis(100));
    assert!(
        at[1] - at[0] >= interval && at[2] - at[1] >= interval,
        "{at:?}"
    );
    let _ = t;
}

#[test]
fn only_the_side_that_dialed_redials_and_at_the_address_it_dialed() {
    let (mut n, now) = node(Config::default());
    // Peer 7 dialed us: when it goes, it is not redialed (it may be a client that exited).
    peer(&mut n, 1, 7, &[], now);
    n.handle_closed(ConnId(1), now);
    assert!(drain(&mut n).iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            reconnecting: false,
            ..
        })
    )));
    assert_eq!(n.reconnecting(), 0);
    // We dialed peer 8 at 10.0.0.8:4000; its Hello announces another address: the redial
    // goes where the first dial went.
    let at = SocketAddr::from(([10, 0, 0, 8], 4000));
    let conn = n.connect(at, now).unwrap();
    drain(&mut n);
    n.handle_connected(conn, at, Direction::Outbound, now);
    n.handle_bytes(conn, &frame(&Message::Hello(hello(8, &[]))), now);
    drain(&mut n);
    n.handle_closed(conn, now);
    assert_eq!(n.reconnecting(), 1);
    assert!(n.is_redialing(NodeId(8)) && !n.is_redialing(NodeId(7)));
    let t = n.poll_timeout().unwrap();
    n.handle_timeout(t);
    assert_eq!(super::behaviour::dials(&drain(&mut n)), vec![at]);
}

#[test]
fn a_wildcard_listen_address_is_read_as_the_address_the_peer_came_from() {
    let (mut n, now) = node(Config::default());
    let remote = SocketAddr::from(([10, 1, 2, 3], 5555));
    n.handle_connected(ConnId(1), remote, Direction::Inbound, now);
    let mut h = hello(7, &[]);
    h.listen = Some(SocketAddr::from(([0, 0, 0, 0], 7777)));
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
    peer(&mut n, 2, 8, &[], now);
    drain(&mut n);
    assert_eq!(
        n.edge_info(NodeId(7)).unwrap().listen,
        Some(SocketAddr::from(([10, 1, 2, 3], 7777)))
    );
    // Its discoveries name the wildcard too: passed on with the address it came from.
    let d = frame(&Message::Discovery(crate::message::Discovery {
        id: 1,
        origin: NodeId(7),
        origin_name: "seeker".into(),
        origin_addr: SocketAddr::from(([0, 0, 0, 0], 7777)),
        topic: "t".into(),
        ttl: 5,
        on_pair: OnPair::None,
        entry: None,
    }));
    n.handle_bytes(ConnId(1), &d, now);
    let fwd: Vec<SocketAddr> = sent(&drain(&mut n), ConnId(2))
        .into_iter()
        .filter_map(|m| match m {
            Message::Discovery(d) => Some(d.origin_addr),
            _ => None,
        })
        .collect();
    assert_eq!(fwd, vec![SocketAddr::from(([10, 1, 2, 3], 7777))]);
    // A loopback address from another host means that host; from this one, it is kept.
    let far = SocketAddr::from(([10, 1, 2, 4], 5555));
    n.handle_connected(ConnId(3), far, Direction::Inbound, now);
    let mut h = hello(9, &[]);
    h.listen = Some(SocketAddr::from(([127, 0, 0, 1], 7778)));
    n.handle_bytes(ConnId(3), &frame(&Message::Hello(h)), now);
    assert_eq!(
        n.edge_info(NodeId(9)).unwrap().listen,
        Some(SocketAddr::from(([10, 1, 2, 4], 7778)))
    );
    assert_eq!(
        n.edge_info(NodeId(8)).unwrap().listen,
        Some(addr(9008)),
        "a loopback peer's loopback address was changed"
    );
}

#[test]
fn an_advertised_address_is_what_peers_are_told() {
    let public = SocketAddr::from(([192, 0, 2, 1], 8511));
    let (mut n, now) = node(Config::default().advertise(Some(public)));
    assert_eq!(n.listen_addr(), Some(public));
    let conn = n.connect(addr(9007), now).unwrap();
    drain(&mut n);
    n.handle_connected(conn, addr(9007), Direction::Outbound, now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, conn).first(),
        Some(Message::Hello(h)) if h.listen == Some(public)
    ));
}

#[test]
fn settings_are_checked_once_with_the_setting_named() {
    let err = Node::new(Config::default().keepalive_jitter(f64::NAN), None).unwrap_err();
    assert_eq!(err.setting, "keepalive_jitter");
    let cases = [
        (Config::default().max_edges(0), "max_edges"),
        (
            Config::default().idle_timeout(Duration::ZERO),
            "idle_timeout",
        ),
        (
            Config::default().reconnect_max(Duration::from_millis(1)),
            "reconnect_max",
        ),
        (
            Config::default().max_datagram_len(70_000),
            "max_datagram_len",
        ),
        (Config::default().max_memory(MIB), "max_memory"),
        (
            Config::default().advertise(Some(SocketAddr::from(([0, 0, 0, 0], 1)))),
            "advertise",
        ),
        (Config::default().name(""), "name"),
        (
            Config::default().rpc_timeout(Duration::from_secs(u64::MAX)),
            "rpc_timeout",
        ),
    ];
    for (cfg, setting) in cases {
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.setting, setting, "{err}");
        assert!(err.to_string().contains(setting));
    }
}

#[test]
fn one_host_cannot_take_every_handshake_slot() {
    let (mut n, now) = node(
        Config::default()
            .max_handshakes(16)
            .max_handshakes_per_ip(4),
    );
    let from = |host: u8, port: u16| SocketAddr::from(([10, 0, 0, host], port));
    // A flood from one host keeps only its newest four.
    for c in 1..=10u64 {
        n.handle_connected(ConnId(c), from(1, c as u16), Direction::Inbound, now);
    }
    assert_eq!(n.connection_count(), 4);
    let outs = drain(&mut n);
    for c in 1..=6u64 {
        assert!(
            closed(&outs, ConnId(c)),
            "socket {c} of the flooding host kept"
        );
    }
    // Another host's sockets are not dropped for it.
    for c in 11..=14u64 {
        n.handle_connected(ConnId(c), from(2, c as u16), Direction::Inbound, now);
    }
    for c in 15..=20u64 {
        n.handle_connected(ConnId(c), from(1, c as u16), Direction::Inbound, now);
    }
    let outs = drain(&mut n);
    for c in 11..=14u64 {
        assert!(
            !closed(&outs, ConnId(c)),
            "another host's socket {c} was dropped"
        );
    }
    assert_eq!(n.connection_count(), 8);
}

#[test]
fn wildcard_subscriptions_deliver_relay_and_filter_at_the_sender() {
    let (mut n, now) = node(Config::default());
    assert!(matches!(
        n.subscribe("sensors*", now),
        Err(CommandError::BadPattern(_))
    ));
    n.subscribe("sensors/*/temperature", now).unwrap();
    assert!(n.is_subscribed("sensors/kitchen/temperature"));
    assert!(!n.is_subscribed("sensors/kitchen/humidity"));
    // Publishing to a pattern is refused.
    assert!(matches!(
        n.publish("sensors/*/temperature", Bytes::from_static(b"x"), now),
        Err(CommandError::BadPattern(_))
    ));
    // Peer 7 wants everything under alerts, peer 8 one topic, peer 9 sensors by pattern.
    peer(&mut n, 1, 7, &["alerts/**"], now);
    peer(&mut n, 2, 8, &["sensors/kitchen/temperature"], now);
    peer(&mut n, 3, 9, &["sensors/**"], now);
    drain(&mut n);
    n.publish("alerts/fire/kitchen", Bytes::from_static(b"a"), now)
        .unwrap();
    n.publish("sensors/kitchen/temperature", Bytes::from_static(b"t"), now)
        .unwrap();
    let outs = drain(&mut n);
    let topics = |c: u64| -> Vec<String> {
        sent(&outs, ConnId(c))
            .into_iter()
            .filter_map(|m| match m {
                Message::Publish(p) => Some(p.topic),
                _ => None,
            })
            .collect()
    };
    assert_eq!(topics(1), vec!["alerts/fire/kitchen"]);
    assert_eq!(topics(2), vec!["sensors/kitchen/temperature"]);
    assert_eq!(topics(3), vec!["sensors/kitchen/temperature"]);
    // A publish from peer 9 on a topic our pattern matches: delivered here, and relayed to the
    // neighbours that want it (8 by name), not to 7.
    let p = frame(&Message::Publish(crate::message::Publish {
        origin: NodeId(9),
        seq: 1,
        topic: "sensors/kitchen/temperature".into(),
        ttl: 5,
        hops: 1,
        payload: Bytes::from_static(b"21.5"),
    }));
    n.handle_bytes(ConnId(3), &p, now);
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(o, Output::Deliver(Delivery::Message(m)) if m.topic == "sensors/kitchen/temperature")));
    assert_eq!(sent(&outs, ConnId(2)).len(), 1);
    assert!(sent(&outs, ConnId(1)).is_empty());
}

#[test]
fn a_peer_with_too_many_or_too_deep_patterns_is_refused() {
    let (mut n, now) = node(Config::default().max_peer_patterns(2));
    let outs = peer(&mut n, 1, 7, &["a/*", "b/*", "c/*"], now);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(r))) if r.contains("patterns")
    ));
    peer(&mut n, 2, 8, &["a/*"], now);
    let deep = vec!["*"; 20].join("/");
    n.handle_bytes(ConnId(2), &frame(&Message::Topics(vec![deep])), now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(2)).last(),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(r))) if r.contains("levels")
    ));
}

#[test]
fn a_wildcard_seeker_pairs_with_a_member_of_a_topic_it_matches() {
    let (mut n, now) = node(Config::default().paired(true));
    n.subscribe("sensors/kitchen", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.handle_bytes(
        ConnId(1),
        &discovery_frame(50, 1, "sensors/*", 5, 6050),
        now,
    );
    assert_eq!(dials(&drain(&mut n)), vec![addr(6050)]);
    // A pattern it does not match: no answer.
    n.handle_bytes(ConnId(1), &discovery_frame(51, 1, "alerts/*", 5, 6051), now);
    assert!(dials(&drain(&mut n)).is_empty());
}

#[test]
fn status_replies_are_bounded_per_second() {
    let (mut n, now) = node(Config::default().status_replies_per_sec(50));
    drain(&mut n);
    let query = crate::codec::encode_value(&crate::message::Datagram::StatusRequest {
        token: 1,
        padding: vec![0; 1180].into(),
    })
    .unwrap();
    let replies = |n: &mut Node, at: Instant, count: usize| {
        for _ in 0..count {
            n.handle_datagram(addr(1), &query, at);
        }
        drain(n)
            .into_iter()
            .filter(|o| matches!(o, Output::Datagram { .. }))
            .count()
    };
    assert_eq!(replies(&mut n, now, 80), 50);
    assert_eq!(n.counters().status_dropped, 30);
    assert_eq!(replies(&mut n, now + Duration::from_millis(999), 5), 0);
    assert_eq!(replies(&mut n, now + Duration::from_secs(1), 80), 50);
    let (mut off, now) = node(Config::default().status_replies_per_sec(0));
    drain(&mut off);
    assert_eq!(replies(&mut off, now, 3), 0);
}

/// A node with a 24 KiB memory budget (18 KiB for connection buffers) and peers 7, 8 and 9
/// subscribed to `t`, everything sent so far taken.
fn small_budget() -> (Node, Instant) {
    let (mut n, now) = node(
        Config::default()
            .max_memory(24 * 1024)
            .max_frame_len(4096)
            .max_outbound(8192),
    );
    assert_eq!(n.config().buffer_budget(), 18 * 1024);
    for (c, id) in [(1, 7), (2, 8), (3, 9)] {
        peer(&mut n, c, id, &["t"], now);
    }
    drain(&mut n);
    assert_eq!(n.memory().outbound, 0);
    (n, now)
}

/// A compact publish on `t` is 34 bytes and its payload.
const PUBLISH_ON_T: usize = 34;

#[test]
fn publishers_wait_from_just_past_half_the_budget() {
    let (mut n, now) = small_budget();
    // Exactly half (9 KiB, as one publish to each of three peers): not yet.
    let each = 3 * 1024 - PUBLISH_ON_T;
    n.publish("t", Bytes::from(vec![0; each]), now).unwrap();
    assert_eq!(n.memory().outbound, 9 * 1024);
    assert!(!n.publish_would_wait("u"), "waiting at exactly half");
    // One publish more: past half, a publish on any topic waits.
    n.publish("t", Bytes::new(), now).unwrap();
    assert!(n.publish_would_wait("u"));
}

#[test]
fn nothing_is_shed_at_exactly_the_budget() {
    let (mut n, now) = small_budget();
    // Twice 3 KiB to each of three peers: 18 KiB exactly.
    let each = 3 * 1024 - PUBLISH_ON_T;
    for _ in 0..2 {
        n.publish("t", Bytes::from(vec![0; each]), now).unwrap();
    }
    assert_eq!(n.memory().outbound, n.config().buffer_budget());
    assert_eq!(n.counters().memory_shed, 0, "shed at exactly the budget");
    assert_eq!(n.edge_count(), 3);
    // Past it: the biggest holder goes.
    n.publish("t", Bytes::new(), now).unwrap();
    assert_eq!(n.counters().memory_shed, 1);
    assert_eq!(n.edge_count(), 2);
}

/// What the node holds of partial frames is counted exactly however the bytes are cut (the
/// running total always equals a recount of every buffer).
#[test]
fn partial_frames_are_counted_exactly_however_they_are_cut() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    let ping = |size: usize| {
        frame(&Message::Ping {
            id: 1,
            padding: Bytes::from(vec![0; size]),
        })
    };
    let mut stream = Vec::new();
    for size in [10, 3000, 100, 70_000, 5] {
        stream.extend(ping(size));
    }
    for cut in [1, 2, 3, 5, 7, 100, 1500, 4096, 65_536] {
        for chunk in stream.chunks(cut) {
            n.handle_bytes(ConnId(1), chunk, now);
            assert_eq!(
                n.memory().inbound,
                n.memory_recounted().inbound,
                "cut {cut}"
            );
        }
        assert!(n.is_connected_to(NodeId(7)));
        drain(&mut n);
        let _ = n.take_outbound(ConnId(1), now);
    }
}

/// Exactly `max_handshakes` sockets in their handshake beside `max_edges` edges: all kept (and
/// edges never count as handshake slots); one more handshake drops the oldest handshake.
#[test]
fn handshake_slots_and_the_connection_table_hold_exactly_their_bounds() {
    let (mut n, now) = node(Config::default().max_edges(1).max_handshakes(2));
    peer(&mut n, 1, 7, &[], now);
    let from = |host: u8| SocketAddr::from(([10, 0, 0, host], 40000));
    n.handle_connected(ConnId(2), from(2), Direction::Inbound, now);
    n.handle_connected(ConnId(3), from(3), Direction::Inbound, now);
    let outs = drain(&mut n);
    for c in 1..=3 {
        assert!(
            !closed(&outs, ConnId(c)),
            "connection {c} dropped at the bound"
        );
    }
    assert!(n.is_connected_to(NodeId(7)));
    assert_eq!(n.connection_count(), 3);
    n.handle_connected(ConnId(4), from(4), Direction::Inbound, now);
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(2)), "the oldest handshake stays");
    assert!(!closed(&outs, ConnId(1)) && !closed(&outs, ConnId(3)) && !closed(&outs, ConnId(4)));
    assert!(n.is_connected_to(NodeId(7)));
}

/// An inbound connection reported with an id of the outbound range is refused at once (the
/// runtime numbered it wrong), and so is an id still open.
#[test]
fn an_inbound_connection_with_a_wrong_id_is_refused() {
    let (mut n, now) = node(Config::default());
    let wrong = ConnId(ConnId::OUTBOUND_BIT | 5);
    n.handle_connected(wrong, addr(5), Direction::Inbound, now);
    assert!(closed(&drain(&mut n), wrong));
    assert_eq!(n.connection_count(), 0);
    peer(&mut n, 1, 7, &[], now);
    n.handle_connected(ConnId(1), addr(6), Direction::Inbound, now);
    assert!(closed(&drain(&mut n), ConnId(1)));
}
