//! Sending: bytes stay in the core until the runtime writes them, congestion is decided per
//! peer, a peer that takes nothing is dropped, a closed connection lingers; timers.

use super::super::timers::{TimerKey, Timers};
use super::*;
use crate::id::RequestId;

const KIB: usize = 1024;

/// Established inbound edges: conn 1 to peer 7 (subscribes "a"), conn 2 to peer 8 ("b"),
/// with their Hellos written.
fn two_peers(cfg: Config) -> (Node, Instant) {
    let (mut n, now) = node(cfg);
    peer(&mut n, 1, 7, &["a"], now);
    peer(&mut n, 2, 8, &["b"], now);
    (n, now)
}

/// Raw outputs of the core (without taking any bytes).
fn raw_outputs(n: &mut Node) -> Vec<crate::Output> {
    std::iter::from_fn(|| n.poll_output()).collect()
}

#[test]
fn bytes_wait_in_the_core_until_written() {
    let (mut n, now) = two_peers(Config::default());
    assert!(n.outbound(ConnId(1)).is_empty());
    let sent = n.counters().frames_sent;
    n.publish("a", Bytes::from_static(b"xyz"), now).unwrap();
    assert_eq!(n.counters().frames_sent, sent + 1);
    // One notification for the connection that has bytes again; none for the other.
    let outs = raw_outputs(&mut n);
    assert!(matches!(
        outs.as_slice(),
        [crate::Output::Transmit { conn }] if *conn == ConnId(1)
    ));
    let waiting = n.outbound(ConnId(1)).to_vec();
    assert!(waiting.ends_with(b"xyz"));
    assert!(n.outbound(ConnId(2)).is_empty());
    // Writing part of it leaves the rest, in order.
    n.advance(ConnId(1), 5, now);
    assert_eq!(n.outbound(ConnId(1)), &waiting[5..]);
    // More bytes while some wait: no second notification.
    n.publish("a", Bytes::from_static(b"more"), now).unwrap();
    assert!(raw_outputs(&mut n).is_empty());
    // Writing more than waits takes everything (and no more).
    n.advance(ConnId(1), 1 << 20, now);
    assert!(n.outbound(ConnId(1)).is_empty());
    n.publish("a", Bytes::from_static(b"again"), now).unwrap();
    assert_eq!(raw_outputs(&mut n).len(), 1);
    // Unknown connections have nothing, and advancing them does nothing.
    assert!(n.outbound(ConnId(99)).is_empty());
    n.advance(ConnId(99), 10, now);
}

#[test]
fn publishing_waits_only_for_congested_subscribers() {
    // Congestion limit: 64 KiB.
    let (mut n, now) = two_peers(Config::default().max_outbound(512 * KIB));
    assert_eq!(n.config().congestion_limit(), 64 * KIB);
    let chunk = Bytes::from(vec![1u8; 16 * KIB]);
    for _ in 0..4 {
        n.publish("a", chunk.clone(), now).unwrap();
    }
    // 4 x 16 KiB plus headers: just over the limit.
    assert!(n.outbound(ConnId(1)).len() > 64 * KIB);
    assert_eq!(n.congested_count(), 1);
    assert!(n.publish_would_wait("a"));
    assert!(
        !n.publish_would_wait("b"),
        "another peer's topic is not held"
    );
    assert!(!n.publish_would_wait("nobody"));
    // Writing it down to the limit releases publishers.
    let over = n.outbound(ConnId(1)).len() - 64 * KIB;
    n.advance(ConnId(1), over - 1, now);
    assert!(n.publish_would_wait("a"));
    assert_eq!(n.congestion_released(), 0);
    n.advance(ConnId(1), 1, now);
    assert!(!n.publish_would_wait("a"));
    assert_eq!(n.congested_count(), 0);
    assert_eq!(n.congestion_released(), 1);
    // A root gets every topic, so it holds every publish while congested.
    let (mut r, now) = node(Config::default().max_outbound(512 * KIB));
    r.handle_connected(ConnId(3), addr(3), Direction::Inbound, now);
    let mut h = hello(9, &[]);
    h.root = true;
    r.handle_bytes(ConnId(3), &frame(&Message::Hello(h)), now);
    for _ in 0..5 {
        r.publish("x", chunk.clone(), now).unwrap();
    }
    assert!(r.publish_would_wait("anything"));
    // A congested connection that closes holds nothing any more.
    r.close(NodeId(9), now).unwrap();
    assert!(!r.publish_would_wait("anything"));
    assert_eq!((r.congested_count(), r.congestion_released()), (0, 1));
}

