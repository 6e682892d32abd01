//! Services found anywhere in the mesh: the search, spreading calls over servers, failover,
//! and cancels reaching the server, in the deterministic simulator.

use std::time::Duration;

use bytes::Bytes;
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::{CallKind, Config, Delivery, NodeId, RemoteCall, RemoteError, RequestId};

const W3: Duration = Duration::from_secs(3);

fn node(sim: &mut Sim, name: &str) -> Idx {
    sim.add_node(
        Config::default()
            .name(name)
            .reconnections(0)
            .discovery_timeout(Duration::from_secs(1)),
    )
}

fn link(sim: &mut Sim, a: Idx, b: Idx) {
    sim.connect(a, b);
    assert!(
        sim.run_until(W3, |s| s.connected(a, b)),
        "{a}-{b} not linked"
    );
}

/// A caller linked to one node per name, each serving `math`, settled.
fn servers_of_math<const N: usize>(seed: u64, names: [&str; N]) -> (Sim, Idx, [Idx; N]) {
    let mut sim = Sim::new(seed);
    let caller = node(&mut sim, "caller");
    let servers = names.map(|name| node(&mut sim, name));
    for s in servers {
        link(&mut sim, caller, s);
        serve(&mut sim, s, "math");
    }
    sim.run_for(Duration::from_millis(50));
    (sim, caller, servers)
}

fn serve(sim: &mut Sim, n: Idx, service: &str) {
    sim.turn(n, |node, now| node.serve(service, now)).unwrap();
}

fn call(sim: &mut Sim, n: Idx, service: &str, timeout: Duration) -> RequestId {
    sim.turn(n, |node, now| {
        node.call_service(
            RemoteCall {
                service,
                path: "f",
                kind: CallKind::Call,
                args: Bytes::new(),
            },
            Some(timeout),
            now,
        )
    })
    .unwrap()
}

fn answer_all(sim: &mut Sim, n: Idx, with: &'static [u8]) {
    for (peer, id) in requests_of(sim, n) {
        let _ = sim.turn(n, |node, now| {
            node.respond(peer, id, Ok(Bytes::from_static(with)), now)
        });
    }
    sim.take_delivered(n);
}

fn response(sim: &Sim, n: Idx, id: RequestId) -> Option<Result<Bytes, RemoteError>> {
    sim.delivered(n).iter().find_map(|(_, e)| match e {
        Delivery::Response { id: i, result } if *i == id => Some(result.clone()),
        _ => None,
    })
}

fn wait_response(
    sim: &mut Sim,
    n: Idx,
    id: RequestId,
    limit: Duration,
) -> Result<Bytes, RemoteError> {
    assert!(
        sim.run_until(limit, |s| response(s, n, id).is_some()),
        "no response to {id:?}"
    );
    response(sim, n, id).unwrap()
}

/// A chain caller - relay - relay - server: the caller never connected to the server, finds
/// it through the relays (the server dials it), and the call goes straight to it.
#[test]
fn a_server_three_hops_away_is_found_and_called() {
    let mut sim = Sim::new(31);
    let caller = node(&mut sim, "caller");
    let r1 = node(&mut sim, "r1");
    let r2 = node(&mut sim, "r2");
    let server = node(&mut sim, "server");
    link(&mut sim, caller, r1);
    link(&mut sim, r1, r2);
    link(&mut sim, r2, server);
    serve(&mut sim, server, "math");
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.node(caller).find_service("math"), None);

    let found = sim
        .turn(caller, |n, now| n.seek_service("math", now))
        .unwrap();
    assert_eq!(found, None, "nobody near serves it: a search starts");
    let server_id = sim.node(server).id();
    assert!(
        sim.run_until(W3, |s| s.delivered(caller).iter().any(|(_, e)| matches!(
            e,
            Delivery::ServiceFound { service, peer: Some(p) } if service == "math" && *p == server_id
        )))
    );
    assert!(
        sim.run_until(W3, |s| s.connected(caller, server)),
        "the server dialed the caller"
    );

    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| !requests_of(s, server).is_empty()));
    answer_all(&mut sim, server, b"5");
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Ok(Bytes::from_static(b"5"))
    );
}

