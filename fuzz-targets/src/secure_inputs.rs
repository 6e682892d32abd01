//! Two secure nodes joined by a link the fuzz data controls: bytes carried faithfully, carried
//! with one byte flipped (either way), or dropped; the link closed (a goodbye and TLS's
//! close_notify carried, or a bare EOF); a third connection where either a stranger's
//! arbitrary bytes arrive or a real TLS node with another CA's certificate or an expired one
//! dials; timer ticks and publishes. The TLS handshake, record decryption and the refusal of
//! strangers run under hostile input: never a panic, and the memory counts never drift.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaski_proto::tls::{Tls, TlsIdentity};
use chaski_proto::{Config, ConnId, Direction, Node, Output};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

use crate::node_inputs::Src;

const CA: &[u8] = include_bytes!("../fixtures/tls/ca.pem");
const A_CERT: &[u8] = include_bytes!("../fixtures/tls/node.pem");
const A_KEY: &[u8] = include_bytes!("../fixtures/tls/node.key");
const B_CERT: &[u8] = include_bytes!("../fixtures/tls2/node.pem");
const B_KEY: &[u8] = include_bytes!("../fixtures/tls2/node.key");
/// Signed by the same CA, expired before the fixed clock's 2030.
const EXPIRED_CERT: &[u8] = include_bytes!("../fixtures/tls-expired/node.pem");
const EXPIRED_KEY: &[u8] = include_bytes!("../fixtures/tls-expired/node.key");
/// Another CA's node (it trusts its own CA).
const FOREIGN_CA: &[u8] = include_bytes!("../fixtures/tls-foreign/ca.pem");
const FOREIGN_CERT: &[u8] = include_bytes!("../fixtures/tls-foreign/node.pem");
const FOREIGN_KEY: &[u8] = include_bytes!("../fixtures/tls-foreign/node.key");

/// 1 January 2030: inside the fixtures' validity, whatever the date of the run.
#[derive(Debug)]
struct Fixed;

impl TimeProvider for Fixed {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            1_893_456_000,
        )))
    }
}

fn node(cert: &[u8], key: &[u8], port: u16) -> Node {
    node_of(CA, cert, key, port)
}

fn node_of(ca: &[u8], cert: &[u8], key: &[u8], port: u16) -> Node {
    let identity = TlsIdentity {
        ca: ca.to_vec(),
        cert: cert.to_vec(),
        key: key.to_vec(),
    };
    let tls = Tls::new(
        &identity,
        Arc::new(rustls::crypto::ring::default_provider()),
        Arc::new(Fixed),
    )
    .expect("the fixtures are valid");
    let cfg = Config::default()
        .seed(u64::from(port))
        .max_frame_len(4096)
        .max_outbound(64 * 1024)
        .max_memory(256 * 1024)
        .secure(tls);
    Node::new(cfg, Some(([127, 0, 0, 1], port).into())).expect("a valid configuration")
}

/// What a node wants written on each connection, all of it, including what it leaves to write
/// after closing one (other outputs are dropped).
fn drain(n: &mut Node, now: Instant) -> Vec<(ConnId, Bytes)> {
    let mut out = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Transmit { conn } | Output::Close { conn } = o {
            out.push((conn, n.take_outbound(conn, now)));
        }
    }
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let _ = nodes_after(data);
}