#[test]
fn over_max_outbound_the_connection_is_closed() {
    let (mut n, now) = two_peers(Config::default().max_outbound(64 * KIB));
    drain(&mut n);
    let chunk = Bytes::from(vec![1u8; 16 * KIB]);
    for _ in 0..5 {
        // Publishing does not check the wait: relays and replies do not either.
        let _ = n.publish("a", chunk.clone(), now);
    }
    assert!(!n.is_connected_to(NodeId(7)));
    assert!(n.is_connected_to(NodeId(8)));
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            reason: DisconnectReason::LimitExceeded(_),
            ..
        })
    )));
}

#[test]
fn a_peer_that_takes_nothing_is_dropped_after_the_stall_timeout() {
    let stall = Duration::from_secs(10);
    let quiet = Duration::from_secs(3600);
    let cfg = Config::default()
        .stall_timeout(stall)
        .idle_timeout(quiet)
        .keepalive_interval(quiet);
    let (mut n, t0) = two_peers(cfg.clone());
    drain(&mut n);
    n.publish("a", Bytes::from(vec![1u8; 1000]), t0).unwrap();
    // Waiting bytes alone start no clock: the runtime has not tried to write them.
    n.handle_timeout(t0 + stall * 2);
    raw_outputs(&mut n);
    assert!(n.is_connected_to(NodeId(7)));
    let t1 = t0 + stall * 2;
    // The socket takes nothing: the clock starts, and more reports of nothing do not move it.
    let (mut m, _) = two_peers(cfg.clone());
    m.publish("a", Bytes::from(vec![1u8; 1000]), t1).unwrap();
    m.advance(ConnId(1), 0, t1);
    m.advance(ConnId(1), 0, t1 + Duration::from_secs(5));
    m.handle_timeout(t1 + stall);
    assert!(!m.is_connected_to(NodeId(7)));
    n.advance(ConnId(1), 0, t1);
    assert_eq!(n.poll_timeout(), Some(t1 + stall));
    n.handle_timeout(t1 + stall - Duration::from_millis(1));
    assert!(n.is_connected_to(NodeId(7)));
    // Progress restarts it.
    let t2 = t1 + Duration::from_secs(9);
    n.advance(ConnId(1), 10, t2);
    n.handle_timeout(t1 + stall);
    assert!(
        n.is_connected_to(NodeId(7)),
        "a slow peer that takes bytes is kept"
    );
    raw_outputs(&mut n);
    n.handle_timeout(t2 + stall);
    assert!(!n.is_connected_to(NodeId(7)));
    assert!(n.is_connected_to(NodeId(8)), "the other peer is kept");
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::BadPeer {
            peer: Some(NodeId(7)),
            reason: DisconnectReason::LimitExceeded(_),
            ..
        })
    )));
    assert!(closed(&outs, ConnId(1)));
    // What it did not take is dropped (no goodbye behind it either): the close is at once.
    assert!(n.outbound(ConnId(1)).is_empty());
    assert_eq!(n.closing_count(), 0);
    assert_eq!(n.counters().bad_peers, 1);
    // And no longer counted as held.
    assert_eq!(n.memory(), n.memory_recounted());
    assert_eq!(m.memory(), m.memory_recounted());
    // A peer whose bytes were all written is never dropped, however long ago it blocked.
    n.publish("b", Bytes::from(vec![1u8; 100]), t2).unwrap();
    n.advance(ConnId(2), 0, t2);
    let all = n.outbound(ConnId(2)).len();
    n.advance(ConnId(2), all, t2);
    n.handle_timeout(t2 + stall * 3);
    assert!(n.is_connected_to(NodeId(8)));
}