/// The requests node `n` has received so far (caller, id), from its events.
fn requests_of(sim: &Sim, n: Idx) -> Vec<(NodeId, u64)> {
    sim.delivered(n)
        .iter()
        .filter_map(|(_, e)| match e {
            Delivery::Request { peer, id, .. } => Some((*peer, *id)),
            _ => None,
        })
        .collect()
}

/// A call by name with no server near waits for the search, then goes to what it finds.
#[test]
fn a_call_waits_for_the_search() {
    let mut sim = Sim::new(32);
    let caller = node(&mut sim, "caller");
    let relay = node(&mut sim, "relay");
    let server = node(&mut sim, "server");
    link(&mut sim, caller, relay);
    link(&mut sim, relay, server);
    serve(&mut sim, server, "math");
    sim.run_for(Duration::from_millis(50));
    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| !requests_of(s, server).is_empty()));
    answer_all(&mut sim, server, b"ok");
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Ok(Bytes::from_static(b"ok"))
    );
}

/// Nobody serves it: the search ends after `discovery_timeout` and the waiting call fails as
/// not found (before its own deadline).
#[test]
fn no_server_anywhere_is_not_found() {
    let mut sim = Sim::new(33);
    let caller = node(&mut sim, "caller");
    let other = node(&mut sim, "other");
    link(&mut sim, caller, other);
    let started = sim.now();
    let id = call(&mut sim, caller, "nothing", Duration::from_secs(10));
    assert_eq!(
        wait_response(&mut sim, caller, id, Duration::from_secs(10)),
        Err(RemoteError::NotFound("nothing".into()))
    );
    assert!(sim.now() - started < Duration::from_secs(2));
    assert!(sim.delivered(caller).iter().any(|(_, e)| matches!(
        e,
        Delivery::ServiceFound { service, peer: None } if service == "nothing"
    )));
    // With no edge at all there is nothing to search through.
    let alone = node(&mut sim, "alone");
    let err = sim.turn(alone, |n, now| n.seek_service("math", now));
    assert_eq!(err, Err(chaski_proto::CommandError::NoEdges));
}

/// Two servers: calls spread by fewest in flight, so unanswered calls alternate.
#[test]
fn calls_spread_over_two_servers() {
    let (mut sim, caller, [s1, s2]) = servers_of_math(34, ["s1", "s2"]);
    assert_eq!(sim.node(caller).servers("math").len(), 2);
    for _ in 0..10 {
        call(&mut sim, caller, "math", W3);
    }
    sim.run_for(Duration::from_millis(50));
    assert_eq!(requests_of(&sim, s1).len(), 5);
    assert_eq!(requests_of(&sim, s2).len(), 5);
    let (id1, id2) = (sim.node(s1).id(), sim.node(s2).id());
    assert_eq!(sim.node(caller).calls_in_flight(id1), 5);
    assert_eq!(sim.node(caller).calls_in_flight(id2), 5);
    // s1 answers its five: the next calls go to s1, which now has none in flight.
    answer_all(&mut sim, s1, b"1");
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.node(caller).calls_in_flight(id1), 0);
    for _ in 0..3 {
        call(&mut sim, caller, "math", W3);
    }
    sim.run_for(Duration::from_millis(50));
    assert_eq!(requests_of(&sim, s1).len(), 3);
    assert_eq!(requests_of(&sim, s2).len(), 5);
}

