//! Unit tests of the node driven by hand: hostile input, limits, timers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::codec::{decode_message, encode_frame, FrameDecoder};
use crate::config::OnPair;
use crate::error::{CommandError, ConnectError};
use crate::id::{ConnId, NodeId};
use crate::message::{CallKind, Hello, PROTOCOL_VERSION};
use crate::message::{DisconnectReason, Message};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn hello(id: u128, topics: &[&str]) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        max_version: None,
        id: NodeId(id),
        name: format!("peer{id}"),
        listen: Some(addr(9000 + (id % 1000) as u16)),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        paired: vec![],
        services: vec![],
        root: false,
        pairing: None,
        nonce: 0,
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(msg, &mut b, 1 << 24).unwrap();
    b.to_vec()
}

/// The core's outputs with the bytes they stand for: every `Transmit` carries what the node
/// had waiting (taken as if the socket took it all), and a `Close` comes after the last bytes.
#[derive(Debug)]
enum Output {
    Transmit { conn: ConnId, data: Bytes },
    Datagram { to: SocketAddr, data: Bytes },
    Dial { conn: ConnId, addr: SocketAddr },
    Close { conn: ConnId },
    Event(Event),
    Deliver(Delivery),
}

fn drain(n: &mut Node) -> Vec<Output> {
    let now = Instant::now();
    let mut outs = Vec::new();
    while let Some(o) = n.poll_output() {
        match o {
            super::Output::Transmit { conn } => outs.push(Output::Transmit {
                conn,
                data: n.take_outbound(conn, now),
            }),
            super::Output::Close { conn } => {
                let data = n.take_outbound(conn, now);
                if !data.is_empty() {
                    outs.push(Output::Transmit { conn, data });
                }
                outs.push(Output::Close { conn });
            }
            super::Output::Datagram { to, data } => outs.push(Output::Datagram { to, data }),
            super::Output::Dial { conn, addr } => outs.push(Output::Dial { conn, addr }),
            super::Output::Resume { .. } => {}
            super::Output::Event(e) => outs.push(Output::Event(e)),
            super::Output::Deliver(d) => outs.push(Output::Deliver(d)),
        }
    }
    outs
}

/// Frames written to `conn` among `outs`.
fn sent(outs: &[Output], conn: ConnId) -> Vec<Message> {
    let mut d = FrameDecoder::new(1 << 24);
    for o in outs {
        if let Output::Transmit { conn: c, data } = o {
            if *c == conn {
                d.extend(data);
            }
        }
    }
    std::iter::from_fn(|| d.next_frame().unwrap())
        .map(|b| decode_message(&b).unwrap())
        .collect()
}

fn closed(outs: &[Output], conn: ConnId) -> bool {
    outs.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == conn))
}

fn node(cfg: Config) -> (Node, Instant) {
    (
        Node::new(cfg.seed(1), Some(addr(8000))).expect("valid config"),
        Instant::now(),
    )
}

/// Dials peer `id` at `addr(9000 + id)` (the address its Hello announces) and completes the
/// handshake: an edge this node redials when it is lost. Returns the connection.
fn dialed(n: &mut Node, id: u128, topics: &[&str], now: Instant) -> ConnId {
    let at = addr(9000 + (id % 1000) as u16);
    let conn = n.connect(at, now).expect("room to dial");
    drain(n);
    n.handle_connected(conn, at, Direction::Outbound, now);
    n.handle_bytes(conn, &frame(&Message::Hello(hello(id, topics))), now);
    drain(n);
    assert!(n.is_connected_to(NodeId(id)), "no edge to peer {id}");
    conn
}

/// Opens inbound connection `c` and completes the handshake as peer `id`.
fn peer(n: &mut Node, c: u64, id: u128, topics: &[&str], now: Instant) -> Vec<Output> {
    n.handle_connected(ConnId(c), addr(40000 + c as u16), Direction::Inbound, now);
    n.handle_bytes(ConnId(c), &frame(&Message::Hello(hello(id, topics))), now);
    drain(n)
}

