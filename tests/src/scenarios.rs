//! The scenarios, each generic over the runtime. `host` is `127.0.0.1` or `[::1]`.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaski_api::{Config, DisconnectReason, Error, Event, RemoteError, Service, ServiceError};
use chaski_proto::Message;

use crate::raw::{hello, RawConn};
use crate::{wait_until, Harness, TestNode};

const WAIT: Duration = Duration::from_secs(5);

fn cfg(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnections(0)
        .ttl(15)
        .max_connections(10)
        .discovery_timeout(Duration::from_millis(300))
}

fn start<H: Harness>(h: &H, host: &str, names: &[&str]) -> Vec<H::Node> {
    names
        .iter()
        .map(|n| h.start(&format!("{host}:0"), cfg(n)))
        .collect()
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
    let a = h.start(&format!("{host}:0"), cfg("A").paired(true));
    let b1 = h.start(&format!("{host}:0"), cfg("B1"));
    let b2 = h.start(
        &format!("{host}:0"),
        cfg("B2").on_pair(chaski_api::OnPair::Disconnect),
    );
    a.subscribe("A").unwrap();
    b1.subscribe("B").unwrap();
    b2.subscribe("B").unwrap();
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

/// 12.4.1: latency grows with ping size.
pub fn ping_size<H: Harness>(h: &H, host: &str) {
    let n = start(h, host, &["p0", "p1"]);
    n[1].connect(&addr(&n[0])).unwrap();
    let peer = n[1].id();
    let mut small = Vec::new();
    let mut big = Vec::new();
    for _ in 0..5 {
        small.push(n[0].ping(peer, 0).unwrap());
        big.push(n[0].ping(peer, 1_000_000).unwrap());
    }
    small.sort();
    big.sort();
    assert!(
        big[2] > small[2],
        "median {:?} should exceed {:?}",
        big[2],
        small[2]
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
    assert!(wait_until(WAIT, || n[..5].iter().all(|x| x
        .edges()
        .iter()
        .all(|e| e.topics.contains(&"topic1".to_string())))));
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
    n.iter().for_each(|x| x.shutdown());
}

/// 12.6.5 and 12.9: root relay, then a non-subscribed relay blocks, and a triangle de-dups.
pub fn root_relay_and_routing<H: Harness>(h: &H, host: &str) {
    let root = h.start(&format!("{host}:0"), cfg("root").root(true));
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
    assert!(n[2].recv(Duration::from_millis(200)).is_none());
    assert!(n[3].recv(Duration::from_millis(10)).is_none());
    assert!(n[0].recv(Duration::from_millis(10)).is_none());
    n.iter().for_each(|x| x.shutdown());
}

/// 12.9: a peer's socket dies without goodbye: the loss is reported within 1 s, and the
/// survivor redials by back-off once the peer listens again.
pub fn abrupt_death_and_redial<H: Harness>(h: &H, host: &str) {
    let node = h.start(
        &format!("{host}:0"),
        cfg("survivor")
            .reconnections(10)
            .reconnect_initial(Duration::from_millis(100)),
    );
    let listener = TcpListener::bind(format!("{host}:0")).unwrap();
    let listen = listener.local_addr().unwrap();
    let mut raw = RawConn::connect(node.addr());
    raw.send(&hello(77, Some(listen), &[]));
    assert!(matches!(raw.recv(WAIT), Some(Message::Hello(_))));
    assert!(wait_until(WAIT, || node.edges().len() == 1));
    while node.next_event(Duration::from_millis(10)).is_some() {}
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

/// The service of the remote-call scenario; `hung` counts calls that entered `hang`.
fn demo_service(hung: Arc<AtomicUsize>) -> Service {
    let random = Service::builder()
        .method("normal", |(mu, _sigma): (f64, f64)| Ok(mu))
        .attr("seed", &42u32)
        .build();
    Service::builder()
        .method("add", |(a, b): (i64, i64)| Ok(a + b))
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
