//! A Node fed an arbitrary sequence of inputs derived from the fuzz data: connections opened
//! and closed, raw byte chunks, well-formed frames with arbitrary fields, datagrams, timer ticks
//! and user commands. Never a panic; every table stays within its configured bound.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::encode_frame;
use chaski_proto::message::{Discovery, Hello, Publish, PROTOCOL_VERSION};
use chaski_proto::{CallKind, Config, ConnId, Direction, Message, Node, NodeId, OnPair, Output};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz data as a stream of small numbers; zeros once it runs out.
struct Src<'a>(&'a [u8]);

impl Src<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn small(&mut self, n: u8) -> u8 {
        self.u8() % n.max(1)
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (usize::from(self.u8()) % (max + 1)).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    fn name(&mut self) -> String {
        // A small alphabet so that names collide and tables fill.
        ["a", "b", "c", "", "topic", "svc"][usize::from(self.small(6))].to_string()
    }
    fn id(&mut self) -> NodeId {
        NodeId(u128::from(self.small(6)))
    }
}

const LIMITS: usize = 8;

fn frame(src: &mut Src, me: NodeId) -> Message {
    let addr: SocketAddr = ([127, 0, 0, 1], 9000 + u16::from(src.small(4))).into();
    match src.small(10) {
        0 => Message::Hello(Hello {
            version: if src.small(8) == 0 {
                99
            } else {
                PROTOCOL_VERSION
            },
            id: if src.small(8) == 0 { me } else { src.id() },
            name: src.name(),
            listen: Some(addr),
            topics: (0..src.small(12)).map(|_| src.name()).collect(),
            paired: vec![],
            services: (0..src.small(12)).map(|_| src.name()).collect(),
            root: src.small(4) == 0,
            pairing: None,
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
            entry: None,
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
        },
        _ => Message::Response {
            id: u64::from(src.small(4)),
            result: Ok(Bytes::from(src.bytes(8))),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src(data);
    let cfg = Config::default()
        .seed(7)
        .max_edges(LIMITS)
        .max_peer_topics(LIMITS)
        .max_peer_services(LIMITS)
        .max_pending_calls(LIMITS)
        .max_inbound_requests(LIMITS)
        .max_events(64)
        .dedup_pool(16)
        .discovery_pool(16)
        .max_frame_len(4096);
    let listen: SocketAddr = ([127, 0, 0, 1], 8999).into();
    let mut node = Node::new(cfg, Some(listen));
    let me = node.id();
    let mut now = Instant::now();
    let mut next_conn = 1u64;
    let mut open: Vec<ConnId> = Vec::new();
    let mut dials: Vec<ConnId> = Vec::new();
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
        match src.small(12) {
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
            2 | 3 | 4 => {
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
                let d = src.bytes(64);
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
                let conn = pick(&mut src, &open);
                node.handle_stalled(conn, now);
            }
            _ => {
                let peer = src.id();
                let _ = match src.small(10) {
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
                            &src.name(),
                            &src.name(),
                            CallKind::Call,
                            Bytes::new(),
                            None,
                            now,
                        )
                        .map(|_| ()),
                    7 => node.serve(&src.name()),
                    8 => node.close(peer, now),
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
                Output::Close { conn } => open.retain(|c| *c != conn),
                _ => {}
            }
        }
        assert!(node.edge_count() <= LIMITS);
        assert!(node.connection_count() <= LIMITS);
        for e in node.edges() {
            assert!(e.topics.len() <= LIMITS);
            assert!(e.services.len() <= LIMITS);
        }
    }
});
