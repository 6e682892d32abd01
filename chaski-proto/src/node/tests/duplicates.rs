//! Duplicate connections (PROTOCOL §4.3): the loser gets `Goodbye(Duplicate)` at once and
//! nothing after it, what the peer sent on it before it learned still counts (answered on the
//! kept connection), and the edge never flaps.

use super::*;

fn hello_nonce(id: u128, nonce: u64) -> Vec<u8> {
    let mut h = hello(id, &[]);
    h.nonce = nonce;
    frame(&Message::Hello(h))
}

fn lost_or_connected(outs: &[Output]) -> bool {
    outs.iter().any(|o| {
        matches!(
            o,
            Output::Event(Event::PeerLost { .. } | Event::PeerConnected { .. })
        )
    })
}

fn request(id: u64) -> Vec<u8> {
    frame(&Message::Request {
        id,
        service: "math".into(),
        path: "add".into(),
        kind: CallKind::Call,
        args: Bytes::from_static(&[0xf6]),
        timeout_ms: None,
    })
}

/// Peer 7 has an edge on inbound connection 1 (nonce 5), then dials again with a smaller
/// nonce (connection 2): the new connection wins.
fn moved_by_the_peer() -> (Node, Vec<Output>, Instant) {
    let (mut n, now) = node(Config::default());
    n.serve("math", now).unwrap();
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &hello_nonce(7, 5), now);
    drain(&mut n);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    n.handle_bytes(ConnId(2), &hello_nonce(7, 3), now);
    let outs = drain(&mut n);
    (n, outs, now)
}

#[test]
fn a_new_connection_that_wins_closes_the_old_one_at_once_with_duplicate() {
    let (mut n, outs, now) = moved_by_the_peer();
    assert_eq!(n.edges()[0].conn, ConnId(2));
    assert!(matches!(
        sent(&outs, ConnId(2)).as_slice(),
        [Message::Hello(_)]
    ));
    assert!(
        matches!(
            sent(&outs, ConnId(1)).as_slice(),
            [Message::Goodbye(DisconnectReason::Duplicate)]
        ),
        "the old connection is told at once"
    );
    assert!(!lost_or_connected(&outs), "the edge does not flap");
    // The peer closes it on our goodbye: gone, and still no flap.
    n.handle_closed(ConnId(1), now);
    let outs = drain(&mut n);
    assert!(!lost_or_connected(&outs));
    assert_eq!(n.edge_count(), 1);
    assert_eq!(n.connection_count(), 1);
}

#[test]
fn what_the_peer_sent_on_the_old_connection_is_answered_on_the_new_one() {
    let (mut n, _, now) = moved_by_the_peer();
    // Sent by the peer before it read our goodbye: a request, a ping, a publish.
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &request(41), now);
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Ping {
            id: 9,
            padding: Bytes::new(),
        }),
        now,
    );
    let publish = crate::message::Publish {
        origin: NodeId(7),
        seq: 1,
        topic: "t".into(),
        ttl: 4,
        hops: 1,
        payload: Bytes::from_static(b"x"),
    };
    n.handle_bytes(ConnId(1), &frame(&Message::Publish(publish)), now);
    let outs = drain(&mut n);
    assert!(
        sent(&outs, ConnId(1)).is_empty(),
        "nothing after the goodbye"
    );
    assert!(matches!(
        sent(&outs, ConnId(2)).as_slice(),
        [Message::Pong { id: 9, .. }]
    ));
    assert!(outs.iter().any(
        |o| matches!(o, Output::Deliver(Delivery::Request { id: 41, peer, .. }) if *peer == NodeId(7))
    ));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::Message(m)) if m.payload == "x")));
    n.respond(NodeId(7), 41, Ok(Bytes::from_static(&[1])), now)
        .unwrap();
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(2)).as_slice(),
        [Message::Response { id: 41, .. }]
    ));
    // The peer's goodbye on the old connection ends it, with no answer on it.
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Goodbye(DisconnectReason::Duplicate)),
        now,
    );
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)));
    assert!(sent(&outs, ConnId(1)).is_empty());
    assert!(!lost_or_connected(&outs));
}