#[test]
fn a_closed_connection_lingers_with_what_it_has_not_written() {
    let linger = Duration::from_secs(2);
    let (mut n, t0) = two_peers(Config::default().linger(linger));
    drain(&mut n);
    n.publish("a", Bytes::from(vec![1u8; 500]), t0).unwrap();
    n.close(NodeId(7), t0).unwrap();
    assert_eq!(n.poll_timeout(), Some(t0 + linger));
    let outs = raw_outputs(&mut n);
    assert!(outs
        .iter()
        .any(|o| matches!(o, crate::Output::Close { conn } if *conn == ConnId(1))));
    // The publish and the goodbye are still there to write.
    let left = n.outbound(ConnId(1)).to_vec();
    assert!(left.len() > 500);
    assert_eq!(n.closing_count(), 1);
    assert_eq!(n.connection_count(), 1);
    // Reports of nothing written do not keep it; progress does.
    n.advance(ConnId(1), 0, t0 + Duration::from_millis(500));
    n.advance(ConnId(1), 100, t0 + Duration::from_secs(1));
    n.advance(ConnId(1), 0, t0 + Duration::from_secs(2));
    assert_eq!(n.outbound(ConnId(1)), &left[100..]);
    n.handle_timeout(t0 + linger);
    assert_eq!(n.closing_count(), 1);
    // Without progress for `linger`, it is dropped and the runtime is told again.
    n.handle_timeout(t0 + Duration::from_secs(1) + linger);
    assert_eq!(n.closing_count(), 0);
    assert!(n.outbound(ConnId(1)).is_empty());
    assert!(raw_outputs(&mut n)
        .iter()
        .any(|o| matches!(o, crate::Output::Close { conn } if *conn == ConnId(1))));
    // Written in full: gone at once; a runtime's EOF forgets one too.
    n.publish("b", Bytes::from(vec![1u8; 10]), t0).unwrap();
    n.close(NodeId(8), t0).unwrap();
    assert_eq!(n.closing_count(), 1);
    let all = n.outbound(ConnId(2)).len();
    n.advance(ConnId(2), all, t0);
    assert_eq!(n.closing_count(), 0);
    let (mut m, t0) = two_peers(Config::default());
    m.publish("a", Bytes::from(vec![1u8; 10]), t0).unwrap();
    m.close(NodeId(7), t0).unwrap();
    m.handle_closed(ConnId(1), t0);
    assert_eq!(m.closing_count(), 0);
    assert!(m.outbound(ConnId(1)).is_empty());
}

#[test]
fn shutdown_keeps_only_the_timers_of_what_still_flushes() {
    let (mut n, now) = two_peers(Config::default());
    drain(&mut n);
    n.subscribe("t", now).unwrap();
    n.discover(now).unwrap();
    n.call(
        NodeId(7),
        RemoteCall {
            service: "s",
            path: "f",
            kind: CallKind::Call,
            args: Bytes::new(),
        },
        None,
        now,
    )
    .unwrap();
    assert!(n.timer_count() >= 4, "edges, discovery and the call");
    n.shutdown(now);
    // Two closing connections with their goodbyes: their `linger` is all that is left.
    assert_eq!(n.closing_count(), 2);
    assert_eq!(n.timer_count(), 2);
    for c in [1, 2] {
        let all = n.outbound(ConnId(c)).len();
        n.advance(ConnId(c), all, now);
    }
    assert_eq!(
        (n.closing_count(), n.timer_count(), n.poll_timeout()),
        (0, 0, None)
    );
}

