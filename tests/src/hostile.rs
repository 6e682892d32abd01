//! Hostile peers over real sockets, on every runtime: absurd lengths, slow-loris handshakes,
//! floods of names and requests, consumers that never read, peers that never read, connection
//! churn. Each asserts the bound holds and that the node's other peers keep being served.
//! Memory is read from the counting allocator ([`crate::alloc`]), which sees reservations that
//! resident-memory figures miss.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaski_api::{Config, DisconnectReason, Event, Service, ServiceError, SlowConsumer};
use chaski_proto::{CallKind, Message, RemoteError};

use crate::alloc;
use crate::raw::{hello, RawConn};
use crate::{start_on, wait_event, wait_until, Harness, TestNode};

const WAIT: Duration = Duration::from_secs(5);
const MIB: usize = 1 << 20;

fn cfg(name: &str) -> Config {
    Config::default().name(name).reconnections(0)
}

/// Another real peer can still ping `node`.
fn still_serves<N: TestNode>(node: &N, witness: &N) {
    let rtt = witness.ping(node.id(), 0);
    assert!(
        rtt.is_ok(),
        "the node stopped serving its other peers: {rtt:?}"
    );
}

/// A 4 GiB length prefix: a goodbye naming the length, the connection closed, and nothing of
/// that size allocated (not even reserved).
pub fn huge_length_prefix<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, cfg("target"));
    let witness = start_on(h, host, cfg("witness"));
    witness.connect(&node.addr().to_string()).unwrap();
    let mut raw = RawConn::edge(node.addr(), &hello(11, None, &[]));
    let _measuring = alloc::measure();
    let (before, _) = alloc::usage();
    alloc::reset_peak();
    raw.send_bytes(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    match raw.recv(WAIT) {
        Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) => {
            assert!(m.contains("4294967295"), "{m}")
        }
        other => panic!("expected a goodbye, got {other:?}"),
    }
    assert!(raw.closed_within(WAIT));
    let (_, peak) = alloc::usage();
    assert!(
        peak < before + 16 * MIB,
        "heap peaked at {} MiB over the {} MiB before",
        (peak - before) / MIB,
        before / MIB
    );
    still_serves(&node, &witness);
    node.shutdown();
    witness.shutdown();
}