#[test]
fn hello_exchange_creates_an_edge() {
    let (mut n, now) = node(Config::default());
    let outs = peer(&mut n, 1, 7, &["t"], now);
    let msgs = sent(&outs, ConnId(1));
    assert!(matches!(&msgs[0], Message::Hello(h) if h.id == n.id()));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::PeerConnected { .. }))));
    assert_eq!(n.edge_count(), 1);
    assert_eq!(n.edges()[0].topics, vec!["t".to_string()]);
}

#[test]
fn garbage_frame_closes_only_that_connection() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    n.handle_bytes(ConnId(2), &[0, 0, 0, 3, 0xff, 0xfe, 0xfd], now);
    let outs = drain(&mut n);
    let msgs = sent(&outs, ConnId(2));
    assert!(matches!(
        msgs.last(),
        Some(Message::Goodbye(DisconnectReason::ProtocolError(_)))
    ));
    assert!(closed(&outs, ConnId(2)));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::BadPeer { conn, .. }) if *conn == ConnId(2))));
    assert_eq!(n.edge_count(), 1);
    // A garbage frame on an established edge drops that edge, without a redial.
    n.handle_bytes(ConnId(1), &[0, 0, 0, 1, 0xff], now);
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(1)));
    assert_eq!(n.edge_count(), 0);
    assert_eq!(n.reconnecting(), 0);
}

#[test]
fn huge_length_prefix_is_refused_before_allocating() {
    let (mut n, now) = node(Config::default());
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &[0xff, 0xff, 0xff, 0xff], now);
    let outs = drain(&mut n);
    assert!(
        matches!(sent(&outs, ConnId(1)).last(), Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) if m.contains("exceeds"))
    );
    assert!(closed(&outs, ConnId(1)));
}

#[test]
fn self_connection_and_version_mismatch_are_refused() {
    let (mut n, now) = node(Config::default());
    let me = n.id().0;
    let outs = peer(&mut n, 1, me, &[], now);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::SelfConnection))
    ));
    assert!(closed(&outs, ConnId(1)));
    let mut h = hello(5, &[]);
    h.version = 99;
    n.handle_connected(ConnId(2), addr(2), Direction::Inbound, now);
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(h)), now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(2)).last(),
        Some(Message::Goodbye(DisconnectReason::VersionMismatch {
            ours: 1,
            theirs: 99
        }))
    ));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn second_connection_from_the_same_node_is_refused() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    let outs = peer(&mut n, 2, 7, &[], now);
    assert!(matches!(
        sent(&outs, ConnId(2)).as_slice(),
        [Message::Goodbye(DisconnectReason::Duplicate)]
    ));
    // Read until the peer closes it: the peer's goodbye ends it.
    assert!(!closed(&outs, ConnId(2)));
    n.handle_bytes(
        ConnId(2),
        &frame(&Message::Goodbye(DisconnectReason::Duplicate)),
        now,
    );
    let outs = drain(&mut n);
    assert!(closed(&outs, ConnId(2)));
    assert!(
        sent(&outs, ConnId(2)).is_empty(),
        "nothing after the goodbye"
    );
    assert_eq!(n.edge_count(), 1);
    assert_eq!(n.edges()[0].conn, ConnId(1));
}

#[test]
fn message_before_hello_and_second_hello_are_protocol_errors() {
    let (mut n, now) = node(Config::default());
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &frame(&Message::Topics(vec![])), now);
    assert!(closed(&drain(&mut n), ConnId(1)));
    peer(&mut n, 2, 7, &[], now);
    n.handle_bytes(ConnId(2), &frame(&Message::Hello(hello(7, &[]))), now);
    assert!(closed(&drain(&mut n), ConnId(2)));
}

#[test]
fn slow_loris_is_closed_after_the_handshake_timeout() {
    let (mut n, now) = node(Config::default());
    n.handle_connected(ConnId(1), addr(1), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &[0, 0], now);
    drain(&mut n);
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(5)));
    n.handle_timeout(now + Duration::from_secs(4));
    assert!(!closed(&drain(&mut n), ConnId(1)));
    n.handle_timeout(now + Duration::from_secs(5));
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::HandshakeTimeout))
    ));
    assert!(closed(&outs, ConnId(1)));
    assert_eq!(n.connection_count(), 0);
}

