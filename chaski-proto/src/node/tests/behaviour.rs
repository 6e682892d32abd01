//! Behaviour of each protocol handler, driven by hand: what a node answers, what it delivers,
//! what it relays, and exactly where each bound starts to refuse.

use super::*;
use crate::id::RequestId;
use crate::message::{Datagram, Publish};

fn publish_frame(
    origin: u128,
    seq: u64,
    topic: &str,
    ttl: u8,
    hops: u8,
    payload: &[u8],
) -> Vec<u8> {
    frame(&Message::Publish(Publish {
        origin: NodeId(origin),
        seq,
        topic: topic.into(),
        ttl,
        hops,
        payload: Bytes::copy_from_slice(payload),
    }))
}

fn messages(outs: &[Output]) -> Vec<Received> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Deliver(Delivery::Message(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn publishes(outs: &[Output], conn: ConnId) -> Vec<Publish> {
    sent(outs, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_ping_is_answered_with_its_padding_and_oversized_padding_is_refused() {
    let (mut n, now) = node(Config::default().max_ping_padding(8));
    peer(&mut n, 1, 7, &[], now);
    let pad = Bytes::from_static(b"12345678");
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Ping {
            id: 5,
            padding: pad.clone(),
        }),
        now,
    );
    let outs = drain(&mut n);
    assert_eq!(
        sent(&outs, ConnId(1)),
        vec![Message::Pong {
            id: 5,
            padding: pad
        }]
    );
    // One byte over the limit: a goodbye naming the limit, no pong.
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Ping {
            id: 6,
            padding: Bytes::from_static(b"123456789"),
        }),
        now,
    );
    let outs = drain(&mut n);
    let msgs = sent(&outs, ConnId(1));
    assert!(!msgs.iter().any(|m| matches!(m, Message::Pong { .. })));
    assert!(matches!(
        msgs.last(),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(m))) if m.contains("9 bytes")
    ));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn a_pong_gives_the_round_trip_and_unknown_pongs_are_ignored() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    let id = n.ping(NodeId(7), 3, now).unwrap();
    let outs = drain(&mut n);
    match sent(&outs, ConnId(1)).as_slice() {
        [Message::Ping { id: i, padding }] => {
            assert_eq!(*i, id);
            assert_eq!(padding.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    let pong = |id| {
        frame(&Message::Pong {
            id,
            padding: Bytes::new(),
        })
    };
    n.handle_bytes(ConnId(1), &pong(id + 100), now);
    assert!(drain(&mut n).is_empty(), "a pong nobody asked for");
    let later = now + Duration::from_millis(10);
    n.handle_bytes(ConnId(1), &pong(id), later);
    let outs = drain(&mut n);
    assert!(matches!(
        outs.as_slice(),
        [Output::Event(Event::Latency { ping, rtt, latency, .. })]
            if *ping == id && *rtt == Duration::from_millis(10) && *latency == Duration::from_millis(5)
    ));
    let e = n.edge_info(NodeId(7)).unwrap();
    assert_eq!(e.rtt, Some(Duration::from_millis(10)));
    // The same pong again is not a second sample.
    n.handle_bytes(ConnId(1), &pong(id), later);
    assert!(drain(&mut n).is_empty());
    n.reset_latency(NodeId(7)).unwrap();
    assert_eq!(n.edge_info(NodeId(7)).unwrap().latency, None);
    assert_eq!(n.reset_latency(NodeId(9)), Err(CommandError::NotConnected));
}

#[test]
fn redial_back_off_doubles_with_jitter_up_to_the_cap() {
    let initial = Duration::from_millis(100);
    let cap = Duration::from_millis(700);
    let (mut n, mut now) = node(
        Config::default()
            .reconnections(6)
            .reconnect_initial(initial)
            .reconnect_max(cap)
            .dial_interval(Duration::ZERO),
    );
    let c = dialed(&mut n, 7, &[], now);
    n.handle_closed(c, now);
    drain(&mut n);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let t = n.poll_timeout().expect("a redial timer");
        delays.push(t - now);
        now = t;
        n.handle_timeout(now);
        let dial = drain(&mut n).into_iter().find_map(|o| match o {
            Output::Dial { conn, addr: a } => Some((conn, a)),
            _ => None,
        });
        let (conn, a) = dial.expect("a dial when the timer fires");
        assert_eq!(a, addr(9007));
        n.handle_dial_failed(conn, "refused", now);
        drain(&mut n);
    }
    // Attempt k waits between half and all of min(initial * 2^k, cap).
    for (k, d) in delays.iter().enumerate() {
        let base = (initial * (1 << k)).min(cap);
        assert!(
            *d >= base / 2 && *d <= base,
            "attempt {k} waited {d:?}, base {base:?}"
        );
    }
    assert!(delays[3] > delays[0], "the back-off grows: {delays:?}");
}

#[test]
fn unsubscribing_tells_neighbours_and_stops_delivery() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    n.subscribe("u", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    n.handle_bytes(ConnId(1), &publish_frame(7, 1, "t", 5, 1, b"a"), now);
    assert_eq!(messages(&drain(&mut n)).len(), 1);
    n.unsubscribe("t", now).unwrap();
    let outs = drain(&mut n);
    assert!(sent(&outs, ConnId(1)).contains(&Message::Topics(vec!["u".into()])));
    assert!(!n.is_subscribed("t"));
    n.handle_bytes(ConnId(1), &publish_frame(7, 2, "t", 5, 1, b"b"), now);
    assert!(messages(&drain(&mut n)).is_empty());
    // Unsubscribing from a topic not subscribed announces nothing.
    n.unsubscribe("nope", now).unwrap();
    assert!(drain(&mut n).is_empty());
    // A root keeps its internal topic.
    let (mut r, now) = node(Config::default().root(true));
    r.unsubscribe("@", now).unwrap();
    assert!(r.is_subscribed("@"));
}

#[test]
fn a_received_publish_is_delivered_once_and_relayed_with_one_less_ttl() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &["t"], now);
    peer(&mut n, 3, 9, &["other"], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &publish_frame(70, 4, "t", 5, 2, b"x"), now);
    let outs = drain(&mut n);
    let got = messages(&outs);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].origin, got[0].seq, got[0].hops, got[0].from),
        (Some(NodeId(70)), 4, 2, Some(NodeId(7)))
    );
    assert_eq!(&got[0].payload[..], b"x");
    // Relayed to the other subscriber only, with ttl - 1 and hops + 1.
    let relayed = publishes(&outs, ConnId(2));
    assert_eq!(relayed.len(), 1);
    assert_eq!((relayed[0].ttl, relayed[0].hops), (4, 3));
    assert!(
        publishes(&outs, ConnId(1)).is_empty(),
        "sent back where it came from"
    );
    assert!(
        publishes(&outs, ConnId(3)).is_empty(),
        "sent to a non-subscriber"
    );
    // The same (origin, seq) again is a duplicate: not delivered, not relayed, counted.
    n.handle_bytes(ConnId(2), &publish_frame(70, 4, "t", 5, 2, b"x"), now);
    let outs = drain(&mut n);
    assert!(messages(&outs).is_empty());
    assert!(publishes(&outs, ConnId(1)).is_empty());
    assert_eq!(n.counters().duplicates, 1);
}

#[test]
fn ttl_one_is_delivered_but_not_relayed_and_ttl_two_is_relayed_once() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &["t"], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &publish_frame(70, 1, "t", 1, 1, b"x"), now);
    let outs = drain(&mut n);
    assert_eq!(messages(&outs).len(), 1);
    assert!(publishes(&outs, ConnId(2)).is_empty(), "relayed at ttl 1");
    n.handle_bytes(ConnId(1), &publish_frame(70, 2, "t", 2, 1, b"y"), now);
    let outs = drain(&mut n);
    let relayed = publishes(&outs, ConnId(2));
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].ttl, 1);
}

