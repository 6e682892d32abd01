//! Hostile peers over real sockets (tokio): absurd lengths, slow-loris handshakes, floods of
//! names and requests, a consumer that never reads, and connection churn. Each test asserts the
//! bound holds and that the node's other peers keep working. Every wait has a deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chaski_api::{Config, DisconnectReason, Service, ServiceError, SlowConsumer};
use chaski_proto::{Message, RemoteError};
use chaski_tests::raw::{hello, RawConn};
use chaski_tests::wait_until as wait_for;
use chaski_tokio::Node;

const WAIT: Duration = Duration::from_secs(5);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A node on loopback, port 0.
fn bind(rt: &tokio::runtime::Runtime, config: Config) -> Node {
    rt.block_on(Node::bind("127.0.0.1:0", config))
        .expect("bind")
}

fn cfg(name: &str) -> Config {
    Config::default().name(name).reconnections(0)
}

/// Resident and peak memory of this process, in KiB (Linux).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A raw peer that completed the Hello exchange with `node`.
fn raw_edge(node: &Node, id: u128) -> RawConn {
    let mut raw = RawConn::connect(node.local_addr());
    raw.send(&hello(id, None, &[]));
    assert!(
        matches!(raw.recv(WAIT), Some(Message::Hello(_))),
        "no Hello back"
    );
    raw
}

/// Another real peer can still ping `node`.
fn still_serves(rt: &tokio::runtime::Runtime, node: &Node, witness: &Node) {
    rt.block_on(async {
        let rtt = tokio::time::timeout(WAIT, witness.ping(node.id(), 0)).await;
        assert!(
            matches!(rtt, Ok(Ok(_))),
            "the node stopped serving its other peers: {rtt:?}"
        );
    });
}

#[test]
fn a_4_gib_length_prefix_gets_a_goodbye_and_no_allocation() {
    let rt = rt();
    let node = bind(&rt, cfg("target"));
    let witness = bind(&rt, cfg("witness"));
    rt.block_on(witness.connect(&node.address())).unwrap();
    let (before, _) = memory_kib();
    let mut raw = raw_edge(&node, 11);
    // 0xFFFFFFFF: a body of 4 GiB - 1 announced, then a trickle of bytes.
    raw.send_bytes(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    match raw.recv(WAIT) {
        Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) => {
            assert!(m.contains("4294967295"), "{m}")
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }
    assert!(raw.closed_within(WAIT));
    let (after, _) = memory_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    still_serves(&rt, &node, &witness);
}

#[test]
fn a_slow_loris_is_closed_after_the_handshake_timeout() {
    let rt = rt();
    let timeout = Duration::from_millis(300);
    let node = bind(&rt, cfg("target").handshake_timeout(timeout));
    let start = Instant::now();
    let mut silent = RawConn::connect(node.local_addr());
    let mut trickle = RawConn::connect(node.local_addr());
    // Half a length prefix, then nothing more.
    trickle.send_bytes(&[0, 0]);
    for raw in [&mut silent, &mut trickle] {
        match raw.recv(WAIT) {
            Some(Message::Goodbye(DisconnectReason::HandshakeTimeout)) | None => {}
            other => panic!("expected a handshake-timeout goodbye, got {other:?}"),
        }
        assert!(raw.closed_within(WAIT));
    }
    let took = start.elapsed();
    assert!(took >= timeout, "closed before the timeout: {took:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "closed late: {took:?}"
    );
}

#[test]
fn a_hundred_thousand_names_are_cut_at_the_bound() {
    let rt = rt();
    let node = bind(
        &rt,
        cfg("target").max_peer_topics(1000).max_peer_services(100),
    );
    let witness = bind(&rt, cfg("witness"));
    rt.block_on(witness.connect(&node.address())).unwrap();
    let names: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    for (id, msg, what) in [
        (21, Message::Topics(names.clone()), "topics"),
        (22, Message::Services(names.clone()), "services"),
    ] {
        let mut raw = raw_edge(&node, id);
        raw.send(&msg);
        match raw.recv(WAIT) {
            Some(Message::Goodbye(DisconnectReason::LimitExceeded(m))) => {
                assert!(m.contains("100000") && m.contains(what), "{m}")
            }
            other => panic!("expected a limit goodbye for {what}, got {other:?}"),
        }
        assert!(raw.closed_within(WAIT));
    }
    // The same flood inside a Hello.
    let mut raw = RawConn::connect(node.local_addr());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    raw.send(&hello(23, None, &refs));
    assert!(matches!(
        raw.recv(WAIT),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(_)))
    ));
    let edges = rt.block_on(node.edges()).unwrap();
    assert_eq!(edges.len(), 1, "only the witness remains");
    still_serves(&rt, &node, &witness);
}