#[test]
fn announcements_over_the_bounds_are_cut() {
    let (mut n, now) = node(Config::default().max_peer_topics(10).max_peer_services(10));
    let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let outs = peer(&mut n, 1, 7, &refs, now);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(_)))
    ));
    assert_eq!(n.edge_count(), 0);
    peer(&mut n, 2, 8, &[], now);
    n.handle_bytes(ConnId(2), &frame(&Message::Services(many.clone())), now);
    assert!(drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Event(Event::BadPeer { .. }))));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn request_flood_is_bounded() {
    let (mut n, now) = node(Config::default().max_inbound_requests(3));
    n.serve("svc", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    let mut buf = Vec::new();
    for id in 0..10 {
        buf.extend(frame(&Message::Request {
            id,
            service: "svc".into(),
            path: "f".into(),
            kind: CallKind::Call,
            args: Bytes::new(),
            timeout_ms: None,
        }));
    }
    n.handle_bytes(ConnId(1), &buf, now);
    let outs = drain(&mut n);
    let requests = outs
        .iter()
        .filter(|o| matches!(o, Output::Deliver(Delivery::Request { .. })))
        .count();
    assert_eq!(requests, 3);
    let busy = sent(&outs, ConnId(1))
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                Message::Response {
                    result: Err(crate::RemoteError::Busy),
                    ..
                }
            )
        })
        .count();
    assert_eq!(busy, 7);
    // Answering frees a slot; answering twice is refused.
    n.respond(NodeId(7), 0, Ok(Bytes::new()), now).unwrap();
    assert_eq!(
        n.respond(NodeId(7), 0, Ok(Bytes::new()), now),
        Err(CommandError::UnknownRequest)
    );
}

#[test]
fn keepalive_pings_then_idle_timeout_drops_and_redials() {
    let (mut n, now) = node(Config::default());
    let c = dialed(&mut n, 7, &[], now);
    let t = n.poll_timeout().unwrap();
    assert!(t >= now + Duration::from_secs(7) && t <= now + Duration::from_millis(10_500));
    n.handle_timeout(t);
    let outs = drain(&mut n);
    assert!(sent(&outs, c)
        .iter()
        .any(|m| matches!(m, Message::Ping { .. })));
    n.handle_timeout(now + Duration::from_secs(25));
    let outs = drain(&mut n);
    assert!(closed(&outs, c));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            reason: DisconnectReason::IdleTimeout,
            reconnecting: true,
            ..
        })
    )));
    // The redial is scheduled with back-off, then dials the peer's listening address.
    let next = n.poll_timeout().unwrap();
    n.handle_timeout(next);
    let outs = drain(&mut n);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Dial { addr: a, .. } if *a == addr(9007))));
}

#[test]
fn redial_gives_up_after_the_configured_attempts() {
    let (mut n, mut now) = node(
        Config::default()
            .reconnections(3)
            .dial_interval(Duration::ZERO),
    );
    let c = dialed(&mut n, 7, &[], now);
    n.handle_closed(c, now);
    drain(&mut n);
    let mut dials = 0;
    let mut gave_up = Vec::new();
    for _ in 0..20 {
        let Some(t) = n.poll_timeout() else { break };
        now = t;
        n.handle_timeout(now);
        for o in drain(&mut n) {
            if let Output::Dial { conn, .. } = o {
                dials += 1;
                n.handle_dial_failed(conn, "refused", now);
            }
        }
        gave_up.extend(drain(&mut n).into_iter().filter_map(|o| match o {
            Output::Event(Event::ReconnectGaveUp { attempts, peer }) => Some((peer, attempts)),
            _ => None,
        }));
    }
    assert_eq!(dials, 3);
    assert_eq!(gave_up, vec![(NodeId(7), 3)], "exactly one give-up event");
    assert_eq!(n.reconnecting(), 0);
}

