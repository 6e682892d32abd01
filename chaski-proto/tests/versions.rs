//! A wire that can evolve: a node of the next protocol version (simulated here by hand) says
//! Hello with a version range and fields this node does not know, and sends a kind of message
//! it does not know; the two still interoperate. Ranges that do not meet are refused.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::unknown_kind;
use chaski_proto::codec::{decode_message, encode_frame, encode_value, FrameDecoder};
use chaski_proto::message::{negotiate, Hello, Publish, MESSAGE_KINDS};
use chaski_proto::{
    Config, ConnId, Delivery, Direction, DisconnectReason, Event, Message, Node, NodeId, Output,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A frame whose body is `value` encoded as CBOR.
fn raw_frame(value: &ciborium::Value) -> Vec<u8> {
    let body = encode_value(value).unwrap();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// The Hello of a node of version 2 that also speaks 1, with a field version 1 lacks.
fn next_version_hello(id: u128) -> Vec<u8> {
    let hello = Message::Hello(Hello {
        version: 1,
        max_version: Some(2),
        id: NodeId(id),
        name: "v2".into(),
        listen: Some(addr(9002)),
        topics: vec!["news".into()],
        paired: vec![],
        services: vec![],
        root: false,
        pairing: None,
        nonce: 5,
    });
    let mut value = ciborium::Value::serialized(&hello).unwrap();
    if let ciborium::Value::Map(outer) = &mut value {
        if let ciborium::Value::Map(fields) = &mut outer[0].1 {
            fields.push((
                ciborium::Value::Text("compression".into()),
                ciborium::Value::Text("zstd".into()),
            ));
        }
    }
    raw_frame(&value)
}

struct Run {
    node: Node,
    now: Instant,
    events: Vec<Event>,
    delivered: Vec<Delivery>,
    sent: FrameDecoder,
    closed: bool,
}

impl Run {
    fn new() -> Run {
        let now = Instant::now();
        let mut node = Node::new(Config::default().seed(1), Some(addr(9001))).unwrap();
        node.subscribe("news", now).unwrap();
        node.handle_connected(ConnId(1), addr(9002), Direction::Inbound, now);
        Run {
            node,
            now,
            events: Vec::new(),
            delivered: Vec::new(),
            sent: FrameDecoder::new(1 << 20),
            closed: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<Message> {
        self.node.handle_bytes(ConnId(1), bytes, self.now);
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Transmit { conn } => {
                    let data = self.node.take_outbound(conn, self.now);
                    self.sent.extend(&data);
                }
                Output::Close { .. } => self.closed = true,
                Output::Event(e) => self.events.push(e),
                Output::Deliver(d) => self.delivered.push(d),
                _ => {}
            }
        }
        let mut got = Vec::new();
        while let Ok(Some(body)) = self.sent.next_frame() {
            got.push(decode_message(&body).unwrap());
        }
        got
    }
}

#[test]
fn a_next_version_node_interoperates() {
    let mut run = Run::new();
    let answer = run.feed(&next_version_hello(77));
    assert!(
        matches!(&answer[..], [Message::Hello(h)] if h.version == 1),
        "{answer:?}"
    );
    assert!(run.node.is_connected_to(NodeId(77)));
    // A kind of message version 1 does not know: skipped, with an event.
    let gossip = ciborium::Value::Map(vec![(
        ciborium::Value::Text("Gossip".into()),
        ciborium::Value::Map(vec![(
            ciborium::Value::Text("rumours".into()),
            ciborium::Value::Integer(3.into()),
        )]),
    )]);
    run.feed(&raw_frame(&gossip));
    run.feed(&raw_frame(&ciborium::Value::Text("Heartbeat".into())));
    assert!(
        !run.closed,
        "an unknown kind of message closed the connection"
    );
    let skipped: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::UnknownMessage { peer, kind } if *peer == NodeId(77) => Some(kind.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["Gossip", "Heartbeat"]);
    assert_eq!(run.node.counters().unknown_skipped, 2);
    // Thousands of them: counted, but only the first few are events.
    let frame = raw_frame(&gossip);
    run.feed(&frame.repeat(1000));
    assert!(!run.closed);
    assert_eq!(run.node.counters().unknown_skipped, 1002);
    let events = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::UnknownMessage { .. }))
        .count();
    assert_eq!(events, chaski_proto::node::UNKNOWN_EVENTS as usize);
    // And the link still carries what both know.
    let mut b = BytesMut::new();
    encode_frame(
        &Message::Publish(Publish {
            origin: NodeId(77),
            seq: 1,
            topic: "news".into(),
            ttl: 8,
            hops: 0,
            payload: Bytes::from_static(b"still here"),
        }),
        &mut b,
        1 << 20,
    )
    .unwrap();
    run.feed(&b);
    assert!(run.delivered.iter().any(
        |e| matches!(e, Delivery::Message(m) if m.topic == "news" && &m.payload[..] == b"still here")
    ));
    // A known kind with a malformed body is still an error.
    let bad = ciborium::Value::Map(vec![(
        ciborium::Value::Text("Topics".into()),
        ciborium::Value::Integer(1.into()),
    )]);
    run.feed(&raw_frame(&bad));
    assert!(run.closed);
}

