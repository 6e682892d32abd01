//! Secure links in the simulator: TLS 1.3 with mutual authentication inside the core. Ids are
//! proven by certificates; a certificate from another CA, an expired one, a plaintext peer and
//! a Hello claiming another id are refused, with the reason on both sides. The clock for
//! certificate validity is fixed (an input, like every other time in the core).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::tls::{id_of_cert, Tls, TlsIdentity, CLUSTER_NAME};
use chaski_proto::{Config, ConnectError, DisconnectReason, Event};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

const W3: Duration = Duration::from_secs(3);

/// The wall clock every secure node of these tests reads: 1 January 2030.
#[derive(Debug)]
struct Fixed;

impl TimeProvider for Fixed {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            1_893_456_000,
        )))
    }
}

fn year(y: i32) -> time::OffsetDateTime {
    rcgen::date_time_ymd(y, 1, 1)
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        Ca::named("test CA")
    }

    fn named(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = year(2020);
        p.not_after = year(2040);
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A node certificate valid between the two years.
    fn issue(&self, name: &str, from: i32, to: i32) -> TlsIdentity {
        self.issue_with(
            name,
            &[CLUSTER_NAME],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            (from, to),
        )
    }

    /// A certificate with these DNS names and extended key usages.
    fn issue_with(
        &self,
        name: &str,
        dns: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
        (from, to): (i32, i32),
    ) -> TlsIdentity {
        let key = KeyPair::generate().unwrap();
        let dns = dns.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        let mut p = CertificateParams::new(dns).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = usages;
        p.not_before = year(from);
        p.not_after = year(to);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        TlsIdentity {
            ca: self.cert.pem().into_bytes(),
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }
}

fn tls(identity: &TlsIdentity) -> Tls {
    Tls::new(
        identity,
        Arc::new(rustls::crypto::ring::default_provider()),
        Arc::new(Fixed),
    )
    .unwrap()
}

fn secure(sim: &mut Sim, name: &str, identity: &TlsIdentity) -> Idx {
    sim.add_node(
        Config::default()
            .name(name)
            .reconnections(0)
            .secure(tls(identity)),
    )
}

fn plain(sim: &mut Sim, name: &str) -> Idx {
    sim.add_node(Config::default().name(name).reconnections(0))
}

/// The reason node `n` was refused with when it dialed (its `ConnectFailed`).
fn refused(sim: &Sim, n: Idx) -> Option<String> {
    sim.events(n).iter().find_map(|(_, e)| match e {
        Event::ConnectFailed {
            error: ConnectError::Refused(DisconnectReason::NotAuthorized(why)),
            ..
        } => Some(why.clone()),
        _ => None,
    })
}

/// The reason node `n` dropped a peer for (its `BadPeer`).
fn dropped(sim: &Sim, n: Idx) -> Option<String> {
    sim.events(n).iter().find_map(|(_, e)| match e {
        Event::BadPeer {
            reason: DisconnectReason::NotAuthorized(why),
            ..
        } => Some(why.clone()),
        _ => None,
    })
}

#[test]
fn secure_nodes_connect_with_proven_ids_and_exchange_messages() {
    let ca = Ca::new();
    let (a_id, b_id) = (ca.issue("a", 2020, 2035), ca.issue("b", 2020, 2035));
    let mut sim = Sim::new(41);
    let a = secure(&mut sim, "a", &a_id);
    let b = secure(&mut sim, "b", &b_id);
    let proven = |i: &TlsIdentity| {
        let der = rustls::pki_types::CertificateDer::from_pem_slice(&i.cert).unwrap();
        id_of_cert(&der).unwrap()
    };
    use rustls::pki_types::pem::PemObject;
    assert_eq!(
        sim.node(a).id(),
        proven(&a_id),
        "a secure node is its certificate"
    );
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&a_id.cert).unwrap();
    assert_eq!(chaski_proto::tls::name_of_cert(&der).as_deref(), Some("a"));
    let unnamed = sim.add_node(Config::default().secure(tls(&ca.issue("from-cert", 2020, 2035))));
    assert_eq!(
        sim.node(unnamed).name(),
        "from-cert",
        "a node without a name takes its certificate's"
    );
    assert_eq!(sim.node(b).id(), proven(&b_id));
    sim.turn(b, |n, now| n.subscribe("news", now)).unwrap();
    sim.connect(a, b);
    assert!(sim.run_until(W3, |s| s.connected(a, b)));
    for i in 0..20u8 {
        sim.turn(a, |n, now| {
            n.publish("news", Bytes::from(vec![i; 3000]), now)
        })
        .unwrap();
    }
    assert!(sim.run_until(W3, |s| s.received(b).len() == 20));
    assert!(sim
        .received(b)
        .iter()
        .enumerate()
        .all(|(i, (t, p))| t == "news" && p.len() == 3000 && p[0] == i as u8));
    // Memory counted while sealing and writing never drifts.
    assert_eq!(sim.node(a).memory(), sim.node(a).memory_recounted());
}

