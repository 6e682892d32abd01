//! The scenarios, each generic over the runtime. `host` is `127.0.0.1` or `[::1]`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaski_api::{
    Config, ConnectError, DisconnectReason, Error, Event, OnPair, RemoteError, Service,
    ServiceError,
};
use chaski_proto::{CommandError, Message};

use crate::raw::{hello, hello_offering, RawConn};
use crate::{start_on, wait_event, wait_until, Harness, TestNode};

const WAIT: Duration = Duration::from_secs(5);
/// How long an absence is watched for (something that must not happen).
const QUIET: Duration = Duration::from_millis(300);

fn cfg(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnections(0)
        .ttl(15)
        .max_connections(10)
        .discovery_timeout(Duration::from_millis(300))
}

fn start<H: Harness>(h: &H, host: &str, names: &[&str]) -> Vec<H::Node> {
    names.iter().map(|n| start_on(h, host, cfg(n))).collect()
}

/// A node subscribed to `topics`.
fn node<H: Harness>(h: &H, host: &str, config: Config, topics: &[&str]) -> H::Node {
    let n = start_on(h, host, config);
    for t in topics {
        n.subscribe(t).unwrap();
    }
    n
}

/// Every pair (i < j) connected on both sides.
fn edge_set<N: TestNode>(nodes: &[N]) -> BTreeSet<(usize, usize)> {
    let mut set = BTreeSet::new();
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            if connected(&nodes[i], &nodes[j]) {
                set.insert((i, j));
            }
        }
    }
    set
}

fn expect_edge_set<N: TestNode>(nodes: &[N], want: &[(usize, usize)]) {
    let want: BTreeSet<_> = want.iter().copied().collect();
    let ok = wait_until(WAIT, || edge_set(nodes) == want);
    assert!(ok, "edges {:?}, expected {:?}", edge_set(nodes), want);
}

/// Whether `edges` restricted to `members` form one spanning tree of them (a cluster grown by
/// pairing: each newcomer keeps exactly one pairing link, to whichever member answered first).
fn spanning_tree(edges: &BTreeSet<(usize, usize)>, members: &[usize]) -> bool {
    let inner: Vec<_> = edges
        .iter()
        .filter(|(a, b)| members.contains(a) && members.contains(b))
        .collect();
    let mut reach = BTreeSet::from([members[0]]);
    loop {
        let before = reach.len();
        for &&(a, b) in &inner {
            if reach.contains(&a) || reach.contains(&b) {
                reach.insert(a);
                reach.insert(b);
            }
        }
        if reach.len() == before {
            break;
        }
    }
    inner.len() + 1 == members.len() && reach.len() == members.len()
}

/// Waits until the edges are `fixed` plus one spanning tree over each of `clusters`.
fn expect_clusters<N: TestNode>(nodes: &[N], fixed: &[(usize, usize)], clusters: &[&[usize]]) {
    let check = |edges: &BTreeSet<(usize, usize)>| {
        let in_cluster =
            |&(a, b): &(usize, usize)| clusters.iter().any(|c| c.contains(&a) && c.contains(&b));
        let rest: BTreeSet<_> = edges.iter().copied().filter(|e| !in_cluster(e)).collect();
        rest == fixed.iter().copied().collect() && clusters.iter().all(|c| spanning_tree(edges, c))
    };
    let ok = wait_until(WAIT, || check(&edge_set(nodes)));
    assert!(
        ok,
        "edges {:?}: expected {fixed:?} plus one tree over each of {clusters:?}",
        edge_set(nodes)
    );
}

/// Waits until every listed edge of `n` knows `topic` (subscriptions travel over the wire).
fn knows_topic<N: TestNode>(n: &N, peers: &[&N], topic: &str) {
    let ok = wait_until(WAIT, || {
        let edges = n.edges();
        peers.iter().all(|p| {
            edges
                .iter()
                .any(|e| e.id == p.id() && e.topics.iter().any(|t| t == topic))
        })
    });
    assert!(ok, "the edges never learned the subscription to {topic}");
}

/// Counts the payloads `n` receives until `QUIET` passes with nothing new.
fn tally<N: TestNode>(n: &N, first_wait: Duration) -> BTreeMap<Vec<u8>, usize> {
    let mut t = BTreeMap::new();
    let mut wait = first_wait;
    while let Some(m) = n.recv(wait) {
        *t.entry(m.payload.to_vec()).or_insert(0) += 1;
        wait = QUIET;
    }
    t
}

fn addr<N: TestNode>(n: &N) -> String {
    n.addr().to_string()
}

fn counts<N: TestNode>(nodes: &[N]) -> Vec<usize> {
    nodes.iter().map(|n| n.edges().len()).collect()
}

fn expect_counts<N: TestNode>(nodes: &[N], want: &[usize]) {
    let ok = wait_until(WAIT, || counts(nodes) == want);
    assert!(ok, "edge counts {:?}, expected {:?}", counts(nodes), want);
}

fn connected<N: TestNode>(a: &N, b: &N) -> bool {
    a.edges().iter().any(|e| e.id == b.id()) && b.edges().iter().any(|e| e.id == a.id())
}

/// 12.1.1: two separate pairs.
pub fn single_connections<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["n0", "n1", "n2", "n3"]);
    n[0].connect(&addr(&n[1])).unwrap();
    n[2].connect(&addr(&n[3])).unwrap();
    expect_counts(&n, &[1, 1, 1, 1]);
    assert!(connected(&n[0], &n[1]) && connected(&n[2], &n[3]));
    n.iter().for_each(|x| x.shutdown());
}

/// 12.1.2 and 12.1.3: a star; the hub's shutdown reaches every peer within 3 s, with no redial.
pub fn star_and_graceful_shutdown<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["hub", "a", "b", "c", "d"]);
    for x in &n[1..] {
        let e = x.connect(&addr(&n[0])).unwrap();
        assert_eq!(e.id, n[0].id());
    }
    expect_counts(&n, &[4, 1, 1, 1, 1]);
    let t = Instant::now();
    n[0].shutdown();
    expect_counts(&n[1..], &[0, 0, 0, 0]);
    assert!(t.elapsed() < Duration::from_secs(3));
    for x in &n[1..] {
        let saw = wait_until(WAIT, || {
            matches!(
                x.next_event(Duration::from_millis(50)),
                Some(Event::PeerLost {
                    reason: DisconnectReason::Shutdown,
                    by_peer: true,
                    reconnecting: false,
                    ..
                })
            )
        });
        assert!(saw, "no goodbye seen");
    }
    n[1..].iter().for_each(|x| x.shutdown());
}

/// 12.1.4: a duplicate connect is refused; closing edges one by one.
pub fn edges_disconnection<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["n0", "n1", "n2", "n3", "n4", "n5"]);
    for x in &n[1..] {
        x.connect(&addr(&n[0])).unwrap();
    }
    match n[0].connect(&addr(&n[5])) {
        Err(Error::Connect(chaski_proto::ConnectError::Duplicate)) => {}
        other => panic!("duplicate connect gave {other:?}"),
    }
    for x in &n[1..5] {
        x.connect(&addr(&n[5])).unwrap();
    }
    expect_counts(&n, &[5, 2, 2, 2, 2, 5]);
    for (k, e) in n[0].edges().into_iter().enumerate() {
        n[0].close(e.id).unwrap();
        assert!(wait_until(WAIT, || n[0].edges().len() == 4 - k));
    }
    expect_counts(&n, &[0, 1, 1, 1, 1, 4]);
    n.iter().for_each(|x| x.shutdown());
}