/// Connections that never finish their Hello are closed after the handshake timeout.
pub fn slow_loris<H: Harness>(h: &H, host: &str) {
    let timeout = Duration::from_millis(300);
    let node = start_on(h, host, cfg("target").handshake_timeout(timeout));
    let start = Instant::now();
    let mut silent = RawConn::connect(node.addr());
    let mut trickle = RawConn::connect(node.addr());
    // Half a length prefix, then nothing more.
    trickle.send_bytes(&[0, 0]);
    for raw in [&mut silent, &mut trickle] {
        match raw.recv(WAIT) {
            Some(Message::Goodbye(DisconnectReason::HandshakeTimeout)) => {}
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
    node.shutdown();
}

/// 100,000 topics or services, in an update or in a Hello, are cut at the bound with a goodbye
/// naming the count; only that connection closes.
pub fn name_floods<H: Harness>(h: &H, host: &str) {
    let node = start_on(
        h,
        host,
        cfg("target").max_peer_topics(1000).max_peer_services(100),
    );
    let witness = start_on(h, host, cfg("witness"));
    witness.connect(&node.addr().to_string()).unwrap();
    let names: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    for (id, msg, what) in [
        (21, Message::Topics(names.clone()), "topics"),
        (22, Message::Services(names.clone()), "services"),
    ] {
        let mut raw = RawConn::edge(node.addr(), &hello(id, None, &[]));
        raw.send(&msg);
        match raw.recv(WAIT) {
            Some(Message::Goodbye(DisconnectReason::LimitExceeded(m))) => {
                assert!(m.contains("100000") && m.contains(what), "{m}")
            }
            other => panic!("expected a limit goodbye for {what}, got {other:?}"),
        }
        assert!(raw.closed_within(WAIT));
    }
    let mut raw = RawConn::connect(node.addr());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    raw.send(&hello(23, None, &refs));
    assert!(matches!(
        raw.recv(WAIT),
        Some(Message::Goodbye(DisconnectReason::LimitExceeded(_)))
    ));
    assert!(wait_until(WAIT, || node.edges().len() == 1));
    assert_eq!(node.edges()[0].id, witness.id(), "only the witness remains");
    still_serves(&node, &witness);
    node.shutdown();
    witness.shutdown();
}

/// 2,000 requests against 16 pending slots: exactly the excess is answered `Busy`.
pub fn request_flood<H: Harness>(h: &H, host: &str) {
    let limit = 16;
    let node = start_on(h, host, cfg("server").max_inbound_requests(limit));
    let hang = Service::builder()
        .method_async("hang", |_: ()| {
            std::future::pending::<Result<(), ServiceError>>()
        })
        .build();
    node.serve("slow", hang).unwrap();
    let witness = start_on(h, host, cfg("witness"));
    witness.connect(&node.addr().to_string()).unwrap();
    let mut raw = RawConn::edge(node.addr(), &hello(31, None, &[]));
    let flood = 2000u64;
    for id in 0..flood {
        raw.send(&Message::Request {
            id,
            service: "slow".into(),
            path: "hang".into(),
            kind: CallKind::Call,
            args: Bytes::from_static(&[0xf6]), // CBOR null: ()
            timeout_ms: None,
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
        "every request over the limit is Busy"
    );
    still_serves(&node, &witness);
    node.shutdown();
    witness.shutdown();
}

/// Publishes `count` messages of `size` bytes from a thread. Once they stop being accepted
/// (no progress for `stall`) or all were, `then` runs with how many were accepted (it must
/// release a held publisher, e.g. by reading); returns that number once the publisher is done.
fn publish_watching<N: TestNode>(
    from: &N,
    count: usize,
    size: usize,
    stall: Duration,
    then: impl FnOnce(usize),
) -> usize {
    let done = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        let d = done.clone();
        let publisher = s.spawn(move || {
            let payload = vec![7u8; size];
            for _ in 0..count {
                from.publish("flood", &payload).expect("publish");
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut last = (0, Instant::now());
        let hard = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = done.load(Ordering::SeqCst);
            if now == count || publisher.is_finished() {
                break;
            }
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > stall {
                break;
            }
            assert!(
                Instant::now() < hard,
                "publishing neither finished nor stopped"
            );
        }
        let held = done.load(Ordering::SeqCst);
        then(held);
        let end = Instant::now() + Duration::from_secs(60);
        while !publisher.is_finished() {
            assert!(Instant::now() < end, "the publisher was never released");
            std::thread::sleep(Duration::from_millis(5));
        }
        held
    })
}

/// A subscriber to `flood` whose application never reads, with a queue of `queue` messages.
fn never_reading<H: Harness>(h: &H, host: &str, queue: usize, policy: SlowConsumer) -> H::Node {
    let c = cfg("slow").message_queue(queue).slow_consumer(policy);
    let slow = start_on(h, host, c);
    slow.subscribe("flood").unwrap();
    slow
}

/// Drop-oldest: the queue stays at its bound, the publisher is never held, the oldest messages
/// are dropped and counted, and the node serves its other peers.
pub fn slow_consumer_drop_oldest<H: Harness>(h: &H, host: &str) {
    let queue = 500;
    let slow = never_reading(h, host, queue, SlowConsumer::DropOldest);
    // A small outbound share: what the publisher holds (it shares this heap) stays small, so
    // the heap measures what the slow node keeps.
    let publisher = start_on(h, host, cfg("pub").max_outbound(512 * 1024));
    let witness = start_on(h, host, cfg("witness"));
    publisher.connect(&slow.addr().to_string()).unwrap();
    witness.connect(&slow.addr().to_string()).unwrap();
    let _measuring = alloc::measure();
    let (before, _) = alloc::usage();
    alloc::reset_peak();
    let count = 20_000;
    let sent = publish_watching(&publisher, count, 1024, Duration::from_secs(5), |_| {});
    assert_eq!(sent, count, "drop-oldest must never hold the publisher");
    assert!(wait_until(WAIT, || slow.message_stats().dropped
        + slow.message_stats().len as u64
        == count as u64));
    let stats = slow.message_stats();
    assert_eq!(stats.len, queue, "queue at its bound");
    assert_eq!(stats.dropped, (count - queue) as u64);
    let (_, peak) = alloc::usage();
    eprintln!(
        "drop-oldest: {count} x 1 KiB, queue {}, dropped {}, heap peak +{} KiB",
        stats.len,
        stats.dropped,
        (peak.saturating_sub(before)) / 1024
    );
    // 20 MiB offered, 0.5 MiB kept: the heap grows by what is in flight (one read chunk per
    // connection, the publisher's 64 KiB congestion share), well under what was offered.
    assert!(
        peak < before + 8 * MIB,
        "heap grew by {} MiB for 20 MiB offered",
        (peak - before) / MIB
    );
    still_serves(&slow, &witness);
    // The newest messages are the ones kept, in order.
    let first = slow.recv(WAIT).expect("queued messages");
    assert_eq!(first.seq, (count - queue + 1) as u64);
    for n in [slow, publisher, witness] {
        n.shutdown();
    }
}

/// Back-pressure: the publisher is held once the queue is full, nothing is dropped, and once the
/// application reads, everything arrives in order and the publisher goes on.
pub fn slow_consumer_back_pressure<H: Harness>(h: &H, host: &str) {
    let queue = 500;
    let slow = never_reading(h, host, queue, SlowConsumer::BackPressure);
    // A small outbound share, so the publisher feels the hold soon after the socket buffers.
    let publisher = start_on(h, host, cfg("pub").max_outbound(512 * 1024));
    publisher.connect(&slow.addr().to_string()).unwrap();
    let _measuring = alloc::measure();
    let (before, _) = alloc::usage();
    alloc::reset_peak();
    let count = 40_000;
    let mut held_at = None;
    publish_watching(
        &publisher,
        count,
        1024,
        Duration::from_millis(500),
        |held| {
            let stats = slow.message_stats();
            let (_, peak) = alloc::usage();
            eprintln!(
            "back-pressure: held after {held} of {count}, queue {} (bound {queue}), heap peak +{} KiB",
            stats.len,
            peak.saturating_sub(before) / 1024
        );
            held_at = Some(held);
            assert!(held < count, "back-pressure never reached the publisher");
            assert_eq!(stats.dropped, 0, "back-pressure loses nothing");
            // Reading stops once the queue is full; the chunk read last (256 KiB: at most
            // 256 messages of 1 KiB) is still delivered.
            assert!(
                stats.len <= queue + 256,
                "the queue grew to {} (bound {queue})",
                stats.len
            );
            assert!(
                peak < before + 8 * MIB,
                "heap grew by {} MiB for 40 MiB offered",
                (peak - before) / MIB
            );
            // Reading releases the publisher; everything arrives, in order.
            for k in 1..=count as u64 {
                let m = slow
                    .recv(WAIT)
                    .unwrap_or_else(|| panic!("message {k} of {count} lost"));
                assert_eq!(m.seq, k);
            }
        },
    );
    assert!(held_at.is_some());
    assert_eq!(slow.message_stats().dropped, 0);
    slow.shutdown();
    publisher.shutdown();
}

/// A peer that never reads what it subscribed to is dropped, with a goodbye reason and a
/// `BadPeer` event, once it has taken none of its bytes for `stall_timeout`; the publisher is
/// held only while that peer is congested, and the node's other peers are served.
pub fn peer_that_stops_reading<H: Harness>(h: &H, host: &str)
where
    H::Node: 'static,
{
    let stall = Duration::from_secs(1);
    let publisher = Arc::new(start_on(
        h,
        host,
        cfg("pub").max_outbound(512 * 1024).stall_timeout(stall),
    ));
    let witness = Arc::new(start_on(h, host, cfg("witness")));
    witness.connect(&publisher.addr().to_string()).unwrap();
    let deaf = RawConn::edge(publisher.addr(), &hello(41, None, &["flood"]));
    assert!(wait_until(WAIT, || publisher
        .edges()
        .iter()
        .any(|e| e.topics.iter().any(|t| t == "flood"))));
    while publisher.next_event(Duration::ZERO).is_some() {}
    // The publishing side runs on its own thread: a node that holds it for good makes this
    // test fail at the deadline below, not hang.
    let (tx, rx) = std::sync::mpsc::channel();
    let (p, w) = (publisher.clone(), witness.clone());
    std::thread::spawn(move || {
        // About 25 MB at most: more than the socket buffers of the deaf connection hold.
        let payload = vec![1u8; 128];
        let t = Instant::now();
        let mut sent = 0;
        let bad = loop {
            p.publish("flood", &payload).unwrap();
            sent += 1;
            if sent % 1000 == 0 {
                if let Some(e) =
                    wait_event(&*p, Duration::ZERO, |e| matches!(e, Event::BadPeer { .. }))
                {
                    break Some(e);
                }
            }
            if sent == 200_000 {
                break wait_event(&*p, WAIT, |e| matches!(e, Event::BadPeer { .. }));
            }
        };
        let _ = tx.send(Ok((bad, sent, t.elapsed())));
        // Not held afterwards, and the other peer is served.
        for _ in 0..5000 {
            p.publish("flood", &payload).unwrap();
        }
        let _ = tx.send(Err(w.ping(p.id(), 0).is_ok()));
    });
    let (bad, sent, took) = match rx.recv_timeout(WAIT * 4) {
        Ok(Ok(r)) => r,
        _ => panic!("the publisher was held by the deaf peer and never released"),
    };
    match bad {
        Some(Event::BadPeer { peer, reason, .. }) => {
            assert_eq!(peer.map(|p| p.0), Some(41));
            assert!(
                matches!(reason, DisconnectReason::LimitExceeded(_)),
                "{reason:?}"
            );
        }
        other => panic!("the deaf peer was not dropped after {sent} publishes: {other:?}"),
    }
    assert!(
        took >= stall,
        "dropped after {took:?}, before its stall timeout"
    );
    eprintln!("deaf peer dropped after {sent} publishes, {took:?}");
    assert!(wait_until(WAIT, || publisher.edges().len() == 1));
    match rx.recv_timeout(WAIT * 2) {
        Ok(Err(served)) => assert!(served, "the node stopped serving its other peer"),
        _ => panic!("the publisher is held after the deaf peer was dropped"),
    }
    drop(deaf);
    publisher.shutdown();
    witness.shutdown();
}

/// While a peer that never reads holds a publisher (long before its stall timeout), the node
/// holds nothing else: publishes to a healthy peer keep arriving, pings are answered, `close`
/// returns, and `shutdown` returns within a few seconds and releases the held publisher.
pub fn stalled_peer_holds_nothing_else<H: Harness>(h: &H, host: &str)
where
    H::Node: 'static,
{
    let publisher = Arc::new(start_on(
        h,
        host,
        cfg("pub")
            .max_outbound(512 * 1024)
            .stall_timeout(Duration::from_secs(300)),
    ));
    let healthy = start_on(h, host, cfg("healthy"));
    healthy.subscribe("news").unwrap();
    healthy.connect(&publisher.addr().to_string()).unwrap();
    let deaf = RawConn::edge(publisher.addr(), &hello(42, None, &["flood"]));
    assert!(wait_until(WAIT, || publisher.edges().len() == 2));
    // Flood the deaf peer from a thread until the publish is held.
    let done = Arc::new(AtomicUsize::new(0));
    let (p, d) = (publisher.clone(), done.clone());
    let flooder = std::thread::spawn(move || {
        let payload = vec![3u8; 1024];
        loop {
            if p.publish("flood", &payload).is_err() {
                return;
            }
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut last = (0, Instant::now());
    loop {
        let now = done.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(300) {
            break;
        }
        assert!(!flooder.is_finished(), "the flood publisher ended");
        assert!(now < 1_000_000, "the deaf peer never held the publisher");
        std::thread::sleep(Duration::from_millis(5));
    }
    let held = done.load(Ordering::SeqCst);
    // Meanwhile: publishes to the healthy peer arrive, in order.
    for i in 0..200u32 {
        publisher.publish("news", &i.to_be_bytes()).unwrap();
    }
    for i in 0..200u32 {
        let m = healthy
            .recv(WAIT)
            .unwrap_or_else(|| panic!("news {i} did not arrive while a peer was stalled"));
        assert_eq!(&m.payload[..], &i.to_be_bytes());
    }
    assert!(publisher.ping(healthy.id(), 0).is_ok());
    assert_eq!(done.load(Ordering::SeqCst), held, "the flood went on");
    // `close` and `shutdown` return at once (shutdown: within `linger` for the deaf peer).
    let t = Instant::now();
    publisher.close(healthy.id()).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        t.elapsed()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let p = publisher.clone();
    std::thread::spawn(move || {
        p.shutdown();
        let _ = tx.send(());
    });
    let limit = cfg("x").linger + Duration::from_secs(3);
    assert!(
        rx.recv_timeout(limit).is_ok(),
        "shutdown did not return within {limit:?}"
    );
    assert!(
        wait_until(WAIT, || flooder.is_finished()),
        "the held publisher was not released by the shutdown"
    );
    eprintln!(
        "stalled peer: publisher held after {held} x 1 KiB; shutdown took {:?}",
        t.elapsed()
    );
    drop(deaf);
    healthy.shutdown();
}

/// Idle sockets that never say Hello, opened again as fast as they are dropped, cannot keep a
/// real peer out: they have their own slots, and the oldest goes first.
pub fn idle_sockets_cannot_lock_out_peers<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, cfg("target").max_handshakes(8));
    let peer = start_on(h, host, cfg("peer"));
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(std::net::TcpStream::connect(node.addr()).expect("connect"));
    }
    // A real peer gets in while all of them are still open.
    let e = peer
        .connect(&node.addr().to_string())
        .expect("a real peer was locked out by idle sockets");
    assert_eq!(e.id, node.id());
    assert_eq!(node.edges().len(), 1);
    // The node dropped the oldest idle sockets (they see the goodbye, then EOF).
    let mut dropped = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        loop {
            match std::io::Read::read(s, &mut buf) {
                Ok(0) => {
                    dropped += 1;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
    }
    assert!(
        dropped >= 40 - 8,
        "only {dropped} of 40 idle sockets were dropped"
    );
    drop(idle);
    still_serves(&node, &peer);
    node.shutdown();
    peer.shutdown();
}

/// Connections pushing most of a large frame and never finishing it, before and after their
/// Hello: the node's heap grows by less than its memory budget (the connections holding the
/// most are dropped, with a goodbye naming the budget), and it keeps serving its other peers.
pub fn hostile_peers_stay_within_the_memory_budget<H: Harness>(h: &H, host: &str) {
    let budget = 32 * MIB;
    let node = start_on(
        h,
        host,
        cfg("target")
            .max_memory(budget)
            .max_frame_len(8 * MIB)
            .max_hello_len(64 * 1024),
    );
    let witness = start_on(h, host, cfg("witness"));
    witness.connect(&node.addr().to_string()).unwrap();
    let frame_header = (8 * MIB as u32).to_be_bytes();
    let chunk = vec![0xA5u8; 256 * 1024];
    let _measuring = alloc::measure();
    let (before, _) = alloc::usage();
    alloc::reset_peak();
    // 16 connections before any Hello: a frame over max_hello_len is refused at its header.
    let mut early = Vec::new();
    for _ in 0..16 {
        let mut raw = RawConn::connect(node.addr());
        raw.try_send_bytes(&frame_header);
        raw.try_send_bytes(&chunk);
        early.push(raw);
    }
    // 12 edges, each sending 6 MiB of an 8 MiB frame: 72 MiB against a 24 MiB share.
    let mut edges = Vec::new();
    for i in 0..12u128 {
        let mut raw = RawConn::edge(node.addr(), &hello(100 + i, None, &[]));
        let mut open = raw.try_send_bytes(&frame_header);
        for _ in 0..24 {
            open = open && raw.try_send_bytes(&chunk);
        }
        edges.push(raw);
    }
    // Each is refused: for its frame, or (from one address, past max_handshakes_per_ip) as the
    // oldest of its address's handshakes.
    for raw in &mut early {
        match raw.recv(WAIT) {
            Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) if m.contains("exceeds") => {
            }
            Some(Message::Goodbye(DisconnectReason::TooManyConnections)) => {}
            other => panic!("expected a goodbye for a big frame before Hello, got {other:?}"),
        }
    }
    // Those that got the goodbye are closed; the others still hold their part of the budget.
    let mut shed = 0;
    for raw in &mut edges {
        if let Some(Message::Goodbye(DisconnectReason::LimitExceeded(m))) =
            raw.recv(Duration::from_millis(200))
        {
            assert_eq!(m, "node memory budget");
            shed += 1;
        }
    }
    let (_, peak) = alloc::usage();
    let grew = peak.saturating_sub(before);
    assert!(
        grew < budget,
        "the heap grew by {} MiB under a budget of {} MiB",
        grew / MIB,
        budget / MIB
    );
    assert!(shed >= 8, "only {shed} of 12 were dropped");
    drop(_measuring);
    still_serves(&node, &witness);
    node.shutdown();
    witness.shutdown();
}

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// 300 connect/close cycles (half real peers with close, half raw peers vanishing without a
/// goodbye) leave no edge, no descriptor and no redial behind.
pub fn connection_churn<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, cfg("target"));
    let peer = start_on(h, host, cfg("peer"));
    let target = node.addr().to_string();
    // Warm up once, so lazily created descriptors exist before the baseline.
    let e = peer.connect(&target).unwrap();
    peer.close(e.id).unwrap();
    assert!(wait_until(WAIT, || node.edges().is_empty()));
    let _measuring = alloc::measure();
    let fds = open_fds();
    for i in 0..300u128 {
        if i % 2 == 0 {
            let e = peer.connect(&target).unwrap();
            peer.close(e.id).unwrap();
            // Until the goodbye lands, a new connection would be a duplicate of this edge.
            assert!(wait_until(WAIT, || node.edges().is_empty()));
        } else {
            drop(RawConn::edge(node.addr(), &hello(1000 + i, None, &[])));
        }
    }
    assert!(wait_until(WAIT, || node.edges().is_empty() && peer.edges().is_empty()));
    match (fds, open_fds()) {
        (Some(before), Some(_)) => assert!(
            wait_until(WAIT, || open_fds().is_some_and(|n| n <= before)),
            "descriptors: {before} before, {:?} after",
            open_fds()
        ),
        _ => eprintln!("descriptor check skipped: no /proc/self/fd on this system"),
    }
    let s = peer.status(&target).unwrap();
    assert_eq!((s.edges, s.reconnecting), (0, false));
    node.shutdown();
    peer.shutdown();
}