#[test]
fn a_certificate_from_another_ca_gets_nowhere() {
    let (ours, theirs) = (Ca::new(), Ca::new());
    let mut sim = Sim::new(42);
    let member = secure(&mut sim, "member", &ours.issue("member", 2020, 2035));
    let outsider = secure(&mut sim, "outsider", &theirs.issue("outsider", 2020, 2035));
    sim.connect(outsider, member);
    assert!(sim.run_until(W3, |s| refused(s, outsider).is_some()
        || dropped(s, outsider).is_some()));
    sim.run_for(Duration::from_millis(100));
    assert!(!sim.connected(outsider, member));
    let why = dropped(&sim, outsider)
        .or_else(|| refused(&sim, outsider))
        .unwrap();
    assert!(why.contains("TLS"), "{why}");
    assert_eq!(sim.edge_count(member), 0);
    let bad = |s: &Sim, n: Idx| s.node(n).counters().bad_peers;
    assert!(bad(&sim, member) + bad(&sim, outsider) >= 1);
    // And the other way round.
    sim.connect(member, outsider);
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.connected(outsider, member));
    assert_eq!(sim.edge_count(outsider), 0);
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = Ca::new();
    let mut sim = Sim::new(43);
    let member = secure(&mut sim, "member", &ca.issue("member", 2020, 2035));
    let stale = secure(&mut sim, "stale", &ca.issue("stale", 2020, 2021));
    sim.connect(stale, member);
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.connected(stale, member));
    let why = dropped(&sim, member).unwrap_or_default();
    assert!(why.to_lowercase().contains("expired"), "{why:?}");
}

#[test]
fn plaintext_and_secure_nodes_refuse_each_other_with_a_reason() {
    let ca = Ca::new();
    let mut sim = Sim::new(44);
    let member = secure(&mut sim, "member", &ca.issue("member", 2020, 2035));
    let open = plain(&mut sim, "open");
    // A plaintext node dials a secure one: both learn why.
    sim.connect(open, member);
    assert!(sim.run_until(W3, |s| refused(s, open).is_some()));
    assert!(refused(&sim, open).unwrap().contains("TLS only"));
    assert!(dropped(&sim, member).unwrap().contains("TLS only"));
    // A secure node dials a plaintext one: both learn why too.
    sim.take_events(member);
    sim.connect(member, open);
    assert!(sim.run_until(W3, |s| refused(s, member).is_some()));
    assert!(refused(&sim, member).unwrap().contains("does not use TLS"));
    assert!(dropped(&sim, open).unwrap().contains("does not use TLS"));
    assert_eq!(sim.edge_count(member), 0);
    assert_eq!(sim.edge_count(open), 0);
    // Each refusal counts as a bad peer, and the plaintext goodbye a secure node writes outside
    // TLS is counted in its memory like any other byte.
    assert!(sim.node(member).counters().bad_peers >= 1);
    assert!(sim.node(open).counters().bad_peers >= 1);
    for n in [member, open] {
        assert_eq!(sim.node(n).memory(), sim.node(n).memory_recounted());
    }
}