/// 12.1.5 and 12.1.6: orphans on both sides.
pub fn orphans<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["s", "c1", "c2", "c3", "c4"]);
    for x in &n[1..] {
        x.connect(&addr(&n[0])).unwrap();
    }
    expect_counts(&n, &[4, 1, 1, 1, 1]);
    n[1].close(n[0].id()).unwrap();
    n[2].close(n[0].id()).unwrap();
    n[0].close(n[3].id()).unwrap();
    n[0].close(n[4].id()).unwrap();
    expect_counts(&n, &[0, 0, 0, 0, 0]);
    n.iter().for_each(|x| x.shutdown());
}

/// 12.2: discovery (anchor on timeout, pairing through a relay, disconnect on pair).
pub fn discovery<H: Harness>(h: &H, host: &str) {
    let a = node(h, host, cfg("A").paired(true), &["A"]);
    let b1 = node(h, host, cfg("B1"), &["B"]);
    let b2 = node(h, host, cfg("B2").on_pair(OnPair::Disconnect), &["B"]);
    b1.connect(&addr(&a)).unwrap();
    b2.connect(&addr(&a)).unwrap();
    let t = Instant::now();
    b1.discover().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "b1 should anchor after the timeout"
    );
    b2.discover().unwrap();
    let n = [a, b1, b2];
    // b2 paired with b1 and dropped its bootstrap link to a.
    expect_counts(&n, &[1, 2, 1]);
    assert!(connected(&n[1], &n[2]) && connected(&n[0], &n[1]) && !connected(&n[0], &n[2]));
    assert!(n[2].edges().iter().any(|e| e.id == n[1].id() && e.pairing));
    n.iter().for_each(|x| x.shutdown());
}

/// 12.4.1: latency grows with ping size. Scheduling noise only ever adds time, so the fastest
/// of several 1 MB round trips is compared with the fastest empty one.
pub fn ping_size<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["p0", "p1"]);
    n[1].connect(&addr(&n[0])).unwrap();
    let peer = n[1].id();
    let mut small = Vec::new();
    let mut big = Vec::new();
    for _ in 0..7 {
        small.push(n[0].ping(peer, 0).unwrap());
        big.push(n[0].ping(peer, 1_000_000).unwrap());
    }
    let (small, big) = (small.iter().min().unwrap(), big.iter().min().unwrap());
    assert!(
        big > small,
        "fastest 1 MB ping {big:?}, fastest empty {small:?}"
    );
    let e = n[0].edges();
    assert!(e[0].latency.is_some() && e[0].rtt.is_some());
    n.iter().for_each(|x| x.shutdown());
}

/// 12.6.4: a chain of six, messages in order over five hops.
pub fn stream_chain<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["c0", "c1", "c2", "c3", "c4", "c5"]);
    for x in &n {
        x.subscribe("topic1").unwrap();
    }
    for i in 0..5 {
        n[i].connect(&addr(&n[i + 1])).unwrap();
    }
    // Subscriptions are told at once, but over the wire: wait until each link knows.
    assert!(wait_until(WAIT, || n[..5].iter().all(|x| {
        let e = x.edges();
        !e.is_empty() && e.iter().all(|e| e.topics.contains(&"topic1".to_string()))
    })));
    for k in 0..6 {
        n[0].publish("topic1", format!("test{k}").as_bytes())
            .unwrap();
        let m = n[5].recv(WAIT).expect("message lost");
        assert_eq!(&m.payload[..], format!("test{k}").as_bytes());
        assert_eq!(m.hops, 5);
        assert_eq!(m.origin, Some(n[0].id()));
    }
    for x in &n[1..5] {
        for k in 0..6 {
            let m = x.recv(WAIT).expect("intermediate lost a message");
            assert_eq!(&m.payload[..], format!("test{k}").as_bytes());
        }
    }
    assert!(
        n[0].recv(Duration::from_millis(200)).is_none(),
        "the origin got its own message"
    );
    // What each node counted: the six publishes in, delivered and passed on, per edge too.
    let publish = chaski_api::MESSAGE_KINDS
        .iter()
        .position(|k| *k == "Publish")
        .unwrap();
    for (i, x) in n.iter().enumerate() {
        let m = x.metrics();
        let c = m.counters;
        let (relays, ends) = (i > 0 && i < 5, i == 0 || i == 5);
        assert_eq!(c.received[publish], if i == 0 { 0 } else { 6 }, "node {i}");
        assert_eq!(c.delivered, if i == 0 { 0 } else { 6 }, "node {i}");
        assert_eq!(c.relayed, if relays { 6 } else { 0 }, "node {i}");
        assert_eq!(m.gauges.edges, if ends { 1 } else { 2 }, "node {i}");
        assert!(c.bytes_received > 0 && c.bytes_sent > 0, "node {i}");
        if i < 5 {
            let next = m.edges.iter().find(|e| e.id == n[i + 1].id()).unwrap();
            assert!(
                next.frames_out >= 6 && next.configured,
                "node {i}: {next:?}"
            );
        }
    }
    n.iter().for_each(|x| x.shutdown());
}

/// 12.6.5 and 12.9: root relay, then a non-subscribed relay blocks, and a triangle de-dups.
pub fn root_relay_and_routing<H: Harness>(h: &H, host: &str) {
    let root = start_on(h, host, cfg("root").root(true));
    let n = start(h, host, &["c1", "c2"]);
    for x in &n {
        x.subscribe("topic1").unwrap();
        x.connect(&addr(&root)).unwrap();
    }
    assert!(wait_until(WAIT, || root
        .edges()
        .iter()
        .all(|e| e.topics.contains(&"topic1".to_string()))
        && root.edges().len() == 2));
    n[0].publish("topic1", b"test0").unwrap();
    assert_eq!(
        &n[1].recv(WAIT).expect("not relayed by root").payload[..],
        b"test0"
    );
    for k in 1..6 {
        root.publish("topic1", format!("test{k}").as_bytes())
            .unwrap();
    }
    for k in 1..6 {
        assert_eq!(
            &n[1].recv(WAIT).unwrap().payload[..],
            format!("test{k}").as_bytes()
        );
    }
    root.shutdown();
    n.iter().for_each(|x| x.shutdown());

    // A(t) – B(x) – C(t): C gets nothing; then the triangle A–C–D gets each message once.
    let n = start(h, host, &["A", "B", "C", "D"]);
    n[0].subscribe("t").unwrap();
    n[1].subscribe("x").unwrap();
    n[2].subscribe("t").unwrap();
    n[3].subscribe("t").unwrap();
    n[0].connect(&addr(&n[1])).unwrap();
    n[1].connect(&addr(&n[2])).unwrap();
    assert!(wait_until(WAIT, || n[1].edges().len() == 2));
    n[0].publish("t", b"blocked").unwrap();
    assert!(n[2].recv(Duration::from_millis(300)).is_none());
    n[0].connect(&addr(&n[2])).unwrap();
    n[2].connect(&addr(&n[3])).unwrap();
    n[3].connect(&addr(&n[0])).unwrap();
    assert!(wait_until(WAIT, || n[0]
        .edges()
        .iter()
        .filter(|e| e.topics.contains(&"t".to_string()))
        .count()
        == 2));
    assert!(wait_until(WAIT, || n[2]
        .edges()
        .iter()
        .filter(|e| e.topics.contains(&"t".to_string()))
        .count()
        == 2));
    n[0].publish("t", b"once").unwrap();
    assert_eq!(&n[2].recv(WAIT).unwrap().payload[..], b"once");
    assert_eq!(&n[3].recv(WAIT).unwrap().payload[..], b"once");
    // D has relayed its copy by now; what D publishes next reaches C and A after it, so each
    // one's next message is D's marker: a second "once" (or A's own) would come first.
    n[3].publish("t", b"marker").unwrap();
    assert_eq!(
        &n[2].recv(WAIT).unwrap().payload[..],
        b"marker",
        "C got a copy twice"
    );
    assert_eq!(
        &n[0].recv(WAIT).unwrap().payload[..],
        b"marker",
        "A got its own back"
    );
    n.iter().for_each(|x| x.shutdown());
}