#[test]
fn publishes_a_node_does_not_subscribe_are_dropped_unless_it_is_a_root() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &["t"], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &publish_frame(70, 1, "t", 5, 1, b"x"), now);
    let outs = drain(&mut n);
    assert!(messages(&outs).is_empty());
    assert!(
        publishes(&outs, ConnId(2)).is_empty(),
        "a non-subscriber relayed"
    );
    // A root relays every topic and delivers nothing it does not subscribe.
    let (mut r, now) = node(Config::default().root(true));
    peer(&mut r, 1, 7, &["t"], now);
    peer(&mut r, 2, 8, &["t"], now);
    drain(&mut r);
    r.handle_bytes(ConnId(1), &publish_frame(70, 1, "t", 5, 1, b"x"), now);
    let outs = drain(&mut r);
    assert!(messages(&outs).is_empty());
    assert_eq!(publishes(&outs, ConnId(2)).len(), 1);
    // Our own message coming back is neither delivered nor relayed.
    let me = n.id().0;
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &publish_frame(me, 99, "t", 5, 1, b"echo"), now);
    let outs = drain(&mut n);
    assert!(messages(&outs).is_empty());
    assert!(publishes(&outs, ConnId(2)).is_empty());
}

#[test]
fn own_publishes_go_only_to_subscribers_and_roots_and_are_remembered() {
    let (mut n, now) = node(Config::default().ttl(9));
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &["other"], now);
    n.handle_connected(ConnId(3), addr(3), Direction::Inbound, now);
    let mut h = hello(9, &[]);
    h.root = true;
    n.handle_bytes(ConnId(3), &frame(&Message::Hello(h)), now);
    drain(&mut n);
    let seq = n.publish("t", Bytes::from_static(b"p"), now).unwrap();
    let outs = drain(&mut n);
    let p = publishes(&outs, ConnId(1));
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].origin, p[0].seq, p[0].ttl, p[0].hops),
        (n.id(), seq, 9, 1)
    );
    assert!(publishes(&outs, ConnId(2)).is_empty());
    assert_eq!(
        publishes(&outs, ConnId(3)).len(),
        1,
        "roots get every topic"
    );
    assert_eq!(n.publish("t", Bytes::new(), now).unwrap(), seq + 1);
}

#[test]
fn size_bounds_refuse_exactly_past_the_limit() {
    let max = 1000;
    let cfg = Config::default().max_frame_len(max).max_datagram_len(200);
    // publish: payload + topic + 64 must fit in a frame.
    assert!(Node::check_publish(&cfg, "t", max - 65).is_ok());
    assert!(matches!(
        Node::check_publish(&cfg, "t", max - 64),
        Err(CommandError::PayloadTooLarge { max: m, .. }) if m == max - 65
    ));
    let (mut n, now) = node(cfg);
    peer(&mut n, 1, 7, &[], now);
    // ping: padding + 64 must fit.
    assert!(n.ping(NodeId(7), max - 64, now).is_ok());
    assert!(matches!(
        n.ping(NodeId(7), max - 63, now),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    // call: args, service and path + 128 must fit.
    let call = |n: &mut Node, len: usize| {
        n.call(
            NodeId(7),
            RemoteCall {
                service: "s",
                path: "p",
                kind: CallKind::Call,
                args: Bytes::from(vec![0; len]),
            },
            None,
            now,
        )
    };
    assert!(call(&mut n, max - 130).is_ok());
    assert!(matches!(
        call(&mut n, max - 129),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    // datagram: the encoded datagram must fit max_datagram_len.
    let encoded = |len: usize| {
        crate::codec::encode_value(&Datagram::Publish {
            topic: "t".into(),
            payload: Bytes::from(vec![0; len]),
        })
        .unwrap()
        .len()
    };
    let fits = (0..200).rev().find(|&l| encoded(l) <= 200).unwrap();
    assert!(n
        .publish_datagram(addr(5), "t", Bytes::from(vec![0; fits]))
        .is_ok());
    assert!(n
        .publish_datagram(addr(5), "t", Bytes::from(vec![0; fits + 1]))
        .is_err());
    // respond: a result that cannot fit a frame becomes a remote failure.
    n.serve("s", now).unwrap();
    let request = |id| {
        frame(&Message::Request {
            id,
            service: "s".into(),
            path: "p".into(),
            kind: CallKind::Call,
            args: Bytes::new(),
            timeout_ms: None,
        })
    };
    n.handle_bytes(ConnId(1), &request(1), now);
    n.handle_bytes(ConnId(1), &request(2), now);
    drain(&mut n);
    n.respond(NodeId(7), 1, Ok(Bytes::from(vec![1; max - 512])), now)
        .unwrap();
    n.respond(NodeId(7), 2, Ok(Bytes::from(vec![1; max - 511])), now)
        .unwrap();
    let answers: Vec<_> = sent(&drain(&mut n), ConnId(1))
        .into_iter()
        .filter_map(|m| match m {
            Message::Response { id, result } => Some((id, result.is_ok())),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(1, true), (2, false)]);
}

#[test]
fn datagrams_over_the_limit_or_after_shutdown_are_ignored() {
    let (mut n, now) = node(Config::default().max_datagram_len(100));
    n.subscribe("t", now).unwrap();
    let dg = |len: usize| {
        crate::codec::encode_value(&Datagram::Publish {
            topic: "t".into(),
            payload: Bytes::from(vec![0; len]),
        })
        .unwrap()
    };
    let fits = (0..100).rev().find(|&l| dg(l).len() <= 100).unwrap();
    n.handle_datagram(addr(1), &dg(fits), now);
    let got = messages(&drain(&mut n));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].origin, got[0].hops, got[0].from), (None, 0, None));
    n.handle_datagram(addr(1), &dg(fits + 1), now);
    assert!(drain(&mut n).is_empty());
    // Not subscribed: dropped.
    let other = crate::codec::encode_value(&Datagram::Publish {
        topic: "x".into(),
        payload: Bytes::new(),
    })
    .unwrap();
    n.handle_datagram(addr(1), &other, now);
    assert!(drain(&mut n).is_empty());
    n.shutdown(now);
    drain(&mut n);
    n.handle_datagram(addr(1), &dg(1), now);
    assert!(drain(&mut n).is_empty());
}

#[test]
fn calls_get_responses_timeouts_and_disconnects() {
    let (mut n, now) = node(Config::default().rpc_timeout(Duration::from_secs(1)));
    peer(&mut n, 1, 7, &[], now);
    peer(&mut n, 2, 8, &[], now);
    drain(&mut n);
    let call = |n: &mut Node, peer, timeout| {
        n.call(
            NodeId(peer),
            RemoteCall {
                service: "s",
                path: "p",
                kind: CallKind::Call,
                args: Bytes::new(),
            },
            timeout,
            now,
        )
        .unwrap()
    };
    let a = call(&mut n, 7, None);
    let b = call(&mut n, 7, Some(Duration::from_secs(3)));
    let c = call(&mut n, 8, Some(Duration::from_secs(9)));
    drain(&mut n);
    let response = |id: RequestId| {
        frame(&Message::Response {
            id: id.0,
            result: Ok(Bytes::from_static(b"r")),
        })
    };
    // A response from a peer that was not asked is ignored.
    n.handle_bytes(ConnId(2), &response(a), now);
    assert!(drain(&mut n).is_empty());
    n.handle_bytes(ConnId(1), &response(a), now);
    assert!(matches!(
        drain(&mut n).as_slice(),
        [Output::Deliver(Delivery::Response { id, result: Ok(r) })] if *id == a && &r[..] == b"r"
    ));
    // The next timer is b's deadline (keep-alives come after 7 s).
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(3)));
    // b times out at its own deadline, not the default one.
    n.handle_timeout(now + Duration::from_secs(2));
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::Response { .. }))));
    n.handle_timeout(now + Duration::from_secs(3));
    assert!(drain(&mut n).iter().any(|o| matches!(
        o,
        Output::Deliver(Delivery::Response { id, result: Err(crate::RemoteError::Timeout) }) if *id == b
    )));
    // c fails at once when its peer goes.
    n.handle_closed(ConnId(2), now + Duration::from_secs(3));
    assert!(drain(&mut n).iter().any(|o| matches!(
        o,
        Output::Deliver(Delivery::Response { id, result: Err(crate::RemoteError::Disconnected) }) if *id == c
    )));
    // A cancelled call forgets its answer.
    let d = call(&mut n, 7, None);
    assert!(n.cancel_call(d, now));
    assert!(!n.cancel_call(d, now));
    n.handle_bytes(ConnId(1), &response(d), now);
    assert!(drain(&mut n)
        .iter()
        .all(|o| !matches!(o, Output::Deliver(Delivery::Response { .. }))));
}