#[test]
fn an_allow_list_keeps_other_members_out() {
    let ca = Ca::new();
    let (a_id, b_id, c_id) = (
        ca.issue("a", 2020, 2035),
        ca.issue("b", 2020, 2035),
        ca.issue("c", 2020, 2035),
    );
    let mut sim = Sim::new(45);
    let b = secure(&mut sim, "b", &b_id);
    let c = secure(&mut sim, "c", &c_id);
    let only_b = tls(&a_id).allow([sim.node(b).id()]);
    let a = sim.add_node(Config::default().name("a").reconnections(0).secure(only_b));
    sim.connect(b, a);
    assert!(sim.run_until(W3, |s| s.connected(a, b)));
    sim.connect(c, a);
    sim.run_for(Duration::from_millis(500));
    assert!(!sim.connected(a, c));
    assert!(dropped(&sim, a).unwrap().contains("allow-list"));
    assert!(refused(&sim, c).unwrap().contains("allow-list"));
}

/// A secure node answers status queries from its own host only (health checks), and takes no
/// UDP publish.
#[test]
fn udp_is_for_the_own_host_only() {
    use chaski_proto::codec::encode_value;
    use chaski_proto::message::Datagram;
    use chaski_proto::{Node, Output};
    let ca = Ca::new();
    let now = std::time::Instant::now();
    let cfg = Config::default().secure(tls(&ca.issue("n", 2020, 2035)));
    let mut n = Node::new(cfg, Some(([0, 0, 0, 0], 9000).into())).unwrap();
    n.subscribe("t", now).unwrap();
    let query = encode_value(&Datagram::StatusRequest {
        token: 1,
        padding: Bytes::from(vec![0; 1180]),
    })
    .unwrap();
    let publish = encode_value(&Datagram::Publish {
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
    })
    .unwrap();
    let outputs = |n: &mut Node| {
        let mut v = Vec::new();
        while let Some(o) = n.poll_output() {
            v.push(o);
        }
        v
    };
    outputs(&mut n);
    n.handle_datagram(([10, 0, 0, 7], 4000).into(), &query, now);
    n.handle_datagram(([10, 0, 0, 7], 4000).into(), &publish, now);
    n.handle_datagram(([127, 0, 0, 1], 4000).into(), &publish, now);
    assert!(
        outputs(&mut n).is_empty(),
        "a secure node answered or delivered UDP"
    );
    n.handle_datagram(([127, 0, 0, 1], 4000).into(), &query, now);
    let out = outputs(&mut n);
    assert!(
        matches!(&out[..], [Output::Datagram { to, .. }] if to.ip().is_loopback()),
        "{out:?}"
    );
    assert!(n
        .publish_datagram(([127, 0, 0, 1], 9).into(), "t", Bytes::new())
        .is_err());
}

#[test]
fn the_node_itself_refuses_a_client_of_another_ca_that_trusts_ours() {
    // The stranger trusts the cluster's CA (so it does not refuse the node first), and its
    // certificate comes from another CA, even one with the same name: the node's own check
    // is the one that refuses.
    let ours = Ca::new();
    for theirs in [Ca::named("test CA"), Ca::named("another CA")] {
        let mut sim = Sim::new(44);
        let member = secure(&mut sim, "member", &ours.issue("member", 2020, 2035));
        let mut forged = theirs.issue("stranger", 2020, 2035);
        forged.ca = ours.cert.pem().into_bytes();
        let stranger = secure(&mut sim, "stranger", &forged);
        sim.connect(stranger, member);
        assert!(sim.run_until(W3, |s| dropped(s, member).is_some()));
        let why = dropped(&sim, member).unwrap();
        // Another CA's name: an unknown issuer; the same name: the signature does not hold.
        assert!(
            why.contains("TLS") && (why.contains("UnknownIssuer") || why.contains("BadSignature")),
            "{why}"
        );
        assert!(!sim.connected(stranger, member));
        assert_eq!(sim.edge_count(member), 0);
        assert_eq!(sim.node(member).counters().bad_peers, 1);
    }
}