/// 12.9: a peer's socket dies without goodbye: the loss is reported within 1 s, and the
/// survivor redials by back-off once the peer listens again.
pub fn abrupt_death_and_redial<H: Harness>(h: &H, host: &str) {
    let node = start_on(
        h,
        host,
        cfg("survivor")
            .reconnections(10)
            .reconnect_initial(Duration::from_millis(100)),
    );
    let (raw, listener) = listening_peer(&node, host, 77);
    let listen = listener.local_addr().unwrap();
    drop(raw);
    let t = Instant::now();
    let lost = wait_until(Duration::from_secs(1), || {
        matches!(
            node.next_event(Duration::from_millis(20)),
            Some(Event::PeerLost {
                reason: DisconnectReason::ConnectionLost,
                reconnecting: true,
                ..
            })
        )
    });
    assert!(lost, "loss not reported within 1 s");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(node.edges().len(), 0);
    // The peer listens again (it always did: the listener is open); the survivor redials it.
    let mut back = RawConn::accept(&listener, Duration::from_secs(10)).expect("no redial");
    match back.recv(WAIT) {
        Some(Message::Hello(h)) => assert_eq!(h.id, node.id()),
        other => panic!("redial did not start with a Hello: {other:?}"),
    }
    back.send(&hello(77, Some(listen), &[]));
    assert!(wait_until(WAIT, || node.edges().len() == 1));
    node.shutdown();
}

/// 12.9: a garbage frame closes only that connection, with a goodbye naming the reason.
pub fn garbage_frame<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["victim", "friend"]);
    n[1].connect(&addr(&n[0])).unwrap();
    let mut raw = RawConn::connect(n[0].addr());
    raw.send_bytes(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
    match raw.recv(WAIT) {
        Some(Message::Goodbye(DisconnectReason::ProtocolError(m))) => assert!(!m.is_empty()),
        other => panic!("expected a goodbye naming the reason, got {other:?}"),
    }
    assert!(raw.closed_within(WAIT));
    // A 4 GiB length prefix: refused without allocating it.
    let mut raw = RawConn::connect(n[0].addr());
    raw.send_bytes(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        raw.recv(WAIT),
        Some(Message::Goodbye(DisconnectReason::ProtocolError(_)))
    ));
    // The node and its other edge go on.
    assert!(connected(&n[0], &n[1]));
    n[1].subscribe("still").unwrap();
    assert!(wait_until(WAIT, || n[0]
        .edges()
        .iter()
        .any(|e| e.topics.contains(&"still".to_string()))));
    n.iter().for_each(|x| x.shutdown());
}

/// A peer that opens a second connection which wins the tie-break (PROTOCOL §4.3): the node
/// tells the old one `Duplicate` at once and writes nothing more on it; a request the peer had
/// sent there is answered on the new one; the edge never drops. The same with the order of
/// nonces reversed: the newcomer is told, the old edge stays.
pub fn a_second_connection_moves_the_edge_at_once<H: Harness>(h: &H, host: &str) {
    use chaski_proto::message::CallKind;
    let server = start_on(h, host, cfg("server"));
    server.attach("double", |x: i64| Ok(2 * x)).unwrap();
    let with_nonce = |nonce: u64| {
        let mut hello = hello_offering(900, None, &[], &[]);
        if let Message::Hello(hh) = &mut hello {
            hh.nonce = nonce;
        }
        hello
    };
    let request = |id: u64| Message::Request {
        id,
        service: "double".into(),
        path: String::new(),
        kind: CallKind::Call,
        args: bytes::Bytes::from_static(&[0x15]), // 21
        timeout_ms: None,
    };
    let mut old = RawConn::edge(server.addr(), &with_nonce(50));
    assert!(wait_until(WAIT, || server.edges().len() == 1));
    // A request goes out on the old connection just as the new one is made.
    old.send(&request(1));
    let mut new = RawConn::edge(server.addr(), &with_nonce(7));
    let mut seen_on_old = Vec::new();
    while let Some(m) = old.recv(WAIT) {
        let goodbye = matches!(m, Message::Goodbye(_));
        seen_on_old.push(m);
        if goodbye {
            break;
        }
    }
    assert!(
        matches!(
            seen_on_old.last(),
            Some(Message::Goodbye(DisconnectReason::Duplicate))
        ),
        "the old connection was not told: {seen_on_old:?}"
    );
    // Sent before the peer read the goodbye: still answered, on the kept connection.
    old.send(&request(2));
    old.send(&Message::Goodbye(DisconnectReason::Duplicate));
    assert!(old.closed_within(WAIT), "the old connection stayed open");
    let mut answered = BTreeSet::new();
    // Request 1 may have been answered on the old connection before the new one came.
    for m in &seen_on_old {
        if let Message::Response { id, .. } = m {
            answered.insert(*id);
        }
    }
    while answered.len() < 2 {
        match new.recv(WAIT) {
            Some(Message::Response { id, result }) => {
                assert_eq!(result.as_deref().ok(), Some(&[0x18, 0x2a][..]), "{id}");
                answered.insert(id);
            }
            Some(_) => {}
            None => panic!("requests unanswered: got only {answered:?}"),
        }
    }
    assert_eq!(server.edges().len(), 1);
    assert!(wait_event(&server, QUIET, |e| matches!(e, Event::PeerLost { .. })).is_none());
    // A third connection with a larger nonce loses: it is told, the edge stays on `new`.
    let mut late = RawConn::connect(server.addr());
    late.send(&with_nonce(99));
    assert!(matches!(
        late.recv(WAIT),
        Some(Message::Goodbye(DisconnectReason::Duplicate))
    ));
    new.send(&Message::Ping {
        id: 5,
        padding: bytes::Bytes::new(),
    });
    loop {
        match new.recv(WAIT) {
            Some(Message::Pong { id: 5, .. }) => break,
            Some(_) => {}
            None => panic!("the kept connection stopped answering"),
        }
    }
    server.shutdown();
}

/// An attribute read (`get`) sends no arguments as CBOR null (PROTOCOL §3), not an empty
/// byte string.
pub fn a_get_sends_null_arguments<H: Harness>(h: &H, host: &str) {
    use chaski_proto::message::CallKind;
    let caller = start_on(h, host, cfg("caller"));
    // A hand-driven server of `info`, connected to the caller.
    let mut raw = RawConn::edge(caller.addr(), &hello_offering(901, None, &[], &["info"]));
    assert!(wait_until(WAIT, || caller.edges().len() == 1));
    std::thread::scope(|s| {
        let got = s.spawn(|| caller.get::<String>("info", "version", WAIT));
        let (id, args) = loop {
            match raw.recv(WAIT) {
                Some(Message::Request {
                    id,
                    kind: CallKind::Get,
                    args,
                    ..
                }) => break (id, args),
                Some(_) => {}
                None => panic!("no request"),
            }
        };
        assert_eq!(&args[..], &[0xf6], "no arguments must be CBOR null");
        raw.send(&Message::Response {
            id,
            result: Ok(bytes::Bytes::from_static(&[0x61, b'1'])),
        });
        assert_eq!(got.join().unwrap().unwrap(), "1");
    });
    caller.shutdown();
}

/// The service of the remote-call scenario; `hung` counts calls that entered `hang`.
fn demo_service(hung: Arc<AtomicUsize>) -> Service {
    let random = Service::builder()
        .method("normal", |(mu, _sigma): (f64, f64)| Ok(mu))
        .attr("seed", &42u32)
        .build();
    Service::builder()
        .method("add", |(a, b): (i64, i64)| Ok(a + b))
        .method_with_context("whoami", |ctx: &chaski_api::CallContext, (): ()| {
            let left = ctx
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64);
            Ok((ctx.caller.to_string(), left))
        })
        .method("listdir", |_: ()| {
            Ok(vec!["a".to_string(), "b".to_string()])
        })
        .method("fail", |_: ()| {
            Err::<(), _>(ServiceError::failed("bad thing"))
        })
        .method_async("hang", move |_: ()| {
            hung.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), ServiceError>>()
        })
        .attr("name", "posix")
        .nested("random", random)
        .build()
}

