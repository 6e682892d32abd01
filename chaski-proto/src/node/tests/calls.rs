//! Calls by name: how many servers a refused or lost call tries, and the edges of its deadline.

use super::*;
use crate::id::RequestId;
use crate::message::RemoteError;

/// A node with `servers` peers (ids 100.., inbound connections 1..) each offering `math`.
fn with_servers(servers: u64) -> (Node, Instant) {
    let (mut n, now) = node(Config::default().max_edges(64));
    for c in 1..=servers {
        let mut h = hello(99 + c as u128, &[]);
        h.services = vec!["math".into()];
        n.handle_connected(ConnId(c), addr(40000 + c as u16), Direction::Inbound, now);
        n.handle_bytes(ConnId(c), &frame(&Message::Hello(h)), now);
    }
    drain(&mut n);
    assert_eq!(n.edge_count(), servers as usize);
    (n, now)
}

fn call_math(n: &mut Node, timeout: Duration, now: Instant) -> RequestId {
    call_named(n, "math", timeout, now)
}

/// A call of `service` by name, wherever it is served.
fn call_named(n: &mut Node, service: &str, timeout: Duration, now: Instant) -> RequestId {
    let what = RemoteCall {
        service,
        path: "add",
        kind: CallKind::Call,
        args: Bytes::new(),
    };
    n.call_service(what, Some(timeout), now).unwrap()
}

/// The connection that was sent request `id` among `outs`, if one was.
fn asked(outs: &[Output], id: RequestId) -> Option<ConnId> {
    outs.iter().find_map(|o| match o {
        Output::Transmit { conn, data } => {
            let mut d = FrameDecoder::new(1 << 24);
            d.extend(data);
            let mut found = None;
            while let Ok(Some(f)) = d.next_frame() {
                if let Ok(Message::Request { id: i, .. }) = decode_message(&f) {
                    if i == id.0 {
                        found = Some(*conn);
                    }
                }
            }
            found
        }
        _ => None,
    })
}

fn response(outs: &[Output], id: RequestId) -> Option<Result<Bytes, RemoteError>> {
    outs.iter().find_map(|o| match o {
        Output::Deliver(Delivery::Response { id: i, result }) if *i == id => Some(result.clone()),
        _ => None,
    })
}

/// Every server it reaches refuses as busy: the call is passed on 8 times (9 servers asked),
/// then the last refusal is the answer; a tenth server is never asked.
#[test]
fn a_refused_call_is_passed_on_eight_times_then_fails() {
    let (mut n, now) = with_servers(10);
    let id = call_math(&mut n, Duration::from_secs(5), now);
    let mut outs = drain(&mut n);
    let mut asked_conns = Vec::new();
    while let Some(conn) = asked(&outs, id) {
        assert!(!asked_conns.contains(&conn), "{conn:?} asked twice");
        asked_conns.push(conn);
        let refusal = Message::Response {
            id: id.0,
            result: Err(RemoteError::Busy),
        };
        n.handle_bytes(conn, &frame(&refusal), now);
        outs = drain(&mut n);
        if let Some(result) = response(&outs, id) {
            assert_eq!(result, Err(RemoteError::Busy));
            break;
        }
    }
    assert_eq!(asked_conns.len(), 9, "servers asked: {asked_conns:?}");
    assert!(response(&outs, id).is_some(), "the caller got no answer");
}

/// A call whose server is lost after it was passed on 8 times fails as `Disconnected`, though
/// other servers remain.
#[test]
fn a_call_lost_after_eight_tries_is_not_moved_again() {
    let (mut n, now) = with_servers(11);
    let id = call_math(&mut n, Duration::from_secs(5), now);
    let mut outs = drain(&mut n);
    for _ in 0..8 {
        let conn = asked(&outs, id).expect("passed on");
        let refusal = Message::Response {
            id: id.0,
            result: Err(RemoteError::Busy),
        };
        n.handle_bytes(conn, &frame(&refusal), now);
        outs = drain(&mut n);
    }
    let ninth = asked(&outs, id).expect("a ninth server has it");
    n.handle_closed(ninth, now);
    let outs = drain(&mut n);
    assert_eq!(asked(&outs, id), None, "moved to a tenth server");
    assert_eq!(response(&outs, id), Some(Err(RemoteError::Disconnected)));
}