#[test]
fn certificates_without_the_node_name_or_both_usages_are_refused_both_ways() {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca = Ca::new();
    let cases: [(&[&str], Vec<ExtendedKeyUsagePurpose>, &str); 5] = [
        (&[], vec![ServerAuth, ClientAuth], "chaski.node"),
        (
            &["other.example"],
            vec![ServerAuth, ClientAuth],
            "chaski.node",
        ),
        (&[CLUSTER_NAME], vec![], "serverAuth and clientAuth"),
        (
            &[CLUSTER_NAME],
            vec![ClientAuth],
            "serverAuth and clientAuth",
        ),
        (
            &[CLUSTER_NAME],
            vec![ServerAuth],
            "serverAuth and clientAuth",
        ),
    ];
    for (dns, usages, why) in cases {
        let bad = ca.issue_with("bad", dns, usages, (2020, 2035));
        // As the dialer: the acceptor refuses it (its own check, not webpki's).
        let mut sim = Sim::new(45);
        let member = secure(&mut sim, "member", &ca.issue("member", 2020, 2035));
        let odd = secure(&mut sim, "odd", &bad);
        sim.connect(odd, member);
        sim.run_for(Duration::from_millis(500));
        assert!(!sim.connected(odd, member), "{dns:?}: dialer let in");
        let said = dropped(&sim, member).unwrap_or_default();
        // A certificate without the name fails the dialer's own check of the acceptor for a
        // server-only usage; for the others the acceptor's check speaks.
        assert!(
            said.contains(why) || dropped(&sim, odd).is_some_and(|w| w.contains("TLS")),
            "{dns:?}: {said:?}"
        );
        // As the acceptor: the dialer refuses it.
        let mut sim = Sim::new(46);
        let member = secure(&mut sim, "member", &ca.issue("member", 2020, 2035));
        let odd = secure(&mut sim, "odd", &bad);
        sim.connect(member, odd);
        sim.run_for(Duration::from_millis(500));
        assert!(!sim.connected(odd, member), "{dns:?}: acceptor let in");
        assert_eq!(sim.edge_count(member), 0);
        let said = dropped(&sim, member).unwrap_or_default();
        assert!(said.contains("TLS"), "{dns:?}: {said:?}");
    }
    // The check itself, on the good certificate and on each bad one.
    use rustls::pki_types::pem::PemObject;
    let der = |i: &TlsIdentity| rustls::pki_types::CertificateDer::from_pem_slice(&i.cert).unwrap();
    assert_eq!(
        chaski_proto::tls::check_node_cert(&der(&ca.issue("ok", 2020, 2035))),
        Ok(())
    );
    let no_eku = ca.issue_with("x", &[CLUSTER_NAME], vec![], (2020, 2035));
    assert!(chaski_proto::tls::check_node_cert(&der(&no_eku))
        .unwrap_err()
        .contains("clientAuth"));
    let no_san = ca.issue_with("x", &[], vec![ServerAuth, ClientAuth], (2020, 2035));
    assert!(chaski_proto::tls::check_node_cert(&der(&no_san))
        .unwrap_err()
        .contains(CLUSTER_NAME));
}