/// 12.5 and 12.1.7: remote calls with typed arguments and every typed error.
pub fn remote_calls<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["server", "client", "client2"]);
    let hung = Arc::new(AtomicUsize::new(0));
    n[0].serve("os", demo_service(hung.clone())).unwrap();
    n[1].connect(&addr(&n[0])).unwrap();
    n[2].connect(&addr(&n[0])).unwrap();
    let t = Duration::from_secs(5);
    let c = &n[1];
    assert!(wait_until(WAIT, || c
        .edges()
        .iter()
        .any(|e| e.services.contains(&"os".to_string()))));
    assert_eq!(c.call::<_, i64>("os", "add", &(2, 3), t).unwrap(), 5);
    // The handler learns who calls and until when (the call's 5 s timeout).
    let (caller, left): (String, Option<u64>) = c.call("os", "whoami", &(), t).unwrap();
    assert_eq!(caller, c.id().to_string());
    assert!(
        left.is_some_and(|ms| ms > 3_000 && ms <= 5_000),
        "deadline {left:?} ms away"
    );
    assert_eq!(
        c.call::<_, f64>("os", "random.normal", &(1.5, 1.0), t)
            .unwrap(),
        1.5
    );
    assert_eq!(c.get::<String>("os", "name", t).unwrap(), "posix");
    assert_eq!(c.get::<u32>("os", "random.seed", t).unwrap(), 42);
    assert!(matches!(
        c.call::<_, i64>("json", "dumps", &(), t),
        Err(Error::NoService(_))
    ));
    assert!(matches!(
        c.call::<_, i64>("os", "nope", &(), t),
        Err(Error::Remote(RemoteError::NoSuchMethod(_)))
    ));
    assert!(matches!(
        c.call::<_, i64>("os", "add", &("x",), t),
        Err(Error::Remote(RemoteError::BadArguments(_)))
    ));
    match c.call::<_, ()>("os", "fail", &(), t) {
        Err(Error::Remote(RemoteError::Failed(m))) => assert_eq!(m, "bad thing"),
        other => panic!("{other:?}"),
    }
    let start_t = Instant::now();
    assert!(matches!(
        c.call::<_, ()>("os", "hang", &(), Duration::from_millis(300)),
        Err(Error::Remote(RemoteError::Timeout))
    ));
    assert!(start_t.elapsed() >= Duration::from_millis(300));
    for i in 0..10 {
        assert_eq!(c.call::<_, i64>("os", "add", &(i, i), t).unwrap(), 2 * i);
        assert_eq!(
            c.call::<_, Vec<String>>("os", "listdir", &(), t)
                .unwrap()
                .len(),
            2
        );
    }
    std::thread::scope(|s| {
        for client in &n[1..] {
            s.spawn(move || {
                for i in 0..20 {
                    assert_eq!(
                        client.call::<_, i64>("os", "add", &(i, 1), t).unwrap(),
                        i + 1
                    );
                }
            });
        }
    });
    // A call to a serving peer that goes away: Disconnected, not a hang.
    let gone = std::thread::scope(|s| {
        let call = s.spawn(|| c.call::<_, ()>("os", "hang", &(), Duration::from_secs(30)));
        // Once the request is being served, the server goes away.
        assert!(wait_until(WAIT, || hung.load(Ordering::SeqCst) == 2));
        n[0].shutdown();
        call.join().unwrap()
    });
    assert!(
        matches!(gone, Err(Error::Remote(RemoteError::Disconnected))),
        "{gone:?}"
    );
    n.iter().for_each(|x| x.shutdown());
}

/// UDP status.
pub fn udp_status<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["asker", "target"]);
    n[1].subscribe("t").unwrap();
    let s = n[0].status(&addr(&n[1])).unwrap();
    assert_eq!(s.name, "target");
    assert_eq!(s.id, n[1].id());
    assert_eq!(s.paired.get("t"), Some(&false));
    n.iter().for_each(|x| x.shutdown());
}

// ----- discovery and subscriptions (12.2, 12.3, §3.6) ---------------------------------------

/// 12.2.2: a discovery reaches a node paired for the topic through a neighbour; that node dials
/// the seeker, which is paired at once (not by its timeout).
pub fn discovery_through_a_paired_node<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("A").paired(true), &["A"]),
        node(h, host, cfg("B1").paired(true), &["B"]),
        node(h, host, cfg("B2").discovery_timeout(WAIT * 2), &["B"]),
    ];
    n[0].connect(&addr(&n[1])).unwrap();
    n[0].connect(&addr(&n[2])).unwrap();
    expect_counts(&n, &[2, 1, 1]);
    while n[2].next_event(Duration::ZERO).is_some() {}
    let t = Instant::now();
    n[2].discover().unwrap();
    assert!(t.elapsed() < WAIT, "paired only by the discovery timeout");
    expect_edge_set(&n, &[(0, 1), (0, 2), (1, 2)]);
    let paired = wait_event(&n[2], WAIT, |e| matches!(e, Event::Paired { .. }));
    match paired {
        Some(Event::Paired { topic, with }) => {
            assert_eq!(topic, "B");
            assert_eq!(with, Some(n[1].id()));
        }
        other => panic!("no Paired event: {other:?}"),
    }
    n.iter().for_each(|x| x.shutdown());
}

/// 12.2.5: six seekers of one topic behind one hub: the first anchors, the others join its
/// cluster. Python pairs all with the anchor (its relay asks the anchor first); here any member
/// may answer, so the cluster is a tree over the six: the exact Python edge set is asserted in
/// the simulator (`chaski-proto/tests/scenarios.rs`), where timing is deterministic.
pub fn multiple_discovery<H: Harness>(h: &H, host: &str) {
    let mut n = vec![node(h, host, cfg("A").paired(true), &["A"])];
    for i in 1..=6 {
        n.push(node(h, host, cfg(&format!("B{i}")), &["B"]));
        n[i].connect(&addr(&n[0])).unwrap();
    }
    for x in &n[1..] {
        x.discover().unwrap();
    }
    let hub: Vec<(usize, usize)> = (1..=6).map(|i| (0, i)).collect();
    expect_clusters(&n, &hub, &[&[1, 2, 3, 4, 5, 6]]);
    n.iter().for_each(|x| x.shutdown());
}

/// 12.3.1: anchors for B and C, a node paired at once by a shared topic, the rest pair with
/// their anchors; nobody drops a link.
pub fn subscriptions_without_disconnect<H: Harness>(h: &H, host: &str) {
    let subs: [&[&str]; 6] = [&["A"], &["B"], &["C"], &["A"], &["B"], &["C"]];
    let n: Vec<_> = subs
        .iter()
        .enumerate()
        .map(|(i, t)| node(h, host, cfg(&format!("n{i}")).paired(i == 0), t))
        .collect();
    for x in &n[1..] {
        x.connect(&addr(&n[0])).unwrap();
    }
    for x in &n[1..] {
        x.discover().unwrap();
    }
    expect_edge_set(
        &n,
        &[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 4), (2, 5)],
    );
    n.iter().for_each(|x| x.shutdown());
}

/// 12.3.2: the same with `on_pair = disconnect` and several topics per node: links that share a
/// topic stay, the one bootstrap link that shares nothing is dropped.
pub fn subscriptions_with_disconnect<H: Harness>(h: &H, host: &str) {
    let subs: [&[&str]; 6] = [&["A"], &["B"], &["C"], &["A", "C"], &["B", "A"], &["C"]];
    let n: Vec<_> = subs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let c = cfg(&format!("n{i}"))
                .paired(i == 0)
                .on_pair(OnPair::Disconnect);
            node(h, host, c, t)
        })
        .collect();
    for x in &n[1..] {
        x.connect(&addr(&n[0])).unwrap();
    }
    for x in &n[1..] {
        x.discover().unwrap();
    }
    // 5 (C) joins the C cluster {2, 3} through whichever member answers first.
    expect_clusters(&n, &[(0, 1), (0, 2), (0, 3), (0, 4), (1, 4)], &[&[2, 3, 5]]);
    assert!(!connected(&n[0], &n[5]));
    n.iter().for_each(|x| x.shutdown());
}

