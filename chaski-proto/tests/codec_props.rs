//! Property tests of the codec: round trips, arbitrary splits, and hostile bytes.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
use chaski_proto::message::{Discovery, Hello, PairIntent, Publish};
use chaski_proto::{
    CallKind, Config, ConnId, Direction, DisconnectReason, Message, Node, NodeId, OnPair,
    RemoteError,
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

fn reason() -> impl Strategy<Value = DisconnectReason> {
    prop_oneof![
        Just(DisconnectReason::Shutdown),
        Just(DisconnectReason::Duplicate),
        Just(DisconnectReason::Unneeded),
        name().prop_map(DisconnectReason::ProtocolError),
        (any::<u16>(), any::<u16>())
            .prop_map(|(ours, theirs)| DisconnectReason::VersionMismatch { ours, theirs }),
    ]
}

fn remote_error() -> impl Strategy<Value = RemoteError> {
    prop_oneof![
        name().prop_map(RemoteError::NotFound),
        name().prop_map(RemoteError::Failed),
        Just(RemoteError::Timeout),
        Just(RemoteError::Busy),
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
    )
        .prop_map(|(id, origin, origin_name, origin_addr, topic, ttl, d)| {
            Message::Discovery(Discovery {
                id,
                origin: NodeId(origin),
                origin_name,
                origin_addr,
                topic,
                ttl,
                on_pair: if d { OnPair::Disconnect } else { OnPair::None },
                entry: None,
            })
        });
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
        (any::<u64>(), bytes()).prop_map(|(id, padding)| Message::Ping { id, padding }),
        (any::<u64>(), bytes()).prop_map(|(id, padding)| Message::Pong { id, padding }),
        (any::<u64>(), name(), name(), any::<bool>(), bytes()).prop_map(
            |(id, service, path, g, args)| {
                Message::Request {
                    id,
                    service,
                    path,
                    kind: if g { CallKind::Get } else { CallKind::Call },
                    args,
                }
            }
        ),
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

    /// A node fed arbitrary bytes on a connection never panics, and closes it or keeps it.
    #[test]
    fn node_survives_arbitrary_input(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
        let now = std::time::Instant::now();
        let mut n = Node::new(Config::default().seed(3).max_frame_len(4096), Some(SocketAddr::from(([127, 0, 0, 1], 1))));
        n.handle_connected(ConnId(1), SocketAddr::from(([127, 0, 0, 1], 2)), Direction::Inbound, now);
        for c in &chunks {
            n.handle_bytes(ConnId(1), c, now);
            while n.poll_output().is_some() {}
        }
        prop_assert!(n.edge_count() <= 1);
    }
}