#[test]
fn timers_follow_what_they_guard() {
    let (mut n, now) = two_peers(Config::default());
    drain(&mut n);
    let base = n.timer_count();
    assert_eq!(base, 2, "one keep-alive per edge");
    let ids: Vec<RequestId> = (0..10)
        .map(|_| {
            n.call(
                NodeId(7),
                RemoteCall {
                    service: "s",
                    path: "f",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                None,
                now,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(n.timer_count(), base + 10);
    for id in ids {
        assert!(n.cancel_call(id, now));
    }
    assert_eq!(n.timer_count(), base);
    // A dial has a handshake deadline until its edge exists; the edge then has a keep-alive.
    let conn = n.connect(addr(9100), now).unwrap();
    assert_eq!(n.timer_count(), base + 1);
    n.handle_connected(conn, addr(9100), Direction::Outbound, now);
    n.handle_bytes(conn, &frame(&Message::Hello(hello(11, &[]))), now);
    assert!(n.is_connected_to(NodeId(11)));
    assert_eq!(n.timer_count(), base + 1);
    // The edge goes: its timer too (its goodbye lingers until written).
    n.close(NodeId(11), now).unwrap();
    assert_eq!(n.timer_count(), base + 1);
    let all = n.outbound(conn).len();
    n.advance(conn, all, now);
    assert_eq!(n.timer_count(), base);
    // Status queries: answered or not, their timers go.
    let token = n.query_status(addr(9200), now).unwrap();
    assert_eq!(n.timer_count(), base + 1);
    n.handle_timeout(now + n.config().status_timeout);
    assert_eq!(n.timer_count(), base);
    let _ = token;
}

#[test]
fn with_skip_a_congested_peer_misses_messages_and_nobody_waits() {
    let cfg = Config::default()
        .max_outbound(512 * KIB)
        .on_congestion(crate::OnCongestion::Skip);
    let (mut n, now) = two_peers(cfg);
    let chunk = Bytes::from(vec![1u8; 16 * KIB]);
    for _ in 0..5 {
        n.publish("a", chunk.clone(), now).unwrap();
    }
    // The fifth found the peer congested: skipped, and counted.
    let held = n.outbound(ConnId(1)).len();
    assert!(held > 64 * KIB && held < 5 * 16 * KIB);
    assert_eq!(n.counters().congestion_skipped, 1);
    assert!(!n.publish_would_wait("a"));
    n.publish("a", chunk.clone(), now).unwrap();
    assert_eq!(n.outbound(ConnId(1)).len(), held);
    assert_eq!(n.counters().congestion_skipped, 2);
    // The other peer gets everything.
    n.publish("b", chunk.clone(), now).unwrap();
    assert!(n.outbound(ConnId(2)).len() > 16 * KIB);
    // Once the peer takes its bytes, it gets messages again.
    n.advance(ConnId(1), held, now);
    n.publish("a", chunk, now).unwrap();
    assert!(n.outbound(ConnId(1)).len() > 16 * KIB);
    assert_eq!(n.counters().congestion_skipped, 2);
}

#[test]
fn any_frame_can_congest_a_connection() {
    // A ping's padding comes back in the pong: a large one congests our side too.
    let (mut n, now) = two_peers(Config::default().max_outbound(512 * KIB));
    let sent = n.counters().frames_sent;
    let padding = Bytes::from(vec![0u8; 70 * KIB]);
    n.handle_bytes(ConnId(1), &frame(&Message::Ping { id: 1, padding }), now);
    assert_eq!(n.counters().frames_sent, sent + 1);
    assert_eq!(n.congested_count(), 1);
    assert!(n.publish_would_wait("a"));
}

#[test]
fn events_past_the_bound_drop_the_oldest_and_are_counted() {
    let (mut n, now) = node(Config::default().max_events(3));
    for c in 1..=5u64 {
        n.handle_connected(ConnId(c), addr(c as u16), Direction::Inbound, now);
        n.handle_bytes(
            ConnId(c),
            &frame(&Message::Hello(hello(100 + c as u128, &[]))),
            now,
        );
    }
    assert_eq!(n.counters().events_dropped, 2);
    let events: Vec<NodeId> = drain(&mut n)
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(Event::PeerConnected { info, .. }) => Some(info.id),
            _ => None,
        })
        .collect();
    assert_eq!(events, vec![NodeId(103), NodeId(104), NodeId(105)]);
}

#[test]
fn congestion_and_the_outbound_bound_start_past_their_limits() {
    // A publish frame on topic "a" is 34 bytes plus its payload.
    let frame_of = |payload: usize| 34 + payload;
    let (mut n, now) = two_peers(Config::default().max_outbound(512 * KIB));
    let limit = n.config().congestion_limit();
    n.publish("a", Bytes::from(vec![0u8; limit - frame_of(0)]), now)
        .unwrap();
    assert_eq!(n.outbound(ConnId(1)).len(), limit);
    assert_eq!(n.congested_count(), 0, "at the limit is not over it");
    n.publish("a", Bytes::new(), now).unwrap();
    assert_eq!(n.congested_count(), 1);
    // The hard bound: exactly `max_outbound` waiting keeps the connection.
    let (mut n, now) = two_peers(Config::default().max_outbound(128 * KIB));
    n.publish("a", Bytes::from(vec![0u8; 128 * KIB - 34]), now)
        .unwrap();
    assert_eq!(n.outbound(ConnId(1)).len(), 128 * KIB);
    assert!(n.is_connected_to(NodeId(7)));
    n.publish("a", Bytes::new(), now).unwrap();
    assert!(!n.is_connected_to(NodeId(7)));
    // Any frame past it closes the connection: a pong carrying a large padding back.
    let (mut n, now) = two_peers(Config::default().max_outbound(128 * KIB));
    let padding = Bytes::from(vec![0u8; 130 * KIB]);
    n.handle_bytes(ConnId(2), &frame(&Message::Ping { id: 1, padding }), now);
    assert!(!n.is_connected_to(NodeId(8)));
    assert!(n.is_connected_to(NodeId(7)));
}

#[test]
fn frames_split_anywhere_are_handled_as_whole_ones() {
    // Hello, then publishes of several sizes, delivered in chunks of every size from 1 byte.
    let mut stream = frame(&Message::Hello(hello(7, &["a"])));
    for size in [0usize, 1, 100, 5000] {
        stream.extend(frame(&Message::Publish(crate::message::Publish {
            origin: NodeId(7),
            seq: size as u64 + 1,
            topic: "t".into(),
            ttl: 1,
            hops: 1,
            payload: Bytes::from(vec![size as u8; size]),
        })));
    }
    for chunk in [1, 2, 3, 5, 64, 1000, stream.len()] {
        let (mut n, now) = node(Config::default());
        n.subscribe("t", now).unwrap();
        n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
        for piece in stream.chunks(chunk) {
            n.handle_bytes(ConnId(1), piece, now);
        }
        assert!(n.is_connected_to(NodeId(7)), "chunks of {chunk}");
        assert_eq!(n.counters().frames_received, 5, "chunks of {chunk}");
        let got: Vec<usize> = drain(&mut n)
            .into_iter()
            .filter_map(|o| match o {
                Output::Deliver(Delivery::Message(m)) => Some(m.payload.len()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![0, 1, 100, 5000], "chunks of {chunk}");
    }
}

/// Timers run when their time has come, however late the runtime calls: a handshake, a dial,
/// a redial, each handled once, at any `now` past its deadline.
#[test]
fn late_timeouts_still_fire() {
    let late = Duration::from_secs(60);
    // An inbound connection that never says Hello.
    let (mut n, now) = node(Config::default().idle_timeout(late * 10));
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    assert_eq!(n.poll_timeout(), Some(now + n.config().handshake_timeout));
    n.handle_timeout(now + late);
    assert_eq!(n.connection_count(), 0);
    // A dial that never completes: refused to its caller, and nothing is written on it.
    let conn = n.connect(addr(9300), now).unwrap();
    drain(&mut n);
    n.handle_timeout(now + late);
    let outs = drain(&mut n);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::ConnectFailed { conn: c, error: ConnectError::HandshakeTimeout, .. }) if *c == conn
    )));
    assert!(closed(&outs, conn));
    assert!(
        sent(&outs, conn).is_empty(),
        "no goodbye on a socket that never opened"
    );
    assert_eq!(n.closing_count(), 0);
    // A lost peer is redialed, however late the timer runs.
    let c = dialed(&mut n, 7, &[], now);
    n.handle_closed(c, now);
    drain(&mut n);
    let next = n.poll_timeout().unwrap();
    n.handle_timeout(next + late);
    let outs = drain(&mut n);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Dial { addr: a, .. } if *a == addr(9007))));
}