/// §3.6: nodes joining through a root with discovery. Two topics: each topic's first node
/// anchors and keeps its root link, the others join it and drop theirs. One topic with
/// `max_connections = 2`: saturated members forward, so the cluster stays one.
pub fn root_hub_topologies<H: Harness>(h: &H, host: &str) {
    let hub = |topics: &[&str], max: usize| {
        let mut n = vec![start_on(h, host, cfg("Root").root(true))];
        for (i, t) in topics.iter().enumerate() {
            let c = cfg(&format!("N{}", i + 1))
                .max_connections(max)
                .on_pair(OnPair::Disconnect);
            let x = node(h, host, c, &[t]);
            x.connect(&addr(&n[0])).unwrap();
            x.discover().unwrap();
            n.push(x);
        }
        n
    };
    let n = hub(&["A", "B", "A", "B", "A", "B", "A"], 5);
    // The anchors N1 and N2 keep their root links; every other node joined its topic's tree.
    expect_clusters(&n, &[(0, 1), (0, 2)], &[&[1, 3, 5, 7], &[2, 4, 6]]);
    n.iter().for_each(|x| x.shutdown());

    let n = hub(&["A"; 7], 2);
    // The nodes the anchor reaches through links held on both sides, not through the root.
    let reached = |edges: &BTreeSet<(usize, usize)>| {
        let mut reach = BTreeSet::from([1]);
        loop {
            let before = reach.len();
            for &(a, b) in edges {
                if a != 0 && (reach.contains(&a) || reach.contains(&b)) {
                    reach.insert(a);
                    reach.insert(b);
                }
            }
            if reach.len() == before {
                return reach.len();
            }
        }
    };
    // Settled when only the anchor keeps a root link and every pairing link has both ends
    // (the last Hello may still be crossing when the root lets go).
    let settled = wait_until(WAIT, || {
        n[0].edges().len() == 1 && reached(&edge_set(&n)) == 7
    });
    let edges = edge_set(&n);
    assert!(settled, "the A cluster fragmented: {edges:?}");
    assert_eq!(reached(&edges), 7, "the A cluster fragmented: {edges:?}");
    n.iter().for_each(|x| x.shutdown());
}

// ----- publishing ---------------------------------------------------------------------------

/// 12.4.2: a publish travels at most `ttl` hops.
pub fn message_ttl<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("c0").ttl(2), &["t"]),
        node(h, host, cfg("c1"), &["t"]),
        node(h, host, cfg("c2"), &["t"]),
        node(h, host, cfg("c3"), &["t"]),
    ];
    for i in 0..3 {
        n[i].connect(&addr(&n[i + 1])).unwrap();
    }
    for i in 0..3 {
        knows_topic(&n[i], &[&n[i + 1]], "t");
        knows_topic(&n[i + 1], &[&n[i]], "t");
    }
    // The path is whole: c1 (ttl 15) reaches c3.
    n[1].publish("t", b"control").unwrap();
    for i in [0, 2, 3] {
        assert_eq!(
            &n[i].recv(WAIT).expect("path broken").payload[..],
            b"control"
        );
    }
    n[0].publish("t", b"two hops").unwrap();
    assert_eq!(n[1].recv(WAIT).expect("hop 1").hops, 1);
    let m = n[2].recv(WAIT).expect("hop 2");
    assert_eq!((&m.payload[..], m.hops), (&b"two hops"[..], 2));
    // c2 relays in order: its own next publish reaches c3 after anything it passed on.
    n[2].publish("t", b"marker").unwrap();
    assert_eq!(
        &n[3].recv(WAIT).expect("c2's marker").payload[..],
        b"marker",
        "a publish went past its ttl"
    );
    n.iter().for_each(|x| x.shutdown());
}

/// Unsubscribing is told to neighbours at once, and publishes stop reaching that node.
pub fn unsubscribe_stops_delivery<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("pub"), &[]),
        node(h, host, cfg("leaver"), &["t"]),
        node(h, host, cfg("stayer"), &["t"]),
    ];
    n[1].connect(&addr(&n[0])).unwrap();
    n[2].connect(&addr(&n[0])).unwrap();
    knows_topic(&n[0], &[&n[1], &n[2]], "t");
    n[0].publish("t", b"one").unwrap();
    assert_eq!(&n[1].recv(WAIT).unwrap().payload[..], b"one");
    assert_eq!(&n[2].recv(WAIT).unwrap().payload[..], b"one");
    n[1].unsubscribe("t").unwrap();
    assert!(wait_until(WAIT, || n[0]
        .edges()
        .iter()
        .any(|e| e.id == n[1].id() && e.topics.is_empty())));
    n[0].publish("t", b"two").unwrap();
    assert_eq!(&n[2].recv(WAIT).unwrap().payload[..], b"two");
    // Subscribed again: the next publish reaches the leaver, and nothing before it.
    n[1].subscribe("t").unwrap();
    knows_topic(&n[0], &[&n[1]], "t");
    n[0].publish("t", b"three").unwrap();
    assert_eq!(
        &n[1].recv(WAIT).expect("three").payload[..],
        b"three",
        "delivered after unsubscribe"
    );
    n.iter().for_each(|x| x.shutdown());
}

/// Wildcard subscribers through a root: `sensors/**` and `sensors/*/temperature` get what
/// their patterns match, by way of the root, and nothing else; publishing to a pattern is
/// refused.
pub fn wildcard_subscribers<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("root").root(true), &[]),
        node(h, host, cfg("all"), &["sensors/**"]),
        node(h, host, cfg("temps"), &["sensors/*/temperature"]),
        node(h, host, cfg("pub"), &[]),
    ];
    for x in &n[1..] {
        x.connect(&addr(&n[0])).unwrap();
    }
    knows_topic(&n[0], &[&n[1]], "sensors/**");
    knows_topic(&n[0], &[&n[2]], "sensors/*/temperature");
    assert!(matches!(
        n[3].publish("sensors/*/temperature", b"x"),
        Err(Error::Command(chaski_proto::CommandError::BadPattern(_)))
    ));
    n[3].publish("sensors/kitchen/temperature", b"21.5")
        .unwrap();
    n[3].publish("sensors/kitchen/humidity", b"40").unwrap();
    n[3].publish("alerts/fire", b"!").unwrap();
    let got = |x: &H::Node, k: usize| -> Vec<(String, Vec<u8>)> {
        (0..k)
            .map(|_| {
                let m = x.recv(WAIT).expect("a message the pattern matches");
                (m.topic, m.payload.to_vec())
            })
            .collect()
    };
    assert_eq!(
        got(&n[1], 2),
        vec![
            ("sensors/kitchen/temperature".into(), b"21.5".to_vec()),
            ("sensors/kitchen/humidity".into(), b"40".to_vec())
        ]
    );
    assert_eq!(
        got(&n[2], 1),
        vec![("sensors/kitchen/temperature".into(), b"21.5".to_vec())]
    );
    // A marker both patterns match, sent last along the same path: each one's next message.
    n[3].publish("sensors/hall/temperature", b"marker").unwrap();
    for x in &n[1..3] {
        let m = x.recv(WAIT).expect("the marker");
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("sensors/hall/temperature", &b"marker"[..]),
            "a topic outside the pattern arrived"
        );
    }
    n.iter().for_each(|x| x.shutdown());
}