/// A newer peer's error in a response, or reason in a goodbye, is read as the nearest known
/// one, not as a broken frame.
#[test]
fn unknown_errors_and_reasons_are_read_as_the_nearest_known() {
    use ciborium::Value;
    let map = |k: &str, v: Value| Value::Map(vec![(Value::Text(k.into()), v)]);
    let response = map(
        "Response",
        Value::Map(vec![
            (Value::Text("id".into()), Value::Integer(4.into())),
            (
                Value::Text("result".into()),
                map("Err", map("QuotaExceeded", Value::Text("10/s".into()))),
            ),
        ]),
    );
    let body = encode_value(&response).unwrap();
    assert!(chaski_proto::codec::decode_message(&body).is_err());
    match chaski_proto::codec::tolerant_decode(&body) {
        Some(Message::Response {
            id: 4,
            result: Err(chaski_proto::RemoteError::Failed(m)),
        }) => assert!(m.contains("QuotaExceeded"), "{m}"),
        other => panic!("{other:?}"),
    }
    let goodbye = map("Goodbye", Value::Text("Maintenance".into()));
    match chaski_proto::codec::tolerant_decode(&encode_value(&goodbye).unwrap()) {
        Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) => {
            assert!(m.contains("Maintenance"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Through a node: the goodbye ends the edge as the peer's goodbye, not as bad input.
    let mut run = Run::new();
    run.feed(&next_version_hello(79));
    run.feed(&raw_frame(&goodbye));
    assert!(run.closed);
    assert!(run.events.iter().any(|e| matches!(
        e,
        Event::PeerLost { by_peer: true, reason: DisconnectReason::ProtocolError(m), .. }
            if m.contains("Maintenance")
    )));
    assert!(!run
        .events
        .iter()
        .any(|e| matches!(e, Event::BadPeer { .. })));
}

#[test]
fn ranges_that_do_not_meet_are_refused() {
    let mut run = Run::new();
    let hello = Message::Hello(Hello {
        version: 2,
        max_version: Some(3),
        id: NodeId(78),
        name: "v2-only".into(),
        listen: None,
        topics: vec![],
        paired: vec![],
        services: vec![],
        root: false,
        pairing: None,
        nonce: 1,
    });
    let mut b = BytesMut::new();
    encode_frame(&hello, &mut b, 1 << 20).unwrap();
    let answer = run.feed(&b);
    assert!(
        matches!(
            &answer[..],
            [Message::Goodbye(DisconnectReason::VersionMismatch {
                ours: 1,
                theirs: 3
            })]
        ),
        "{answer:?}"
    );
    assert!(run.closed);
}

#[test]
fn negotiation_picks_the_newest_common_version() {
    assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
    assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
    assert_eq!(negotiate((1, 2), (1, 1)), Some(1));
    assert_eq!(negotiate((1, 1), (2, 2)), None);
    assert_eq!(negotiate((3, 4), (1, 2)), None);
}

#[test]
fn every_kind_is_known_by_name() {
    let samples = [
        Message::Topics(vec![]),
        Message::Paired(vec![]),
        Message::Services(vec![]),
        Message::Ping {
            id: 1,
            padding: Bytes::new(),
        },
        Message::Cancel { id: 1 },
        Message::Goodbye(DisconnectReason::Closed),
        Message::FileGone(chaski_proto::files::FileGone {
            origin: chaski_proto::NodeId(1),
            id: 1,
        }),
        Message::FileWant(chaski_proto::files::FileWant {
            origin: chaski_proto::NodeId(1),
            id: 1,
            ranges: vec![],
            end: false,
        }),
    ];
    for m in samples {
        let body = encode_value(&m).unwrap();
        assert_eq!(unknown_kind(&body), None, "{m:?}");
    }
    assert_eq!(MESSAGE_KINDS.len(), 18);
    assert_eq!(
        unknown_kind(&encode_value(&ciborium::Value::Text("x".repeat(200))).unwrap())
            .map(|k| k.len()),
        Some(64)
    );
}

/// A kind of message the node does not know is skipped only on an edge: before the Hello it is
/// a protocol error like any other message.
#[test]
fn an_unknown_kind_before_the_hello_is_a_protocol_error() {
    let mut run = Run::new();
    let answer = run.feed(&raw_frame(&ciborium::Value::Text("Heartbeat".into())));
    assert!(run.closed, "not closed");
    assert!(
        matches!(
            &answer[..],
            [Message::Goodbye(DisconnectReason::ProtocolError(_))]
        ),
        "{answer:?}"
    );
    assert_eq!(run.node.counters().unknown_skipped, 0);
}