/// Sockets that never say Hello have their own slots, the oldest going first: they can neither
/// keep a real peer out nor take an edge's place.
#[test]
fn idle_sockets_cannot_lock_peers_out() {
    let (mut n, now) = node(Config::default().max_edges(2).max_handshakes(3));
    for c in 1..=10u64 {
        n.handle_connected(ConnId(c), addr(c as u16), Direction::Inbound, now);
        assert!(n.connection_count() <= 3);
    }
    let outs = drain(&mut n);
    for c in 1..=7u64 {
        assert!(
            closed(&outs, ConnId(c)),
            "the oldest idle socket {c} is dropped"
        );
        assert!(matches!(
            sent(&outs, ConnId(c)).last(),
            Some(Message::Goodbye(DisconnectReason::TooManyConnections))
        ));
    }
    // A real peer arriving now gets in, and completes its edge.
    peer(&mut n, 11, 7, &[], now);
    assert!(n.is_connected_to(NodeId(7)));
    peer(&mut n, 12, 8, &[], now);
    assert!(n.is_connected_to(NodeId(8)));
    // Edges keep their own bound: a third is refused at its Hello.
    let outs = peer(&mut n, 13, 9, &[], now);
    assert!(!n.is_connected_to(NodeId(9)));
    assert!(matches!(
        sent(&outs, ConnId(13)).last(),
        Some(Message::Goodbye(DisconnectReason::TooManyConnections))
    ));
    assert_eq!(n.edge_count(), 2);
}

