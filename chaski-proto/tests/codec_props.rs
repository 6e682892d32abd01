//! Property tests of the codec: round trips, arbitrary splits, and hostile bytes.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::{decode_message, decode_value, encode_frame, encode_value, FrameDecoder};
use chaski_proto::message::{Datagram, Discovery, Hello, PairIntent, Publish};
use chaski_proto::{
    CallKind, Config, ConnId, Direction, DisconnectReason, Message, Node, NodeId, OnPair, Output,
    RemoteError, Status,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{0,12}"
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn sock() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

/// Every variant of [`DisconnectReason`] (the crate's own test `every_variant_round_trips`
/// matches them exhaustively, so a new variant cannot be left out there).
fn reason() -> impl Strategy<Value = DisconnectReason> {
    prop_oneof![
        Just(DisconnectReason::Shutdown),
        Just(DisconnectReason::Closed),
        Just(DisconnectReason::Duplicate),
        Just(DisconnectReason::SelfConnection),
        Just(DisconnectReason::AlreadyPaired),
        Just(DisconnectReason::Unneeded),
        (any::<u16>(), any::<u16>())
            .prop_map(|(ours, theirs)| DisconnectReason::VersionMismatch { ours, theirs }),
        name().prop_map(DisconnectReason::ProtocolError),
        name().prop_map(DisconnectReason::LimitExceeded),
        Just(DisconnectReason::HandshakeTimeout),
        Just(DisconnectReason::IdleTimeout),
        Just(DisconnectReason::TooManyConnections),
        Just(DisconnectReason::ConnectionLost),
        name().prop_map(DisconnectReason::NotAuthorized),
    ]
}

/// Every variant of [`RemoteError`] (matched exhaustively the same way, in the crate).
fn remote_error() -> impl Strategy<Value = RemoteError> {
    prop_oneof![
        name().prop_map(RemoteError::NotFound),
        name().prop_map(RemoteError::NoSuchMethod),
        name().prop_map(RemoteError::BadArguments),
        name().prop_map(RemoteError::Failed),
        Just(RemoteError::Timeout),
        Just(RemoteError::Disconnected),
        Just(RemoteError::Busy),
        Just(RemoteError::Cancelled),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    (
        name(),
        any::<u128>(),
        proptest::collection::btree_map(name(), any::<bool>(), 0..4),
        proptest::collection::vec(name(), 0..4),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, id, paired, services, edges, root, reconnecting, truncated)| Status {
                name,
                id: NodeId(id),
                paired,
                services,
                edges: edges as usize,
                root,
                reconnecting,
                truncated,
            },
        )
}

fn datagram() -> impl Strategy<Value = Datagram> {
    prop_oneof![
        (any::<u64>(), bytes())
            .prop_map(|(token, padding)| Datagram::StatusRequest { token, padding }),
        (any::<u64>(), status())
            .prop_map(|(token, status)| Datagram::StatusReply { token, status }),
        (name(), bytes()).prop_map(|(topic, payload)| Datagram::Publish { topic, payload }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let hello = (
        any::<u16>(),
        any::<u128>(),
        name(),
        proptest::option::of(sock()),
        proptest::collection::vec(name(), 0..4),
        any::<bool>(),
        proptest::option::of((any::<u64>(), name(), proptest::option::of(any::<u128>()))),
        any::<u64>(),
    )
        .prop_map(
            |(version, id, name, listen, topics, root, pairing, nonce)| {
                Message::Hello(Hello {
                    version,
                    max_version: (nonce % 3 == 0).then_some(version.saturating_add(1)),
                    id: NodeId(id),
                    name,
                    listen,
                    services: topics.clone(),
                    paired: topics.iter().map(|t| (t.clone(), NodeId(id))).collect(),
                    topics,
                    root,
                    pairing: pairing.map(|(discovery, topic, entry)| PairIntent {
                        discovery,
                        topic,
                        entry: entry.map(NodeId),
                        cluster: entry.map(NodeId),
                    }),
                    nonce,
                })
            },
        );
    let discovery = (
        any::<u64>(),
        any::<u128>(),
        name(),
        sock(),
        name(),
        any::<u8>(),
        any::<bool>(),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(
            |(id, origin, origin_name, origin_addr, topic, ttl, d, entry)| {
                Message::Discovery(Discovery {
                    id,
                    origin: NodeId(origin),
                    origin_name,
                    origin_addr,
                    topic,
                    ttl,
                    on_pair: if d { OnPair::Disconnect } else { OnPair::None },
                    entry: entry.map(NodeId),
                })
            },
        );
    let publish = (
        any::<u128>(),
        any::<u64>(),
        name(),
        any::<u8>(),
        any::<u8>(),
        bytes(),
    )
        .prop_map(|(o, seq, topic, ttl, hops, payload)| {
            Message::Publish(Publish {
                origin: NodeId(o),
                seq,
                topic,
                ttl,
                hops,
                payload,
            })
        });
    prop_oneof![
        hello,
        discovery,
        publish,
        proptest::collection::vec(name(), 0..5).prop_map(Message::Topics),
        proptest::collection::vec(name(), 0..5).prop_map(Message::Services),
        proptest::collection::vec((name(), any::<u128>()), 0..5).prop_map(|v| {
            Message::Paired(v.into_iter().map(|(t, c)| (t, NodeId(c))).collect())
        }),
        (any::<u64>(), bytes()).prop_map(|(id, padding)| Message::Ping { id, padding }),
        (any::<u64>(), bytes()).prop_map(|(id, padding)| Message::Pong { id, padding }),
        (
            any::<u64>(),
            name(),
            name(),
            any::<bool>(),
            bytes(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(id, service, path, g, args, timeout_ms)| {
                Message::Request {
                    id,
                    service,
                    path,
                    kind: if g { CallKind::Get } else { CallKind::Call },
                    args,
                    timeout_ms,
                }
            }),
        (
            any::<u64>(),
            prop_oneof![bytes().prop_map(Ok), remote_error().prop_map(Err)]
        )
            .prop_map(|(id, result)| Message::Response { id, result }),
        reason().prop_map(Message::Goodbye),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let mut out = BytesMut::new();
        encode_frame(&msg, &mut out, 1 << 20).unwrap();
        let mut d = FrameDecoder::new(1 << 20);
        d.extend(&out);
        let body = d.next_frame().unwrap().unwrap();
        prop_assert_eq!(decode_message(&body).unwrap(), msg);
        prop_assert!(d.next_frame().unwrap().is_none());
    }

    #[test]
    fn every_datagram_round_trips(dg in datagram()) {
        let bytes = encode_value(&dg).unwrap();
        prop_assert_eq!(decode_value::<Datagram>(&bytes).unwrap(), dg);
    }

    #[test]
    fn any_split_gives_the_same_frames(
        msgs in proptest::collection::vec(message(), 1..8),
        cuts in proptest::collection::vec(1usize..40, 0..200),
    ) {
        let mut stream = BytesMut::new();
        for m in &msgs {
            encode_frame(m, &mut stream, 1 << 20).unwrap();
        }
        let mut d = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        let mut rest: &[u8] = &stream;
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(1).min(rest.len());
            d.extend(&rest[..n]);
            rest = &rest[n..];
            while let Some(b) = d.next_frame().unwrap() {
                got.push(decode_message(&b).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let max = 256;
        let mut d = FrameDecoder::new(max);
        for chunk in data.chunks(7) {
            d.extend(chunk);
            loop {
                match d.next_frame() {
                    Ok(Some(b)) => { let _ = decode_message(&b); }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            prop_assert!(d.buffered() <= max + 4 + 7);
        }
    }

    #[test]
    fn corrupted_frames_give_errors_not_panics(msg in message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut out = BytesMut::new();
        encode_frame(&msg, &mut out, 1 << 20).unwrap();
        let mut body = out[4..].to_vec();
        for (i, b) in flips {
            let n = body.len();
            if n > 0 { body[i % n] ^= b; }
        }
        let _ = decode_message(&body);
    }

    /// Valid messages with a few bytes flipped (a Hello first, so corruption reaches the
    /// handshake and the edge behind it) never panic a node; what it sends back is always a
    /// decodable frame, and the tables stay within their bounds.
    #[test]
    fn node_survives_corrupted_valid_traffic(
        first in message(),
        rest in proptest::collection::vec(message(), 0..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        valid_hello in any::<bool>(),
    ) {
        let now = std::time::Instant::now();
        let cfg = Config::default().seed(3).max_frame_len(1 << 16).max_edges(4);
        let mut n = Node::new(cfg, Some(SocketAddr::from(([127, 0, 0, 1], 1)))).unwrap();
        n.handle_connected(ConnId(1), SocketAddr::from(([127, 0, 0, 1], 2)), Direction::Inbound, now);
        let mut stream = BytesMut::new();
        let first = match first {
            Message::Hello(mut h) if valid_hello => {
                h.version = chaski_proto::PROTOCOL_VERSION;
                Message::Hello(h)
            }
            m => m,
        };
        for m in std::iter::once(&first).chain(&rest) {
            encode_frame(m, &mut stream, 1 << 16).unwrap();
        }
        let mut bytes = stream.to_vec();
        for (i, b) in flips {
            let len = bytes.len();
            bytes[i % len] ^= b;
        }
        n.handle_bytes(ConnId(1), &bytes, now);
        let mut replies = FrameDecoder::new(1 << 16);
        while let Some(out) = n.poll_output() {
            if let Output::Transmit { conn } | Output::Close { conn } = out {
                replies.extend(&n.take_outbound(conn, now));
            }
        }
        while let Some(body) = replies.next_frame().unwrap() {
            prop_assert!(decode_message(&body).is_ok(), "the node sent an undecodable frame");
        }
        prop_assert!(n.edge_count() <= 1);
        prop_assert!(n.connection_count() <= 1);
    }

    /// A node fed arbitrary bytes on a connection never panics, and closes it or keeps it.
    #[test]
    fn node_survives_arbitrary_input(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
        let now = std::time::Instant::now();
        let mut n = Node::new(Config::default().seed(3).max_frame_len(4096), Some(SocketAddr::from(([127, 0, 0, 1], 1)))).unwrap();
        n.handle_connected(ConnId(1), SocketAddr::from(([127, 0, 0, 1], 2)), Direction::Inbound, now);
        for c in &chunks {
            n.handle_bytes(ConnId(1), c, now);
            while n.poll_output().is_some() {}
        }
        prop_assert!(n.edge_count() <= 1);
    }
}