/// A member with a valid certificate that says Hello under another id is refused (the id a
/// certificate proves is the only one it may claim), and said as itself it is let in: a
/// secure node driven by hand, against a rustls client of the same cluster.
#[test]
fn a_hello_must_claim_the_id_its_certificate_proves() {
    use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
    use chaski_proto::message::{Hello, Message, PROTOCOL_VERSION};
    use chaski_proto::{ConnId, Direction, Node, NodeId, Output};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};

    let ca = Ca::new();
    let node_id = ca.issue("node", 2020, 2035);
    let member = ca.issue("member", 2020, 2035);
    let member_id = {
        let der = CertificateDer::from_pem_slice(&member.cert).unwrap();
        id_of_cert(&der).unwrap()
    };
    let client_config = || {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&member.ca).unwrap())
            .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(&member.cert).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(&member.key).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_details(
                Arc::new(rustls::crypto::ring::default_provider()),
                Arc::new(Fixed),
            )
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
        )
    };
    // Runs a member's connection `conn` saying Hello as `claimed`; what the node answers.
    let run = |claimed: NodeId, conn: ConnId| -> (Node, Vec<Message>) {
        let now = std::time::Instant::now();
        let cfg = Config::default().name("node").seed(1).secure(tls(&node_id));
        let mut node = Node::new(cfg, Some(([127, 0, 0, 1], 9100).into())).unwrap();
        node.handle_connected(conn, ([127, 0, 0, 1], 9200).into(), Direction::Inbound, now);
        let name = ServerName::try_from(CLUSTER_NAME).unwrap();
        let mut client = rustls::ClientConnection::new(client_config(), name).unwrap();
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            max_version: None,
            id: claimed,
            name: "member".into(),
            listen: None,
            topics: vec![],
            paired: vec![],
            services: vec![],
            root: false,
            pairing: None,
            nonce: 1,
        });
        let mut frame = bytes::BytesMut::new();
        encode_frame(&hello, &mut frame, 1 << 20).unwrap();
        client.writer().write_all(&frame).unwrap();
        let mut answers = FrameDecoder::new(1 << 20);
        for _ in 0..20 {
            let mut to_node = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_node).unwrap();
            }
            node.handle_bytes(conn, &to_node, now);
            let mut to_client = Vec::new();
            while let Some(o) = node.poll_output() {
                if let Output::Transmit { conn: c } | Output::Close { conn: c } = o {
                    if c == conn {
                        to_client.extend_from_slice(&node.take_outbound(conn, now));
                    }
                }
            }
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            let _ = client.process_new_packets();
            let mut plain = Vec::new();
            let _ = client.reader().read_to_end(&mut plain);
            answers.extend(&plain);
        }
        let msgs = std::iter::from_fn(|| answers.next_frame().unwrap())
            .map(|b| decode_message(&b).unwrap())
            .collect();
        (node, msgs)
    };
    // Claiming another member's id: refused, counted, no edge.
    let (node, got) = run(NodeId(member_id.0 ^ 1), ConnId(1));
    assert!(
        matches!(got.last(), Some(Message::Goodbye(DisconnectReason::NotAuthorized(m))) if m.contains("certificate proves")),
        "{got:?}"
    );
    assert_eq!(node.edge_count(), 0);
    assert_eq!(node.counters().bad_peers, 1);
    // As itself: the node's Hello comes back, an edge with that id.
    let (node, got) = run(member_id, ConnId(2));
    assert!(matches!(got.first(), Some(Message::Hello(_))), "{got:?}");
    assert!(node.is_connected_to(member_id));
}

/// Two secure nodes driven by hand, without the simulator: each socket takes only `per_write`
/// bytes at a time, so sealed records wait while more are sealed behind them.
struct Pair {
    a: chaski_proto::Node,
    b: chaski_proto::Node,
    /// The dialer's connection at `a`, and the accepted one at `b`.
    ca: chaski_proto::ConnId,
    cb: chaski_proto::ConnId,
    now: std::time::Instant,
    /// Events of `b`.
    events_b: Vec<Event>,
}

impl Pair {
    fn new(ca_: &Ca) -> Pair {
        Pair::with(ca_, |c| c)
    }

    /// A pair whose dialer `a` has `tweak` applied to its configuration.
    fn with(ca_: &Ca, tweak: impl Fn(Config) -> Config) -> Pair {
        use chaski_proto::{ConnId, Direction, Node};
        let now = std::time::Instant::now();
        let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = |name: &str| {
            Config::default()
                .name(name)
                .reconnections(0)
                .secure(tls(&ca_.issue(name, 2020, 2035)))
        };
        let mut a = Node::new(tweak(cfg("a")).seed(1), Some(addr(7001))).unwrap();
        let mut b = Node::new(cfg("b").seed(2), Some(addr(7002))).unwrap();
        b.subscribe("news", now).unwrap();
        let ca = a.connect(addr(7002), now).unwrap();
        let cb = ConnId(1);
        a.handle_connected(ca, addr(7002), Direction::Outbound, now);
        b.handle_connected(cb, addr(7001), Direction::Inbound, now);
        let mut pair = Pair {
            a,
            b,
            ca,
            cb,
            now,
            events_b: Vec::new(),
        };
        pair.pump(usize::MAX);
        assert!(pair.a.is_connected_to(pair.b.id()), "no edge");
        pair
    }

