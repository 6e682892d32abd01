//! Bounds the documents promise, each checked at its edge: pending calls and status queries,
//! the addresses dialed within `dial_interval`, the longest deadline a caller may give, and the
//! discovery pool's size reaching the core.

use super::behaviour::{dials, discovery_frame};
use super::*;
use crate::message::ServiceSearch;

fn call(n: &mut Node, now: Instant) -> Result<RequestId, CommandError> {
    n.call(
        NodeId(7),
        RemoteCall {
            service: "s",
            path: "m",
            kind: CallKind::Call,
            args: Bytes::from_static(&[0xf6]),
        },
        Some(Duration::from_secs(5)),
        now,
    )
}

use crate::id::RequestId;

#[test]
fn pending_calls_stop_at_max_pending_calls_and_free_their_place_when_answered() {
    let (mut n, now) = node(Config::default().max_pending_calls(3));
    peer(&mut n, 1, 7, &[], now);
    let ids: Vec<RequestId> = (0..3).map(|_| call(&mut n, now).unwrap()).collect();
    assert_eq!(
        call(&mut n, now),
        Err(CommandError::Limit("max_pending_calls"))
    );
    drain(&mut n);
    let answer = frame(&Message::Response {
        id: ids[0].0,
        result: Ok(Bytes::from_static(&[0xf6])),
    });
    n.handle_bytes(ConnId(1), &answer, now);
    drain(&mut n);
    assert!(
        call(&mut n, now).is_ok(),
        "an answered call frees its place"
    );
    assert!(call(&mut n, now).is_err());
}

#[test]
fn status_queries_stop_at_max_pending_status_and_free_their_place_when_they_end() {
    let (mut n, now) = node(Config::default().max_pending_status(2));
    n.query_status(addr(1), now).unwrap();
    n.query_status(addr(2), now).unwrap();
    assert_eq!(
        n.query_status(addr(3), now),
        Err(CommandError::Limit("max_pending_status"))
    );
    // Unanswered, they end at the status timeout and make room.
    n.handle_timeout(now + Duration::from_secs(60));
    drain(&mut n);
    assert!(n
        .query_status(addr(3), now + Duration::from_secs(60))
        .is_ok());
}

#[test]
fn at_most_1024_addresses_are_dialed_within_the_dial_interval() {
    let interval = Duration::from_millis(500);
    let (mut n, now) = node(
        Config::default()
            .dial_interval(interval)
            .max_edges(2000)
            .max_handshakes(10),
    );
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    // Seekers of `s` under 1,100 made-up origins and addresses: each is an address to dial.
    let search = |i: u16| {
        frame(&Message::FindService(ServiceSearch {
            id: 1,
            origin: NodeId(10_000 + u128::from(i)),
            origin_addr: addr(20_000 + i),
            service: "s".into(),
            ttl: 1,
        }))
    };
    let mut dialed = 0;
    for i in 0..1100u16 {
        n.handle_bytes(ConnId(1), &search(i), now);
        let outs = drain(&mut n);
        for o in &outs {
            if let Output::Dial { conn, .. } = o {
                n.handle_dial_failed(*conn, "refused", now);
            }
        }
        dialed += dials(&outs).len();
        drain(&mut n);
    }
    assert_eq!(dialed, super::liveness::MAX_RECENT_DIALS);
    // Once the interval has passed, new addresses are dialed again.
    n.handle_bytes(ConnId(1), &search(1100), now + interval);
    assert_eq!(dials(&drain(&mut n)), vec![addr(21_100)]);
}

#[test]
fn a_callers_deadline_is_honoured_up_to_a_day() {
    let (mut n, now) = node(Config::default());
    n.serve("s", now).unwrap();
    peer(&mut n, 1, 7, &[], now);
    drain(&mut n);
    let day = Duration::from_secs(24 * 3600);
    for (id, ms, want) in [
        (1, Some(1500), Some(now + Duration::from_millis(1500))),
        (2, Some(u64::MAX), Some(now + day)),
        (3, Some(day.as_millis() as u64 + 1), Some(now + day)),
        (4, None, None),
    ] {
        let request = frame(&Message::Request {
            id,
            service: "s".into(),
            path: "m".into(),
            kind: CallKind::Call,
            args: Bytes::from_static(&[0xf6]),
            timeout_ms: ms,
        });
        n.handle_bytes(ConnId(1), &request, now);
        let deadline = drain(&mut n).into_iter().find_map(|o| match o {
            Output::Deliver(Delivery::Request { deadline, .. }) => Some(deadline),
            _ => None,
        });
        assert_eq!(deadline, Some(want), "timeout_ms {ms:?}");
    }
}

#[test]
fn the_discovery_pool_setting_bounds_what_is_remembered() {
    // A discovery heard again is forwarded again only once the pool forgot it.
    for (pool, forwarded_again) in [(2, true), (1024, false)] {
        let (mut n, now) = node(Config::default().discovery_pool(pool));
        peer(&mut n, 1, 7, &[], now);
        peer(&mut n, 2, 8, &[], now);
        drain(&mut n);
        let forwards = |n: &mut Node, origin: u128, id: u64| {
            n.handle_bytes(ConnId(1), &discovery_frame(origin, id, "t", 5, 6000), now);
            sent(&drain(n), ConnId(2))
                .iter()
                .filter(|m| matches!(m, Message::Discovery(_)))
                .count()
        };
        assert_eq!(forwards(&mut n, 100, 1), 1);
        assert_eq!(forwards(&mut n, 100, 1), 0, "a repeat is dropped");
        forwards(&mut n, 101, 1);
        forwards(&mut n, 102, 1);
        assert_eq!(
            forwards(&mut n, 100, 1) == 1,
            forwarded_again,
            "pool of {pool}"
        );
    }
}
