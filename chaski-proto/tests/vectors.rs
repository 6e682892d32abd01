//! The test vectors of PROTOCOL.md, read from the document itself: each frame and datagram
//! there must be exactly what the codec encodes for its meaning, and decode back to it, so the
//! specification and the code cannot drift apart.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::{decode_message, decode_value, encode_frame, encode_value, FrameDecoder};
use chaski_proto::files::{FileChunk, FileEnd, FileGone, FileOffer, FileWant};
use chaski_proto::message::{Datagram, Discovery, Hello, Publish, ServiceSearch};
use chaski_proto::{CallKind, DisconnectReason, Message, NodeId, OnPair, RemoteError, Status};

/// `(kind, name) -> bytes` from the document's vector lines.
fn vectors() -> BTreeMap<(String, String), Vec<u8>> {
    let doc = include_str!("../../PROTOCOL.md");
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(name), Some(hex), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if kind != "vector" && kind != "datagram" {
            continue;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        out.insert((kind.to_string(), name.to_string()), bytes);
    }
    out
}

fn frames() -> Vec<(&'static str, Message)> {
    let args = |v: &dyn Erased| Bytes::from(v.cbor());
    vec![
        (
            "hello",
            Message::Hello(Hello {
                version: 1,
                max_version: None,
                id: NodeId(0x0123456789abcdef0123456789abcdef),
                name: "a".into(),
                listen: Some(([127, 0, 0, 1], 8511).into()),
                topics: vec!["news".into()],
                paired: vec![("news".into(), NodeId(5))],
                services: vec!["math".into()],
                root: false,
                pairing: None,
                nonce: 7,
            }),
        ),
        (
            "topics",
            Message::Topics(vec!["news".into(), "sensors/*/temp".into()]),
        ),
        ("paired", Message::Paired(vec![("news".into(), NodeId(42))])),
        ("services", Message::Services(vec!["math".into()])),
        (
            "ping",
            Message::Ping {
                id: 3,
                padding: Bytes::from_static(&[0, 0]),
            },
        ),
        (
            "pong",
            Message::Pong {
                id: 3,
                padding: Bytes::from_static(&[0, 0]),
            },
        ),
        (
            "discovery",
            Message::Discovery(Discovery {
                id: 1,
                origin: NodeId(9),
                origin_name: "n".into(),
                origin_addr: ([10, 0, 0, 1], 9000).into(),
                topic: "t".into(),
                ttl: 5,
                on_pair: OnPair::None,
                entry: Some(NodeId(2)),
            }),
        ),
        (
            "publish",
            Message::Publish(Publish {
                origin: NodeId(9),
                seq: 1,
                topic: "t".into(),
                ttl: 64,
                hops: 0,
                payload: Bytes::from_static(b"hi"),
            }),
        ),
        (
            "request",
            Message::Request {
                id: 1,
                service: "math".into(),
                path: "add".into(),
                kind: CallKind::Call,
                args: args(&(2, 3)),
                timeout_ms: Some(5000),
            },
        ),
        (
            "response_ok",
            Message::Response {
                id: 1,
                result: Ok(args(&5)),
            },
        ),
        (
            "response_err",
            Message::Response {
                id: 1,
                result: Err(RemoteError::NotFound("math".into())),
            },
        ),
        (
            "response_timeout",
            Message::Response {
                id: 2,
                result: Err(RemoteError::Timeout),
            },
        ),
        ("cancel", Message::Cancel { id: 1 }),
        (
            "find_service",
            Message::FindService(ServiceSearch {
                id: 2,
                origin: NodeId(9),
                origin_addr: "[::1]:9000".parse().unwrap(),
                service: "math".into(),
                ttl: 5,
            }),
        ),
        ("goodbye", Message::Goodbye(DisconnectReason::Shutdown)),
        (
            "goodbye_limit",
            Message::Goodbye(DisconnectReason::LimitExceeded("x".into())),
        ),
        (
            "goodbye_version",
            Message::Goodbye(DisconnectReason::VersionMismatch { ours: 1, theirs: 2 }),
        ),
        (
            "file_offer",
            Message::FileOffer(FileOffer {
                origin: NodeId(9),
                seq: 4,
                topic: "f".into(),
                ttl: 64,
                hops: 1,
                id: 1,
                name: "a.txt".into(),
                size: Some(3),
                chunk: 65536,
                meta: Bytes::from_static(b"m"),
                addr: Some(([10, 0, 0, 1], 9000).into()),
            }),
        ),
        (
            "file_chunk",
            Message::FileChunk(FileChunk {
                origin: NodeId(9),
                seq: 5,
                topic: "f".into(),
                ttl: 64,
                hops: 1,
                id: 1,
                index: 0,
                data: Bytes::from_static(b"abc"),
                repair: false,
            }),
        ),
        (
            "file_end",
            Message::FileEnd(FileEnd {
                origin: NodeId(9),
                seq: 6,
                topic: "f".into(),
                ttl: 64,
                hops: 1,
                id: 1,
                size: 3,
                sha256: Some(Bytes::from_static(&SHA256_ABC)),
                repair: false,
            }),
        ),
        (
            "file_want",
            Message::FileWant(FileWant {
                origin: NodeId(9),
                id: 1,
                ranges: vec![(0, 1)],
                end: true,
            }),
        ),
        (
            "file_gone",
            Message::FileGone(FileGone {
                origin: NodeId(9),
                id: 1,
            }),
        ),
    ]
}