#[test]
fn requests_for_unknown_services_are_answered_not_found_and_ids_are_not_reused() {
    let (mut n, now) = node(Config::default());
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    let request = |id, service: &str| {
        frame(&Message::Request {
            id,
            service: service.into(),
            path: "p".into(),
            kind: CallKind::Get,
            args: Bytes::new(),
            timeout_ms: Some(1500),
        })
    };
    n.handle_bytes(ConnId(1), &request(1, "nope"), now);
    let outs = drain(&mut n);
    assert_eq!(
        sent(&outs, ConnId(1)),
        vec![Message::Response {
            id: 1,
            result: Err(crate::RemoteError::NotFound("nope".into()))
        }]
    );
    n.handle_bytes(ConnId(1), &request(2, "s"), now);
    let outs = drain(&mut n);
    assert!(matches!(
        outs.as_slice(),
        [Output::Deliver(Delivery::Request {
            id: 2,
            kind: CallKind::Get,
            deadline: Some(d),
            ..
        })] if *d == now + Duration::from_millis(1500)
    ));
    // The same id again while pending: a protocol error.
    n.handle_bytes(ConnId(1), &request(2, "s"), now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::ProtocolError(_)))
    ));
    // Withdrawn services are announced and then unknown.
    let (mut n, now) = node(Config::default());
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.unserve("s", now).unwrap();
    assert!(sent(&drain(&mut n), ConnId(1)).contains(&Message::Services(vec![])));
    assert_eq!(n.services().count(), 0);
}

#[test]
fn goodbyes_from_peers_are_not_redialed() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Goodbye(DisconnectReason::Closed)),
        now,
    );
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            by_peer: true,
            reconnecting: false,
            reason: DisconnectReason::Closed,
            ..
        })
    )));
    assert!(closed(&outs, ConnId(1)));
    assert_eq!(n.reconnecting(), 0);
    // A local close is not redialed either.
    peer(&mut n, 2, 8, &[], now);
    n.close(NodeId(8), now).unwrap();
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(2)).last(),
        Some(Message::Goodbye(DisconnectReason::Closed))
    ));
    assert_eq!(n.reconnecting(), 0);
    assert_eq!(n.close(NodeId(8), now), Err(CommandError::NotConnected));
    // A lost connection is.
    let c = dialed(&mut n, 9, &[], now);
    n.handle_closed(c, now);
    assert_eq!(n.reconnecting(), 1);
}

#[test]
fn pings_get_distinct_ids_and_at_most_sixteen_are_remembered() {
    let (mut n, now) = node(Config::default().max_frame_len(1000));
    peer(&mut n, 1, 7, &[], now);
    assert_eq!(
        n.ping(NodeId(7), 937, now),
        Err(CommandError::PayloadTooLarge { len: 937, max: 936 })
    );
    let first = n.ping(NodeId(7), 0, now).unwrap();
    let second = n.ping(NodeId(7), 0, now).unwrap();
    assert_ne!(first, second);
    drain(&mut n);
    let pong = |id| {
        frame(&Message::Pong {
            id,
            padding: Bytes::new(),
        })
    };
    // The older of two outstanding pings is still answered.
    n.handle_bytes(ConnId(1), &pong(first), now);
    assert!(matches!(
        drain(&mut n).as_slice(),
        [Output::Event(Event::Latency { ping, .. })] if *ping == first
    ));
    // Seventeen more: the oldest of them is forgotten, the newest sixteen are answered.
    let ids: Vec<u64> = (0..17)
        .map(|_| n.ping(NodeId(7), 0, now).unwrap())
        .collect();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &pong(ids[0]), now);
    assert!(
        drain(&mut n).is_empty(),
        "more than sixteen pings remembered"
    );
    n.handle_bytes(ConnId(1), &pong(ids[1]), now);
    assert_eq!(drain(&mut n).len(), 1);
}

#[test]
fn keep_alive_pings_wait_for_the_interval_after_the_last_traffic() {
    let (mut n, now) = node(
        Config::default()
            .keepalive_interval(Duration::from_secs(2))
            .keepalive_jitter(0.0),
    );
    peer(&mut n, 1, 7, &[], now);
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(2)));
    n.handle_timeout(now + Duration::from_millis(1999));
    assert!(drain(&mut n).is_empty(), "pinged before the interval");
    // Traffic restarts the interval.
    let t1 = now + Duration::from_secs(1);
    n.handle_bytes(ConnId(1), &frame(&Message::Topics(vec![])), t1);
    drain(&mut n);
    n.handle_timeout(now + Duration::from_millis(2500));
    assert!(drain(&mut n).is_empty(), "pinged though traffic arrived");
    n.handle_timeout(t1 + Duration::from_secs(2));
    assert!(sent(&drain(&mut n), ConnId(1))
        .iter()
        .any(|m| matches!(m, Message::Ping { .. })));
}

#[test]
fn a_redial_waits_for_its_back_off_and_for_room_in_the_table() {
    let (mut n, now) = node(
        Config::default()
            .max_edges(1)
            .reconnect_initial(Duration::from_millis(100))
            .reconnect_max(Duration::from_millis(100)),
    );
    let c = dialed(&mut n, 7, &[], now);
    n.handle_closed(c, now);
    drain(&mut n);
    let due = n.poll_timeout().unwrap();
    assert!(due > now);
    // Before its deadline, a timer tick does not dial.
    n.handle_timeout(due - Duration::from_millis(1));
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Dial { .. })));
    // The table is full when it is due: it waits another back-off instead of dialing.
    peer(&mut n, 2, 8, &[], now);
    n.handle_timeout(due);
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Dial { .. })));
    let again = n.poll_timeout().unwrap();
    assert!(again > due, "rescheduled into the future");
    n.close(NodeId(8), due).unwrap();
    drain(&mut n);
    n.handle_timeout(again);
    assert!(drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Dial { .. })));
}

#[test]
fn a_root_unsubscribes_ordinary_topics_and_others_may_not_keep_at() {
    let (mut r, now) = node(Config::default().root(true));
    r.subscribe("t", now).unwrap();
    r.unsubscribe("t", now).unwrap();
    assert!(!r.is_subscribed("t"));
    let (mut n, now) = node(Config::default());
    assert_eq!(n.subscribe("@", now), Err(CommandError::Reserved("@")));
    n.unsubscribe("@", now).unwrap();
    assert!(!n.is_subscribed("@"));
}

