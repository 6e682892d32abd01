//! Secure links: the harness that makes every node of a scenario secure (one cluster CA per
//! harness, a certificate per node), and the scenarios of what a secure node refuses.

use std::time::{Duration, SystemTime};

use chaski_api::pki::Ca;
use chaski_api::{Config, DisconnectReason, Event};
use chaski_proto::Message;

use crate::raw::{hello, RawConn};
use crate::{start_on, wait_event, wait_until, Harness, TestNode};

const WAIT: Duration = Duration::from_secs(5);

/// Runs a harness's nodes secure: each gets a certificate of one cluster CA.
pub struct Secure<'a, H> {
    inner: &'a H,
    /// The cluster's CA.
    pub ca: Ca,
}

impl<'a, H: Harness> Secure<'a, H> {
    /// A new cluster CA around `inner`.
    pub fn new(inner: &'a H) -> Self {
        Secure {
            inner,
            ca: Ca::new().expect("a test CA"),
        }
    }
}

impl<H: Harness> Harness for Secure<'_, H> {
    type Node = H::Node;

    fn start(&self, addr: &str, config: Config) -> H::Node {
        let name = config.name.clone().unwrap_or_else(|| "node".into());
        let (identity, _) = self.ca.issue(&name, 30).expect("a node certificate");
        let tls = chaski_api::tls(&identity).expect("the node's TLS");
        self.inner.start(addr, config.secure(tls))
    }
}

fn cfg(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnections(0)
        .discovery_timeout(Duration::from_millis(300))
}

/// Whether the node reports a peer refused for `why`.
fn refused_for<N: TestNode>(node: &N, why: &str) -> bool {
    wait_event(node, WAIT, |e| {
        matches!(e, Event::BadPeer { reason: DisconnectReason::NotAuthorized(m), .. } if m.contains(why))
    })
    .is_some()
}

/// A secure node lets in no one without a certificate of its cluster: a plaintext peer is told
/// why (in plaintext), a certificate of another CA or an expired one fails the handshake, and
/// none of them gets an edge.
pub fn strangers_are_refused<H: Harness>(h: &H, host: &str) {
    let s = Secure::new(h);
    let node = start_on(&s, host, cfg("member"));
    // Plaintext: a goodbye that says TLS is required, then the close.
    let mut raw = RawConn::connect(node.addr());
    raw.send(&hello(71, None, &["t"]));
    match raw.recv(WAIT) {
        Some(Message::Goodbye(DisconnectReason::NotAuthorized(m))) => {
            assert!(m.contains("TLS only"), "{m}")
        }
        other => panic!("a plaintext peer got {other:?}"),
    }
    assert!(raw.closed_within(WAIT));
    assert!(refused_for(&node, "TLS only"));
    // Another cluster's certificate.
    let other = Ca::new().unwrap();
    let (theirs, _) = other.issue("outsider", 30).unwrap();
    let outsider = RawConn::connect_tls(node.addr(), &theirs);
    assert!(
        outsider.is_err(),
        "a certificate of another CA was accepted"
    );
    assert!(refused_for(&node, "TLS"));
    // A stranger that trusts our CA (so it does not refuse the node first) with another
    // CA's certificate: the node's own check refuses it. And one with no certificate at all.
    let (ours, _) = s.ca.issue("reference", 30).unwrap();
    let mut forged = theirs.clone();
    forged.ca = ours.ca.clone();
    assert_refused(RawConn::connect_tls(node.addr(), &forged), "another CA's");
    assert!(refused_for(&node, "TLS"));
    assert_refused(
        RawConn::connect_tls_without_certificate(node.addr(), &ours.ca),
        "no",
    );
    assert!(refused_for(&node, "TLS"));
    // Our cluster's, but expired.
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let (stale, _) =
        s.ca.issue_between("stale", now - day * 30, now - day)
            .unwrap();
    match RawConn::connect_tls(node.addr(), &stale) {
        Err(_) => {}
        // TLS 1.3: the client finishes first; the server's verdict comes as an alert.
        Ok(mut c) => {
            c.send(&hello(72, None, &[]));
            assert!(
                c.recv(WAIT).is_none(),
                "an expired certificate got an answer"
            );
        }
    }
    assert!(refused_for(&node, "xpired"));
    assert!(node.edges().is_empty());
    node.shutdown();
}

/// A TLS client the node must refuse: the handshake fails, or (TLS 1.3: the client finishes
/// first) the node's verdict arrives as an alert instead of a Hello.
fn assert_refused(conn: Result<RawConn, String>, whose: &str) {
    if let Ok(mut c) = conn {
        c.send(&hello(73, None, &[]));
        assert!(
            c.recv(WAIT).is_none(),
            "a client with {whose} certificate got an answer"
        );
    }
}

/// A member cannot take over another member's edge by claiming its id: the Hello must carry
/// the id its certificate proves, so the claim is refused and the real edge stays.
pub fn ids_cannot_be_claimed<H: Harness>(h: &H, host: &str) {
    let s = Secure::new(h);
    let a = start_on(&s, host, cfg("a"));
    let b = start_on(&s, host, cfg("b"));
    b.subscribe("t").unwrap();
    a.connect(&b.addr().to_string()).unwrap();
    let b_id = b.id();
    // A member with a valid certificate says Hello as b.
    let (mallory, mallory_id) = s.ca.issue("mallory", 30).unwrap();
    let mut m = RawConn::connect_tls(a.addr(), &mallory).expect("a member's handshake");
    m.send(&hello(b_id.0, None, &["t"]));
    match m.recv(WAIT) {
        Some(Message::Goodbye(DisconnectReason::NotAuthorized(why))) => {
            assert!(why.contains("certificate proves"), "{why}")
        }
        other => panic!("a claimed id got {other:?}"),
    }
    assert!(refused_for(&a, "certificate proves"));
    assert!(a.edges().iter().any(|e| e.id == b_id && e.name == "b"));
    assert!(a.edges().iter().all(|e| e.id != mallory_id));
    // The real b still gets what a publishes.
    a.publish("t", b"still b").unwrap();
    let got = b.recv(WAIT).expect("b still reached");
    assert_eq!(&got.payload[..], b"still b");
    // Said as itself, the member is let in.
    let mut honest = RawConn::connect_tls(a.addr(), &mallory).unwrap();
    honest.send(&hello(mallory_id.0, None, &[]));
    assert!(matches!(honest.recv(WAIT), Some(Message::Hello(_))));
    assert!(wait_until(WAIT, || a
        .edges()
        .iter()
        .any(|e| e.id == mallory_id)));
    a.shutdown();
    b.shutdown();
}