/// The server holding a call dies: the call moves to the other server and is answered within
/// its deadline; a call to one peer (not by name) fails as disconnected.
#[test]
fn a_lost_server_fails_over() {
    let (mut sim, caller, [s1, s2]) = servers_of_math(35, ["s1", "s2"]);
    let s1_id = sim.node(s1).id();
    let by_name = call(&mut sim, caller, "math", Duration::from_secs(5));
    assert!(
        sim.run_until(W3, |s| !requests_of(s, s1).is_empty()),
        "the first goes to s1"
    );
    let direct = sim
        .turn(caller, |n, now| {
            n.call(
                s1_id,
                RemoteCall {
                    service: "math",
                    path: "f",
                    kind: CallKind::Call,
                    args: Bytes::new(),
                },
                None,
                now,
            )
        })
        .unwrap();
    sim.run_for(Duration::from_millis(50));
    assert!(requests_of(&sim, s2).is_empty());
    sim.crash(s1);
    assert_eq!(
        wait_response(&mut sim, caller, direct, W3),
        Err(RemoteError::Disconnected)
    );
    assert!(
        sim.run_until(W3, |s| !requests_of(s, s2).is_empty()),
        "moved to s2"
    );
    assert_eq!(response(&sim, caller, by_name), None);
    answer_all(&mut sim, s2, b"2");
    assert_eq!(
        wait_response(&mut sim, caller, by_name, W3),
        Ok(Bytes::from_static(b"2"))
    );
}

/// A busy server, or one that stopped serving, passes the call on to another server; with no
/// other, the caller gets the server's error.
#[test]
fn busy_or_withdrawn_servers_pass_the_call_on() {
    let (mut sim, caller, [s1, s2]) = servers_of_math(36, ["s1", "s2"]);
    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| !requests_of(s, s1).is_empty()));
    for (peer, rid) in requests_of(&sim, s1) {
        sim.turn(s1, |n, now| {
            n.respond(peer, rid, Err(RemoteError::Busy), now)
        })
        .unwrap();
    }
    assert!(
        sim.run_until(W3, |s| !requests_of(s, s2).is_empty()),
        "s2 gets it"
    );
    answer_all(&mut sim, s2, b"2");
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Ok(Bytes::from_static(b"2"))
    );

    // Only one server left, and it is busy: its error comes back.
    sim.turn(s2, |n, now| n.unserve("math", now)).unwrap();
    sim.run_for(Duration::from_millis(50));
    sim.take_delivered(s1);
    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| !requests_of(s, s1).is_empty()));
    for (peer, rid) in requests_of(&sim, s1) {
        sim.turn(s1, |n, now| {
            n.respond(peer, rid, Err(RemoteError::Busy), now)
        })
        .unwrap();
    }
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Err(RemoteError::Busy)
    );
}

/// A caller that cancels, or whose deadline passes, or that goes away, tells the server: it
/// gets `Cancelled`, and answering afterwards is refused.
#[test]
fn cancels_reach_the_server() {
    let (mut sim, caller, [server]) = servers_of_math(37, ["server"]);
    let cancelled = |s: &Sim, id: u64| {
        s.delivered(server)
            .iter()
            .any(|(_, e)| matches!(e, Delivery::Cancelled { id: i, .. } if *i == id))
    };

    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| !requests_of(s, server).is_empty()));
    assert!(sim.turn(caller, |n, now| n.cancel_call(id, now)));
    assert!(sim.run_until(W3, |s| cancelled(s, id.0)), "explicit cancel");
    let (peer, rid) = requests_of(&sim, server)[0];
    let late = sim.turn(server, |n, now| n.respond(peer, rid, Ok(Bytes::new()), now));
    assert_eq!(late, Err(chaski_proto::CommandError::UnknownRequest));

    let id = call(&mut sim, caller, "math", Duration::from_millis(500));
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Err(RemoteError::Timeout)
    );
    assert!(sim.run_until(W3, |s| cancelled(s, id.0)), "deadline passed");

    let id = call(&mut sim, caller, "math", W3);
    assert!(sim.run_until(W3, |s| requests_of(s, server).iter().any(|r| r.1 == id.0)));
    sim.crash(caller);
    assert!(sim.run_until(W3, |s| cancelled(s, id.0)), "caller gone");
}