/// `@` is a root's own topic: nobody may publish on it, and what peers publish on it (over TCP
/// or UDP) is neither delivered nor relayed, so it cannot fill a root's queue.
#[test]
fn the_reserved_topic_is_refused_locally_and_dropped_from_peers() {
    let (mut r, now) = node(Config::default().root(true));
    assert_eq!(
        r.publish("@", Bytes::new(), now),
        Err(CommandError::Reserved("@"))
    );
    assert_eq!(
        r.publish_datagram(addr(1), "@", Bytes::new()),
        Err(CommandError::Reserved("@"))
    );
    assert!(Node::check_publish(r.config(), "@", 0).is_err());
    peer(&mut r, 1, 7, &[], now);
    peer(&mut r, 2, 8, &["@"], now);
    r.handle_bytes(ConnId(1), &publish_frame(7, 1, "@", 8, 1, b"x"), now);
    let outs = drain(&mut r);
    assert!(messages(&outs).is_empty(), "not delivered");
    assert!(publishes(&outs, ConnId(2)).is_empty(), "not relayed");
    assert_eq!(r.counters().reserved_dropped, 1);
    // The same over UDP, from anyone.
    let d = crate::codec::encode_value(&Datagram::Publish {
        topic: "@".into(),
        payload: Bytes::from_static(b"x"),
    })
    .unwrap();
    r.handle_datagram(addr(5), &d, now);
    assert!(messages(&drain(&mut r)).is_empty());
    assert_eq!(r.counters().reserved_dropped, 2);
    // An ordinary topic the root subscribes to still arrives.
    r.subscribe("t", now).unwrap();
    drain(&mut r);
    r.handle_bytes(ConnId(1), &publish_frame(7, 2, "t", 8, 1, b"y"), now);
    assert_eq!(messages(&drain(&mut r)).len(), 1);
}

#[test]
fn a_peer_closed_in_the_middle_of_a_relay_does_not_cost_the_others_the_message() {
    let (mut n, now) = node(Config::default().max_outbound(600));
    for (c, id) in [(1, 7), (2, 8), (3, 9)] {
        peer(&mut n, c, id, &["t"], now);
    }
    drain(&mut n);
    // Peer 7's buffer holds a pong nobody has taken yet: the next frame overflows it.
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Ping {
            id: 1,
            padding: Bytes::from(vec![0; 400]),
        }),
        now,
    );
    n.publish("t", Bytes::from(vec![1; 200]), now).unwrap();
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)), "the overflowing peer is closed");
    assert_eq!(
        publishes(&outs, ConnId(2)).len(),
        1,
        "the next peer was skipped"
    );
    assert_eq!(publishes(&outs, ConnId(3)).len(), 1);
    assert_eq!(n.edge_count(), 2);
    assert_eq!(n.memory(), n.memory_recounted());
}

pub(super) fn discovery_frame(
    origin: u128,
    id: u64,
    topic: &str,
    ttl: u8,
    origin_port: u16,
) -> Vec<u8> {
    frame(&Message::Discovery(crate::message::Discovery {
        id,
        origin: NodeId(origin),
        origin_name: "seeker".into(),
        origin_addr: addr(origin_port),
        topic: topic.into(),
        ttl,
        on_pair: OnPair::None,
        entry: None,
    }))
}

pub(super) fn dials(outs: &[Output]) -> Vec<SocketAddr> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Dial { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect()
}

#[test]
fn each_discovery_gets_its_own_id() {
    let (mut n, now) = node(Config::default());
    n.subscribe("a", now).unwrap();
    n.subscribe("b", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.discover(now).unwrap();
    let ids: Vec<u64> = sent(&drain(&mut n), ConnId(1))
        .into_iter()
        .filter_map(|m| match m {
            Message::Discovery(d) => Some(d.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_seeker_heard_while_unpaired_is_answered_once_discovery_starts() {
    // Our id (seed 1) is smaller than u128::MAX - k: we remember those seekers and answer them.
    let big = u128::MAX - 5;
    let (mut n, now) = node(Config::default());
    assert!(n.id().0 < big);
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(big, 1, "t", 5, 6001), now);
    // Not seeking yet: nothing dialed, the discovery forwarded nowhere else (one edge).
    assert!(dials(&drain(&mut n)).is_empty());
    n.discover(now).unwrap();
    assert_eq!(dials(&drain(&mut n)), vec![addr(6001)]);
}

#[test]
fn a_larger_id_does_not_remember_a_smaller_seeker_and_connected_seekers_are_not_dialed() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    // Origin 3 is smaller than us: it will answer us, we must not dial it as well.
    n.handle_bytes(ConnId(1), &discovery_frame(3, 1, "t", 5, 6003), now);
    drain(&mut n);
    n.discover(now).unwrap();
    assert!(
        dials(&drain(&mut n)).is_empty(),
        "both sides of a seek dialed"
    );
    // A larger seeker we are already connected to is not dialed again.
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    let big = u128::MAX - 5;
    peer(&mut n, 1, big, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(big, 1, "t", 5, 6001), now);
    drain(&mut n);
    n.discover(now).unwrap();
    assert!(
        dials(&drain(&mut n)).is_empty(),
        "dialed a seeker already connected"
    );
}

#[test]
fn discoveries_with_bad_topics_are_dropped_and_good_ones_forwarded() {
    let (mut n, now) = node(Config::default().max_name_len(8));
    peer(&mut n, 1, 7, &[], now);
    peer(&mut n, 2, 8, &[], now);
    drain(&mut n);
    let forwarded = |outs: &[Output]| {
        sent(outs, ConnId(2))
            .into_iter()
            .filter(|m| matches!(m, Message::Discovery(_)))
            .count()
    };
    n.handle_bytes(ConnId(1), &discovery_frame(50, 1, "", 5, 6000), now);
    assert_eq!(forwarded(&drain(&mut n)), 0, "empty topic forwarded");
    n.handle_bytes(
        ConnId(1),
        &discovery_frame(50, 2, "123456789", 5, 6000),
        now,
    );
    assert_eq!(forwarded(&drain(&mut n)), 0, "over-long topic forwarded");
    n.handle_bytes(ConnId(1), &discovery_frame(50, 3, "12345678", 5, 6000), now);
    assert_eq!(forwarded(&drain(&mut n)), 1);
    // The same discovery again is de-duplicated; ttl 1 is not forwarded.
    n.handle_bytes(ConnId(1), &discovery_frame(50, 3, "12345678", 5, 6000), now);
    assert_eq!(forwarded(&drain(&mut n)), 0);
    n.handle_bytes(ConnId(1), &discovery_frame(50, 4, "12345678", 1, 6000), now);
    assert_eq!(forwarded(&drain(&mut n)), 0, "forwarded at ttl 1");
    n.handle_bytes(ConnId(1), &discovery_frame(50, 5, "12345678", 2, 6000), now);
    let outs = drain(&mut n);
    match sent(&outs, ConnId(2)).as_slice() {
        [Message::Discovery(d)] => assert_eq!(d.ttl, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn seekers_are_remembered_only_while_unpaired_and_at_most_eight() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    for k in 0..9u16 {
        let origin = u128::MAX - u128::from(k);
        n.handle_bytes(
            ConnId(1),
            &discovery_frame(origin, 1, "t", 5, 6100 + k),
            now,
        );
    }
    drain(&mut n);
    n.discover(now).unwrap();
    let got = dials(&drain(&mut n));
    let want: Vec<_> = (1..9u16).map(|k| addr(6100 + k)).collect();
    assert_eq!(got, want, "the newest eight seekers are answered");
    // A node not subscribed when it heard the seeker does not answer it later.
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(u128::MAX, 1, "t", 5, 6001), now);
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    n.discover(now).unwrap();
    assert!(dials(&drain(&mut n)).is_empty());
}

#[test]
fn a_seeking_node_answers_only_larger_seekers() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    n.discover(now).unwrap();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(3, 1, "t", 5, 6003), now);
    assert!(
        dials(&drain(&mut n)).is_empty(),
        "answered a smaller seeker"
    );
    n.handle_bytes(ConnId(1), &discovery_frame(u128::MAX, 1, "t", 5, 6009), now);
    assert_eq!(dials(&drain(&mut n)), vec![addr(6009)]);
}

#[test]
fn a_paired_member_answers_once_and_forwards_when_saturated() {
    let (mut n, now) = node(Config::default().paired(true).max_connections(2));
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &[], now);
    drain(&mut n);
    // One member neighbour, room for two: it answers and does not forward to its own cluster.
    n.handle_bytes(ConnId(2), &discovery_frame(50, 1, "t", 5, 6050), now);
    let outs = drain(&mut n);
    assert_eq!(dials(&outs), vec![addr(6050)]);
    // The same origin again (another discovery) while that dial is under way: no second dial.
    n.handle_bytes(ConnId(2), &discovery_frame(50, 2, "t", 5, 6050), now);
    assert!(
        dials(&drain(&mut n)).is_empty(),
        "dialed the same origin twice"
    );
    // An origin it is connected to is not dialed.
    n.handle_bytes(ConnId(1), &discovery_frame(8, 3, "t", 5, 6008), now);
    assert!(dials(&drain(&mut n)).is_empty());
    // Saturated (two members): forwards instead, to every edge but the sender and the origin.
    peer(&mut n, 3, 9, &["t"], now);
    drain(&mut n);
    n.handle_bytes(ConnId(2), &discovery_frame(60, 1, "t", 5, 6060), now);
    let outs = drain(&mut n);
    assert!(dials(&outs).is_empty(), "a saturated member answered");
    let to = |c: u64| {
        sent(&outs, ConnId(c))
            .iter()
            .filter(|m| matches!(m, Message::Discovery(_)))
            .count()
    };
    assert_eq!((to(1), to(2), to(3)), (1, 0, 1));
    // The origin itself is a neighbour: never sent its own discovery back.
    n.handle_bytes(ConnId(1), &discovery_frame(9, 1, "x", 5, 6009), now);
    let outs = drain(&mut n);
    assert_eq!(
        sent(&outs, ConnId(3))
            .iter()
            .filter(|m| matches!(m, Message::Discovery(_)))
            .count(),
        0
    );
}

#[test]
fn the_edge_table_bound_stops_a_member_from_answering() {
    let (mut n, now) = node(Config::default().paired(true).max_edges(2));
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(50, 1, "t", 5, 6050), now);
    assert_eq!(
        dials(&drain(&mut n)),
        vec![addr(6050)],
        "one place left: answered"
    );
    n.handle_bytes(ConnId(1), &discovery_frame(51, 1, "t", 5, 6051), now);
    assert!(dials(&drain(&mut n)).is_empty(), "the table is full");
}

