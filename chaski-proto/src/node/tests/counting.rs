//! What the node counts for operators: frames and bytes by kind and edge, relays and
//! deliveries, handshakes, goodbyes by reason, calls, round trips.

use super::*;

#[test]
fn frames_and_bytes_are_counted_by_kind_and_by_edge() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &["a"], now);
    peer(&mut n, 2, 8, &["a"], now);
    let (c1, c2) = (ConnId(1), ConnId(2));
    n.subscribe("a", now).unwrap();
    drain(&mut n);
    let before = n.counters();
    assert_eq!(before.handshakes, 2);
    assert_eq!(before.received[0], 2, "two Hellos in");
    assert_eq!(before.sent[0], 2, "two Hellos out");
    // A publish from peer 7 is delivered and relayed to peer 8.
    let p = Message::Publish(crate::message::Publish {
        origin: NodeId(7),
        seq: 1,
        topic: "a".into(),
        ttl: 4,
        hops: 0,
        payload: Bytes::from_static(b"xyz"),
    });
    let bytes = frame(&p);
    n.handle_bytes(c1, &bytes, now);
    let outs = drain(&mut n);
    let c = n.counters();
    assert_eq!(c.received[7], 1, "one Publish in");
    assert_eq!(c.relayed, 1, "passed on to peer 8");
    assert_eq!(c.delivered, 1, "and handed to the application");
    assert_eq!(c.sent[7], before.sent[7] + 1);
    assert!(c.bytes_received >= before.bytes_received + bytes.len() as u64);
    // `drain` took everything peer 8 was sent: the bytes written count.
    let written: usize = outs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { conn, data } if *conn == c2 => Some(data.len()),
            _ => None,
        })
        .sum();
    assert!(written > 0);
    assert_eq!(c.bytes_sent, before.bytes_sent + written as u64);
    // The same publish again is a duplicate, counted as one, not delivered.
    n.handle_bytes(c1, &bytes, now);
    drain(&mut n);
    assert_eq!(n.counters().duplicates, 1);
    assert_eq!(n.counters().delivered, 1);
    // Per edge: what each connection carried.
    let e7 = n.edge_info(NodeId(7)).unwrap();
    let e8 = n.edge_info(NodeId(8)).unwrap();
    assert_eq!(e7.frames_in, 3, "Hello and the publish twice");
    assert_eq!(e8.frames_in, 1, "its Hello");
    assert!(e8.frames_out >= 2, "our Hello, the relayed publish");
    assert_eq!(
        e8.frames_out,
        e7.frames_out + 1,
        "both had the same but the publish"
    );
    assert_eq!(
        e7.bytes_in,
        (frame(&Message::Hello(hello(7, &["a"]))).len() + 2 * bytes.len()) as u64
    );
    // Bytes out: what the sockets took for each edge, together all this node wrote.
    assert!(
        e8.bytes_out > e7.bytes_out,
        "peer 8 was sent the relayed publish"
    );
    assert_eq!(e7.bytes_out + e8.bytes_out, n.counters().bytes_sent);
    assert!(!e7.configured, "it dialed us");
    let m = n.metrics();
    assert_eq!((m.gauges.edges, m.gauges.pairing_edges), (2, 2));
    assert_eq!(m.gauges.handshaking, 0);
    assert!(!m.paired, "\"a\" is not paired until discovery");
}

#[test]
fn goodbyes_are_counted_by_reason_both_ways() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    peer(&mut n, 2, 8, &[], now);
    let c1 = ConnId(1);
    n.handle_bytes(
        c1,
        &frame(&Message::Goodbye(DisconnectReason::Shutdown)),
        now,
    );
    drain(&mut n);
    n.close(NodeId(8), now).unwrap();
    drain(&mut n);
    let c = n.counters();
    assert_eq!(c.goodbyes_received[DisconnectReason::Shutdown.index()], 1);
    assert_eq!(c.goodbyes_sent[DisconnectReason::Closed.index()], 1);
    assert_eq!(c.goodbyes_sent.iter().sum::<u64>(), 1);
    assert_eq!(c.received[12], 1, "one Goodbye in");
}

#[test]
fn dials_count_as_configured_edges_and_failures_as_failed_handshakes() {
    let (mut n, now) = node(Config::default());
    dialed(&mut n, 5, &[], now);
    assert!(n.edge_info(NodeId(5)).unwrap().configured);
    assert_eq!(n.gauges().configured_edges, 1);
    let conn = n.connect(addr(9999), now).unwrap();
    assert_eq!(n.gauges().handshaking, 1);
    n.handle_dial_failed(conn, "refused", now);
    drain(&mut n);
    assert_eq!(n.counters().handshakes_failed, 1);
    assert_eq!(n.counters().handshakes, 1);
    assert_eq!(n.gauges().handshaking, 0);
}