/// Subscriber handles: each yields only what its pattern matches, the node-wide stream gets
/// none of it, dropping one unsubscribes (peers stop sending), and a second subscriber of the
/// same pattern keeps it alive when the first goes.
pub fn subscriber_handles<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("pub"), &[]),
        node(h, host, cfg("sub"), &[]),
    ];
    n[1].connect(&addr(&n[0])).unwrap();
    let sensors = n[1].subscriber("sensors/**").unwrap();
    let alerts = n[1].subscriber("alerts/*").unwrap();
    // The node-wide stream's own topic, for markers.
    n[1].subscribe("wide").unwrap();
    knows_topic(&n[0], &[&n[1]], "sensors/**");
    knows_topic(&n[0], &[&n[1]], "alerts/*");
    knows_topic(&n[0], &[&n[1]], "wide");
    // The next message of the node-wide stream is the marker published now: nothing a
    // subscriber took came before it.
    let wide_marker = |k: u8| {
        n[0].publish("wide", &[k]).unwrap();
        let m = n[1].recv(WAIT).expect("the node-wide marker");
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("wide", &[k][..]),
            "the node-wide stream got a subscriber's message"
        );
    };
    n[0].publish("sensors/a/t", b"1").unwrap();
    n[0].publish("alerts/fire", b"2").unwrap();
    let m = sensors.recv_timeout(WAIT).expect("sensors/a/t");
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("sensors/a/t", &b"1"[..])
    );
    let m = alerts.recv_timeout(WAIT).expect("alerts/fire");
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("alerts/fire", &b"2"[..])
    );
    n[0].publish("sensors/marker", b"m").unwrap();
    assert_eq!(
        &sensors.recv_timeout(WAIT).expect("the marker").payload[..],
        b"m",
        "another pattern's message"
    );
    wide_marker(1);
    // Dropped: the publisher learns it and stops sending those topics.
    drop(alerts);
    assert!(wait_until(WAIT, || n[0].edges().iter().any(|e| e.id
        == n[1].id()
        && !e.topics.iter().any(|t| t == "alerts/*"))));
    n[0].publish("alerts/fire", b"3").unwrap();
    n[0].publish("sensors/b/t", b"4").unwrap();
    assert_eq!(
        &sensors.recv_timeout(WAIT).expect("sensors/b/t").payload[..],
        b"4"
    );
    // Two subscribers of one pattern: the subscription lasts until the last goes.
    let again = n[1].subscriber("sensors/**").unwrap();
    drop(sensors);
    n[0].publish("sensors/c/t", b"5").unwrap();
    assert_eq!(
        &again.recv_timeout(WAIT).expect("sensors/c/t").payload[..],
        b"5"
    );
    wide_marker(2);
    // The node's shutdown ends the stream: closed, not merely quiet.
    assert!(!again.is_closed());
    n.iter().for_each(|x| x.shutdown());
    assert!(again.is_closed(), "the stream did not end with the node");
    assert!(again.recv_timeout(WAIT).is_none());
}

/// A cycle of four subscribers: every message reaches each other node exactly once, and never
/// comes back to its origin.
pub fn four_cycle_delivers_exactly_once<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["A", "B", "C", "D"]);
    for x in &n {
        x.subscribe("t").unwrap();
    }
    for i in 0..4 {
        n[i].connect(&addr(&n[(i + 1) % 4])).unwrap();
    }
    for i in 0..4 {
        knows_topic(&n[i], &[&n[(i + 1) % 4], &n[(i + 3) % 4]], "t");
    }
    let sent: Vec<Vec<u8>> = (0..20).map(|k| format!("m{k}").into_bytes()).collect();
    for p in &sent {
        n[0].publish("t", p).unwrap();
    }
    for x in &n[1..] {
        let t = tally(x, WAIT);
        let want: BTreeMap<Vec<u8>, usize> = sent.iter().map(|p| (p.clone(), 1)).collect();
        assert_eq!(t, want, "not exactly once");
    }
    assert!(
        n[0].recv(Duration::ZERO).is_none(),
        "the origin got its own message"
    );
    n.iter().for_each(|x| x.shutdown());
}

/// What was published before a shutdown is delivered before the goodbye.
pub fn shutdown_flushes<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("pub"), &[]),
        node(h, host, cfg("sub"), &["t"]),
    ];
    n[1].connect(&addr(&n[0])).unwrap();
    knows_topic(&n[0], &[&n[1]], "t");
    let count = 500;
    for k in 0..count {
        n[0].publish("t", format!("m{k}").as_bytes()).unwrap();
    }
    n[0].shutdown();
    for k in 0..count {
        let m = n[1]
            .recv(WAIT)
            .unwrap_or_else(|| panic!("message {k} lost"));
        assert_eq!(m.payload, format!("m{k}").as_bytes());
    }
    let bye = wait_event(&n[1], WAIT, |e| matches!(e, Event::PeerLost { .. }));
    assert!(
        matches!(
            bye,
            Some(Event::PeerLost {
                reason: DisconnectReason::Shutdown,
                by_peer: true,
                ..
            })
        ),
        "{bye:?}"
    );
    n[1].shutdown();
}

// ----- redial -------------------------------------------------------------------------------

fn redial_cfg(name: &str, attempts: u32) -> Config {
    cfg(name)
        .reconnections(attempts)
        .reconnect_initial(Duration::from_millis(40))
        .reconnect_max(Duration::from_millis(160))
}

/// A raw peer listening on `host` that `node` dialed (so the node redials it when it is
/// lost); returns it and its listener.
fn listening_peer<N: TestNode>(node: &N, host: &str, id: u128) -> (RawConn, TcpListener) {
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let listen = listener.local_addr().unwrap();
    let raw = std::thread::scope(|s| {
        let peer = s.spawn(|| {
            let mut raw = RawConn::accept(&listener, WAIT).expect("the node did not dial");
            match raw.recv(WAIT) {
                Some(Message::Hello(_)) => {}
                other => panic!("the dial did not start with a Hello: {other:?}"),
            }
            raw.send(&hello(id, Some(listen), &[]));
            raw
        });
        node.connect(&listen.to_string())
            .expect("connect to a raw peer");
        peer.join().expect("the raw peer's thread")
    });
    assert!(wait_until(WAIT, || node.edges().len() == 1));
    while node.next_event(Duration::ZERO).is_some() {}
    (raw, listener)
}

/// A peer that dialed the node and is lost is not redialed by it (it may be a client that
/// exited); the side that dialed redials.
pub fn the_accepting_side_does_not_redial<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, redial_cfg("acceptor", 30));
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let raw = RawConn::edge(
        node.addr(),
        &hello(94, Some(listener.local_addr().unwrap()), &[]),
    );
    assert!(wait_until(WAIT, || node.edges().len() == 1));
    drop(raw);
    let lost = wait_event(&node, WAIT, |e| matches!(e, Event::PeerLost { .. }));
    assert!(
        matches!(
            lost,
            Some(Event::PeerLost {
                reconnecting: false,
                ..
            })
        ),
        "{lost:?}"
    );
    assert!(!node.local_status().reconnecting);
    // Several back-offs later, still nothing dialed the peer's announced address.
    assert!(RawConn::accept(&listener, Duration::from_millis(500)).is_none());
    node.shutdown();
}