/// A node seeking "t" with `on_pair`, bootstrapped through peer 7 (conn 1, topics `entry`),
/// receives a pairing link from peer 8 whose discovery entered through 7.
fn paired_through(on_pair: OnPair, entry_topics: &[&str]) -> (Node, Vec<Output>) {
    let (mut n, now) = node(Config::default().on_pair(on_pair));
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, entry_topics, now);
    n.discover(now).unwrap();
    drain(&mut n);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    let mut h = hello(8, &["t"]);
    h.pairing = Some(crate::message::PairIntent {
        discovery: 1,
        topic: "t".into(),
        entry: Some(NodeId(7)),
        cluster: Some(NodeId(8)),
    });
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
    let outs = drain(&mut n);
    (n, outs)
}

#[test]
fn on_pair_disconnect_drops_only_a_bootstrap_link_that_shares_nothing() {
    let (n, outs) = paired_through(OnPair::Disconnect, &[]);
    assert!(n.is_paired_for("t"));
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::Unneeded))
    ));
    assert!(!n.is_connected_to(NodeId(7)));
    let (n, _) = paired_through(OnPair::Disconnect, &["t"]);
    assert!(
        n.is_connected_to(NodeId(7)),
        "dropped a link that shares the topic"
    );
    let (n, _) = paired_through(OnPair::Disconnect, &["*"]);
    assert!(
        n.is_connected_to(NodeId(7)),
        "dropped a link whose pattern matches the topic"
    );
    let (n, _) = paired_through(OnPair::Disconnect, &["t/*"]);
    assert!(
        !n.is_connected_to(NodeId(7)),
        "kept a link whose pattern matches nothing of ours"
    );
    let (n, _) = paired_through(OnPair::None, &[]);
    assert!(
        n.is_connected_to(NodeId(7)),
        "dropped a link without on_pair = disconnect"
    );
}

#[test]
fn announced_names_are_bounded_inclusively() {
    let (mut n, now) = node(Config::default().max_peer_topics(3).max_name_len(5));
    // Exactly at the bounds: accepted.
    let outs = peer(&mut n, 1, 7, &["abcde", "b", "c"], now);
    assert!(!closed(&outs, ConnId(1)));
    assert_eq!(n.edge_count(), 1);
    let bad = |n: &mut Node, topics: Vec<String>| {
        n.handle_bytes(ConnId(1), &frame(&Message::Topics(topics)), now);
        let outs = drain(n);
        closed(&outs, ConnId(1))
    };
    assert!(!bad(&mut n, vec!["vwxyz".into(), "x".into(), "y".into()]));
    assert!(bad(&mut n, vec!["".into()]), "an empty name accepted");
    let (mut n, now) = node(Config::default().max_peer_topics(3).max_name_len(5));
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    assert!(
        bad(&mut n, vec!["abcdef".into()]),
        "a name over the limit accepted"
    );
    let (mut n, now) = node(Config::default().max_peer_topics(3).max_name_len(5));
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    assert!(bad(
        &mut n,
        vec!["a".into(), "b".into(), "c".into(), "d".into()]
    ));
    // The node name has the same bound.
    let (mut n, now) = node(Config::default().max_name_len(6));
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    let mut h = hello(7, &[]);
    h.name = "abcdef".into();
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(h.clone())), now);
    drain(&mut n);
    assert_eq!(n.edge_count(), 1);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    h.id = NodeId(8);
    h.name = "abcdefg".into();
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
    assert!(closed(&drain(&mut n), ConnId(2)));
    assert_eq!(n.edge_count(), 1);
}

#[test]
fn a_duplicate_connection_with_a_smaller_nonce_takes_the_edge() {
    let (mut n, now) = node(Config::default());
    let with_nonce = |id, nonce| {
        let mut h = hello(id, &[]);
        h.nonce = nonce;
        frame(&Message::Hello(h))
    };
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &with_nonce(7, 5), now);
    drain(&mut n);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    n.handle_bytes(ConnId(2), &with_nonce(7, 3), now);
    let outs = drain(&mut n);
    assert_eq!(
        n.edges()[0].conn,
        ConnId(2),
        "the smaller (dialer, nonce) wins"
    );
    assert!(matches!(
        sent(&outs, ConnId(2)).first(),
        Some(Message::Hello(_))
    ));
    // A larger nonce loses.
    n.handle_connected(ConnId(3), addr(3), Direction::Inbound, now);
    n.handle_bytes(ConnId(3), &with_nonce(7, 9), now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(3)).last(),
        Some(Message::Goodbye(DisconnectReason::Duplicate))
    ));
    assert_eq!(n.edges()[0].conn, ConnId(2));
}