#[test]
fn calls_and_their_errors_and_round_trips_are_counted() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    let conn = ConnId(1);
    let what = RemoteCall {
        service: "s",
        path: "m",
        kind: CallKind::Call,
        args: Bytes::new(),
    };
    let id = n
        .call(NodeId(7), what, Some(Duration::from_secs(1)), now)
        .unwrap();
    let outs = drain(&mut n);
    assert_eq!(n.counters().calls, 1);
    assert_eq!(n.gauges().calls_pending, 1);
    let _ = outs;
    n.handle_bytes(
        conn,
        &frame(&Message::Response {
            id: id.0,
            result: Err(crate::message::RemoteError::Busy),
        }),
        now,
    );
    drain(&mut n);
    assert_eq!(n.counters().call_errors, 1);
    // A ping answered 3 ms later falls in the 2.5–5 ms bucket.
    let ping = n.ping(NodeId(7), 0, now).unwrap();
    drain(&mut n);
    n.handle_bytes(
        conn,
        &frame(&Message::Pong {
            id: ping,
            padding: Bytes::new(),
        }),
        now + Duration::from_millis(3),
    );
    drain(&mut n);
    let c = n.counters();
    assert_eq!(c.rtt_buckets[5], 1, "{:?}", c.rtt_buckets);
    assert_eq!(c.rtt_sum_us, 3000);
}

/// Pings sent to peer 7 on connection 1 while it sends something every 500 ms for 4 s.
fn pings_on_a_busy_edge(cfg: Config) -> usize {
    let (mut n, t0) = node(cfg);
    peer(&mut n, 1, 7, &[], t0);
    let mut pings = 0;
    for i in 1..=8 {
        let now = t0 + Duration::from_millis(500 * i);
        n.handle_bytes(ConnId(1), &frame(&Message::Topics(vec![])), now);
        n.handle_timeout(now);
        pings += sent(&drain(&mut n), ConnId(1))
            .iter()
            .filter(|m| matches!(m, Message::Ping { .. }))
            .count();
    }
    pings
}

#[test]
fn a_busy_edge_is_still_pinged_to_measure_its_latency() {
    let every = |s| Config::default().latency_interval(Duration::from_secs(s));
    assert_eq!(pings_on_a_busy_edge(every(3)), 1, "once in 4 s");
    assert_eq!(pings_on_a_busy_edge(every(1)), 4, "at 1, 2, 3 and 4 s");
    assert_eq!(pings_on_a_busy_edge(every(0)), 0, "0: only idle edges");
    assert_eq!(
        pings_on_a_busy_edge(Config::default()),
        0,
        "15 s by default"
    );
}

#[test]
fn unsubscribing_a_pattern_lets_go_of_it_and_keeps_the_others() {
    let (mut n, now) = node(Config::default());
    n.subscribe("a/*", now).unwrap();
    n.unsubscribe("a/*", now).unwrap();
    assert!(!n.is_subscribed("a/x"), "the only pattern let go");
    n.subscribe("a/*", now).unwrap();
    n.subscribe("b/**", now).unwrap();
    n.subscribe("c", now).unwrap();
    assert!(n.is_subscribed("a/x") && n.is_subscribed("b/x/y") && n.is_subscribed("c"));
    n.unsubscribe("a/*", now).unwrap();
    assert!(!n.is_subscribed("a/x"), "the pattern let go");
    assert!(n.is_subscribed("b/x/y"), "the other pattern kept");
    n.unsubscribe("c", now).unwrap();
    assert!(!n.is_subscribed("c") && n.is_subscribed("b/x/y"));
}

#[test]
fn requests_served_are_counted() {
    let (mut n, now) = node(Config::default());
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    for id in [1, 2] {
        let req = Message::Request {
            id,
            service: "s".into(),
            path: "m".into(),
            kind: CallKind::Call,
            args: Bytes::from_static(&[0xf6]),
            timeout_ms: None,
        };
        n.handle_bytes(ConnId(1), &frame(&req), now);
    }
    drain(&mut n);
    assert_eq!(n.counters().requests, 2);
    assert_eq!(n.gauges().requests_pending, 2);
}

/// `@node status` answers while the report and 512 bytes for the frame around it fit
/// `max_frame_len`, exactly; past that it fails with a reason.
#[test]
fn introspection_answers_up_to_the_frame_limit_exactly() {
    let ask = |max_frame_len: Option<usize>| {
        let cfg = Config::default().name("n");
        let cfg = match max_frame_len {
            Some(m) => cfg.max_frame_len(m),
            None => cfg,
        };
        let (mut n, now) = node(cfg);
        peer(&mut n, 1, 7, &[], now);
        drain(&mut n);
        let req = Message::Request {
            id: 1,
            service: super::super::NODE_SERVICE.into(),
            path: "status".into(),
            kind: CallKind::Call,
            args: Bytes::from_static(&[0xf6]),
            timeout_ms: None,
        };
        n.handle_bytes(ConnId(1), &frame(&req), now);
        let outs = drain(&mut n);
        sent(&outs, ConnId(1))
            .into_iter()
            .find_map(|m| match m {
                Message::Response { id: 1, result } => Some(result),
                _ => None,
            })
            .expect("an answer")
    };
    let len = ask(None).expect("status").len();
    assert!(ask(Some(len + 512)).is_ok());
    assert!(matches!(
        ask(Some(len + 511)),
        Err(crate::message::RemoteError::Failed(_))
    ));
}