/// A server lost at the very instant of the call's deadline: the call fails, it is not moved.
#[test]
fn a_server_lost_at_the_deadline_ends_the_call() {
    let (mut n, now) = with_servers(3);
    let id = call_math(&mut n, Duration::from_secs(1), now);
    let outs = drain(&mut n);
    let first = asked(&outs, id).expect("sent");
    n.handle_closed(first, now + Duration::from_secs(1));
    let outs = drain(&mut n);
    assert_eq!(asked(&outs, id), None, "moved past its deadline");
    assert_eq!(response(&outs, id), Some(Err(RemoteError::Disconnected)));

    // A moment before its deadline it moves to another server.
    let id = call_math(&mut n, Duration::from_secs(1), now);
    let outs = drain(&mut n);
    let first = asked(&outs, id).expect("sent");
    n.handle_closed(first, now + Duration::from_millis(999));
    let outs = drain(&mut n);
    assert!(asked(&outs, id).is_some(), "not moved before its deadline");
    assert_eq!(response(&outs, id), None);
}

/// Calls pending at shutdown fail as `Disconnected`, each counted as a call error.
#[test]
fn shutdown_fails_pending_calls_and_counts_them() {
    let (mut n, now) = with_servers(1);
    let a = call_math(&mut n, Duration::from_secs(5), now);
    let b = call_math(&mut n, Duration::from_secs(5), now);
    // And one that waits for a server of a service nobody offers yet.
    let c = call_named(&mut n, "other", Duration::from_secs(5), now);
    drain(&mut n);
    assert_eq!(n.counters().call_errors, 0);
    n.shutdown(now);
    let outs = drain(&mut n);
    for id in [a, b, c] {
        assert_eq!(response(&outs, id), Some(Err(RemoteError::Disconnected)));
    }
    assert_eq!(n.counters().call_errors, 3);
}

fn search(origin: u128, id: u64) -> Message {
    Message::FindService(crate::message::ServiceSearch {
        id,
        origin: NodeId(origin),
        origin_addr: addr(9500),
        service: "math".into(),
        ttl: 5,
    })
}

fn searches_sent(outs: &[Output], conn: ConnId) -> usize {
    sent(outs, conn)
        .iter()
        .filter(|m| matches!(m, Message::FindService(_)))
        .count()
}

/// A search is passed on once however many peers bring it; one claiming to come from this
/// node (an id it never used) is not passed on at all.
#[test]
fn a_service_search_is_passed_on_once_and_never_as_our_own() {
    let (mut n, now) = node(Config::default());
    for (c, id) in [(1, 7), (2, 8), (3, 9)] {
        peer(&mut n, c, id, &[], now);
    }
    n.handle_bytes(ConnId(1), &frame(&search(50, 1)), now);
    let outs = drain(&mut n);
    assert_eq!(searches_sent(&outs, ConnId(1)), 0, "sent back");
    assert_eq!(searches_sent(&outs, ConnId(2)), 1);
    assert_eq!(searches_sent(&outs, ConnId(3)), 1);
    n.handle_bytes(ConnId(2), &frame(&search(50, 1)), now);
    let outs = drain(&mut n);
    assert_eq!(searches_sent(&outs, ConnId(1)), 0, "passed on twice");
    assert_eq!(searches_sent(&outs, ConnId(3)), 0, "passed on twice");

    let ours = n.id().0;
    n.handle_bytes(ConnId(1), &frame(&search(ours, 999)), now);
    let outs = drain(&mut n);
    assert_eq!(
        searches_sent(&outs, ConnId(2)),
        0,
        "our own search passed on"
    );
}