#[test]
fn a_root_refuses_pairing_for_its_internal_topic() {
    let (mut n, now) = node(Config::default().root(true));
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    let mut h = hello(7, &[]);
    h.pairing = Some(crate::message::PairIntent {
        discovery: 1,
        topic: "@".into(),
        entry: None,
        cluster: Some(NodeId(7)),
    });
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::AlreadyPaired))
    ));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn a_shared_topic_makes_a_pairing_link_but_the_roots_internal_topic_does_not() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &["t"], now);
    peer(&mut n, 2, 8, &["u"], now);
    let e = n.edges();
    assert_eq!((e[0].pairing, e[1].pairing), (true, false));
    let (mut r, now) = node(Config::default().root(true));
    peer(&mut r, 1, 7, &["@"], now);
    assert!(!r.edges()[0].pairing);
    // A topics update: stored, announced as an event, and a newly shared topic pairs the link.
    peer(&mut n, 3, 9, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(3), &frame(&Message::Topics(vec!["t".into()])), now);
    let outs = drain(&mut n);
    assert!(matches!(
        outs.as_slice(),
        [Output::Event(Event::PeerUpdated { peer })] if *peer == NodeId(9)
    ));
    let e = n.edge_info(NodeId(9)).unwrap();
    assert_eq!(e.topics, vec!["t".to_string()]);
    assert!(e.pairing);
    r.handle_bytes(ConnId(1), &frame(&Message::Topics(vec!["@".into()])), now);
    drain(&mut r);
    assert!(!r.edges()[0].pairing);
}

/// `n` dialed peer `id` (conn returned, edge on it), then `id` dials `n` (inbound conn 50).
fn cross_connect(id: u128) -> (Node, ConnId, Vec<Output>, Instant) {
    let (mut n, now) = node(Config::default());
    let out = n.connect(addr(9000), now).unwrap();
    n.handle_connected(out, addr(9000), Direction::Outbound, now);
    let mut h = hello(id, &[]);
    h.nonce = 0;
    n.handle_bytes(out, &frame(&Message::Hello(h)), now);
    drain(&mut n);
    assert_eq!(n.edges()[0].conn, out);
    n.handle_connected(ConnId(50), addr(50), Direction::Inbound, now);
    let mut h = hello(id, &[]);
    h.nonce = 1;
    n.handle_bytes(ConnId(50), &frame(&Message::Hello(h)), now);
    let outs = drain(&mut n);
    (n, out, outs, now)
}

#[test]
fn a_cross_connect_keeps_the_connection_dialed_by_the_smaller_id() {
    // Peer 7 is smaller than us: its connection (inbound here) wins; ours gets the goodbye at
    // once, and nothing after it.
    let (mut n, out, outs, now) = cross_connect(7);
    assert_eq!(n.edges()[0].conn, ConnId(50));
    assert!(matches!(
        sent(&outs, out).as_slice(),
        [Message::Goodbye(DisconnectReason::Duplicate)]
    ));
    // A peer that never closes it: cleaned up after the handshake timeout, not before.
    n.handle_timeout(now + Duration::from_millis(10));
    assert!(!closed(&drain(&mut n), out));
    n.handle_timeout(now + Duration::from_secs(5));
    let outs = drain(&mut n);
    assert!(closed(&outs, out));
    assert!(sent(&outs, out).is_empty());
    assert_eq!(n.edges()[0].conn, ConnId(50));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::PeerLost { .. }))));
    // A larger peer: our outbound connection stays, the newcomer is refused.
    let (n, out, outs, _) = cross_connect(u128::MAX);
    assert_eq!(n.edges()[0].conn, out);
    assert!(matches!(
        sent(&outs, ConnId(50)).last(),
        Some(Message::Goodbye(DisconnectReason::Duplicate))
    ));
}

#[test]
fn the_winning_dialer_says_goodbye_on_the_superseded_connection() {
    // We dial twice; the second dial gets the smaller nonce only by chance, so find which won.
    let (mut n, now) = node(Config::default());
    let a = n.connect(addr(9000), now).unwrap();
    let b = n.connect(addr(9000), now).unwrap();
    for c in [a, b] {
        n.handle_connected(c, addr(9000), Direction::Outbound, now);
    }
    let hello_back = || {
        let mut h = hello(u128::MAX, &[]);
        h.nonce = 0;
        frame(&Message::Hello(h))
    };
    n.handle_bytes(a, &hello_back(), now);
    drain(&mut n);
    n.handle_bytes(b, &hello_back(), now);
    let outs = drain(&mut n);
    let winner = n.edges()[0].conn;
    let loser = if winner == a { b } else { a };
    if winner == b {
        // The edge moved: we tell the peer on the old connection.
        assert!(matches!(
            sent(&outs, loser).last(),
            Some(Message::Goodbye(DisconnectReason::Duplicate))
        ));
    } else {
        assert!(matches!(
            sent(&outs, b).last(),
            Some(Message::Goodbye(DisconnectReason::Duplicate))
        ));
    }
}

#[test]
fn paired_announcements_merge_clusters_and_pair_seekers() {
    // Paired in our own cluster; a neighbour announces a smaller cluster: adopted, no new event.
    let (mut n, now) = node(Config::default().paired(true));
    n.subscribe("t", now).unwrap();
    let own = n.cluster_of("t").unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    let paired = |c: u128| frame(&Message::Paired(vec![("t".into(), NodeId(c))]));
    n.handle_bytes(ConnId(1), &paired(own.0 + 1), now);
    let outs = drain(&mut n);
    assert_eq!(n.cluster_of("t"), Some(own), "a larger cluster id adopted");
    assert!(sent(&outs, ConnId(1)).is_empty());
    n.handle_bytes(ConnId(1), &paired(3), now);
    let outs = drain(&mut n);
    assert_eq!(n.cluster_of("t"), Some(NodeId(3)));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Paired { .. }))));
    assert!(sent(&outs, ConnId(1)).contains(&Message::Paired(vec![("t".into(), NodeId(3))])));
    // A seeker is paired by a neighbour that announces the topic, and the link pairs.
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    n.discover(now).unwrap();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &paired(5), now);
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::Paired { topic, with: Some(p) }) if topic == "t" && *p == NodeId(7)
    )));
    assert_eq!(n.cluster_of("t"), Some(NodeId(5)));
    assert!(n.edges()[0].pairing);
    // A root never takes part.
    let (mut r, now) = node(Config::default().root(true));
    peer(&mut r, 1, 7, &[], now);
    drain(&mut r);
    r.handle_bytes(
        ConnId(1),
        &frame(&Message::Paired(vec![("@".into(), NodeId(1))])),
        now,
    );
    assert!(drain(&mut r).is_empty(), "a root reacted to a cluster id");
}

#[test]
fn services_paths_and_status_queries_are_bounded_and_tracked() {
    let (mut n, now) = node(
        Config::default()
            .max_peer_services(2)
            .max_name_len(5)
            .max_frame_len(1000)
            .status_timeout(Duration::from_secs(3)),
    );
    n.serve("a", now).unwrap();
    n.serve("b", now).unwrap();
    assert_eq!(n.serve("a", now), Ok(()), "re-serving a name at the limit");
    assert_eq!(
        n.serve("c", now),
        Err(CommandError::Limit("max_peer_services"))
    );
    let c = dialed(&mut n, 7, &[], now);
    let call = |n: &mut Node, path: &str, len: usize| {
        n.call(
            NodeId(7),
            RemoteCall {
                service: "s",
                path,
                kind: CallKind::Call,
                args: Bytes::from(vec![0; len]),
            },
            None,
            now,
        )
    };
    assert!(call(&mut n, "abcde", 0).is_ok());
    assert!(matches!(
        call(&mut n, "abcdef", 0),
        Err(CommandError::TooLong {
            what: "path",
            len: 6,
            max: 5
        })
    ));
    assert!(call(&mut n, "p", 870).is_ok());
    assert_eq!(
        call(&mut n, "p", 871),
        Err(CommandError::PayloadTooLarge { len: 871, max: 870 })
    );
    drain(&mut n);
    let t1 = n.query_status(addr(5), now).unwrap();
    let t2 = n.query_status(addr(5), now).unwrap();
    assert_ne!(t1, t2);
    assert!(n.poll_timeout().unwrap() <= now + Duration::from_secs(3));
    n.handle_timeout(now + Duration::from_millis(2999));
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::Status { .. }))));
    assert!(!n.status().reconnecting);
    n.handle_closed(c, now);
    assert!(n.status().reconnecting);
}