/// A lost peer is redialed while its address refuses connections (the back-off keeps trying),
/// and the edge comes back, marked as reconnected, once it listens again.
pub fn redial_while_the_peer_is_down<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, redial_cfg("survivor", 30));
    let (raw, listener) = listening_peer(&node, host, 91);
    let listen = listener.local_addr().unwrap();
    drop(listener);
    drop(raw);
    let lost = wait_event(&node, WAIT, |e| matches!(e, Event::PeerLost { .. }));
    assert!(
        matches!(
            lost,
            Some(Event::PeerLost {
                reconnecting: true,
                ..
            })
        ),
        "{lost:?}"
    );
    // Refused dials (several back-off rounds) leave it redialing, not given up.
    let gave_up = wait_event(&node, Duration::from_millis(600), |e| {
        matches!(e, Event::ReconnectGaveUp { .. })
    });
    assert!(
        gave_up.is_none(),
        "gave up after refused dials: {gave_up:?}"
    );
    assert!(node.local_status().reconnecting);
    let listener = TcpListener::bind(listen).expect("the peer's port was taken meanwhile");
    let mut back = RawConn::accept(&listener, WAIT).expect("no redial once the peer listens");
    match back.recv(WAIT) {
        Some(Message::Hello(h)) => assert_eq!(h.id, node.id()),
        other => panic!("the redial did not start with a Hello: {other:?}"),
    }
    back.send(&hello(91, Some(listen), &[]));
    let up = wait_event(&node, WAIT, |e| matches!(e, Event::PeerConnected { .. }));
    assert!(
        matches!(
            up,
            Some(Event::PeerConnected {
                reconnected: true,
                ..
            })
        ),
        "{up:?}"
    );
    assert!(!node.local_status().reconnecting);
    node.shutdown();
}

/// Redialing stops after the configured attempts, with an event saying so.
pub fn redial_gives_up<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, redial_cfg("survivor", 3));
    let (raw, listener) = listening_peer(&node, host, 92);
    drop(listener);
    drop(raw);
    let gave_up = wait_event(&node, WAIT, |e| matches!(e, Event::ReconnectGaveUp { .. }));
    match gave_up {
        Some(Event::ReconnectGaveUp { attempts, peer }) => {
            assert_eq!(attempts, 3);
            assert_eq!(peer.0, 92);
        }
        other => panic!("no ReconnectGaveUp: {other:?}"),
    }
    assert!(!node.local_status().reconnecting);
    node.shutdown();
}

/// With redial on, a peer's goodbye and a local close are never redialed.
pub fn no_redial_after_goodbye_or_close<H: Harness>(h: &H, host: &str) {
    let node = start_on(h, host, redial_cfg("n", 30));
    // The peer says goodbye; its listener stays open, so a redial would be seen there.
    let (mut raw, listener) = listening_peer(&node, host, 93);
    raw.send(&Message::Goodbye(DisconnectReason::Closed));
    let lost = wait_event(&node, WAIT, |e| matches!(e, Event::PeerLost { .. }));
    assert!(
        matches!(
            lost,
            Some(Event::PeerLost {
                by_peer: true,
                reconnecting: false,
                ..
            })
        ),
        "{lost:?}"
    );
    assert!(
        RawConn::accept(&listener, QUIET * 2).is_none(),
        "redialed a peer that said goodbye"
    );
    // A local close: neither side redials (both have redial on).
    let other = start_on(h, host, redial_cfg("m", 30));
    other.connect(&addr(&node)).unwrap();
    while node.next_event(Duration::ZERO).is_some() {}
    node.close(other.id()).unwrap();
    for (x, by_peer) in [(&node, false), (&other, true)] {
        let lost = wait_event(x, WAIT, |e| matches!(e, Event::PeerLost { .. }));
        match lost {
            Some(Event::PeerLost {
                by_peer: b,
                reconnecting,
                ..
            }) => {
                assert_eq!(b, by_peer);
                assert!(!reconnecting, "a closed edge is being redialed");
            }
            other => panic!("{other:?}"),
        }
    }
    let back = wait_until(QUIET * 2, || !node.edges().is_empty());
    assert!(!back, "the closed edge came back");
    assert!(!node.local_status().reconnecting && !other.local_status().reconnecting);
    node.shutdown();
    other.shutdown();
}

// ----- services -----------------------------------------------------------------------------

/// A serving peer that dies in the middle of a call: the caller gets `Disconnected` at once,
/// not its timeout.
pub fn crash_mid_call<H: Harness>(h: &H, host: &str) {
    let client = start_on(h, host, cfg("client"));
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let mut server = RawConn::edge(
        client.addr(),
        &hello_offering(94, Some(listener.local_addr().unwrap()), &[], &["svc"]),
    );
    assert!(wait_until(WAIT, || client
        .edges()
        .iter()
        .any(|e| e.services.iter().any(|s| s == "svc"))));
    let t = Instant::now();
    let result = std::thread::scope(|s| {
        let call = s.spawn(|| client.call::<_, i64>("svc", "add", &(1, 2), WAIT * 6));
        loop {
            match server.recv(WAIT) {
                Some(Message::Request { .. }) => break,
                Some(_) => {}
                None => panic!("the request never arrived"),
            }
        }
        drop(server);
        call.join().unwrap()
    });
    assert!(
        matches!(result, Err(Error::Remote(RemoteError::Disconnected))),
        "{result:?}"
    );
    assert!(t.elapsed() < WAIT, "took {:?}", t.elapsed());
    client.shutdown();
}

/// What a server of the mesh-wide service scenario counts.
#[derive(Default)]
struct Counts {
    /// Calls of `slow` that started.
    started: AtomicUsize,
    /// Calls of `slow` dropped before they finished (their caller cancelled).
    dropped: AtomicUsize,
    /// Once set, `slow` answers at once.
    release: std::sync::atomic::AtomicBool,
}

/// Counts a call dropped unfinished.
struct Unfinished(Arc<Counts>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// `who` answers the server's name; `slow` answers it only once released, else waits until
/// the caller cancels.
fn named_server(name: &'static str, counts: Arc<Counts>) -> Service {
    Service::builder()
        .method("who", move |(): ()| Ok(name.to_string()))
        .method_async_with_context("slow", move |ctx: chaski_api::CallContext, (): ()| {
            let counts = counts.clone();
            async move {
                counts.started.fetch_add(1, Ordering::SeqCst);
                let mut guard = Unfinished(counts.clone(), false);
                if !counts.release.load(Ordering::SeqCst) {
                    ctx.cancelled().await;
                }
                guard.1 = true;
                Ok::<_, ServiceError>(name.to_string())
            }
        })
        .build()
}

/// Services found anywhere: a caller that never connected to the servers of `math` (two,
/// behind a relay) finds them through the mesh, spreads calls over both, has its cancels
/// reach them, and fails over to the other when the one holding its call is killed.
pub fn services_anywhere<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["caller", "relay", "s1", "s2"]);
    let counts = [Arc::new(Counts::default()), Arc::new(Counts::default())];
    n[2].serve("math", named_server("s1", counts[0].clone()))
        .unwrap();
    n[3].serve("math", named_server("s2", counts[1].clone()))
        .unwrap();
    for i in [0, 2, 3] {
        n[i].connect(&addr(&n[1])).unwrap();
    }
    let edges = n[0].edges();
    assert_eq!(edges.len(), 1, "the caller knows only the relay");
    assert!(edges[0].services.is_empty());
    let who: String = n[0].call("math", "who", &(), WAIT).unwrap();
    assert!(who == "s1" || who == "s2", "{who}");
    // The search made both servers dial the caller.
    assert!(wait_until(WAIT, || n[0]
        .edges()
        .iter()
        .filter(|e| e.services.contains(&"math".to_string()))
        .count()
        == 2));

    // Four calls at once spread two and two (fewest in flight first); their timeouts cancel
    // them on the servers, which drop their work.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let r = n[0].call::<_, String>("math", "slow", &(), Duration::from_millis(800));
                assert!(
                    matches!(r, Err(Error::Remote(RemoteError::Timeout))),
                    "{r:?}"
                );
            });
        }
    });
    for c in &counts {
        assert_eq!(c.started.load(Ordering::SeqCst), 2);
        assert!(wait_until(WAIT, || c.dropped.load(Ordering::SeqCst) == 2));
    }

    // A call held by one server: that server is killed, the other answers it.
    let answer = std::thread::scope(|s| {
        let call = s.spawn(|| n[0].call::<_, String>("math", "slow", &(), WAIT * 2));
        assert!(wait_until(WAIT, || counts
            .iter()
            .map(|c| c.started.load(Ordering::SeqCst))
            .sum::<usize>()
            == 5));
        let holder = usize::from(counts[1].started.load(Ordering::SeqCst) == 3);
        counts[1 - holder].release.store(true, Ordering::SeqCst);
        n[2 + holder].shutdown();
        (holder, call.join().unwrap())
    });
    let (holder, answer) = answer;
    assert_eq!(answer.unwrap(), ["s2", "s1"][holder]);
    n.iter().for_each(|x| x.shutdown());
}