    /// Moves bytes both ways, at most `per_write` per write, until neither has anything to
    /// send; checks after every step that memory counts never drift and that no connection is
    /// announced with nothing to write.
    fn pump(&mut self, per_write: usize) {
        loop {
            let mut moved = false;
            for from_a in [true, false] {
                let (src, dst, sc, dc) = if from_a {
                    (&mut self.a, &mut self.b, self.ca, self.cb)
                } else {
                    (&mut self.b, &mut self.a, self.cb, self.ca)
                };
                let data = src.outbound(sc);
                let n = data.len().min(per_write);
                if n > 0 {
                    let chunk = data[..n].to_vec();
                    src.advance(sc, n, self.now);
                    dst.handle_bytes(dc, &chunk, self.now);
                    moved = true;
                }
                assert_eq!(src.memory(), src.memory_recounted());
                assert_eq!(dst.memory(), dst.memory_recounted());
            }
            for (node, conn, events) in [
                (&mut self.a, self.ca, None),
                (&mut self.b, self.cb, Some(&mut self.events_b)),
            ] {
                let mut events = events;
                while let Some(o) = node.poll_output() {
                    match o {
                        chaski_proto::Output::Transmit { conn: c } if c == conn => {
                            assert!(
                                node.outbound_len(conn) > 0 || !node.outbound(conn).is_empty(),
                                "a Transmit for a connection with nothing to write"
                            );
                        }
                        chaski_proto::Output::Event(e) => {
                            if let Some(ev) = events.as_deref_mut() {
                                ev.push(e);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

/// Memory stays counted exactly while records wait behind partial writes, and a record that
/// does not decrypt on an established edge drops it with a `BadPeer` naming the peer.
#[test]
fn partial_writes_of_records_and_a_corrupt_record_on_an_edge() {
    let ca = Ca::new();
    let mut p = Pair::new(&ca);
    for i in 0..20u8 {
        p.a.publish("news", Bytes::from(vec![i; 3000]), p.now)
            .unwrap();
        if i % 5 == 0 {
            p.pump(1000);
        }
    }
    p.pump(777);
    let a_id = p.a.id();
    // A node's debug output shows each session's state in short, not the session itself.
    let shown = format!("{:?}", p.b);
    assert!(
        shown.contains(&format!(
            "TlsConn {{ handshaking: false, wire: 0, peer: Some({a_id:?}) }}"
        )),
        "{shown}"
    );
    assert!(p.b.is_connected_to(a_id));
    // An application-data record that does not decrypt.
    let cb = p.cb;
    p.b.handle_bytes(
        cb,
        &[
            23, 3, 3, 0, 20, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ],
        p.now,
    );
    p.pump(usize::MAX);
    assert!(!p.b.is_connected_to(a_id));
    assert!(
        p.events_b.iter().any(|e| matches!(
            e,
            Event::BadPeer { peer: Some(peer), reason: DisconnectReason::NotAuthorized(_), .. } if *peer == a_id
        )),
        "{:?}",
        p.events_b
    );
}

/// A secure peer over `max_outbound` whose sealed records wait unbegun: they are all dropped
/// (a record cannot be taken back, and none may follow a cut one) and no goodbye is queued
/// behind them.
#[test]
fn an_overflowing_secure_peer_is_dropped_with_its_sealed_records() {
    let ca = Ca::new();
    let mut p = Pair::with(&ca, |c| c.max_outbound(256 * 1024));
    let b_id = p.b.id();
    let mut i = 0u32;
    while p.a.is_connected_to(b_id) {
        p.a.publish("news", Bytes::from(vec![1; 3000]), p.now)
            .unwrap();
        // Sealed, never written.
        let _ = p.a.outbound(p.ca);
        i += 1;
        assert!(i < 1000, "never overflowed");
    }
    // At most the session's own closing alert (one small record) is left to write.
    assert!(
        p.a.outbound_len(p.ca) < 64,
        "{} bytes left",
        p.a.outbound_len(p.ca)
    );
    assert!(p.a.memory().outbound < 64);
    assert_eq!(p.a.memory(), p.a.memory_recounted());
}