/// The only server is lost while it has a call: the call waits for another within its
/// deadline (a search), and with none found says `Disconnected`, not `NotFound`.
#[test]
fn the_only_server_lost_is_disconnected_after_the_search() {
    let mut sim = Sim::new(38);
    let caller = node(&mut sim, "caller");
    let relay = node(&mut sim, "relay");
    let server = node(&mut sim, "server");
    link(&mut sim, caller, relay);
    link(&mut sim, caller, server);
    serve(&mut sim, server, "math");
    sim.run_for(Duration::from_millis(50));
    let id = call(&mut sim, caller, "math", Duration::from_secs(10));
    assert!(sim.run_until(W3, |s| !requests_of(s, server).is_empty()));
    sim.crash(server);
    sim.run_for(Duration::from_millis(500));
    assert_eq!(response(&sim, caller, id), None, "still looking");
    assert_eq!(
        wait_response(&mut sim, caller, id, W3),
        Err(RemoteError::Disconnected)
    );
}

/// Every node answers its built-in `@node` service (edges, status) unless introspection is
/// off; the application cannot serve `@` names.
#[test]
fn the_node_service_reports_edges_unless_turned_off() {
    use chaski_proto::codec::decode_value;
    use chaski_proto::{CommandError, EdgeReport, Status, NODE_SERVICE};
    let mut sim = Sim::new(39);
    let a = node(&mut sim, "a");
    let b = node(&mut sim, "b");
    let quiet = sim.add_node(Config::default().name("quiet").introspect(false));
    link(&mut sim, a, b);
    link(&mut sim, a, quiet);
    let ask = |sim: &mut Sim, to: Idx, path: &str| {
        let peer = sim.node(to).id();
        let id = sim
            .turn(a, |n, now| {
                n.call(
                    peer,
                    RemoteCall {
                        service: NODE_SERVICE,
                        path,
                        kind: CallKind::Call,
                        args: Bytes::new(),
                    },
                    None,
                    now,
                )
            })
            .unwrap();
        wait_response(sim, a, id, W3)
    };
    let edges: Vec<EdgeReport> = decode_value(&ask(&mut sim, b, "edges").unwrap()).unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].id, sim.node(a).id());
    assert_eq!(edges[0].name, "a");
    assert!(!edges[0].outbound, "a dialed b");
    let status: Status = decode_value(&ask(&mut sim, b, "status").unwrap()).unwrap();
    assert_eq!(status.name, "b");
    assert_eq!(
        ask(&mut sim, b, "nope"),
        Err(RemoteError::NoSuchMethod("nope".into()))
    );
    assert_eq!(
        ask(&mut sim, quiet, "edges"),
        Err(RemoteError::NotFound(NODE_SERVICE.into()))
    );
    assert_eq!(
        sim.turn(b, |n, now| n.serve(NODE_SERVICE, now)),
        Err(CommandError::Reserved("@"))
    );
}

/// A timer that fires late still ends the call (as `Timeout`, not by waiting for a deadline
/// already gone); shutting down fails every pending call as `Disconnected`.
#[test]
fn late_timers_and_shutdown_end_calls() {
    let (mut sim, caller, [_server]) = servers_of_math(40, ["server"]);
    let id = call(&mut sim, caller, "math", Duration::from_millis(500));
    sim.turn(caller, |n, now| {
        n.handle_timeout(now + Duration::from_secs(2))
    });
    assert_eq!(response(&sim, caller, id), Some(Err(RemoteError::Timeout)));
    let id = call(&mut sim, caller, "math", W3);
    // A call still waiting for a server, with its search.
    let waiting = call(&mut sim, caller, "nowhere", W3);
    sim.turn(caller, |n, now| n.shutdown(now));
    for id in [id, waiting] {
        assert_eq!(
            response(&sim, caller, id),
            Some(Err(RemoteError::Disconnected))
        );
    }
    assert!(sim.delivered(caller).iter().any(|(_, e)| matches!(
        e,
        Delivery::ServiceFound { service, peer: None } if service == "nowhere"
    )));
}

