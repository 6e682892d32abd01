//! What a peer sends is held to what the protocol promises: publishes name topics as announced
//! names do, a Hello says what PROTOCOL §3 says it must, a peer that reads nothing gets a
//! goodbye when the wire allows one, and nothing a peer names reaches a log unescaped.

use std::sync::{Arc, Mutex};

use super::*;
use crate::codec::encode_publish_ref;
use crate::message::{Datagram, PublishRef};

fn compact(topic: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    let p = PublishRef {
        origin: NodeId(7),
        seq: 1,
        topic,
        ttl: 8,
        hops: 1,
        payload: b"x",
    };
    encode_publish_ref(&p, &mut b, 1 << 24).unwrap();
    b.to_vec()
}

fn refused_with(outs: &[Output], conn: ConnId) -> Option<DisconnectReason> {
    if !closed(outs, conn) {
        return None;
    }
    sent(outs, conn).into_iter().find_map(|m| match m {
        Message::Goodbye(r) => Some(r),
        _ => None,
    })
}

/// A node (a root, or a member subscribed to `topic` where it can) with peer 7 on
/// connection 1 and a subscriber of two patterns on connection 2.
fn relay(root: bool, topic: &str) -> (Node, Instant) {
    let (mut n, now) = node(Config::default().root(root));
    if !root {
        n.subscribe(topic.get(..256).unwrap_or(topic), now).ok();
    }
    peer(&mut n, 1, 7, &[], now);
    peer(&mut n, 2, 8, &["sensors/*/temp", "sensors/**"], now);
    drain(&mut n);
    (n, now)
}

#[test]
fn a_publish_is_refused_at_the_first_node_when_its_topic_could_not_be_announced() {
    let long = "t".repeat(300);
    for (topic, why) in [
        ("sensors/*/temp", "pattern"),
        ("sensors/**", "pattern"),
        ("a*", "pattern"),
        (long.as_str(), "bytes"),
        ("", "empty"),
    ] {
        let cbor = frame(&Message::Publish(crate::message::Publish {
            origin: NodeId(7),
            seq: 2,
            topic: topic.into(),
            ttl: 8,
            hops: 1,
            payload: Bytes::from_static(b"x"),
        }));
        // A root takes every topic and would relay to the pattern's subscriber; a member may
        // subscribe to that very pattern: neither lets it through, in either encoding.
        for root in [true, false] {
            for encoded in [compact(topic), cbor.clone()] {
                let (mut n, now) = relay(root, topic);
                n.handle_bytes(ConnId(1), &encoded, now);
                let outs = drain(&mut n);
                let reason = refused_with(&outs, ConnId(1))
                    .unwrap_or_else(|| panic!("{topic:?} ({why}) was not refused"));
                assert!(reason.to_string().contains(why), "{topic:?}: {reason}");
                assert!(
                    sent(&outs, ConnId(2)).is_empty(),
                    "{topic:?} was relayed to the subscriber of the pattern"
                );
                assert!(!outs
                    .iter()
                    .any(|o| matches!(o, Output::Deliver(Delivery::Message(_)))));
                assert_eq!(n.counters().bad_peers, 1);
            }
        }
    }
    // The same node relays a valid topic the pattern matches (the check is not too wide).
    let (mut n, now) = relay(true, "");
    n.handle_bytes(ConnId(1), &compact("sensors/a/temp"), now);
    assert_eq!(sent(&drain(&mut n), ConnId(2)).len(), 1);
}