/// Runs one input; the two nodes as it leaves them.
fn nodes_after(data: &[u8]) -> Option<(Node, Node)> {
    let mut src = Src(data);
    let mut now = Instant::now();
    let mut a = node(A_CERT, A_KEY, 9001);
    let mut b = node(B_CERT, B_KEY, 9002);
    let b_addr: SocketAddr = ([127, 0, 0, 1], 9002).into();
    let Ok(dial) = a.connect(b_addr, now) else {
        return None;
    };
    let _ = a.subscribe("t", now);
    let _ = b.subscribe("t", now);
    a.handle_connected(dial, b_addr, Direction::Outbound, now);
    let (accepted, stranger) = (ConnId(1), ConnId(2));
    b.handle_connected(
        accepted,
        ([127, 0, 0, 1], 9001).into(),
        Direction::Inbound,
        now,
    );
    b.handle_connected(
        stranger,
        ([10, 0, 0, 9], 4000).into(),
        Direction::Inbound,
        now,
    );
    // The stranger: arbitrary bytes, or a TLS node whose certificate b must refuse.
    let mut c = match src.small(3) {
        0 => Some(node_of(FOREIGN_CA, FOREIGN_CERT, FOREIGN_KEY, 9003)),
        1 => Some(node(EXPIRED_CERT, EXPIRED_KEY, 9004)),
        _ => None,
    };
    let c_dial = c.as_mut().and_then(|c| {
        let d = c.connect(b_addr, now).ok()?;
        c.handle_connected(d, b_addr, Direction::Outbound, now);
        Some(d)
    });
    let (mut to_b, mut to_a): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    let (mut c_to_b, mut b_to_c): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    for _ in 0..128 {
        for (conn, bytes) in drain(&mut a, now) {
            if conn == dial {
                to_b.extend_from_slice(&bytes);
            }
        }
        for (conn, bytes) in drain(&mut b, now) {
            if conn == accepted {
                to_a.extend_from_slice(&bytes);
            } else if conn == stranger {
                b_to_c.extend_from_slice(&bytes);
            }
        }
        if let Some(c) = c.as_mut() {
            for (conn, bytes) in drain(c, now) {
                if Some(conn) == c_dial {
                    c_to_b.extend_from_slice(&bytes);
                }
            }
        }
        if src.0.is_empty() {
            break;
        }
        match src.small(12) {
            // Carried as written.
            0 | 1 => {
                b.handle_bytes(accepted, &std::mem::take(&mut to_b), now);
                a.handle_bytes(dial, &std::mem::take(&mut to_a), now);
            }
            // Carried with one byte flipped.
            2 => {
                let mut v = std::mem::take(&mut to_b);
                if !v.is_empty() {
                    let i = usize::from(src.u8()) * 7 % v.len();
                    v[i] ^= src.u8() | 1;
                }
                b.handle_bytes(accepted, &v, now);
            }
            // Lost.
            3 => to_a.clear(),
            // A stranger's bytes, or the TLS stranger's, carried both ways.
            4 => match (c.as_mut(), c_dial) {
                (Some(c), Some(d)) => {
                    b.handle_bytes(stranger, &std::mem::take(&mut c_to_b), now);
                    c.handle_bytes(d, &std::mem::take(&mut b_to_c), now);
                }
                _ => {
                    let junk = src.bytes(96);
                    b.handle_bytes(stranger, &junk, now);
                }
            },
            // Carried the other way with one byte flipped.
            8 => {
                let mut v = std::mem::take(&mut to_a);
                if !v.is_empty() {
                    let i = usize::from(src.u8()) * 7 % v.len();
                    v[i] ^= src.u8() | 1;
                }
                a.handle_bytes(dial, &v, now);
            }
            // a leaves: its goodbye and close_notify (drained next round) reach b, then EOF.
            9 => {
                a.shutdown(now);
                for (conn, bytes) in drain(&mut a, now) {
                    if conn == dial {
                        to_b.extend_from_slice(&bytes);
                    }
                }
                b.handle_bytes(accepted, &std::mem::take(&mut to_b), now);
                b.handle_closed(accepted, now);
            }
            // The link breaks: EOF on both sides, whatever was in flight.
            10 => {
                a.handle_closed(dial, now);
                b.handle_closed(accepted, now);
            }
            5 => {
                now += Duration::from_millis(u64::from(src.u8()) * 50);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            6 => {
                let payload = Bytes::from(src.bytes(64));
                let _ = a.publish("t", payload, now);
            }
            _ => {
                let datagram = src.bytes(64);
                b.handle_datagram(([10, 0, 0, 9], 4000).into(), &datagram, now);
            }
        }
        assert_eq!(a.memory(), a.memory_recounted(), "a's memory count drifted");
        assert_eq!(b.memory(), b.memory_recounted(), "b's memory count drifted");
        // A stranger never gets an edge.
        assert!(b.edge_count() <= 1, "a stranger got an edge");
        if let Some(c) = &c {
            assert_eq!(c.edge_count(), 0, "a refused certificate got an edge");
        }
    }
    Some((a, b))
}

#[cfg(test)]
mod tests {
    /// The faithful link finishes the handshake (the target reaches past it), and a flipped
    /// byte in a record ends the session without an edge.
    #[test]
    fn a_faithful_link_connects_and_a_flipped_byte_does_not() {
        // (The first byte picks the stranger: 2 = arbitrary bytes.)
        let (a, b) = super::nodes_after(&[[2].as_slice(), &[0; 40]].concat()).unwrap();
        assert_eq!((a.edge_count(), b.edge_count()), (1, 1));
        let (a, b) = super::nodes_after(&[2, 2, 60, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((a.edge_count(), b.edge_count()), (0, 0));
    }

    /// A TLS stranger carried faithfully reaches b's certificate check and is refused (both
    /// another CA's node and an expired one), while a and b still connect.
    #[test]
    fn tls_strangers_are_refused_by_their_certificates() {
        for pick in [0u8, 1] {
            let mut input = vec![pick];
            input.extend([0, 4].repeat(30));
            let (a, b) = super::nodes_after(&input).unwrap();
            assert_eq!((a.edge_count(), b.edge_count()), (1, 1));
            assert!(
                b.counters().bad_peers >= 1,
                "stranger {pick} was never refused"
            );
        }
    }
}