#[test]
fn a_goodbye_that_overtakes_the_winning_hello_does_not_drop_the_edge() {
    // We dialed the peer twice (a reconnect racing the old connection): the peer moved the
    // edge to our second connection and said goodbye on the first before its Hello on the
    // second reached us.
    let (mut n, now) = node(Config::default());
    let old = n.connect(addr(9000), now).unwrap();
    n.handle_connected(old, addr(9000), Direction::Outbound, now);
    n.handle_bytes(old, &hello_nonce(u128::MAX, 0), now);
    drain(&mut n);
    let new = n.connect(addr(9000), now).unwrap();
    n.handle_connected(new, addr(9000), Direction::Outbound, now);
    drain(&mut n);
    // Force the tie-break: the new connection wins on both sides.
    n.conns.get_mut(&new).unwrap().nonce = 0;
    n.conns.get_mut(&old).unwrap().nonce = 1;
    n.handle_bytes(
        old,
        &frame(&Message::Goodbye(DisconnectReason::Duplicate)),
        now,
    );
    let outs = drain(&mut n);
    assert!(
        !lost_or_connected(&outs),
        "the edge stays while the Hello is on its way"
    );
    assert!(n.is_connected_to(NodeId(u128::MAX)));
    // Still usable: a ping goes out on the old connection, which the peer still reads.
    n.ping(NodeId(u128::MAX), 0, now).unwrap();
    assert!(matches!(
        sent(&drain(&mut n), old).as_slice(),
        [Message::Ping { .. }]
    ));
    n.handle_bytes(new, &hello_nonce(u128::MAX, 0), now);
    let outs = drain(&mut n);
    assert_eq!(n.edges()[0].conn, new);
    assert!(matches!(
        sent(&outs, old).as_slice(),
        [Message::Goodbye(DisconnectReason::Duplicate)]
    ));
    assert!(closed(&outs, old), "both goodbyes crossed: closed at once");
    assert!(!lost_or_connected(&outs));
    assert_eq!(n.connection_count(), 1);
}

#[test]
fn a_duplicate_goodbye_with_no_other_connection_pending_ends_the_edge() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    // Other connections, none of them a dial of ours waiting for a Hello: an edge we dialed,
    // an inbound connection in its handshake.
    dialed(&mut n, 8, &[], now);
    n.handle_connected(ConnId(5), addr(5), Direction::Inbound, now);
    n.handle_bytes(
        ConnId(1),
        &frame(&Message::Goodbye(DisconnectReason::Duplicate)),
        now,
    );
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)));
    assert!(!n.is_connected_to(NodeId(7)));
    assert!(n.is_connected_to(NodeId(8)));
}

#[test]
fn a_losing_newcomer_counts_what_the_peer_sent_on_it_in_a_cross_dial() {
    // Cross-dial: the peer (larger id) took our Hello on its own connection first and may
    // already publish there; our connection wins, theirs is superseded but still read.
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    let ours = n.connect(addr(9000), now).unwrap();
    n.handle_connected(ours, addr(9000), Direction::Outbound, now);
    n.handle_bytes(ours, &hello_nonce(u128::MAX, 0), now);
    drain(&mut n);
    n.handle_connected(ConnId(50), addr(50), Direction::Inbound, now);
    let mut bytes = hello_nonce(u128::MAX, 7);
    let publish = crate::message::Publish {
        origin: NodeId(u128::MAX),
        seq: 1,
        topic: "t".into(),
        ttl: 4,
        hops: 1,
        payload: Bytes::from_static(b"on the loser"),
    };
    bytes.extend(frame(&Message::Publish(publish)));
    n.handle_bytes(ConnId(50), &bytes, now);
    let outs = drain(&mut n);
    assert_eq!(n.edges()[0].conn, ours);
    assert!(matches!(
        sent(&outs, ConnId(50)).as_slice(),
        [Message::Goodbye(DisconnectReason::Duplicate)]
    ));
    assert!(outs.iter().any(
        |o| matches!(o, Output::Deliver(Delivery::Message(m)) if m.payload == "on the loser")
    ));
    assert!(!lost_or_connected(&outs));
}