#[test]
fn on_pair_disconnect_keeps_a_bootstrap_link_that_is_a_pairing_link() {
    // Peer 7 shared "u" (a pairing link), then unsubscribed: it shares nothing now, but stays.
    let (mut n, now) = node(Config::default().on_pair(OnPair::Disconnect));
    n.subscribe("t", now).unwrap();
    n.subscribe("u", now).unwrap();
    n.set_paired("u", now).unwrap();
    peer(&mut n, 1, 7, &["u"], now);
    n.handle_bytes(ConnId(1), &frame(&Message::Topics(vec![])), now);
    n.discover(now).unwrap();
    drain(&mut n);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    let mut h = hello(8, &["t"]);
    h.pairing = Some(crate::message::PairIntent {
        discovery: 1,
        topic: "t".into(),
        entry: Some(NodeId(7)),
        cluster: Some(NodeId(8)),
    });
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
    drain(&mut n);
    assert!(n.is_paired_for("t"));
    assert!(n.is_connected_to(NodeId(7)), "a pairing link was dropped");
}

#[test]
fn accepting_a_link_from_a_larger_cluster_keeps_ours_without_re_announcing() {
    let (mut n, now) = node(Config::default().paired(true));
    n.subscribe("t", now).unwrap();
    let own = n.cluster_of("t").unwrap();
    assert!(own.0 < u128::MAX);
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    let mut h = hello(8, &["t"]);
    h.pairing = Some(crate::message::PairIntent {
        discovery: 1,
        topic: "t".into(),
        entry: None,
        cluster: Some(NodeId(u128::MAX)),
    });
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
    let outs = drain(&mut n);
    assert!(
        n.is_connected_to(NodeId(8)),
        "a link from another cluster is accepted"
    );
    assert_eq!(n.cluster_of("t"), Some(own));
    assert!(
        !sent(&outs, ConnId(1))
            .iter()
            .any(|m| matches!(m, Message::Paired(_))),
        "re-announced an unchanged cluster"
    );
}

#[test]
fn accessors_report_what_the_node_is_and_has() {
    let (mut n, now) = node(Config::default().name("me"));
    assert_eq!(n.listen_addr(), Some(addr(8000)));
    n.set_listen_addr(Some(addr(8123)));
    assert_eq!(n.listen_addr(), Some(addr(8123)));
    n.subscribe("b", now).unwrap();
    n.subscribe("a/*", now).unwrap();
    n.serve("math", now).unwrap();
    assert_eq!(n.topics().collect::<Vec<_>>(), ["a/*", "b"]);
    assert_eq!(n.services().collect::<Vec<_>>(), ["math"]);
    assert!(!n.has_pending_output());
    let outs = peer(&mut n, 1, 7, &[], now);
    let msgs = sent(&outs, ConnId(1));
    // The Hello tells the new listen address, and no newer version than it speaks.
    assert!(matches!(
        &msgs[0],
        Message::Hello(h) if h.listen == Some(addr(8123)) && h.max_version.is_none()
    ));
    assert_eq!(n.peer_by_name("peer7"), Some(NodeId(7)));
    assert_eq!(n.peer_by_name("peer8"), None);
    assert_eq!(n.peer_by_name(""), None);
    // Output pending until taken.
    n.publish("b", Bytes::from_static(b"x"), now).unwrap();
    n.ping(NodeId(7), 0, now).unwrap();
    assert!(n.has_pending_output());
    drain(&mut n);
    assert!(!n.has_pending_output());
    assert!(!n.is_shut_down());
    n.shutdown(now);
    assert!(n.is_shut_down());
}

#[test]
fn one_address_holds_at_most_its_handshake_slots() {
    let cfg = Config::default().max_handshakes_per_ip(2);
    let (mut n, now) = node(cfg);
    let from = |c: u64, host: u8| SocketAddr::from(([10, 0, 0, host], 40000 + c as u16));
    // Two from one address: both kept (exactly the bound).
    n.handle_connected(ConnId(1), from(1, 1), Direction::Inbound, now);
    n.handle_connected(ConnId(2), from(2, 1), Direction::Inbound, now);
    let outs = drain(&mut n);
    assert!(!closed(&outs, ConnId(1)) && !closed(&outs, ConnId(2)));
    // Another address does not count against it.
    n.handle_connected(ConnId(3), from(3, 2), Direction::Inbound, now);
    assert!(!closed(&drain(&mut n), ConnId(1)));
    // A third from the first address: its own oldest goes, not the other address's.
    n.handle_connected(ConnId(4), from(4, 1), Direction::Inbound, now);
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)), "the address's oldest was kept");
    assert!(!closed(&outs, ConnId(3)) && !closed(&outs, ConnId(2)));
}

#[test]
fn a_local_name_of_exactly_the_limit_is_taken() {
    let (mut n, now) = node(Config::default().max_name_len(8));
    assert!(n.subscribe(&"x".repeat(8), now).is_ok());
    assert!(matches!(
        n.subscribe(&"x".repeat(9), now),
        Err(CommandError::TooLong { len: 9, max: 8, .. })
    ));
}

#[test]
fn a_root_is_in_no_cluster_and_an_unpaired_topic_has_none() {
    // A root holds its own topic as paired (it answers for it), yet belongs to no cluster.
    let (r, _) = node(Config::default().root(true));
    assert!(r.is_paired());
    assert!(!r.is_paired_for(ROOT_TOPIC));
    assert_eq!(r.cluster_of(ROOT_TOPIC), None);

    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    assert!(!n.is_paired_for("t"));
    assert_eq!(n.cluster_of("t"), None);
    assert!(!n.is_paired_for("other"));
}

/// A discovery nobody answers ends at its deadline (the node anchors the topic), not before.
#[test]
fn an_unanswered_discovery_ends_at_its_deadline() {
    let wait = Duration::from_secs(2);
    let quiet = Duration::from_secs(3600);
    let (mut n, now) = node(
        Config::default()
            .discovery_timeout(wait)
            .keepalive_interval(quiet)
            .idle_timeout(quiet),
    );
    peer(&mut n, 1, 7, &[], now);
    n.subscribe("t", now).unwrap();
    n.discover(now).unwrap();
    drain(&mut n);
    n.handle_timeout(now + wait / 2);
    assert!(!n.is_paired_for("t"), "ended early");
    assert_eq!(n.poll_timeout(), Some(now + wait));
    // Handled a little late, as a busy runtime does.
    n.handle_timeout(now + wait + Duration::from_millis(1));
    assert!(n.is_paired_for("t"));
    assert_eq!(n.cluster_of("t"), Some(n.id()));
}

/// A paired node dials a seeker once: a second discovery from it (a retry, through another
/// neighbour) while the pairing dial is under way does not open another.
#[test]
fn a_seeker_is_dialed_once_while_the_pairing_dial_is_under_way() {
    // Dials to one address are spaced by dial_interval: the retry comes after it.
    let spacing = Duration::from_millis(100);
    let (mut n, now) = node(Config::default().paired(true).dial_interval(spacing));
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    peer(&mut n, 2, 8, &[], now);
    drain(&mut n);
    n.handle_bytes(ConnId(1), &discovery_frame(50, 1, "t", 5, 6050), now);
    assert_eq!(dials(&drain(&mut n)), vec![addr(6050)]);
    let later = now + spacing * 2;
    n.handle_bytes(ConnId(2), &discovery_frame(50, 2, "t", 5, 6050), later);
    assert_eq!(dials(&drain(&mut n)), vec![], "dialed twice");
}