#[test]
fn a_udp_publish_to_a_pattern_is_not_delivered() {
    let (mut n, now) = node(Config::default());
    n.subscribe("sensors/*/temp", now).unwrap();
    drain(&mut n);
    for topic in ["sensors/*/temp", "sensors/a/temp"] {
        let dg = crate::codec::encode_value(&Datagram::Publish {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
        })
        .unwrap();
        n.handle_datagram(addr(5), &dg, now);
    }
    let got: Vec<String> = drain(&mut n)
        .into_iter()
        .filter_map(|o| match o {
            Output::Deliver(Delivery::Message(m)) => Some(m.topic),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec!["sensors/a/temp".to_string()]);
}

#[test]
fn an_announced_name_with_a_partial_wildcard_is_refused() {
    let (mut n, now) = node(Config::default());
    let outs = peer(&mut n, 1, 7, &["sens*"], now);
    assert!(matches!(
        refused_with(&outs, ConnId(1)),
        Some(DisconnectReason::ProtocolError(_))
    ));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn a_hello_that_breaks_a_must_of_the_protocol_is_refused() {
    let mut zero = hello(7, &[]);
    zero.id = NodeId(0);
    let mut backwards = hello(7, &[]);
    backwards.version = 2;
    backwards.max_version = Some(1);
    for (h, why) in [(zero, "node id 0"), (backwards, "max_version")] {
        let (mut n, now) = node(Config::default());
        n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
        n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
        let outs = drain(&mut n);
        match refused_with(&outs, ConnId(1)) {
            Some(DisconnectReason::ProtocolError(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{why}: {other:?}"),
        }
        assert_eq!(n.edge_count(), 0);
        assert_eq!(n.counters().bad_peers, 1);
    }
    // A max_version equal to the version is no range at all, but breaks nothing.
    let mut same = hello(7, &[]);
    same.max_version = Some(same.version);
    let (mut n, now) = node(Config::default());
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(same)), now);
    drain(&mut n);
    assert!(n.is_connected_to(NodeId(7)));
}

#[test]
fn the_acceptor_says_nonce_0_and_the_dialer_its_own_number() {
    let (mut n, now) = node(Config::default());
    let mut h = hello(7, &[]);
    h.nonce = 12345;
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
    match sent(&drain(&mut n), ConnId(1)).first() {
        Some(Message::Hello(ours)) => assert_eq!(ours.nonce, 0),
        other => panic!("{other:?}"),
    }
    let out = n.connect(addr(9000), now).unwrap();
    n.handle_connected(out, addr(9000), Direction::Outbound, now);
    let nonce = n.conns[&out].nonce;
    match sent(&drain(&mut n), out).first() {
        Some(Message::Hello(ours)) => assert_eq!(ours.nonce, nonce),
        other => panic!("{other:?}"),
    }
}

/// Pings with `pad` bytes of padding from peer 7 on inbound connection 1, until the node drops
/// it; the runtime wrote `written` bytes of the first pong, nothing after.
fn flood_pings(n: &mut Node, written: usize, now: Instant) -> (Vec<u8>, Vec<Output>) {
    let ping = |id| {
        frame(&Message::Ping {
            id,
            padding: Bytes::from(vec![7u8; 16 * 1024]),
        })
    };
    n.handle_bytes(ConnId(1), &ping(1), now);
    while n.poll_output().is_some() {}
    let head = n.outbound(ConnId(1))[..written].to_vec();
    n.advance(ConnId(1), written, now);
    let mut id = 2;
    while n.is_connected_to(NodeId(7)) {
        n.handle_bytes(ConnId(1), &ping(id), now);
        id += 1;
        assert!(id < 1000, "never dropped");
    }
    (head, drain(n))
}

#[test]
fn a_peer_that_stops_reading_gets_its_goodbye_after_the_frame_it_began() {
    for written in [0, 10] {
        let (mut n, now) = node(Config::default().max_outbound(256 * 1024));
        peer(&mut n, 1, 7, &[], now);
        drain(&mut n);
        let (head, outs) = flood_pings(&mut n, written, now);
        assert_eq!(n.counters().bad_peers, 1);
        assert!(outs.iter().any(|o| matches!(
            o,
            Output::Event(Event::BadPeer { peer: Some(p), reason: DisconnectReason::LimitExceeded(r), .. })
                if *p == NodeId(7) && r == "outbound buffer full"
        )));
        // What the peer reads: the rest of the begun pong (if any), then the goodbye.
        let mut d = FrameDecoder::new(1 << 24);
        d.extend(&head);
        for o in &outs {
            if let Output::Transmit { conn, data } = o {
                if *conn == ConnId(1) {
                    d.extend(data);
                }
            }
        }
        let msgs: Vec<Message> = std::iter::from_fn(|| d.next_frame().unwrap())
            .map(|b| decode_message(&b).unwrap())
            .collect();
        let pongs = usize::from(written > 0);
        assert_eq!(msgs.len(), pongs + 1, "{msgs:?}");
        assert!(matches!(
            msgs.last(),
            Some(Message::Goodbye(DisconnectReason::LimitExceeded(_)))
        ));
        assert_eq!(n.memory(), n.memory_recounted());
    }
}

/// A writer that keeps what the log says.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn nothing_a_peer_names_reaches_the_log_unescaped() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let evil = "evil\nFORGED-LOG-LINE \u{1b}[31mred\u{202e}";
    tracing::subscriber::with_default(subscriber, || {
        let (mut n, now) = node(Config::default());
        n.subscribe("t", now).unwrap();
        n.serve("s", now).unwrap();
        // A name, topics, services, a discovery, a search, a request, an unknown kind, and
        // goodbyes with reasons: all carrying the string.
        let mut h = hello(7, &["t"]);
        h.name = evil.into();
        n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
        n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
        let discovery = Message::Discovery(crate::message::Discovery {
            id: 1,
            origin: NodeId(99),
            origin_name: evil.into(),
            origin_addr: addr(99),
            topic: "t".into(),
            ttl: 3,
            on_pair: OnPair::None,
            entry: None,
        });
        n.handle_bytes(ConnId(1), &frame(&discovery), now);
        let search = Message::FindService(crate::message::ServiceSearch {
            id: 2,
            origin: NodeId(99),
            origin_addr: addr(99),
            service: evil.into(),
            ttl: 3,
        });
        n.handle_bytes(ConnId(1), &frame(&search), now);
        n.handle_bytes(
            ConnId(1),
            &frame(&Message::Request {
                id: 1,
                service: evil.into(),
                path: evil.into(),
                kind: CallKind::Call,
                args: Bytes::from_static(&[0xf6]),
                timeout_ms: None,
            }),
            now,
        );
        // An unknown kind of message, named by the peer.
        let mut unknown = Vec::new();
        ciborium::into_writer(
            &std::collections::BTreeMap::from([(evil.to_string(), 1u8)]),
            &mut unknown,
        )
        .unwrap();
        let mut body = (unknown.len() as u32).to_be_bytes().to_vec();
        body.extend(unknown);
        n.handle_bytes(ConnId(1), &body, now);
        n.handle_bytes(ConnId(1), &frame(&Message::Topics(vec![evil.into()])), now);
        n.handle_bytes(
            ConnId(1),
            &frame(&Message::Goodbye(DisconnectReason::ProtocolError(
                evil.into(),
            ))),
            now,
        );
        // A second peer whose goodbye, and a third whose refusal, carry it too.
        let mut h = hello(8, &[]);
        h.name = evil.into();
        n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
        n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
        n.handle_bytes(
            ConnId(2),
            &frame(&Message::Goodbye(DisconnectReason::NotAuthorized(
                evil.into(),
            ))),
            now,
        );
        n.handle_connected(ConnId(3), addr(3), Direction::Inbound, now);
        let mut h = hello(9, &[evil]);
        h.name = evil.into();
        n.handle_bytes(ConnId(3), &frame(&Message::Hello(h)), now);
        let out = n.connect(addr(9100), now).unwrap();
        n.handle_dial_failed(out, evil, now);
        drain(&mut n);
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("evil\\nFORGED-LOG-LINE"), "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("FORGED") && !line.contains('\u{1b}') && !line.contains('\u{202e}'),
            "unescaped peer text in the log: {line:?}"
        );
    }
}

/// A relayed publish's topic may be exactly `max_name_len` bytes (what a subscription may be),
/// not one more.
#[test]
fn a_published_topic_of_exactly_the_name_limit_is_taken() {
    let (mut n, now) = node(Config::default().max_name_len(16));
    let longest = "t".repeat(16);
    n.subscribe(&longest, now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    let publish = |topic: &str, seq| {
        frame(&Message::Publish(crate::message::Publish {
            origin: NodeId(7),
            seq,
            topic: topic.into(),
            ttl: 4,
            hops: 0,
            payload: Bytes::from_static(b"x"),
        }))
    };
    n.handle_bytes(ConnId(1), &publish(&longest, 1), now);
    let outs = drain(&mut n);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::Message(m)) if m.topic == longest)));
    assert!(!closed(&outs, ConnId(1)));
    n.handle_bytes(ConnId(1), &publish(&"t".repeat(17), 2), now);
    assert!(
        closed(&drain(&mut n), ConnId(1)),
        "one byte more is refused"
    );
}

/// A node that tells peers a loopback address warns once, when it first dials a peer on
/// another host; dials on its own host, or a reachable address, give no warning.
#[test]
fn a_loopback_address_told_to_another_host_is_warned_about_once() {
    let warnings = |bound: SocketAddr, remotes: &[SocketAddr]| {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut n = Node::new(Config::default().seed(1), Some(bound)).unwrap();
            let now = Instant::now();
            for &remote in remotes {
                let conn = n.connect(remote, now).unwrap();
                n.handle_connected(conn, remote, Direction::Outbound, now);
                drain(&mut n);
            }
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        text.matches("tells peers a loopback address").count()
    };
    let far = |host: u8| SocketAddr::from(([10, 0, 0, host], 8511));
    assert_eq!(warnings(addr(8000), &[far(1), far(2)]), 1);
    assert_eq!(warnings(addr(8000), &[addr(8001), addr(8002)]), 0);
    assert_eq!(warnings(far(9), &[far(1), addr(8001)]), 0);
}