#[test]
fn a_redial_that_meets_the_edge_is_over() {
    // The peer dialed us back while our redial of it was on its way: when the redial's
    // connection loses the tie-break, nothing is left to redial.
    let (mut n, now) = node(Config::default().reconnect_initial(Duration::from_millis(10)));
    let first = dialed(&mut n, 7, &[], now);
    n.handle_closed(first, now);
    drain(&mut n);
    assert!(n.is_redialing(NodeId(7)));
    let later = now + Duration::from_secs(1);
    n.handle_timeout(later);
    let outs = drain(&mut n);
    let redial = outs
        .iter()
        .find_map(|o| match o {
            Output::Dial { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a redial");
    peer(&mut n, 3, 7, &[], later);
    assert!(!n.is_redialing(NodeId(7)), "connected: no redial left");
    n.handle_connected(redial, addr(9007), Direction::Outbound, later);
    n.handle_bytes(redial, &hello_nonce(7, 0), later);
    drain(&mut n);
    assert!(!n.is_redialing(NodeId(7)));
    assert_eq!(n.edge_count(), 1);
    assert_eq!(
        n.timer_count(),
        2,
        "the edge's and the superseded connection's"
    );
}

/// The old connection ignores another Hello (not a protocol error), and once the edge it
/// lost to is gone, what still arrives on it reaches nobody.
#[test]
fn the_old_connection_carries_nothing_once_the_edge_is_gone() {
    let (mut n, _, now) = moved_by_the_peer();
    n.subscribe("t", now).unwrap();
    drain(&mut n);
    n.handle_bytes(ConnId(1), &hello_nonce(7, 9), now);
    let outs = drain(&mut n);
    assert!(!closed(&outs, ConnId(1)), "a second Hello closed it");
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::BadPeer { .. }))));
    assert_eq!(n.edge_count(), 1);

    n.handle_closed(ConnId(2), now);
    drain(&mut n);
    assert_eq!(n.edge_count(), 0);
    let publish = crate::message::Publish {
        origin: NodeId(7),
        seq: 2,
        topic: "t".into(),
        ttl: 4,
        hops: 1,
        payload: Bytes::from_static(b"late"),
    };
    n.handle_bytes(ConnId(1), &frame(&Message::Publish(publish)), now);
    n.handle_bytes(ConnId(1), &request(42), now);
    let outs = drain(&mut n);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Deliver(_))),
        "{outs:?}"
    );
    assert!(sent(&outs, ConnId(1)).is_empty());
}

/// The old connection's close is no failed handshake: no `ConnectFailed`, nothing counted.
#[test]
fn the_old_connection_closing_is_no_failed_handshake() {
    let (mut n, _, now) = moved_by_the_peer();
    n.handle_closed(ConnId(1), now);
    let outs = drain(&mut n);
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ConnectFailed { .. }))));
    assert_eq!(n.counters().handshakes_failed, 0);
}

/// A peer that never answers the old connection's goodbye: it is closed at its deadline with
/// nothing more written on it (its goodbye was the last frame).
#[test]
fn the_old_connection_is_closed_at_its_deadline_without_another_goodbye() {
    let (mut n, _, now) = moved_by_the_peer();
    n.handle_timeout(now + Duration::from_secs(60));
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)));
    assert!(
        sent(&outs, ConnId(1)).is_empty(),
        "{:?}",
        sent(&outs, ConnId(1))
    );
}