/// A root is in no cluster: it passes on a discovery for a pattern (even one its own topic
/// matches) but never answers it.
#[test]
fn a_root_never_answers_a_discovery_for_a_pattern() {
    let (mut r, now) = node(Config::default().root(true));
    peer(&mut r, 1, 7, &[], now);
    peer(&mut r, 2, 8, &[], now);
    drain(&mut r);
    for (id, pattern) in [(1, "**"), (2, "*")] {
        r.handle_bytes(ConnId(1), &discovery_frame(50, id, pattern, 5, 6050), now);
        let outs = drain(&mut r);
        assert_eq!(dials(&outs), vec![], "{pattern}");
        assert!(sent(&outs, ConnId(2))
            .iter()
            .any(|m| matches!(m, Message::Discovery(_))));
    }
}

/// A pattern subscriber whose neighbour is paired for a topic the pattern matches joins that
/// cluster at once (no discovery goes out); a neighbour paired for another topic is no help.
#[test]
fn a_pattern_joins_the_cluster_of_a_neighbour_paired_for_a_matching_topic() {
    for (theirs, joins) in [("s/a", true), ("q/a", false)] {
        let (mut n, now) = node(Config::default());
        n.subscribe("s/*", now).unwrap();
        let mut h = hello(7, &[theirs]);
        h.paired = vec![(theirs.to_string(), NodeId(3))];
        n.handle_connected(ConnId(1), addr(40001), Direction::Inbound, now);
        n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
        drain(&mut n);
        n.discover(now).unwrap();
        let outs = drain(&mut n);
        let flooded = sent(&outs, ConnId(1))
            .iter()
            .any(|m| matches!(m, Message::Discovery(_)));
        assert_eq!(n.cluster_of("s/*") == Some(NodeId(3)), joins, "{theirs}");
        assert_eq!(flooded, !joins, "{theirs}");
    }
}

/// A peer may announce exactly `max_peer_patterns` patterns, each of up to 16 levels; one more
/// pattern, or one more level, is refused.
#[test]
fn announced_patterns_are_bounded_at_their_limits_exactly() {
    let deep = |levels: usize| vec!["*"; levels].join("/");
    let cases: [(Vec<String>, bool); 4] = [
        (vec!["a/*".into(), "b/*".into()], true),
        (vec!["a/*".into(), "b/*".into(), "c/*".into()], false),
        (vec![deep(crate::topic::MAX_PATTERN_LEVELS)], true),
        (vec![deep(crate::topic::MAX_PATTERN_LEVELS + 1)], false),
    ];
    for (topics, accepted) in cases {
        let (mut n, now) = node(Config::default().max_peer_patterns(2));
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let outs = peer(&mut n, 1, 7, &refs, now);
        assert_eq!(n.is_connected_to(NodeId(7)), accepted, "{topics:?}");
        if !accepted {
            assert!(matches!(
                sent(&outs, ConnId(1)).last(),
                Some(Message::Goodbye(DisconnectReason::LimitExceeded(_)))
            ));
        }
    }
}

/// A dial still in its handshake fails as `ShutDown` when this node shuts down, and as refused
/// with the reason when the peer says goodbye for its own shutdown.
#[test]
fn a_dial_in_its_handshake_says_whose_shutdown_ended_it() {
    let failed = |outs: &[Output]| {
        outs.iter().find_map(|o| match o {
            Output::Event(Event::ConnectFailed { error, .. }) => Some(error.clone()),
            _ => None,
        })
    };
    let (mut n, now) = node(Config::default());
    let conn = n.connect(addr(9000), now).unwrap();
    n.handle_connected(conn, addr(9000), Direction::Outbound, now);
    drain(&mut n);
    n.shutdown(now);
    assert_eq!(failed(&drain(&mut n)), Some(ConnectError::ShutDown));

    let (mut n, now) = node(Config::default());
    let conn = n.connect(addr(9000), now).unwrap();
    n.handle_connected(conn, addr(9000), Direction::Outbound, now);
    drain(&mut n);
    n.handle_bytes(
        conn,
        &frame(&Message::Goodbye(DisconnectReason::Shutdown)),
        now,
    );
    assert_eq!(
        failed(&drain(&mut n)),
        Some(ConnectError::Refused(DisconnectReason::Shutdown))
    );
}

/// With `reconnections(0)` a lost edge this node dialed is not redialed.
#[test]
fn no_reconnections_means_no_redial() {
    let (mut n, now) = node(Config::default().reconnections(0));
    let conn = dialed(&mut n, 7, &[], now);
    n.handle_closed(conn, now);
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            reconnecting: false,
            ..
        })
    )));
    assert!(!n.is_redialing(NodeId(7)));
    n.handle_timeout(now + Duration::from_secs(60));
    assert!(dials(&drain(&mut n)).is_empty());
}

/// A peer's goodbye is never redialed, whatever its reason (even one that would be redialed
/// had this node seen it itself); a connection lost without one is.
#[test]
fn a_goodbye_is_not_redialed_a_lost_connection_is() {
    for reason in [
        DisconnectReason::IdleTimeout,
        DisconnectReason::ConnectionLost,
    ] {
        let (mut n, now) = node(Config::default());
        let conn = dialed(&mut n, 7, &[], now);
        n.handle_bytes(conn, &frame(&Message::Goodbye(reason.clone())), now);
        drain(&mut n);
        assert!(!n.is_connected_to(NodeId(7)));
        assert!(!n.is_redialing(NodeId(7)), "{reason:?}");
    }
    let (mut n, now) = node(Config::default());
    let conn = dialed(&mut n, 7, &[], now);
    n.handle_closed(conn, now);
    drain(&mut n);
    assert!(n.is_redialing(NodeId(7)));
}

/// A UDP publish to a subscribed topic is delivered and counted.
#[test]
fn a_udp_publish_is_delivered_and_counted() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    let d = crate::codec::encode_value(&crate::message::Datagram::Publish {
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
    })
    .unwrap();
    n.handle_datagram(addr(1), &d, now);
    n.handle_datagram(addr(1), &d, now);
    let outs = drain(&mut n);
    let got = outs
        .iter()
        .filter(|o| matches!(o, Output::Deliver(Delivery::Message(m)) if m.payload == "x"))
        .count();
    assert_eq!(got, 2);
    assert_eq!(n.counters().delivered, 2);
}

/// Small payloads are copied into shared 4 KiB blocks, one after another, intact; a payload
/// past 256 bytes gets its own allocation.
#[test]
fn small_received_payloads_share_blocks_and_large_ones_do_not() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    peer(&mut n, 1, 7, &["t"], now);
    drain(&mut n);
    let mut input = Vec::new();
    // Sixteen of 256 bytes fill a block exactly; the seventeenth starts the next.
    for seq in 1..=17u64 {
        input.extend_from_slice(&publish_frame(70, seq, "t", 5, 1, &[seq as u8; 256]));
    }
    input.extend_from_slice(&publish_frame(70, 18, "t", 5, 1, &[18; 257]));
    input.extend_from_slice(&publish_frame(70, 19, "t", 5, 1, &[19; 3]));
    n.handle_bytes(ConnId(1), &input, now);
    let outs = drain(&mut n);
    let got = messages(&outs);
    assert_eq!(got.len(), 19);
    for m in &got {
        let len = if m.seq == 18 {
            257
        } else if m.seq == 19 {
            3
        } else {
            256
        };
        assert_eq!(&m.payload[..], &vec![m.seq as u8; len][..], "seq {}", m.seq);
    }
    let at = |i: usize| got[i].payload.as_ptr() as usize;
    for i in 1..16 {
        assert_eq!(
            at(i),
            at(i - 1) + 256,
            "payload {i} not next to the one before"
        );
    }
    assert_ne!(at(16), at(15) + 256, "a block holds more than 4 KiB");
    // The large one is apart; the small one after it goes on in the second block.
    assert_ne!(at(17), at(16) + 256);
    assert_eq!(at(18), at(16) + 256);
}