/// The timer set itself: one deadline per key, in order.
#[test]
fn timers_keep_one_deadline_per_key_in_order() {
    let t0 = Instant::now();
    let mut t = Timers::default();
    t.set(TimerKey::Call(1), t0 + Duration::from_secs(3));
    t.set(TimerKey::Call(2), t0 + Duration::from_secs(1));
    t.set(TimerKey::Call(1), t0 + Duration::from_secs(2));
    assert_eq!(t.len(), 2);
    assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(t.pop_due(t0), None);
    let late = t0 + Duration::from_secs(5);
    assert_eq!(t.pop_due(late), Some(TimerKey::Call(2)));
    t.cancel(&TimerKey::Call(1));
    assert_eq!(t.pop_due(late), None);
    assert_eq!((t.len(), t.next()), (0, None));
    t.set(TimerKey::Status(1), t0);
    t.set(TimerKey::Call(3), t0);
    t.retain(|k| matches!(k, TimerKey::Call(_)));
    assert_eq!((t.len(), t.pop_due(t0)), (1, Some(TimerKey::Call(3))));
}

/// A connection whose bytes were all taken before the runtime polled gets no `Transmit`.
#[test]
fn a_connection_emptied_before_the_poll_is_not_announced() {
    let (mut n, now) = two_peers(Config::default());
    n.publish("a", Bytes::from_static(b"xyz"), now).unwrap();
    assert!(n.has_pending_output());
    let taken = n.take_outbound(ConnId(1), now);
    assert!(!taken.is_empty());
    let outs = raw_outputs(&mut n);
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, crate::Output::Transmit { conn } if *conn == ConnId(1))),
        "{outs:?}"
    );
}

/// A ping frame of exactly `len` bytes on the wire.
fn ping_of(len: usize) -> Message {
    let empty = frame(&Message::Ping {
        id: 1,
        padding: Bytes::new(),
    })
    .len();
    // The padding's CBOR header grows with its length: find the padding that lands on `len`.
    (0..len)
        .rev()
        .map(|pad| Message::Ping {
            id: 1,
            padding: Bytes::from(vec![0; pad]),
        })
        .find(|m| frame(m).len() == len)
        .unwrap_or_else(|| panic!("no ping of {len} bytes (an empty one is {empty})"))
}

/// A connection is congested past the congestion limit, not at it; overflowed past
/// `max_outbound`, not at it.
#[test]
fn congestion_and_overflow_begin_past_their_limits() {
    let cfg = Config::default().max_outbound(512 * KIB);
    let limit = cfg.congestion_limit();
    let (mut n, now) = two_peers(cfg);
    drain(&mut n);
    n.send(ConnId(1), &ping_of(limit), now);
    assert_eq!(n.outbound_len(ConnId(1)), limit);
    assert_eq!(n.congested_count(), 0, "congested at the limit");
    n.send(ConnId(1), &ping_of(100), now);
    assert_eq!(n.congested_count(), 1);
    let room = 512 * KIB - n.outbound_len(ConnId(1));
    n.send(ConnId(1), &ping_of(room), now);
    assert_eq!(n.outbound_len(ConnId(1)), 512 * KIB);
    assert!(n.is_connected_to(NodeId(7)), "overflowed at the limit");
    n.send(ConnId(1), &ping_of(100), now);
    assert!(!n.is_connected_to(NodeId(7)));
}