#[test]
fn commands_refuse_bad_arguments() {
    let (mut n, now) = node(Config::default().max_frame_len(1000));
    assert_eq!(n.subscribe("", now), Err(CommandError::Empty("topic")));
    assert!(matches!(
        n.subscribe(&"x".repeat(300), now),
        Err(CommandError::TooLong { .. })
    ));
    assert!(matches!(
        n.publish("t", Bytes::from(vec![0; 2000]), now),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    assert_eq!(n.ping(NodeId(3), 0, now), Err(CommandError::NotConnected));
    assert_eq!(n.discover(now), Ok(()));
    n.subscribe("t", now).unwrap();
    assert_eq!(n.discover(now), Err(CommandError::NoEdges));
    n.shutdown(now);
    assert_eq!(n.subscribe("u", now), Err(CommandError::ShutDown));
    assert!(matches!(
        n.connect(addr(1), now),
        Err(CommandError::ShutDown)
    ));
}

#[test]
fn shutdown_says_goodbye_and_refuses_newcomers() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &[], now);
    n.shutdown(now);
    let outs = drain(&mut n);
    assert!(matches!(
        sent(&outs, ConnId(1)).last(),
        Some(Message::Goodbye(DisconnectReason::Shutdown))
    ));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerLost {
            reconnecting: false,
            ..
        })
    )));
    assert_eq!(n.poll_timeout(), None);
    let outs = peer(&mut n, 2, 8, &[], now);
    assert!(closed(&outs, ConnId(2)));
    assert_eq!(n.edge_count(), 0);
}

#[test]
fn status_over_udp_answers_and_times_out() {
    let (mut n, now) = node(Config::default());
    n.subscribe("t", now).unwrap();
    let q = crate::codec::encode_value(&crate::message::Datagram::StatusRequest {
        token: 5,
        padding: vec![0; 200].into(),
    })
    .unwrap();
    n.handle_datagram(addr(1), &q, now);
    let outs = drain(&mut n);
    let Some(Output::Datagram { to, data }) = outs.first() else {
        panic!("no reply")
    };
    assert_eq!(*to, addr(1));
    let reply: crate::message::Datagram = crate::codec::decode_value(data).unwrap();
    assert!(
        matches!(reply, crate::message::Datagram::StatusReply { token: 5, ref status } if status.paired.get("t") == Some(&false))
    );
    // Garbage datagrams are dropped silently.
    n.handle_datagram(addr(1), &[0xff; 10], now);
    assert!(drain(&mut n).is_empty());
    let token = n.query_status(addr(2), now).unwrap();
    drain(&mut n);
    // A reply from another address is ignored.
    let spoof = crate::codec::encode_value(&crate::message::Datagram::StatusReply {
        token,
        status: Default::default(),
    })
    .unwrap();
    n.handle_datagram(addr(3), &spoof, now);
    assert!(drain(&mut n).is_empty());
    // Not before its deadline (status_timeout, 2 s by default).
    n.handle_timeout(now + Duration::from_millis(1900));
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::Status { .. }))));
    n.handle_timeout(now + Duration::from_secs(2));
    assert!(drain(&mut n).iter().any(
        |o| matches!(o, Output::Deliver(Delivery::Status { status: None, token: t, .. }) if *t == token)
    ));
}

#[test]
fn frames_are_coalesced_per_connection() {
    let (mut n, now) = node(Config::default());
    peer(&mut n, 1, 7, &["t"], now);
    drain(&mut n);
    for _ in 0..100 {
        n.publish("t", Bytes::from_static(b"hello"), now).unwrap();
    }
    let outs = drain(&mut n);
    assert_eq!(outs.len(), 1, "one buffer for 100 frames");
    assert_eq!(sent(&outs, ConnId(1)).len(), 100);
}

#[cfg(test)]
mod behaviour;
mod bounds;
mod calls;
mod counting;
mod duplicates;
mod files;
mod hardening;
mod peer_input;
mod transmit;