/// One node searches for one service, then for another: each search has its own id, so the
/// mesh forwards both (neither is taken for a duplicate of the other).
#[test]
fn successive_searches_are_all_forwarded() {
    let mut sim = Sim::new(46);
    let caller = node(&mut sim, "caller");
    let relay = node(&mut sim, "relay");
    let a = node(&mut sim, "a");
    let b = node(&mut sim, "b");
    link(&mut sim, caller, relay);
    link(&mut sim, relay, a);
    link(&mut sim, relay, b);
    serve(&mut sim, a, "alpha");
    serve(&mut sim, b, "beta");
    sim.run_for(Duration::from_millis(50));
    for (service, server) in [("alpha", a), ("beta", b)] {
        let id = sim.node(server).id();
        assert_eq!(
            sim.turn(caller, |n, now| n.seek_service(service, now)),
            Ok(None)
        );
        assert!(
            sim.run_until(W3, |s| s.delivered(caller).iter().any(|(_, e)| matches!(
                e,
                Delivery::ServiceFound { service: found, peer: Some(p) } if found == service && *p == id
            ))),
            "{service} not found"
        );
    }
}

/// A search naming no service, or one longer than `max_name_len`, goes no further.
#[test]
fn malformed_searches_are_not_forwarded() {
    use bytes::BytesMut;
    use chaski_proto::codec::{encode_frame, FrameDecoder};
    use chaski_proto::message::{Hello, Message, ServiceSearch};
    use chaski_proto::{ConnId, Direction, Node, Output};
    let now = std::time::Instant::now();
    let at = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut n = Node::new(Config::default().seed(1), Some(at(9000))).unwrap();
    let frame = |m: &Message| {
        let mut b = BytesMut::new();
        encode_frame(m, &mut b, 1 << 20).unwrap();
        b
    };
    let hello = |id: u128| {
        Message::Hello(Hello {
            version: 1,
            max_version: None,
            id: NodeId(id),
            name: format!("p{id}"),
            listen: None,
            topics: vec![],
            paired: vec![],
            services: vec![],
            root: false,
            pairing: None,
            nonce: 1,
        })
    };
    for (conn, id) in [(1, 71), (2, 72)] {
        n.handle_connected(
            ConnId(conn),
            at(9000 + conn as u16),
            Direction::Inbound,
            now,
        );
        n.handle_bytes(ConnId(conn), &frame(&hello(id)), now);
    }
    // What reaches the second peer, as messages.
    let mut seen = FrameDecoder::new(1 << 20);
    let mut forwarded = |n: &mut Node| {
        let mut searches = Vec::new();
        while let Some(o) = n.poll_output() {
            if let Output::Transmit { conn: ConnId(2) } = o {
                seen.extend(&n.take_outbound(ConnId(2), now));
            }
        }
        while let Ok(Some(body)) = seen.next_frame() {
            if let Ok(Message::FindService(s)) = chaski_proto::codec::decode_message(&body) {
                searches.push(s.service);
            }
        }
        searches
    };
    forwarded(&mut n);
    let search = |id: u64, service: String| {
        Message::FindService(ServiceSearch {
            id,
            origin: NodeId(71),
            origin_addr: at(9001),
            service,
            ttl: 4,
        })
    };
    n.handle_bytes(ConnId(1), &frame(&search(1, String::new())), now);
    n.handle_bytes(ConnId(1), &frame(&search(2, "x".repeat(300))), now);
    n.handle_bytes(ConnId(1), &frame(&search(3, "x".repeat(256))), now);
    n.handle_bytes(ConnId(1), &frame(&search(4, "ok".into())), now);
    assert_eq!(forwarded(&mut n), ["x".repeat(256), "ok".to_string()]);
}
