//! A Node fed an arbitrary sequence of inputs derived from the fuzz data: connections opened
//! and closed, raw byte chunks, well-formed frames with arbitrary fields (Hellos with pairing
//! intents, goodbyes with every reason, error responses), datagrams, timer ticks, user commands,
//! and peers that answer what the node sends them (Hellos, pings, requests). Never a panic;
//! every frame the node sends decodes; every table stays within its configured bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::encode_value;
use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
use chaski_proto::files::{
    FileChunk, FileEnd, FileGone, FileKey, FileLimits, FileOffer, FileWant, MIN_CHUNK,
};
use chaski_proto::message::{
    Datagram, Discovery, Hello, PairIntent, Publish, ServiceSearch, PROTOCOL_VERSION,
};
use chaski_proto::{
    CallKind, Config, ConnId, Delivery, Direction, DisconnectReason, Message, Node, NodeId, OnPair,
    Output, RemoteCall, RemoteError, RequestId, Status,
};

/// Reads the fuzz data as a stream of small numbers; zeros once it runs out.
pub(crate) struct Src<'a>(pub(crate) &'a [u8]);

impl Src<'_> {
    pub(crate) fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    pub(crate) fn small(&mut self, n: u8) -> u8 {
        self.u8() % n.max(1)
    }
    pub(crate) fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (usize::from(self.u8()) % (max + 1)).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    fn name(&mut self) -> String {
        // A small alphabet so that names collide and tables fill, with the characters that
        // mean something (wildcards, levels, the reserved `@`), control characters, and names
        // past `max_name_len`.
        match self.small(14) {
            0..=5 => ["a", "b", "c", "", "topic", "svc"][usize::from(self.small(6))].to_string(),
            6 => "a/*".into(),
            7 => "**".into(),
            8 => "a/b".into(),
            9 => "@".into(),
            10 => "@node".into(),
            11 => "x*".into(),
            12 => "evil\n\u{1b}[31m".into(),
            _ => "l".repeat(250 + usize::from(self.small(16))),
        }
    }
    fn id(&mut self) -> NodeId {
        // More peers than the node's limits, so every bound can be reached.
        NodeId(u128::from(self.small(12)))
    }
    fn reason(&mut self) -> DisconnectReason {
        match self.small(14) {
            0 => DisconnectReason::Shutdown,
            1 => DisconnectReason::Closed,
            2 => DisconnectReason::Duplicate,
            3 => DisconnectReason::SelfConnection,
            4 => DisconnectReason::AlreadyPaired,
            5 => DisconnectReason::Unneeded,
            6 => DisconnectReason::VersionMismatch { ours: 1, theirs: 2 },
            7 => DisconnectReason::ProtocolError(self.name()),
            8 => DisconnectReason::LimitExceeded(self.name()),
            9 => DisconnectReason::HandshakeTimeout,
            10 => DisconnectReason::IdleTimeout,
            11 => DisconnectReason::TooManyConnections,
            12 => DisconnectReason::NotAuthorized(self.name()),
            _ => DisconnectReason::ConnectionLost,
        }
    }
    fn remote_error(&mut self) -> RemoteError {
        match self.small(8) {
            0 => RemoteError::NotFound(self.name()),
            1 => RemoteError::NoSuchMethod(self.name()),
            2 => RemoteError::BadArguments(self.name()),
            3 => RemoteError::Failed(self.name()),
            4 => RemoteError::Timeout,
            5 => RemoteError::Disconnected,
            6 => RemoteError::Busy,
            _ => RemoteError::Cancelled,
        }
    }
}

const LIMITS: usize = 8;