#[test]
fn a_request_flood_is_bounded_by_the_pending_request_limit() {
    let rt = rt();
    let limit = 16;
    let node = bind(&rt, cfg("server").max_inbound_requests(limit));
    rt.block_on(
        node.serve(
            "slow",
            Service::builder()
                .method_async("hang", |_: ()| {
                    std::future::pending::<Result<(), ServiceError>>()
                })
                .build(),
        ),
    )
    .unwrap();
    let witness = bind(&rt, cfg("witness"));
    rt.block_on(witness.connect(&node.address())).unwrap();
    let mut raw = raw_edge(&node, 31);
    let flood = 2000u64;
    for id in 0..flood {
        raw.send(&Message::Request {
            id,
            service: "slow".into(),
            path: "hang".into(),
            kind: chaski_proto::CallKind::Call,
            args: Bytes::from_static(&[0xf6]), // CBOR null: ()
        });
    }
    let mut busy = 0;
    while let Some(m) = raw.recv(WAIT) {
        match m {
            Message::Response {
                result: Err(RemoteError::Busy),
                ..
            } => {
                busy += 1;
                if busy == flood - limit as u64 {
                    break;
                }
            }
            Message::Response { result, .. } => panic!("unexpected answer {result:?}"),
            _ => {}
        }
    }
    assert_eq!(
        busy,
        flood - limit as u64,
        "every request over the limit is answered Busy"
    );
    still_serves(&rt, &node, &witness);
}

/// Publishes `count` messages of 1 KiB from `from`, giving up after `limit` (a publisher held
/// by back-pressure is the point of one of the tests).
fn publish_for(rt: &tokio::runtime::Runtime, from: &Node, count: usize, limit: Duration) -> usize {
    rt.block_on(async {
        let payload = Bytes::from(vec![7u8; 1024]);
        let mut sent = 0;
        let end = tokio::time::Instant::now() + limit;
        while sent < count {
            match tokio::time::timeout_at(end, from.publish("flood", payload.clone())).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        sent
    })
}

#[test]
fn a_consumer_that_never_reads_keeps_memory_bounded() {
    let rt = rt();
    let queue = 2000;
    for policy in [SlowConsumer::DropOldest, SlowConsumer::BackPressure] {
        let slow = bind(&rt, cfg("slow").message_queue(queue).slow_consumer(policy));
        rt.block_on(slow.subscribe("flood")).unwrap();
        let publisher = bind(&rt, cfg("pub"));
        let witness = bind(&rt, cfg("witness"));
        rt.block_on(publisher.connect(&slow.address())).unwrap();
        rt.block_on(witness.connect(&slow.address())).unwrap();
        let (rss_before, _) = memory_kib();
        // 200 MiB offered; nobody reads at `slow`.
        let sent = publish_for(&rt, &publisher, 200_000, Duration::from_secs(5));
        let stats = slow.messages().stats();
        let (rss_after, peak) = memory_kib();
        eprintln!(
            "{policy:?}: {sent} x 1 KiB published, queue {} (bound {queue}), dropped {}, RSS {rss_before} -> {rss_after} KiB, peak {peak} KiB",
            stats.len, stats.dropped
        );
        // The queue holds at most its bound plus one turn of reads.
        assert!(stats.len <= queue + 64 * 64, "queue grew to {}", stats.len);
        match policy {
            SlowConsumer::DropOldest => {
                assert_eq!(sent, 200_000, "drop-oldest never holds the publisher");
                assert!(stats.dropped > 0);
                // Its other peers are served as usual.
                still_serves(&rt, &slow, &witness);
            }
            SlowConsumer::BackPressure => {
                assert!(sent < 200_000, "back-pressure reached the publisher");
                assert_eq!(stats.dropped, 0, "back-pressure loses nothing");
            }
        }
        // Socket buffers and the bounded queue: far below the 200 MiB offered.
        assert!(
            rss_after < rss_before + 96 * 1024,
            "RSS grew from {rss_before} to {rss_after} KiB"
        );
        // Once the application reads, everything queued is there, in order.
        let first = slow.messages().try_recv().expect("queued messages");
        assert_eq!(first.topic, "flood");
        for n in [slow, publisher, witness] {
            let _ = rt.block_on(n.shutdown());
        }
    }
}

#[test]
fn a_thousand_connect_close_cycles_leave_nothing_behind() {
    let rt = rt();
    let node = bind(&rt, cfg("target"));
    let peer = bind(&rt, cfg("peer"));
    // Warm up once, so lazily created descriptors exist before the baseline.
    let e = rt.block_on(peer.connect(&node.address())).unwrap();
    rt.block_on(peer.close(e.id)).unwrap();
    assert!(wait_for(WAIT, || rt
        .block_on(node.edges())
        .unwrap()
        .is_empty()));
    let fds = open_fds();
    for i in 0..1000u128 {
        if i % 2 == 0 {
            let e = rt.block_on(peer.connect(&node.address())).unwrap();
            rt.block_on(peer.close(e.id)).unwrap();
            // Until the goodbye lands, a new connection would be a duplicate of this edge.
            assert!(wait_for(WAIT, || rt
                .block_on(node.edges())
                .unwrap()
                .is_empty()));
        } else {
            // A raw peer that says Hello and vanishes without a goodbye.
            drop(raw_edge(&node, 1000 + i));
        }
    }
    assert!(wait_for(WAIT, || rt
        .block_on(node.edges())
        .unwrap()
        .is_empty()
        && rt.block_on(peer.edges()).unwrap().is_empty()));
    assert!(
        wait_for(WAIT, || open_fds() <= fds),
        "descriptors: {fds} before, {} after",
        open_fds()
    );
    let s = rt
        .block_on(peer.status(&node.local_addr().to_string()))
        .unwrap();
    assert_eq!(s.edges, 0);
}