/// A file frame joins the outbound buffer while less than `BULK_FEED` waits there and the lane
/// is empty, else waits in the lane; the lane is full past the congestion limit, not at it.
#[test]
fn file_frames_join_the_buffer_or_the_lane_at_their_bounds() {
    use super::super::outbound::BULK_FEED;
    let cfg = Config::default().max_outbound(64 << 20);
    let limit = cfg.congestion_limit();
    let (mut n, now) = two_peers(cfg);
    drain(&mut n);
    let c = ConnId(1);
    let sent = n.counters().frames_sent;
    let sent_kind = n.counters().sent[0];
    let frames_out = n.conns[&c].frames_out;
    n.send_frame_bulk(c, Bytes::from(vec![0; 1000]), 0, now);
    assert_eq!(
        n.conns[&c].bulk_bytes, 0,
        "waited in the lane behind nothing"
    );
    assert_eq!(n.counters().frames_sent, sent + 1);
    n.send_frame_bulk(c, Bytes::from(vec![0; BULK_FEED - 1000]), 0, now);
    assert_eq!(n.conns[&c].queued(), BULK_FEED);
    assert_eq!(n.conns[&c].bulk_bytes, 0);
    // Exactly BULK_FEED waits: the next one goes to the lane.
    n.send_frame_bulk(c, Bytes::from(vec![0; 10]), 0, now);
    assert_eq!(n.conns[&c].bulk_bytes, 10);
    assert_eq!(n.counters().frames_sent, sent + 3);
    assert_eq!(n.counters().sent[0], sent_kind + 3);
    assert_eq!(n.conns[&c].frames_out, frames_out + 3);
    // Up to the limit in frames of 64 KiB.
    let chunk = 64 * KIB;
    assert_eq!(limit % chunk, 0);
    for _ in 1..limit / chunk {
        n.send_frame_bulk(c, Bytes::from(vec![0; chunk]), 0, now);
    }
    n.send_frame_bulk(c, Bytes::from(vec![0; chunk - 10]), 0, now);
    assert_eq!(n.conns[&c].bulk_bytes, limit);
    assert!(!n.conns[&c].bulk_full, "full at the limit");
    n.send_frame_bulk(c, Bytes::from(vec![0; 1]), 0, now);
    assert!(n.conns[&c].bulk_full);
    assert_eq!(n.memory(), n.memory_recounted());
    // Written down to half the limit: the lane's senders may go on (it is not empty yet).
    while n.conns[&c].bulk_full {
        assert!(n.conns[&c].bulk_bytes > limit / 2, "still full at half");
        let len = n.outbound(c).len();
        n.advance(c, len, now);
    }
    assert!(n.conns[&c].bulk_bytes > limit / 4);
    assert_eq!(n.memory(), n.memory_recounted());
}

/// A peer whose file frames fill its lane exactly to `max_outbound` is kept; one byte more and
/// it is dropped.
#[test]
fn a_file_lane_overflows_past_max_outbound_not_at_it() {
    let max = 1 << 20;
    let (mut n, now) = two_peers(Config::default().max_outbound(max));
    drain(&mut n);
    let c = ConnId(1);
    let chunk = 64 * KIB;
    for _ in 0..max / chunk {
        n.send_frame_bulk(c, Bytes::from(vec![0; chunk]), 0, now);
    }
    assert_eq!(n.outbound_len(c), max);
    assert!(n.is_connected_to(NodeId(7)), "dropped at the limit");
    n.send_frame_bulk(c, Bytes::from(vec![0; 1]), 0, now);
    assert!(!n.is_connected_to(NodeId(7)));
}

/// Paused readers resume once no lane holds more than half the congestion limit.
#[test]
fn paused_readers_resume_at_half_the_congestion_limit() {
    let cfg = Config::default().max_outbound(64 << 20);
    let half = cfg.congestion_limit() / 2;
    for (lane, resumes) in [(half + 1, false), (half, true)] {
        let (mut n, _) = two_peers(cfg.clone());
        drain(&mut n);
        n.conns.get_mut(&ConnId(1)).unwrap().bulk_bytes = lane;
        n.read_paused.insert(ConnId(2));
        n.resume_reading();
        let resumed = raw_outputs(&mut n)
            .iter()
            .any(|o| matches!(o, crate::Output::Resume { conn } if *conn == ConnId(2)));
        assert_eq!(resumed, resumes, "lane of {lane} bytes");
        assert_eq!(n.wants_read(ConnId(2)), resumes);
    }
}

/// A connection whose full file lane held senders back goes away: they are released (the
/// counter they wait on moves), whether it was an edge or not.
#[test]
fn a_connection_with_a_full_lane_going_away_releases_its_senders() {
    let cfg = Config::default().max_outbound(64 << 20);
    let limit = cfg.congestion_limit();
    let (mut n, now) = two_peers(cfg);
    drain(&mut n);
    let c = ConnId(1);
    let chunk = 64 * KIB;
    while !n.conns[&c].bulk_full {
        n.send_frame_bulk(c, Bytes::from(vec![0; chunk]), 0, now);
    }
    assert!(n.conns[&c].bulk_bytes > limit);
    let before = n.congestion_released();
    n.handle_closed(c, now);
    assert!(n.congestion_released() > before, "senders still wait");
    assert_eq!(n.memory(), n.memory_recounted());
}