fn frame(src: &mut Src, me: NodeId) -> Message {
    let addr: SocketAddr = ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
    match src.small(19) {
        0 => Message::Hello(Hello {
            version: if src.small(8) == 0 {
                99
            } else {
                PROTOCOL_VERSION
            },
            max_version: match src.small(4) {
                0 => Some(2),
                1 => Some(u16::from(src.u8())),
                _ => None,
            },
            id: if src.small(8) == 0 { me } else { src.id() },
            name: src.name(),
            listen: Some(addr),
            topics: (0..src.small(12)).map(|_| src.name()).collect(),
            paired: (0..src.small(3)).map(|_| (src.name(), src.id())).collect(),
            services: (0..src.small(12)).map(|_| src.name()).collect(),
            root: src.small(4) == 0,
            pairing: (src.small(3) == 0).then(|| PairIntent {
                discovery: u64::from(src.u8()),
                topic: src.name(),
                entry: (src.small(2) == 0).then(|| src.id()),
                cluster: (src.small(2) == 0).then(|| src.id()),
            }),
            nonce: u64::from(src.u8()),
        }),
        1 => Message::Topics((0..src.small(16)).map(|_| src.name()).collect()),
        2 => Message::Paired((0..src.small(4)).map(|_| (src.name(), src.id())).collect()),
        3 => Message::Services((0..src.small(16)).map(|_| src.name()).collect()),
        4 => Message::Ping {
            id: u64::from(src.u8()),
            padding: Bytes::from(src.bytes(64)),
        },
        5 => Message::Pong {
            id: u64::from(src.u8()),
            padding: Bytes::new(),
        },
        6 => Message::Discovery(Discovery {
            id: u64::from(src.u8()),
            origin: src.id(),
            origin_name: src.name(),
            origin_addr: addr,
            topic: src.name(),
            ttl: src.u8(),
            on_pair: if src.small(2) == 0 {
                OnPair::None
            } else {
                OnPair::Disconnect
            },
            entry: (src.small(2) == 0).then(|| src.id()),
        }),
        7 => Message::Publish(Publish {
            origin: src.id(),
            seq: u64::from(src.small(8)),
            topic: src.name(),
            ttl: src.u8(),
            hops: src.u8(),
            payload: Bytes::from(src.bytes(32)),
        }),
        8 => Message::Request {
            id: u64::from(src.u8()),
            service: src.name(),
            path: src.name(),
            kind: if src.small(2) == 0 {
                CallKind::Call
            } else {
                CallKind::Get
            },
            args: Bytes::from(src.bytes(16)),
            timeout_ms: (src.small(2) == 0).then(|| u64::from(src.u8()) << src.small(60)),
        },
        9 => Message::Response {
            id: u64::from(src.small(4)),
            result: if src.small(2) == 0 {
                Ok(Bytes::from(src.bytes(8)))
            } else {
                Err(src.remote_error())
            },
        },
        10 => Message::Goodbye(src.reason()),
        11 => Message::Cancel {
            id: u64::from(src.small(4)),
        },
        12 => Message::FindService(ServiceSearch {
            id: u64::from(src.u8()),
            origin: src.id(),
            origin_addr: addr,
            service: src.name(),
            ttl: src.u8(),
        }),
        13 => Message::FileOffer(FileOffer {
            origin: src.id(),
            seq: u64::from(src.small(8)),
            topic: src.name(),
            ttl: src.u8(),
            hops: src.u8(),
            id: u64::from(src.small(4)),
            name: src.name(),
            size: (src.small(2) == 0).then(|| u64::from(src.u8()) << src.small(40)),
            chunk: [MIN_CHUNK, MIN_CHUNK - 1, u32::MAX, 1 << 20][usize::from(src.small(4))],
            meta: Bytes::from(src.bytes(8)),
            addr: (src.small(2) == 0).then_some(addr),
        }),
        14 => Message::FileChunk(FileChunk {
            origin: src.id(),
            seq: u64::from(src.small(8)),
            topic: src.name(),
            ttl: src.u8(),
            hops: src.u8(),
            id: u64::from(src.small(4)),
            index: u64::from(src.u8()) << src.small(64),
            data: Bytes::from(vec![1; usize::from(src.small(3)) * MIN_CHUNK as usize / 2]),
            repair: src.small(2) == 0,
        }),
        15 => Message::FileEnd(FileEnd {
            origin: src.id(),
            seq: u64::from(src.small(8)),
            topic: src.name(),
            ttl: src.u8(),
            hops: src.u8(),
            id: u64::from(src.small(4)),
            size: u64::from(src.u8()) << src.small(40),
            sha256: (src.small(3) != 0).then(|| Bytes::from(src.bytes(40))),
            repair: src.small(2) == 0,
        }),
        16 => Message::FileWant(FileWant {
            origin: if src.small(2) == 0 { me } else { src.id() },
            id: u64::from(src.small(4)),
            ranges: (0..src.small(80))
                .map(|_| (u64::from(src.u8()), u64::from(src.u8()) << src.small(60)))
                .collect(),
            end: src.small(2) == 0,
        }),
        17 => Message::FileGone(FileGone {
            origin: src.id(),
            id: u64::from(src.small(4)),
        }),
        _ => Message::Services(vec![]),
    }
}