fn forwarded(outs: &[Output], conn: ConnId) -> Vec<crate::message::ServiceSearch> {
    sent(outs, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::FindService(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// A search is passed on with one hop less, never back to the peer it came from nor to its
/// origin; a search from a neighbour that announced a wildcard address goes on with the
/// address the neighbour is reached at, one relayed by another node unchanged.
#[test]
fn a_service_search_is_passed_on_with_a_hop_less_and_a_reachable_origin() {
    let (mut n, now) = node(Config::default());
    for (c, id) in [(1, 7), (2, 8), (3, 9)] {
        peer(&mut n, c, id, &[], now);
    }
    let mut s = crate::message::ServiceSearch {
        id: 1,
        origin: NodeId(7),
        origin_addr: "0.0.0.0:9500".parse().unwrap(),
        service: "math".into(),
        ttl: 5,
    };
    n.handle_bytes(ConnId(1), &frame(&Message::FindService(s.clone())), now);
    let outs = drain(&mut n);
    assert!(
        forwarded(&outs, ConnId(1)).is_empty(),
        "sent back to its origin"
    );
    let on = forwarded(&outs, ConnId(2));
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].ttl, 4);
    assert_eq!(on[0].origin_addr, SocketAddr::new(addr(40001).ip(), 9500));

    // Relayed by 8 for origin 50 (not a neighbour): unchanged but for the hop, and not sent
    // back to 8.
    s.id = 2;
    s.origin = NodeId(50);
    s.origin_addr = "10.1.2.3:9500".parse().unwrap();
    n.handle_bytes(ConnId(2), &frame(&Message::FindService(s)), now);
    let outs = drain(&mut n);
    assert!(
        forwarded(&outs, ConnId(2)).is_empty(),
        "sent back to its sender"
    );
    let on = forwarded(&outs, ConnId(1));
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].origin_addr, "10.1.2.3:9500".parse().unwrap());
    assert_eq!(on[0].ttl, 4);
}

/// A server dials a seeker it is not linked to, while it has room for one more connection.
#[test]
fn a_server_dials_a_seeker_within_max_edges() {
    for (max_edges, dials) in [(2, false), (3, true)] {
        let (mut n, now) = node(Config::default().max_edges(max_edges));
        n.serve("math", now).unwrap();
        peer(&mut n, 1, 7, &[], now);
        peer(&mut n, 2, 8, &[], now);
        let s = crate::message::ServiceSearch {
            id: 1,
            origin: NodeId(50),
            origin_addr: "10.1.2.3:9500".parse().unwrap(),
            service: "math".into(),
            ttl: 5,
        };
        n.handle_bytes(ConnId(1), &frame(&Message::FindService(s)), now);
        let outs = drain(&mut n);
        let dialed = outs.iter().any(
            |o| matches!(o, Output::Dial { addr, .. } if *addr == "10.1.2.3:9500".parse().unwrap()),
        );
        assert_eq!(dialed, dials, "max_edges {max_edges}");
    }
}

/// A server that arrives while a call is with another server does not get it too.
#[test]
fn a_new_server_takes_only_calls_that_wait() {
    let (mut n, now) = with_servers(1);
    let id = call_math(&mut n, Duration::from_secs(5), now);
    assert_eq!(asked(&drain(&mut n), id), Some(ConnId(1)));
    let mut h = hello(500, &[]);
    h.services = vec!["math".into()];
    n.handle_connected(ConnId(9), addr(40009), Direction::Inbound, now);
    n.handle_bytes(ConnId(9), &frame(&Message::Hello(h)), now);
    assert_eq!(asked(&drain(&mut n), id), None, "sent twice");
}

/// A search whose timer is handled late still ends, saying no server was found.
#[test]
fn a_search_handled_late_ends() {
    let (mut n, now) = node(Config::default().discovery_timeout(Duration::from_secs(1)));
    peer(&mut n, 1, 7, &[], now);
    assert_eq!(n.seek_service("math", now), Ok(None));
    drain(&mut n);
    n.handle_timeout(now + Duration::from_secs(5));
    let outs = drain(&mut n);
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::Deliver(Delivery::ServiceFound { service, peer: None }) if service == "math"
        )),
        "{outs:?}"
    );
}