/// The calls a `wait` server holds: their contexts (to read `is_cancelled` from outside) and
/// when each method future was dropped unfinished.
#[derive(Default)]
struct Held {
    contexts: std::sync::Mutex<Vec<chaski_api::CallContext>>,
    dropped: std::sync::Mutex<Vec<Instant>>,
}

struct DropClock(Arc<Held>, bool);

impl Drop for DropClock {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.lock().unwrap().push(Instant::now());
        }
    }
}

/// `wait` holds its call until the caller cancels it.
fn holding_server(held: Arc<Held>) -> Service {
    Service::builder()
        .method_async_with_context("wait", move |ctx: chaski_api::CallContext, (): ()| {
            let held = held.clone();
            async move {
                held.contexts.lock().unwrap().push(ctx.clone());
                let mut clock = DropClock(held, false);
                ctx.cancelled().await;
                clock.1 = true;
                Ok::<_, ServiceError>(())
            }
        })
        .build()
}

/// A caller that stops waiting tells the server at once, over real sockets: when it drops the
/// call on an otherwise idle mesh (the server's `is_cancelled` within 100 ms, its method's
/// future dropped), when its deadline passes, and when the caller goes away.
pub fn cancels_reach_the_server<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["server", "caller", "leaver"]);
    let held = Arc::new(Held::default());
    n[0].serve("hold", holding_server(held.clone())).unwrap();
    n[1].connect(&addr(&n[0])).unwrap();
    n[2].connect(&addr(&n[0])).unwrap();
    let started = |k: usize| wait_until(WAIT, || held.contexts.lock().unwrap().len() == k);
    let cancelled = |i: usize| held.contexts.lock().unwrap()[i].is_cancelled();

    // Dropped halfway: the first poll sends the request; the drop must reach the server now,
    // not at the next keep-alive.
    let caller = n[1].handle();
    let proxy = chaski_api::block_on(caller.proxy("hold")).unwrap();
    let mut call = Box::pin(proxy.call::<_, ()>("wait", &()));
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(std::future::Future::poll(call.as_mut(), &mut cx).is_pending());
    assert!(started(1), "the server never got the call");
    assert!(!cancelled(0));
    let dropped = Instant::now();
    drop(call);
    assert!(
        wait_until(Duration::from_millis(100), || cancelled(0)),
        "the server heard of the drop only after {:?}",
        wait_until(WAIT, || cancelled(0)).then(|| dropped.elapsed())
    );
    assert!(wait_until(WAIT, || held.dropped.lock().unwrap().len() == 1));

    // The caller's deadline passes.
    let r = n[1].call::<_, ()>("hold", "wait", &(), Duration::from_millis(300));
    assert!(
        matches!(r, Err(Error::Remote(RemoteError::Timeout))),
        "{r:?}"
    );
    assert!(started(2));
    assert!(wait_until(WAIT, || cancelled(1)));
    assert!(wait_until(WAIT, || held.dropped.lock().unwrap().len() == 2));

    // The caller goes away with its call in flight.
    std::thread::scope(|s| {
        s.spawn(|| n[2].call::<_, ()>("hold", "wait", &(), WAIT * 2));
        assert!(started(3));
        n[2].shutdown();
    });
    assert!(wait_until(WAIT, || cancelled(2)));
    assert!(wait_until(WAIT, || held.dropped.lock().unwrap().len() == 3));
    n.iter().for_each(|x| x.shutdown());
}

/// A single function offered with `attach`, then withdrawn with `detach`.
pub fn attach_and_detach<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["server", "client"]);
    n[0].attach("double", |x: i64| Ok(2 * x)).unwrap();
    n[1].connect(&addr(&n[0])).unwrap();
    assert_eq!(n[1].call::<_, i64>("double", "", &21, WAIT).unwrap(), 42);
    n[0].detach("double").unwrap();
    assert!(wait_until(WAIT, || n[1].edges()[0].services.is_empty()));
    assert!(matches!(
        n[1].call::<_, i64>("double", "", &21, WAIT),
        Err(Error::NoService(_))
    ));
    n.iter().for_each(|x| x.shutdown());
}

/// A method that panics answers `Failed` at once; the service and the node go on serving.
pub fn service_panic<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["server", "client"]);
    let svc = Service::builder()
        .method("boom", |_: ()| -> Result<(), ServiceError> {
            panic!("kaboom")
        })
        .method("add", |(a, b): (i64, i64)| Ok(a + b))
        .build();
    n[0].serve("svc", svc).unwrap();
    n[1].connect(&addr(&n[0])).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        match n[1].call::<_, ()>("svc", "boom", &(), WAIT * 2) {
            Err(Error::Remote(RemoteError::Failed(m))) => assert!(m.contains("kaboom"), "{m}"),
            other => panic!("a panicking method gave {other:?}"),
        }
        assert!(t.elapsed() < WAIT);
        assert_eq!(n[1].call::<_, i64>("svc", "add", &(2, 3), WAIT).unwrap(), 5);
    }
    n.iter().for_each(|x| x.shutdown());
}

// ----- UDP and limits -----------------------------------------------------------------------

/// Best-effort publishes in one datagram: delivered to a subscriber (no origin, no hops), not
/// to a node that does not subscribe, and refused when they do not fit a datagram.
pub fn udp_publish<H: Harness>(h: &H, host: &str) {
    let n = [
        node(h, host, cfg("sender").max_datagram_len(2000), &[]),
        node(h, host, cfg("sub"), &["u"]),
    ];
    n[0].publish_datagram(&addr(&n[1]), "other", b"not for you")
        .unwrap();
    n[0].publish_datagram(&addr(&n[1]), "u", b"hello").unwrap();
    let m = n[1].recv(WAIT).expect("datagram lost on loopback");
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("u", &b"hello"[..]));
    assert_eq!((m.origin, m.hops, m.from), (None, 0, None));
    assert!(n[1].recv(QUIET).is_none());
    match n[0].publish_datagram(&addr(&n[1]), "u", &[0u8; 4000]) {
        Err(Error::Command(CommandError::PayloadTooLarge { len: 4000, .. })) => {}
        other => panic!("an oversized datagram gave {other:?}"),
    }
    n.iter().for_each(|x| x.shutdown());
}

/// The edge table is bounded: a connection past `max_edges` is refused with a reason, and a
/// place freed is taken again.
pub fn max_edges<H: Harness>(h: &H, host: &str) {
    let full = start_on(h, host, cfg("full").max_edges(2));
    let n = start(h, host, &["p0", "p1", "p2"]);
    n[0].connect(&addr(&full)).unwrap();
    n[1].connect(&addr(&full)).unwrap();
    match n[2].connect(&addr(&full)) {
        Err(Error::Connect(ConnectError::Refused(DisconnectReason::TooManyConnections))) => {}
        other => panic!("a third edge gave {other:?}"),
    }
    assert_eq!(full.edges().len(), 2);
    n[0].close(full.id()).unwrap();
    assert!(wait_until(WAIT, || full.edges().len() == 1));
    n[2].connect(&addr(&full)).unwrap();
    assert_eq!(full.edges().len(), 2);
    full.shutdown();
    n.iter().for_each(|x| x.shutdown());
}