/// What a well-behaved peer answers to a frame the node sent it, if anything.
fn answer(msg: &Message, peer: NodeId, listen: SocketAddr) -> Option<Message> {
    match msg {
        // An outbound connection: the peer accepts and says Hello back.
        Message::Hello(h) if h.nonce != 0 => Some(Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            max_version: None,
            id: peer,
            name: "answerer".into(),
            listen: Some(listen),
            topics: vec!["a".into()],
            paired: vec![("a".into(), peer)],
            services: vec!["svc".into()],
            root: false,
            pairing: None,
            nonce: 0,
        })),
        Message::Ping { id, padding } => Some(Message::Pong {
            id: *id,
            padding: padding.clone(),
        }),
        Message::Request { id, .. } => Some(Message::Response {
            id: *id,
            result: Ok(Bytes::from_static(&[0xf6])),
        }),
        _ => None,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut src = Src(data);
    let cfg = Config::default()
        .seed(7)
        .max_edges(LIMITS)
        .max_handshakes(LIMITS)
        .max_peer_topics(LIMITS)
        .max_peer_services(LIMITS)
        .max_pending_calls(LIMITS)
        .max_inbound_requests(LIMITS)
        .max_events(64)
        .dedup_pool(16)
        .discovery_pool(16)
        .max_frame_len(4096)
        .max_outbound(16 * 1024)
        .max_memory(64 * 1024)
        .max_datagram_len(MAX_DATAGRAM)
        .status_replies_per_sec(8);
    let listen: SocketAddr = ([127, 0, 0, 1], 8999).into();
    let mut node = Node::new(cfg, Some(listen)).expect("the fuzz configuration is valid");
    let me = node.id();
    let mut now = Instant::now();
    let mut next_conn = 1u64;
    let mut open: Vec<ConnId> = Vec::new();
    let mut dials: Vec<ConnId> = Vec::new();
    // What the node wrote to each connection, decoded, and the peers' pending answers.
    let mut written: HashMap<ConnId, FrameDecoder> = HashMap::new();
    let mut answers: HashMap<ConnId, BytesMut> = HashMap::new();
    // Connections whose socket takes nothing now.
    let mut stuck: Vec<ConnId> = Vec::new();
    // Requests the node gave its application, to answer; status queries it sent.
    let mut requests: Vec<(NodeId, u64)> = Vec::new();
    let mut tokens: Vec<u64> = Vec::new();
    for _ in 0..256 {
        if src.0.is_empty() {
            break;
        }
        let pick = |src: &mut Src, v: &Vec<ConnId>| {
            if v.is_empty() {
                ConnId(999)
            } else {
                v[usize::from(src.u8()) % v.len()]
            }
        };
        match src.small(14) {
            0 => {
                let conn = ConnId(next_conn);
                next_conn += 1;
                let peer: SocketAddr = ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
                node.handle_connected(conn, peer, Direction::Inbound, now);
                open.push(conn);
            }
            1 => {
                let conn = pick(&mut src, &open);
                let chunk = src.bytes(64);
                node.handle_bytes(conn, &chunk, now);
            }
            2..=4 => {
                let conn = pick(&mut src, &open);
                let msg = frame(&mut src, me);
                let mut out = BytesMut::new();
                if encode_frame(&msg, &mut out, 1 << 20).is_ok() {
                    // Sometimes split in two, to cross a partial frame.
                    let cut = usize::from(src.u8()) % (out.len() + 1);
                    node.handle_bytes(conn, &out[..cut], now);
                    node.handle_bytes(conn, &out[cut..], now);
                }
            }
            5 => {
                let conn = pick(&mut src, &open);
                node.handle_closed(conn, now);
                open.retain(|c| *c != conn);
            }
            6 => {
                let from: SocketAddr = ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
                let d = datagram(&mut src, &mut tokens);
                node.handle_datagram(from, &d, now);
            }
            7 => {
                now += Duration::from_millis(u64::from(src.u8()) * 100);
                node.handle_timeout(now);
            }
            8 => {
                // A dial of ours completes (or fails).
                let conn = pick(&mut src, &dials);
                dials.retain(|c| *c != conn);
                if src.small(2) == 0 {
                    let peer: SocketAddr = ([127, 0, 0, 1], 9000).into();
                    node.handle_connected(conn, peer, Direction::Outbound, now);
                    open.push(conn);
                } else {
                    node.handle_dial_failed(conn, "refused", now);
                }
            }
            9 => {
                // A peer's socket stops taking bytes, or takes them again.
                let conn = pick(&mut src, &open);
                if let Some(i) = stuck.iter().position(|c| *c == conn) {
                    stuck.swap_remove(i);
                    let data = node.take_outbound(conn, now);
                    take_written(&mut written, &mut answers, conn, &data, listen);
                } else {
                    stuck.push(conn);
                    node.advance(conn, 0, now);
                }
            }
            10..=11 => {
                // A peer answers what the node sent it (Hello, pongs, responses).
                let conn = pick(&mut src, &open);
                if let Some(bytes) = answers.remove(&conn) {
                    node.handle_bytes(conn, &bytes, now);
                }
            }
            _ => {
                let peer = src.id();
                let _ = match src.small(23) {
                    0 => node.subscribe(&src.name(), now).map(|_| ()),
                    1 => node.unsubscribe(&src.name(), now).map(|_| ()),
                    2 => node
                        .publish(&src.name(), Bytes::from(src.bytes(16)), now)
                        .map(|_| ()),
                    3 => node.discover(now),
                    4 => node.connect(([127, 0, 0, 1], 9000).into(), now).map(|_| ()),
                    5 => node.ping(peer, usize::from(src.u8()), now).map(|_| ()),
                    6 => node
                        .call(
                            peer,
                            RemoteCall {
                                service: &src.name(),
                                path: &src.name(),
                                kind: CallKind::Call,
                                args: Bytes::new(),
                            },
                            None,
                            now,
                        )
                        .map(|_| ()),
                    7 => node.serve(&src.name(), now),
                    8 => node.close(peer, now),
                    9 => node
                        .call_service(
                            RemoteCall {
                                service: &src.name(),
                                path: &src.name(),
                                kind: CallKind::Call,
                                args: Bytes::new(),
                            },
                            None,
                            now,
                        )
                        .map(|_| ()),
                    10 => node.seek_service(&src.name(), now).map(|_| ()),
                    11 => {
                        node.cancel_call(RequestId(u64::from(src.small(8))), now);
                        Ok(())
                    }
                    12 => {
                        // The application answers a request it was given (or one it was not).
                        let (peer, id) = match requests.len() {
                            0 => (peer, u64::from(src.u8())),
                            n => requests.swap_remove(usize::from(src.u8()) % n),
                        };
                        let result = if src.small(3) == 0 {
                            Err(src.remote_error())
                        } else {
                            Ok(Bytes::from(vec![0xf6; usize::from(src.u8()) * 40]))
                        };
                        node.respond(peer, id, result, now)
                    }
                    13 => node.unserve(&src.name(), now),
                    14 => {
                        let to: SocketAddr =
                            ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
                        node.query_status(to, now).map(|t| tokens.push(t))
                    }
                    15 => {
                        let to: SocketAddr =
                            ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
                        let payload = Bytes::from(vec![7; usize::from(src.u8()) * 300]);
                        node.publish_datagram(to, &src.name(), payload)
                    }
                    16 => {
                        let limits = FileLimits {
                            max_size: u64::from(src.u8()) << src.small(40),
                            max_in_flight: u64::from(src.u8()) << src.small(40),
                            max_transfers: usize::from(src.small(4)),
                        };
                        node.accept_files(&src.name(), limits)
                    }
                    17 => node
                        .offer_file(
                            &src.name(),
                            &src.name(),
                            (src.small(2) == 0).then(|| u64::from(src.u8()) << 10),
                            MIN_CHUNK,
                            Bytes::new(),
                            now,
                        )
                        .map(|_| ()),
                    18 => {
                        let len = usize::from(src.small(3)) * MIN_CHUNK as usize / 2;
                        node.send_chunk(u64::from(src.small(4)), Bytes::from(vec![2; len]), now)
                    }
                    19 => node.end_file(
                        u64::from(src.small(4)),
                        (src.small(3) != 0).then_some([3; 32]),
                        now,
                    ),
                    20 => {
                        let len = usize::from(src.small(3)) * MIN_CHUNK as usize / 2;
                        node.repair_chunk(
                            peer,
                            u64::from(src.small(4)),
                            u64::from(src.small(4)),
                            Bytes::from(vec![4; len]),
                            now,
                        )
                    }
                    21 => {
                        node.file_failed(FileKey {
                            origin: peer,
                            id: u64::from(src.small(4)),
                        });
                        node.forget_file(u64::from(src.small(4)));
                        Ok(())
                    }
                    _ => {
                        node.shutdown(now);
                        Ok(())
                    }
                };
            }
        }
        while let Some(out) = node.poll_output() {
            match out {
                Output::Dial { conn, .. } => dials.push(conn),
                Output::Deliver(Delivery::Request { peer, id, .. }) if requests.len() < 64 => {
                    requests.push((peer, id))
                }
                Output::Datagram { data, .. } => {
                    assert!(data.len() <= MAX_DATAGRAM, "a datagram over the limit");
                }
                Output::Close { conn } => {
                    // What was queued before the close is the runtime's to write; it must be
                    // valid too, but nothing answers it.
                    let _ = node.take_outbound(conn, now);
                    open.retain(|c| *c != conn);
                    stuck.retain(|c| *c != conn);
                    written.remove(&conn);
                    answers.remove(&conn);
                }
                Output::Transmit { conn } if !stuck.contains(&conn) => {
                    let data = node.take_outbound(conn, now);
                    take_written(&mut written, &mut answers, conn, &data, listen);
                }
                _ => {}
            }
        }
        assert!(node.edge_count() <= LIMITS);
        assert!(node.timer_count() <= 8 * LIMITS + 64, "timers are bounded");
        let memory = node.memory();
        assert_eq!(memory, node.memory_recounted(), "memory totals drifted");
        assert!(
            memory.inbound + memory.outbound <= memory.budget,
            "over the memory budget"
        );
        assert!(node.connection_count() <= 2 * LIMITS);
        for e in node.edges() {
            assert!(e.topics.len() <= LIMITS);
            assert!(e.services.len() <= LIMITS);
        }
    }
}