/// A search that finds no server fails the calls waiting for that service, not those waiting
/// for another one.
#[test]
fn a_failed_search_fails_only_the_calls_for_its_service() {
    let (mut n, now) = node(Config::default().discovery_timeout(Duration::from_secs(1)));
    peer(&mut n, 1, 7, &[], now);
    let math = call_math(&mut n, Duration::from_secs(5), now);
    let later = now + Duration::from_millis(500);
    let other = call_named(&mut n, "other", Duration::from_secs(5), later);
    drain(&mut n);
    n.handle_timeout(now + Duration::from_secs(1));
    let outs = drain(&mut n);
    assert_eq!(
        response(&outs, math),
        Some(Err(RemoteError::NotFound("math".into())))
    );
    assert_eq!(response(&outs, other), None, "failed with another's search");
    n.handle_timeout(later + Duration::from_secs(1));
    let outs = drain(&mut n);
    assert_eq!(
        response(&outs, other),
        Some(Err(RemoteError::NotFound("other".into())))
    );
}

/// The largest arguments a call takes, beside the longest service name and path, fit the
/// request's frame (with the largest id and deadline): the server receives it. A byte more is
/// refused at once, never dropped unsent.
#[test]
fn a_call_of_the_largest_arguments_and_longest_names_reaches_its_server() {
    let (mut n, now) = node(Config::default());
    let cfg = n.config().clone();
    let (service, path) = ("s".repeat(cfg.max_name_len), "p".repeat(cfg.max_name_len));
    let mut h = hello(100, &[]);
    h.services = vec![service.clone()];
    n.handle_connected(ConnId(1), addr(40001), Direction::Inbound, now);
    n.handle_bytes(ConnId(1), &frame(&Message::Hello(h)), now);
    drain(&mut n);
    // Ids as large as they get.
    n.next_request = u64::MAX - 10;
    let call = |n: &mut Node, len: usize| {
        let what = RemoteCall {
            service: &service,
            path: &path,
            kind: CallKind::Call,
            args: Bytes::from(vec![0xAB; len]),
        };
        n.call_service(what, Some(Duration::from_secs(86_400)), now)
    };
    let Err(CommandError::PayloadTooLarge { max, .. }) = call(&mut n, cfg.max_frame_len) else {
        panic!("arguments of a whole frame taken");
    };
    assert_eq!(max, cfg.max_frame_len - 128 - 2 * cfg.max_name_len);
    assert!(matches!(
        call(&mut n, max + 1),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    let id = call(&mut n, max).unwrap();
    assert_eq!(asked(&drain(&mut n), id), Some(ConnId(1)));
}

/// An application's error text longer than a frame holds is cut, and the caller still gets
/// its answer.
#[test]
fn an_error_text_too_long_for_a_frame_is_cut_and_still_answers() {
    let (mut n, now) = node(Config::default());
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    let request = Message::Request {
        id: 1,
        service: "s".into(),
        path: "p".into(),
        kind: CallKind::Call,
        args: Bytes::new(),
        timeout_ms: Some(1500),
    };
    n.handle_bytes(ConnId(1), &frame(&request), now);
    drain(&mut n);
    // Two-byte characters after one of one byte: the cut falls inside one, and moves before it.
    let max = n.config().max_frame_len;
    let text = format!("x{}", "é".repeat(max));
    n.respond(NodeId(7), 1, Err(RemoteError::Failed(text)), now)
        .unwrap();
    let answers = sent(&drain(&mut n), ConnId(1));
    let [Message::Response {
        id: 1,
        result: Err(RemoteError::Failed(cut)),
    }] = &answers[..]
    else {
        panic!("no answer: {answers:?}");
    };
    assert!(
        cut.len() <= max - 512 && cut.len() >= max - 513,
        "{}",
        cut.len()
    );
    assert!(cut.starts_with('x') && cut.chars().skip(1).all(|c| c == 'é'));
}
