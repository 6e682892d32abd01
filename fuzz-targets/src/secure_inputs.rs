//! Two secure nodes joined by a link the fuzz data controls: bytes carried faithfully, carried
//! with one byte flipped, or dropped; a third connection where a stranger's arbitrary bytes
//! arrive; timer ticks and publishes. The TLS handshake, record decryption and the refusal of
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
    let identity = TlsIdentity {
        ca: CA.to_vec(),
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

/// What a node wants written on `conn`, all of it (other outputs are dropped).
fn drain(n: &mut Node, now: Instant) -> Vec<(ConnId, Bytes)> {
    let mut out = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Transmit { conn } = o {
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
    let (mut to_b, mut to_a): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    for _ in 0..128 {
        for (conn, bytes) in drain(&mut a, now) {
            if conn == dial {
                to_b.extend_from_slice(&bytes);
            }
        }
        for (conn, bytes) in drain(&mut b, now) {
            if conn == accepted {
                to_a.extend_from_slice(&bytes);
            }
        }
        if src.0.is_empty() {
            break;
        }
        match src.small(8) {
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
            // A stranger's bytes.
            4 => {
                let junk = src.bytes(96);
                b.handle_bytes(stranger, &junk, now);
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
    }
    Some((a, b))
}

#[cfg(test)]
mod tests {
    /// The faithful link finishes the handshake (the target reaches past it), and a flipped
    /// byte in a record ends the session without an edge.
    #[test]
    fn a_faithful_link_connects_and_a_flipped_byte_does_not() {
        let (a, b) = super::nodes_after(&[0; 40]).unwrap();
        assert_eq!((a.edge_count(), b.edge_count()), (1, 1));
        let (a, b) = super::nodes_after(&[2, 60, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!((a.edge_count(), b.edge_count()), (0, 0));
    }
}