/// SHA-256 of `abc`.
const SHA256_ABC: [u8; 32] = [
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
];

/// A serializable value, as CBOR (for call arguments and results).
trait Erased {
    fn cbor(&self) -> Vec<u8>;
}

impl<T: serde::Serialize> Erased for T {
    fn cbor(&self) -> Vec<u8> {
        encode_value(self).unwrap()
    }
}

fn datagrams() -> Vec<(&'static str, Datagram)> {
    vec![
        (
            "status_request",
            Datagram::StatusRequest {
                token: 1,
                padding: Bytes::from_static(&[0; 4]),
            },
        ),
        (
            "status_reply",
            Datagram::StatusReply {
                token: 1,
                status: Status {
                    name: "a".into(),
                    id: NodeId(1),
                    paired: [("t".to_string(), true)].into_iter().collect(),
                    services: vec![],
                    edges: 1,
                    root: false,
                    reconnecting: false,
                    truncated: false,
                },
            },
        ),
        (
            "udp_publish",
            Datagram::Publish {
                topic: "t".into(),
                payload: Bytes::from_static(b"x"),
            },
        ),
    ]
}

#[test]
fn every_frame_vector_encodes_and_decodes_as_documented() {
    let docs = vectors();
    let frames = frames();
    for (name, msg) in &frames {
        let want = docs
            .get(&("vector".to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("PROTOCOL.md has no vector {name}"));
        let mut got = BytesMut::new();
        encode_frame(msg, &mut got, 1 << 20).unwrap();
        assert_eq!(
            &got[..],
            &want[..],
            "vector {name} is not what the codec encodes"
        );
        let mut d = FrameDecoder::new(1 << 20);
        d.extend(want);
        let body = d.next_frame().unwrap().unwrap();
        assert_eq!(
            &decode_message(&body).unwrap(),
            msg,
            "vector {name} decodes otherwise"
        );
    }
    let listed = docs.keys().filter(|(k, _)| k == "vector").count();
    assert_eq!(
        listed,
        frames.len(),
        "a vector of PROTOCOL.md is not checked"
    );
}

#[test]
fn every_datagram_vector_encodes_and_decodes_as_documented() {
    let docs = vectors();
    let datagrams = datagrams();
    for (name, dg) in &datagrams {
        let want = docs
            .get(&("datagram".to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("PROTOCOL.md has no datagram {name}"));
        assert_eq!(&encode_value(dg).unwrap(), want, "datagram {name}");
        assert_eq!(
            &decode_value::<Datagram>(want).unwrap(),
            dg,
            "datagram {name}"
        );
    }
    let listed = docs.keys().filter(|(k, _)| k == "datagram").count();
    assert_eq!(
        listed,
        datagrams.len(),
        "a datagram of PROTOCOL.md is not checked"
    );
}