/// The largest datagram of the fuzzed node ([`Config::max_datagram_len`]).
const MAX_DATAGRAM: usize = 2000;

/// A datagram: raw bytes, or a status query padded up to (and past) the limit, a status reply
/// (to a token the node used, or not), or a publish.
fn datagram(src: &mut Src, tokens: &mut [u64]) -> Vec<u8> {
    match src.small(5) {
        0 => src.bytes(64),
        1 => encode_value(&Datagram::StatusRequest {
            token: u64::from(src.u8()),
            padding: Bytes::from(vec![0; usize::from(src.u8()) * 9]),
        })
        .unwrap_or_default(),
        2 => {
            let token = match tokens.len() {
                0 => u64::from(src.u8()),
                n => tokens[usize::from(src.u8()) % n],
            };
            encode_value(&Datagram::StatusReply {
                token,
                status: Status {
                    name: src.name(),
                    id: src.id(),
                    paired: (0..src.small(4)).map(|_| (src.name(), true)).collect(),
                    services: (0..src.small(4)).map(|_| src.name()).collect(),
                    edges: usize::from(src.u8()),
                    root: false,
                    reconnecting: false,
                    truncated: src.small(2) == 0,
                },
            })
            .unwrap_or_default()
        }
        _ => encode_value(&Datagram::Publish {
            topic: src.name(),
            payload: Bytes::from(vec![1; usize::from(src.u8()) * 9]),
        })
        .unwrap_or_default(),
    }
}

/// Decodes what the node wrote to `conn` and queues the peer's answers.
fn take_written(
    written: &mut HashMap<ConnId, FrameDecoder>,
    answers: &mut HashMap<ConnId, BytesMut>,
    conn: ConnId,
    data: &[u8],
    listen: SocketAddr,
) {
    let d = written
        .entry(conn)
        .or_insert_with(|| FrameDecoder::new(1 << 24));
    d.extend(data);
    while let Some(body) = d.next_frame().expect("the node wrote a bad frame") {
        let msg = decode_message(&body).expect("the node wrote an undecodable frame");
        let peer = NodeId(100 + u128::from(conn.0 % 4));
        if let Some(reply) = answer(&msg, peer, listen) {
            let buf = answers.entry(conn).or_default();
            if buf.len() < 1 << 16 {
                let _ = encode_frame(&reply, buf, 1 << 20);
            }
        }
    }
}
