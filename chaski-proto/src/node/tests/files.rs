//! Files, driven by hand: what a receiver delivers and refuses (every hostile offer, chunk and
//! end), when it asks the sender again, what a sender answers, the bulk lane's place behind
//! other frames, and a relay that stops reading while a lane is full.

use super::*;
use crate::files::{
    FileChunk, FileEnd, FileError, FileGone, FileKey, FileLimits, FileOffer, FileWant, MIN_CHUNK,
};

const CHUNK: u32 = MIN_CHUNK;
const SENDER: u128 = 7;

fn offer(id: u64, seq: u64, size: Option<u64>) -> FileOffer {
    FileOffer {
        origin: NodeId(SENDER),
        seq,
        topic: "files/logs".into(),
        ttl: 8,
        hops: 1,
        id,
        name: "app.log".into(),
        size,
        chunk: CHUNK,
        meta: Bytes::from_static(b"m"),
        addr: Some(addr(9007)),
    }
}

fn chunk(id: u64, seq: u64, index: u64, len: usize) -> FileChunk {
    FileChunk {
        origin: NodeId(SENDER),
        seq,
        topic: "files/logs".into(),
        ttl: 8,
        hops: 1,
        id,
        index,
        data: Bytes::from(vec![index as u8; len]),
        repair: false,
    }
}

fn end(id: u64, seq: u64, size: u64) -> FileEnd {
    FileEnd {
        origin: NodeId(SENDER),
        seq,
        topic: "files/logs".into(),
        ttl: 8,
        hops: 1,
        id,
        size,
        sha256: Some(Bytes::from(vec![1; 32])),
        repair: false,
    }
}

/// A receiver of `files/**` with an edge from the sender (conn 1).
fn receiver(limits: FileLimits) -> (Node, Instant) {
    let (mut n, now) = node(Config::default());
    n.subscribe("files/**", now).unwrap();
    n.accept_files("files/**", limits).unwrap();
    peer(&mut n, 1, SENDER, &[], now);
    (n, now)
}

fn feed(n: &mut Node, conn: u64, msg: Message, now: Instant) -> Vec<Output> {
    n.handle_bytes(ConnId(conn), &frame(&msg), now);
    drain(n)
}

fn deliveries(outs: &[Output]) -> Vec<&Delivery> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn failed(outs: &[Output]) -> Option<FileError> {
    outs.iter().find_map(|o| match o {
        Output::Deliver(Delivery::FileFailed { error, .. }) => Some(error.clone()),
        _ => None,
    })
}

fn key(id: u64) -> FileKey {
    FileKey {
        origin: NodeId(SENDER),
        id,
    }
}

#[test]
fn a_whole_transfer_is_delivered_in_place_once_and_completes() {
    let (mut n, now) = receiver(FileLimits::default());
    let size = 2 * u64::from(CHUNK) + 10;
    let outs = feed(&mut n, 1, Message::FileOffer(offer(1, 1, Some(size))), now);
    assert!(matches!(
        deliveries(&outs)[..],
        [Delivery::FileOffered { key: k, name, size: Some(s), chunk: c, .. }]
            if *k == key(1) && name == "app.log" && *s == size && *c == CHUNK
    ));
    // Out of order, one twice (relayed twice: a new seq), the last one short.
    let mut got = Vec::new();
    for (seq, index, len) in [(2, 1, CHUNK as usize), (3, 2, 10), (4, 1, CHUNK as usize)] {
        let outs = feed(
            &mut n,
            1,
            Message::FileChunk(chunk(1, seq, index, len)),
            now,
        );
        for d in deliveries(&outs) {
            if let Delivery::FileData {
                key: k,
                offset,
                data,
            } = d
            {
                assert_eq!(*k, key(1));
                got.push((*offset, data.len()));
            }
        }
    }
    assert_eq!(
        got,
        [
            (u64::from(CHUNK), CHUNK as usize),
            (2 * u64::from(CHUNK), 10)
        ]
    );
    assert_eq!(n.incoming_files().count(), 1);
    let outs = feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 5, 0, CHUNK as usize)),
        now,
    );
    assert!(
        !deliveries(&outs)
            .iter()
            .any(|d| matches!(d, Delivery::FileComplete { .. })),
        "complete before its end arrived"
    );
    let outs = feed(&mut n, 1, Message::FileEnd(end(1, 6, size)), now);
    assert!(matches!(
        deliveries(&outs)[..],
        [Delivery::FileComplete { key: k, size: s, sha256 }] if *k == key(1) && *s == size && sha256.len() == 32
    ));
    assert_eq!(
        n.incoming_files().count(),
        0,
        "a finished transfer is forgotten"
    );
    // Frames of the finished transfer change nothing.
    let outs = feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 7, 0, CHUNK as usize)),
        now,
    );
    assert!(deliveries(&outs).is_empty());
}

#[test]
fn an_empty_file_completes_at_its_end() {
    let (mut n, now) = receiver(FileLimits::default());
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, Some(0))), now);
    let outs = feed(&mut n, 1, Message::FileEnd(end(1, 2, 0)), now);
    assert!(matches!(
        deliveries(&outs)[..],
        [Delivery::FileComplete { size: 0, .. }]
    ));
}

#[test]
fn hostile_chunks_and_ends_fail_the_transfer_and_nothing_else() {
    let full = CHUNK as usize;
    let size = 2 * u64::from(CHUNK);
    type Case = (&'static str, Vec<Message>, fn(&FileError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "more chunks than the size allows",
            vec![Message::FileChunk(chunk(1, 2, 2, full))],
            |e| matches!(e, FileError::Malformed(_)),
        ),
        (
            "a short chunk in the middle",
            vec![Message::FileChunk(chunk(1, 2, 0, 10))],
            |e| matches!(e, FileError::Malformed(_)),
        ),
        (
            "a chunk larger than the chunk size",
            vec![Message::FileChunk(chunk(1, 2, 0, full + 1))],
            |e| matches!(e, FileError::Malformed(_)),
        ),
        (
            "an empty chunk",
            vec![Message::FileChunk(chunk(1, 2, 0, 0))],
            |e| matches!(e, FileError::Malformed(_)),
        ),
        (
            "a chunk at the end of the address space",
            vec![Message::FileChunk(chunk(1, 2, u64::MAX, full))],
            |e| matches!(e, FileError::TooLarge(_)),
        ),
        (
            "an end whose size lies",
            vec![Message::FileEnd(end(1, 2, size + 1))],
            |e| matches!(e, FileError::Malformed(_)),
        ),
        (
            "an end without a hash (the sender gave up)",
            vec![Message::FileEnd(FileEnd {
                sha256: None,
                ..end(1, 2, size)
            })],
            |e| matches!(e, FileError::Abandoned(_)),
        ),
    ];
    for (what, msgs, expected) in cases {
        let (mut n, now) = receiver(FileLimits::default());
        feed(&mut n, 1, Message::FileOffer(offer(1, 1, Some(size))), now);
        // A second transfer beside it is not touched.
        feed(
            &mut n,
            1,
            Message::FileOffer(offer(2, 100, Some(size))),
            now,
        );
        let mut outs = Vec::new();
        for m in msgs {
            outs.extend(feed(&mut n, 1, m, now));
        }
        let error = failed(&outs).unwrap_or_else(|| panic!("{what}: not failed"));
        assert!(expected(&error), "{what}: {error:?}");
        assert_eq!(n.incoming_files().collect::<Vec<_>>(), [key(2)], "{what}");
        assert!(n.is_connected_to(NodeId(SENDER)), "{what}: the edge went");
        let outs = feed(&mut n, 1, Message::FileChunk(chunk(1, 50, 0, full)), now);
        assert!(
            deliveries(&outs).is_empty(),
            "{what}: delivered after failing"
        );
        // Its offer, sent again, is not taken anew.
        let outs = feed(&mut n, 1, Message::FileOffer(offer(1, 51, Some(size))), now);
        assert!(deliveries(&outs).is_empty(), "{what}: offered anew");
    }
}

#[test]
fn an_end_that_says_less_than_the_chunks_that_came_fails() {
    let (mut n, now) = receiver(FileLimits::default());
    // No size offered (a stream): two chunks came, the end says one.
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
    feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 2, 1, CHUNK as usize)),
        now,
    );
    let outs = feed(
        &mut n,
        1,
        Message::FileEnd(end(1, 3, u64::from(CHUNK))),
        now,
    );
    assert!(matches!(failed(&outs), Some(FileError::Malformed(_))));
    // Exactly enough is accepted.
    let (mut n, now) = receiver(FileLimits::default());
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
    feed(&mut n, 1, Message::FileChunk(chunk(1, 2, 1, 1)), now);
    let outs = feed(
        &mut n,
        1,
        Message::FileEnd(end(1, 3, u64::from(CHUNK) + 1)),
        now,
    );
    assert_eq!(failed(&outs), None);
}

#[test]
fn offers_past_the_receivers_bounds_are_refused_and_kept_nowhere() {
    let limits = FileLimits {
        max_size: 10 * u64::from(CHUNK),
        max_in_flight: 15 * u64::from(CHUNK),
        max_transfers: 2,
    };
    let bad: Vec<(&str, FileOffer)> = vec![
        ("too large", offer(1, 1, Some(limits.max_size + 1))),
        (
            "a chunk under the minimum",
            FileOffer {
                chunk: MIN_CHUNK - 1,
                ..offer(1, 1, Some(10))
            },
        ),
        (
            "a chunk that cannot fit a frame",
            FileOffer {
                chunk: u32::MAX,
                ..offer(1, 1, Some(10))
            },
        ),
        (
            "an empty name",
            FileOffer {
                name: String::new(),
                ..offer(1, 1, Some(10))
            },
        ),
        (
            "a name of 10,000 components",
            FileOffer {
                name: "a/".repeat(10_000),
                ..offer(1, 1, Some(10))
            },
        ),
        (
            "a topic nobody accepts files on",
            FileOffer {
                topic: "other".into(),
                ..offer(1, 1, Some(10))
            },
        ),
    ];
    for (what, o) in bad {
        let (mut n, now) = receiver(limits);
        let accepted = o.topic.starts_with("files/");
        let outs = feed(&mut n, 1, Message::FileOffer(o), now);
        // Refused with a reason on a topic the node takes files on; silently elsewhere.
        let refused = usize::from(accepted);
        let ds = deliveries(&outs);
        assert_eq!(ds.len(), refused, "{what}: {ds:?}");
        assert!(
            ds.iter().all(|d| matches!(d, Delivery::FileRefused { .. })),
            "{what}: {ds:?}"
        );
        assert_eq!(n.counters().files_refused, refused as u64, "{what}");
        assert_eq!(n.incoming_files().count(), 0, "{what}: kept");
        assert!(n.is_connected_to(NodeId(SENDER)), "{what}: the edge went");
    }
    // An offer sent again is refused once.
    let (mut n, now) = receiver(limits);
    let too_large = offer(1, 1, Some(limits.max_size + 1));
    feed(&mut n, 1, Message::FileOffer(too_large.clone()), now);
    let again = FileOffer {
        seq: 2,
        ..too_large
    };
    let outs = feed(&mut n, 1, Message::FileOffer(again), now);
    assert!(deliveries(&outs).is_empty(), "refused twice");
    // The bound on transfers and on bytes at once, exactly.
    let (mut n, now) = receiver(limits);
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(limits.max_size))),
        now,
    );
    let over = 5 * u64::from(CHUNK) + 1;
    let outs = feed(&mut n, 1, Message::FileOffer(offer(2, 2, Some(over))), now);
    assert_eq!(n.incoming_files().count(), 1, "past max_in_flight taken");
    assert!(matches!(
        deliveries(&outs)[..],
        [Delivery::FileRefused { error: FileError::NotAccepted(_), size: Some(s), .. }] if *s == over
    ));
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(3, 3, Some(over - 1))),
        now,
    );
    assert_eq!(
        n.incoming_files().count(),
        2,
        "max_in_flight exactly refused"
    );
    feed(&mut n, 1, Message::FileOffer(offer(4, 4, Some(1))), now);
    assert_eq!(n.incoming_files().count(), 2, "past max_transfers taken");
    // Limits past what the bookkeeping bounds are refused.
    let huge = FileLimits {
        max_size: u64::MAX,
        ..limits
    };
    assert!(n.accept_files("x", huge).is_err());
}

#[test]
fn a_chunk_for_an_unknown_transfer_or_a_repair_from_a_stranger_is_ignored() {
    let (mut n, now) = receiver(FileLimits::default());
    let outs = feed(&mut n, 1, Message::FileChunk(chunk(9, 1, 0, 10)), now);
    assert!(deliveries(&outs).is_empty());
    feed(&mut n, 1, Message::FileOffer(offer(1, 2, Some(10))), now);
    // A third node claims a repair of the sender's transfer.
    peer(&mut n, 2, 8, &[], now);
    let forged = FileChunk {
        repair: true,
        seq: 0,
        ..chunk(1, 0, 0, 10)
    };
    let outs = feed(&mut n, 2, Message::FileChunk(forged.clone()), now);
    assert!(
        deliveries(&outs).is_empty(),
        "a repair from another node taken"
    );
    let outs = feed(&mut n, 1, Message::FileChunk(forged), now);
    assert!(deliveries(&outs)
        .iter()
        .any(|d| matches!(d, Delivery::FileData { .. })));
    // A "gone" from another node changes nothing either.
    let gone = FileGone {
        origin: NodeId(SENDER),
        id: 1,
    };
    feed(&mut n, 2, Message::FileGone(gone.clone()), now);
    assert_eq!(n.incoming_files().count(), 1);
    let outs = feed(&mut n, 1, Message::FileGone(gone), now);
    assert!(matches!(failed(&outs), Some(FileError::Abandoned(_))));
}

#[test]
fn file_frames_on_a_pattern_or_the_empty_topic_drop_the_peer() {
    for topic in ["files/*", ""] {
        let (mut n, now) = receiver(FileLimits::default());
        let o = FileOffer {
            topic: topic.into(),
            ..offer(1, 1, Some(10))
        };
        let outs = feed(&mut n, 1, Message::FileOffer(o), now);
        assert!(closed(&outs, ConnId(1)), "{topic:?}");
    }
}

#[test]
fn a_quiet_transfer_asks_the_sender_for_what_it_misses_then_gives_up() {
    let (mut n, now) = receiver(FileLimits::default());
    let cfg = n.config().clone();
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(4 * u64::from(CHUNK)))),
        now,
    );
    feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 2, 1, CHUNK as usize)),
        now,
    );
    // Nothing for file_repair_after: ask for 0 and 2..4.
    let at = now + cfg.file_repair_after;
    n.handle_timeout(at - Duration::from_millis(1));
    assert!(
        sent(&drain(&mut n), ConnId(1)).is_empty(),
        "asked too early"
    );
    n.handle_timeout(at);
    let wants: Vec<FileWant> = sent(&drain(&mut n), ConnId(1))
        .into_iter()
        .filter_map(|m| match m {
            Message::FileWant(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(
        wants,
        [FileWant {
            origin: NodeId(SENDER),
            id: 1,
            ranges: vec![(0, 1), (2, 4)],
            end: true,
        }]
    );
    // Repairs count as progress; the full window in asks for the next at once.
    let mut last = at;
    for index in [0, 2, 3] {
        let repair = FileChunk {
            repair: true,
            seq: 0,
            ..chunk(1, 0, index, CHUNK as usize)
        };
        last = at + Duration::from_millis(10);
        feed(&mut n, 1, Message::FileChunk(repair), last);
    }
    n.handle_timeout(last);
    let msgs = sent(&drain(&mut n), ConnId(1));
    assert!(
        matches!(&msgs[..], [Message::FileWant(w)] if w.ranges.is_empty() && w.end),
        "{msgs:?}"
    );
    // Then nothing at all for file_timeout: failed as stalled.
    let dead = last + cfg.file_timeout;
    n.handle_timeout(dead - Duration::from_millis(1));
    assert_eq!(failed(&drain(&mut n)), None);
    n.handle_timeout(dead);
    assert!(matches!(
        failed(&drain(&mut n)),
        Some(FileError::Stalled(_))
    ));
}

#[test]
fn without_an_edge_to_the_sender_the_receiver_dials_it_and_asks_once_connected() {
    let (mut n, now) = node(Config::default());
    n.subscribe("files/**", now).unwrap();
    n.accept_files("files/**", FileLimits::default()).unwrap();
    // The offer comes through a relay (peer 5), with the sender's address.
    peer(&mut n, 1, 5, &["files/**"], now);
    let relayed = FileOffer {
        hops: 2,
        ..offer(1, 1, Some(2 * u64::from(CHUNK)))
    };
    feed(&mut n, 1, Message::FileOffer(relayed), now);
    feed(
        &mut n,
        1,
        Message::FileEnd(end(1, 2, 2 * u64::from(CHUNK))),
        now,
    );
    n.handle_timeout(now);
    let outs = drain(&mut n);
    let dialed = behaviour::dials(&outs);
    assert_eq!(dialed, [addr(9007)], "the sender is dialed at its address");
    let conn = outs
        .iter()
        .find_map(|o| match o {
            Output::Dial { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    // One dial at a time.
    n.handle_timeout(now + n.config().file_repair_after);
    assert!(behaviour::dials(&drain(&mut n)).is_empty());
    n.handle_connected(conn, addr(9007), Direction::Outbound, now);
    n.handle_bytes(conn, &frame(&Message::Hello(hello(SENDER, &[]))), now);
    let outs = drain(&mut n);
    n.handle_timeout(now);
    let mut msgs = sent(&outs, conn);
    msgs.extend(sent(&drain(&mut n), conn));
    assert!(
        msgs.iter()
            .any(|m| matches!(m, Message::FileWant(w) if w.ranges == [(0, 2)] && !w.end)),
        "{msgs:?}"
    );
}

/// A sender with an edge to a receiver of `files/**` (conn 1).
fn sender() -> (Node, Instant) {
    let (mut n, now) = node(Config::default().file_keep(Duration::from_secs(5)));
    peer(&mut n, 1, 9, &["files/**"], now);
    (n, now)
}

#[test]
fn a_sender_checks_its_own_transfer_and_forgets_it_after_file_keep() {
    let (mut n, now) = sender();
    let c = u64::from(CHUNK);
    assert!(n
        .offer_file("files/a", "a", None, MIN_CHUNK - 1, Bytes::new(), now)
        .is_err());
    assert!(n
        .offer_file("files/a", "", None, CHUNK, Bytes::new(), now)
        .is_err());
    assert!(n
        .offer_file("files/*", "a", None, CHUNK, Bytes::new(), now)
        .is_err());
    let id = n
        .offer_file("files/a", "a", Some(c + 1), CHUNK, Bytes::new(), now)
        .unwrap();
    let chunk_of = |len: usize| Bytes::from(vec![0; len]);
    assert!(matches!(
        n.send_chunk(id, chunk_of(CHUNK as usize + 1), now),
        Err(CommandError::BadChunk(_))
    ));
    n.send_chunk(id, chunk_of(CHUNK as usize), now).unwrap();
    assert!(
        n.send_chunk(id, chunk_of(2), now).is_err(),
        "past the size offered"
    );
    assert!(n.end_file(id, Some([0; 32]), now).is_err(), "ended short");
    n.send_chunk(id, chunk_of(1), now).unwrap();
    assert!(
        n.send_chunk(id, chunk_of(1), now).is_err(),
        "a chunk after the last short one"
    );
    n.end_file(id, Some([3; 32]), now).unwrap();
    assert!(matches!(
        n.send_chunk(id, chunk_of(1), now),
        Err(CommandError::UnknownTransfer(_))
    ));
    let kinds: Vec<&str> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(_) => Some("offer"),
            Message::FileChunk(c) if !c.repair => Some("chunk"),
            Message::FileEnd(e) if e.sha256.as_deref() == Some(&[3; 32][..]) => Some("end"),
            _ => None,
        })
        .collect();
    // The offer again just before the end (for receivers that joined since).
    assert_eq!(kinds, ["offer", "chunk", "chunk", "offer", "end"]);
    // Kept for repairs until file_keep is over.
    n.handle_timeout(now + Duration::from_secs(5) - Duration::from_millis(1));
    assert_eq!(n.outgoing_files().count(), 1);
    n.handle_timeout(now + Duration::from_secs(5));
    assert!(drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::FileExpired { id: i }) if *i == id)));
    assert_eq!(n.outgoing_files().count(), 0);
}

#[test]
fn a_kept_transfer_expires_when_its_timer_is_handled_late() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", Some(0), CHUNK, Bytes::new(), now)
        .unwrap();
    n.end_file(id, Some([3; 32]), now).unwrap();
    n.handle_timeout(now + Duration::from_secs(60));
    assert!(drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::FileExpired { id: i }) if *i == id)));
    assert_eq!(n.outgoing_files().count(), 0);
}

#[test]
fn a_sender_offers_again_while_chunks_go_for_receivers_that_join_late() {
    let (mut n, now) = sender();
    let every = n.config().file_repair_after;
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    let data = Bytes::from(vec![0; CHUNK as usize]);
    n.send_chunk(id, data.clone(), now).unwrap();
    n.send_chunk(id, data.clone(), now + every / 2).unwrap();
    n.send_chunk(id, data, now + every).unwrap();
    let offers: Vec<u64> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(o) => Some(o.seq),
            _ => None,
        })
        .collect();
    assert_eq!(offers.len(), 2, "{offers:?}");
    assert_ne!(
        offers[0], offers[1],
        "an offer again has a new sequence number"
    );
}

#[test]
fn wants_are_bounded_to_what_was_sent_and_the_end_is_sent_again() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    for _ in 0..300 {
        n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
            .unwrap();
    }
    drain(&mut n);
    let want = FileWant {
        origin: n.id(),
        id,
        ranges: vec![(5, 3), (10, 1000), (u64::MAX - 1, u64::MAX)],
        end: true,
    };
    let outs = feed(&mut n, 1, Message::FileWant(want.clone()), now);
    let wanted: Vec<_> = deliveries(&outs)
        .into_iter()
        .filter_map(|d| match d {
            Delivery::FileWanted {
                peer,
                id: i,
                ranges,
            } if *i == id => Some((*peer, ranges.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        wanted,
        [(NodeId(9), vec![(10, 266)])],
        "bounded to 256 chunks"
    );
    assert!(
        !sent(&outs, ConnId(1))
            .iter()
            .any(|m| matches!(m, Message::FileEnd(_))),
        "an end sent before there is one"
    );
    n.end_file(id, Some([5; 32]), now).unwrap();
    drain(&mut n);
    let outs = feed(&mut n, 1, Message::FileWant(want), now);
    assert!(sent(&outs, ConnId(1)).iter().any(
        |m| matches!(m, Message::FileEnd(e) if e.repair && e.ttl == 1 && e.sha256.as_deref() == Some(&[5; 32][..]))
    ));
    // Repairs: only chunks that were sent, at their size, to an edge.
    let full = Bytes::from(vec![0; CHUNK as usize]);
    assert!(n
        .repair_chunk(NodeId(9), id, 300, full.clone(), now)
        .is_err());
    assert!(n
        .repair_chunk(NodeId(9), id, 3, full.slice(1..), now)
        .is_err());
    assert!(n.repair_chunk(NodeId(4), id, 3, full.clone(), now).is_err());
    n.repair_chunk(NodeId(9), id, 3, full, now).unwrap();
    assert!(sent(&drain(&mut n), ConnId(1))
        .iter()
        .any(|m| matches!(m, Message::FileChunk(c) if c.repair && c.index == 3 && c.ttl == 1)));
    // A want for a transfer the sender does not have: it is gone.
    let me = n.id();
    let outs = feed(
        &mut n,
        1,
        Message::FileWant(FileWant {
            origin: me,
            id: 77,
            ranges: vec![(0, 1)],
            end: false,
        }),
        now,
    );
    assert!(sent(&outs, ConnId(1))
        .iter()
        .any(|m| matches!(m, Message::FileGone(g) if g.id == 77)));
}

/// Takes the outputs, writing everything but what waits for `held`.
fn drain_but(n: &mut Node, held: ConnId, now: Instant) -> Vec<crate::Output> {
    let mut outs = Vec::new();
    while let Some(o) = n.poll_output() {
        if let crate::Output::Transmit { conn } = &o {
            if *conn != held {
                n.take_outbound(*conn, now);
            }
        }
        outs.push(o);
    }
    outs
}

#[test]
fn file_frames_wait_behind_publishes_and_a_full_lane_holds_the_sender() {
    let (mut n, now) = sender();
    let window = n.config().congestion_limit();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    let mut sent_chunks = 0;
    while !n.file_would_wait("files/a") {
        n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
            .unwrap();
        sent_chunks += 1;
        assert!(sent_chunks < 10_000, "never waits");
    }
    drain_but(&mut n, ConnId(1), now);
    assert!(n.outbound_len(ConnId(1)) > window);
    assert!(
        !n.publish_would_wait("files/a"),
        "a transfer makes publishes wait"
    );
    n.publish("files/a", Bytes::from_static(b"urgent"), now)
        .unwrap();
    // The publish leaves within the first writes, ahead of most of the transfer.
    let first = n.outbound(ConnId(1)).len();
    assert!(
        first < 2 * super::outbound::BULK_FEED,
        "{first} bytes ahead"
    );
    let mut d = FrameDecoder::new(1 << 24);
    d.extend(n.outbound(ConnId(1)));
    let msgs: Vec<Message> = std::iter::from_fn(|| d.next_frame().unwrap())
        .map(|b| decode_message(&b).unwrap())
        .collect();
    assert!(msgs.iter().any(|m| matches!(m, Message::Publish(_))));
    // Taken by the socket: the sender may go on, and is told so.
    let released = n.congestion_released();
    n.take_outbound(ConnId(1), now);
    assert!(!n.file_would_wait("files/a"));
    assert!(
        n.congestion_released() > released,
        "a waiting sender is never woken"
    );
}

#[test]
fn a_relay_stops_reading_the_source_while_a_receivers_lane_is_full() {
    let (mut n, now) = node(Config::default().root(true));
    peer(&mut n, 1, SENDER, &[], now);
    peer(&mut n, 2, 9, &["files/**"], now);
    let window = n.config().congestion_limit();
    let mut seq = 1;
    feed(&mut n, 1, Message::FileOffer(offer(1, seq, None)), now);
    let mut index = 0;
    while n.wants_read(ConnId(1)) {
        seq += 1;
        n.handle_bytes(
            ConnId(1),
            &frame(&Message::FileChunk(chunk(1, seq, index, CHUNK as usize))),
            now,
        );
        index += 1;
        drain_but(&mut n, ConnId(2), now);
        assert!(index < 10_000, "never paused");
    }
    // Not read is not silent: the source is not dropped as idle while it waits.
    let idle = n.config().idle_timeout;
    for k in 1..=4 {
        // The slow receiver still talks (it only reads slowly).
        let ping = Message::Ping {
            id: u64::from(k),
            padding: Bytes::new(),
        };
        n.handle_bytes(ConnId(2), &frame(&ping), now + idle * k);
        n.handle_timeout(now + idle * k);
        drain_but(&mut n, ConnId(2), now);
        assert!(!n.wants_read(ConnId(1)));
    }
    assert!(
        n.is_connected_to(NodeId(SENDER)),
        "the paused source was dropped as idle"
    );
    let held = n.outbound_len(ConnId(2));
    let most = window + super::outbound::BULK_FEED + 2 * CHUNK as usize;
    assert!(held > window && held < most, "{held}");
    // The receiver takes its bytes: the source is read again.
    let mut resumed = false;
    while n.outbound_len(ConnId(2)) > 0 {
        let k = n.outbound(ConnId(2)).len();
        n.advance(ConnId(2), k, now);
        resumed |= drain_but(&mut n, ConnId(2), now)
            .iter()
            .any(|o| matches!(o, crate::Output::Resume { conn } if *conn == ConnId(1)));
    }
    assert!(resumed && n.wants_read(ConnId(1)));
}

#[test]
fn under_skip_a_relay_skips_a_full_lane_and_keeps_reading() {
    let cfg = Config::default()
        .root(true)
        .on_congestion(crate::OnCongestion::Skip);
    let (mut n, now) = node(cfg);
    peer(&mut n, 1, SENDER, &[], now);
    peer(&mut n, 2, 9, &["files/**"], now);
    let window = n.config().congestion_limit();
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
    for index in 0..(2 * window / CHUNK as usize) as u64 {
        n.handle_bytes(
            ConnId(1),
            &frame(&Message::FileChunk(chunk(
                1,
                index + 2,
                index,
                CHUNK as usize,
            ))),
            now,
        );
        drain_but(&mut n, ConnId(2), now);
        assert!(n.wants_read(ConnId(1)));
    }
    let most = window + super::outbound::BULK_FEED + 2 * CHUNK as usize;
    assert!(n.outbound_len(ConnId(2)) < most);
    assert!(n.counters().congestion_skipped > 0);
}

#[test]
fn a_shutdown_sends_the_waiting_file_frames_before_its_goodbye() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    while !n.file_would_wait("files/a") {
        n.send_chunk(id, Bytes::from(vec![1; CHUNK as usize]), now)
            .unwrap();
    }
    n.end_file(id, Some([0; 32]), now).unwrap();
    drain_but(&mut n, ConnId(1), now);
    n.shutdown(now);
    let msgs = sent(&drain(&mut n), ConnId(1));
    let last_two: Vec<&str> = msgs
        .iter()
        .rev()
        .take(2)
        .map(|m| match m {
            Message::FileEnd(_) => "end",
            Message::Goodbye(_) => "goodbye",
            _ => "other",
        })
        .collect();
    assert_eq!(
        last_two,
        ["goodbye", "end"],
        "the end was dropped at the shutdown"
    );
}

/// Limits per pattern: up to `MAX_FILE_SIZE` exactly; accepting a pattern again replaces its
/// limits and keeps the others; refusing one pattern keeps the others.
#[test]
fn file_patterns_are_replaced_and_refused_one_at_a_time() {
    let (mut n, _) = node(Config::default());
    let limits = |max_size| FileLimits {
        max_size,
        ..FileLimits::default()
    };
    let patterns = |n: &Node| -> Vec<(String, u64)> {
        n.file_patterns
            .iter()
            .map(|(p, l)| (p.clone(), l.max_size))
            .collect()
    };
    let max = crate::files::MAX_FILE_SIZE;
    n.accept_files("a", limits(max)).unwrap();
    assert!(n.accept_files("x", limits(max + 1)).is_err());
    n.accept_files("b", limits(10)).unwrap();
    n.accept_files("a", limits(20)).unwrap();
    assert_eq!(patterns(&n), [("b".to_string(), 10), ("a".to_string(), 20)]);
    n.refuse_files("a");
    assert_eq!(patterns(&n), [("b".to_string(), 10)]);
    n.refuse_files("nothing");
    assert_eq!(patterns(&n), [("b".to_string(), 10)]);
}

/// A transfer the runtime gives up is forgotten: not listed, its memory and slot let go, and
/// nothing more is asked for it however long it stays quiet.
#[test]
fn a_transfer_the_runtime_gives_up_is_forgotten() {
    let (mut n, now) = receiver(FileLimits::default());
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(3 * u64::from(CHUNK)))),
        now,
    );
    feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 2, 0, CHUNK as usize)),
        now,
    );
    assert_eq!(n.incoming_files().collect::<Vec<_>>(), [key(1)]);
    n.file_failed(key(1));
    assert_eq!(n.incoming_files().count(), 0);
    assert_eq!(n.gauges().files_incoming, 0);
    n.handle_timeout(now + Duration::from_secs(3600));
    let outs = drain(&mut n);
    assert!(
        !sent(&outs, ConnId(1))
            .iter()
            .any(|m| matches!(m, Message::FileWant(_))),
        "asked again for a forgotten transfer"
    );
}

/// Offers and chunks are passed on to subscribers with one hop more and one ttl less; with a
/// ttl of 1 they stop here.
#[test]
fn file_frames_are_relayed_with_a_hop_more_and_stop_at_ttl_1() {
    let (mut n, now) = receiver(FileLimits::default());
    peer(&mut n, 2, 8, &["files/**"], now);
    drain(&mut n);
    let outs = feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(u64::from(CHUNK)))),
        now,
    );
    let outs2 = feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 2, 0, CHUNK as usize)),
        now,
    );
    let relayed: Vec<Message> = sent(&outs, ConnId(2))
        .into_iter()
        .chain(sent(&outs2, ConnId(2)))
        .collect();
    let offer_out = relayed.iter().find_map(|m| match m {
        Message::FileOffer(o) => Some((o.ttl, o.hops)),
        _ => None,
    });
    let chunk_out = relayed.iter().find_map(|m| match m {
        Message::FileChunk(c) => Some((c.ttl, c.hops)),
        _ => None,
    });
    assert_eq!(offer_out, Some((7, 2)));
    assert_eq!(chunk_out, Some((7, 2)));

    let mut last_offer = offer(2, 3, Some(u64::from(CHUNK)));
    last_offer.ttl = 1;
    let mut last_chunk = chunk(2, 4, 0, CHUNK as usize);
    last_chunk.ttl = 1;
    let outs = feed(&mut n, 1, Message::FileOffer(last_offer), now);
    let outs2 = feed(&mut n, 1, Message::FileChunk(last_chunk), now);
    assert!(sent(&outs, ConnId(2)).is_empty() && sent(&outs2, ConnId(2)).is_empty());
}

#[test]
fn an_offer_sets_its_repair_timer_file_repair_after_ahead() {
    let (mut n, now) = receiver(FileLimits::default());
    let before = n.poll_timeout();
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, Some(10))), now);
    let repair = now + n.config().file_repair_after;
    // The node's next deadline is the repair timer (the keep-alives come later), not sooner.
    assert!(before.is_some_and(|b| b > repair), "{before:?}");
    assert_eq!(n.poll_timeout(), Some(repair));
}

#[test]
fn an_offer_is_bounded_by_the_frame_and_the_name_exactly() {
    let cfg = Config::default();
    let largest = u32::try_from(cfg.max_frame_len - 512).unwrap();
    let name = "n".repeat(cfg.max_name_len);
    let cases = [
        (
            "the largest chunk a frame holds",
            largest,
            "a".to_string(),
            true,
        ),
        ("a byte more", largest + 1, "a".to_string(), false),
        ("a name of max_name_len", CHUNK, name.clone(), true),
        ("a byte more", CHUNK, format!("{name}n"), false),
    ];
    for (what, chunk, name, taken) in cases {
        let (mut n, now) = receiver(FileLimits::default());
        let o = FileOffer {
            chunk,
            name,
            ..offer(1, 1, Some(10))
        };
        let outs = feed(&mut n, 1, Message::FileOffer(o), now);
        let offered = deliveries(&outs)
            .iter()
            .any(|d| matches!(d, Delivery::FileOffered { .. }));
        assert_eq!(offered, taken, "{what}: {outs:?}");
        assert_eq!(n.incoming_files().count(), usize::from(taken), "{what}");
    }
}

#[test]
fn max_transfers_counts_transfers_of_the_same_limits_only() {
    let limits = FileLimits {
        max_transfers: 2,
        ..FileLimits::default()
    };
    let (mut n, now) = receiver(limits);
    // Other limits for other topics: their transfers do not count against these.
    let other = FileLimits {
        max_transfers: 5,
        ..FileLimits::default()
    };
    n.subscribe("bulk/**", now).unwrap();
    n.accept_files("bulk/**", other).unwrap();
    for id in 10..13 {
        let o = FileOffer {
            topic: "bulk/x".into(),
            ..offer(id, id, Some(10))
        };
        feed(&mut n, 1, Message::FileOffer(o), now);
    }
    assert_eq!(n.incoming_files().count(), 3);
    // Small files, far under the bytes in flight: the count alone refuses the third.
    for id in 1..=3 {
        feed(&mut n, 1, Message::FileOffer(offer(id, id, Some(10))), now);
    }
    let mine = n.incoming_files().filter(|k| k.id < 10).count();
    assert_eq!(mine, 2);
    assert_eq!(n.counters().files_refused, 1);
}

#[test]
fn a_streamed_chunk_may_end_at_max_size_and_an_empty_one_fails() {
    let limits = FileLimits {
        max_size: 2 * u64::from(CHUNK),
        ..FileLimits::default()
    };
    // No size offered: the chunk ending exactly at max_size is taken.
    let (mut n, now) = receiver(limits);
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
    let outs = feed(
        &mut n,
        1,
        Message::FileChunk(chunk(1, 2, 1, CHUNK as usize)),
        now,
    );
    assert_eq!(failed(&outs), None);
    assert!(deliveries(&outs)
        .iter()
        .any(|d| matches!(d, Delivery::FileData { offset, .. } if *offset == u64::from(CHUNK))));
    // A byte further is too large.
    let outs = feed(&mut n, 1, Message::FileChunk(chunk(1, 3, 2, 1)), now);
    assert!(matches!(failed(&outs), Some(FileError::TooLarge(_))));
    // An empty chunk of a stream is malformed, as in a file of known size.
    let (mut n, now) = receiver(limits);
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
    let outs = feed(&mut n, 1, Message::FileChunk(chunk(1, 2, 0, 0)), now);
    assert!(matches!(failed(&outs), Some(FileError::Malformed(_))));
}

#[test]
fn the_next_window_is_asked_only_once_the_whole_window_is_in() {
    let (mut n, now) = receiver(FileLimits::default());
    let repair_after = n.config().file_repair_after;
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(4 * u64::from(CHUNK)))),
        now,
    );
    let at = now + repair_after;
    n.handle_timeout(at);
    let asked = sent(&drain(&mut n), ConnId(1));
    assert!(
        matches!(&asked[..], [Message::FileWant(w)] if w.ranges == [(0, 4)]),
        "{asked:?}"
    );
    let repair = |index| {
        Message::FileChunk(FileChunk {
            repair: true,
            seq: 0,
            ..chunk(1, 0, index, CHUNK as usize)
        })
    };
    // Three of the four in: nothing asked yet, at any of those moments.
    for index in 0..3 {
        let t = at + Duration::from_millis(1 + index);
        feed(&mut n, 1, repair(index), t);
        n.handle_timeout(t);
        assert!(
            sent(&drain(&mut n), ConnId(1)).is_empty(),
            "asked after repair {index}"
        );
    }
    // The last one in: the end is asked for at once.
    let t = at + Duration::from_millis(10);
    feed(&mut n, 1, repair(3), t);
    n.handle_timeout(t);
    let asked = sent(&drain(&mut n), ConnId(1));
    assert!(
        matches!(&asked[..], [Message::FileWant(w)] if w.ranges.is_empty() && w.end),
        "{asked:?}"
    );
}

#[test]
fn ends_are_relayed_with_a_hop_more_and_stop_at_ttl_1() {
    let (mut n, now) = receiver(FileLimits::default());
    peer(&mut n, 2, 8, &["files/**"], now);
    drain(&mut n);
    let c = u64::from(CHUNK);
    feed(&mut n, 1, Message::FileOffer(offer(1, 1, Some(c))), now);
    let outs = feed(&mut n, 1, Message::FileEnd(end(1, 2, c)), now);
    let relayed: Vec<(u8, u8)> = sent(&outs, ConnId(2))
        .into_iter()
        .filter_map(|m| match m {
            Message::FileEnd(e) => Some((e.ttl, e.hops)),
            _ => None,
        })
        .collect();
    assert_eq!(relayed, [(7, 2)]);
    for ttl in [0, 1] {
        let last = FileEnd {
            ttl,
            ..end(2, 3 + u64::from(ttl), c)
        };
        let outs = feed(&mut n, 1, Message::FileEnd(last), now);
        assert!(sent(&outs, ConnId(2)).is_empty(), "ttl {ttl} relayed");
    }
}

#[test]
fn a_streamed_end_may_say_max_size_and_no_more() {
    let limits = FileLimits {
        max_size: 3 * u64::from(CHUNK),
        ..FileLimits::default()
    };
    for (size, ok) in [(limits.max_size, true), (limits.max_size + 1, false)] {
        let (mut n, now) = receiver(limits);
        feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
        let outs = feed(&mut n, 1, Message::FileEnd(end(1, 2, size)), now);
        match failed(&outs) {
            None => assert!(ok, "an end of {size} taken"),
            Some(e) => assert!(!ok && matches!(e, FileError::Malformed(_)), "{size}: {e:?}"),
        }
    }
}

#[test]
fn done_transfers_are_remembered_up_to_256() {
    let limits = FileLimits {
        max_size: 10,
        ..FileLimits::default()
    };
    let (mut n, now) = receiver(limits);
    let refused = |outs: &[Output]| {
        deliveries(outs)
            .iter()
            .filter(|d| matches!(d, Delivery::FileRefused { .. }))
            .count()
    };
    // 256 offers refused (too large); each one's offer sent again is not refused twice.
    let mut seq = 0;
    for id in 1..=256 {
        seq += 1;
        feed(&mut n, 1, Message::FileOffer(offer(id, seq, Some(11))), now);
    }
    for id in [1, 128, 256] {
        seq += 1;
        let outs = feed(&mut n, 1, Message::FileOffer(offer(id, seq, Some(11))), now);
        assert_eq!(refused(&outs), 0, "transfer {id} refused twice");
    }
    // One more: the oldest is forgotten, so its offer is handled (and refused) anew.
    seq += 1;
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(257, seq, Some(11))),
        now,
    );
    seq += 1;
    let outs = feed(&mut n, 1, Message::FileOffer(offer(1, seq, Some(11))), now);
    assert_eq!(refused(&outs), 1);
    seq += 1;
    let outs = feed(&mut n, 1, Message::FileOffer(offer(3, seq, Some(11))), now);
    assert_eq!(refused(&outs), 0, "a newer one forgotten");
}

#[test]
fn after_asking_the_next_ask_is_file_repair_after_later() {
    let (mut n, now) = receiver(FileLimits::default());
    let repair_after = n.config().file_repair_after;
    feed(
        &mut n,
        1,
        Message::FileOffer(offer(1, 1, Some(2 * u64::from(CHUNK)))),
        now,
    );
    let at = now + repair_after;
    n.handle_timeout(at);
    assert_eq!(sent(&drain(&mut n), ConnId(1)).len(), 1);
    assert_eq!(n.poll_timeout(), Some(at + repair_after));
    // Nothing is asked again before then.
    n.handle_timeout(at + repair_after - Duration::from_millis(1));
    assert!(sent(&drain(&mut n), ConnId(1)).is_empty());
    n.handle_timeout(at + repair_after);
    assert_eq!(sent(&drain(&mut n), ConnId(1)).len(), 1);
}

#[test]
fn a_senders_offer_is_bounded_exactly_and_each_offer_is_numbered_anew() {
    let (mut n, now) = sender();
    let cfg = n.config().clone();
    let topic = "files/abc";
    // The chunk: as large as a frame holds beside the topic, not a byte more.
    let largest = u32::try_from(cfg.max_frame_len - 512 - topic.len()).unwrap();
    assert!(matches!(
        n.offer_file(topic, "a", None, largest + 1, Bytes::new(), now),
        Err(CommandError::PayloadTooLarge { max, .. }) if max == largest as usize
    ));
    // Name and meta together within what the offer's frame holds: the error says how much.
    let name = "n".repeat(10);
    let meta = |len: usize| Bytes::from(vec![b'm'; len]);
    let room = cfg.max_frame_len - topic.len() - 64 - name.len();
    let Err(CommandError::PayloadTooLarge { len, max }) =
        n.offer_file(topic, &name, None, CHUNK, meta(room), now)
    else {
        panic!("an offer past its frame taken");
    };
    assert_eq!(len, room + name.len());
    assert!(max < len && max > len - 200, "{max} of {len}");
    let fits = max - name.len();
    assert!(n
        .offer_file(topic, &name, None, CHUNK, meta(fits + 1), now)
        .is_err());
    let big = n
        .offer_file(topic, &name, None, CHUNK, meta(fits), now)
        .unwrap();
    let id = n
        .offer_file(topic, "b", None, largest, Bytes::new(), now)
        .unwrap();
    assert_ne!(big, id, "two transfers, one number");
    let offers: Vec<(u64, u64, usize)> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(o) => Some((o.id, o.seq, o.meta.len())),
            _ => None,
        })
        .collect();
    // Both reach the receiver (the one with the largest meta too), with their own numbers.
    assert_eq!(offers.len(), 2, "{offers:?}");
    assert_eq!((offers[0].0, offers[0].2), (big, fits));
    assert_eq!(offers[1].0, id);
    assert!(offers[1].1 > offers[0].1, "{offers:?}");
    // A chunk of the largest size fits its frame too.
    n.send_chunk(id, Bytes::from(vec![1; largest as usize]), now)
        .unwrap();
    let chunks: Vec<usize> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileChunk(c) => Some(c.data.len()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks, [largest as usize]);
}

#[test]
fn a_sender_holds_max_outgoing_files_and_makes_room_from_expired_ones() {
    let (mut n, now) = node(
        Config::default()
            .file_keep(Duration::from_secs(5))
            .max_outgoing_files(2),
    );
    peer(&mut n, 1, 9, &["files/**"], now);
    let offer = |n: &mut Node, at| n.offer_file("files/a", "a", Some(0), CHUNK, Bytes::new(), at);
    let first = offer(&mut n, now).unwrap();
    offer(&mut n, now).unwrap();
    assert!(matches!(
        offer(&mut n, now),
        Err(CommandError::Limit("max_outgoing_files"))
    ));
    // The first ended and kept for repairs: still held until file_keep is over.
    n.end_file(first, Some([0; 32]), now).unwrap();
    let later = now + Duration::from_secs(5);
    assert!(offer(&mut n, later - Duration::from_millis(1)).is_err());
    // Then its room is taken back when needed, even before its timer ran.
    offer(&mut n, later).unwrap();
    assert_eq!(n.outgoing_files().count(), 2);
    assert!(!n.outgoing_files().any(|i| i == first));
}

#[test]
fn a_files_sender_is_dialed_only_with_room_for_an_edge() {
    for (max_edges, dials) in [(1, false), (2, true)] {
        let (mut n, now) = node(Config::default().max_edges(max_edges));
        n.subscribe("files/**", now).unwrap();
        n.accept_files("files/**", FileLimits::default()).unwrap();
        peer(&mut n, 1, 5, &["files/**"], now);
        let relayed = FileOffer {
            hops: 2,
            ..offer(1, 1, Some(u64::from(CHUNK)))
        };
        feed(&mut n, 1, Message::FileOffer(relayed), now);
        feed(
            &mut n,
            1,
            Message::FileEnd(end(1, 2, u64::from(CHUNK))),
            now,
        );
        n.handle_timeout(now);
        let dialed = behaviour::dials(&drain(&mut n));
        assert_eq!(
            !dialed.is_empty(),
            dials,
            "max_edges {max_edges}: {dialed:?}"
        );
    }
}

#[test]
fn a_sender_offers_again_every_64_chunks_each_with_a_sequence_number_of_its_own() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    let data = Bytes::from(vec![0; CHUNK as usize]);
    for _ in 0..129 {
        n.send_chunk(id, data.clone(), now).unwrap();
    }
    let msgs = sent(&drain(&mut n), ConnId(1));
    // The first offer, then before chunks 64 and 128.
    let offers_before: Vec<u64> = msgs
        .iter()
        .scan(0u64, |chunks, m| {
            Some(match m {
                Message::FileChunk(_) => {
                    *chunks += 1;
                    None
                }
                Message::FileOffer(_) => Some(*chunks),
                _ => None,
            })
        })
        .flatten()
        .collect();
    assert_eq!(offers_before, [0, 64, 128]);
    let mut seqs: Vec<u64> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(o) => Some(o.seq),
            Message::FileChunk(c) => Some(c.seq),
            _ => None,
        })
        .collect();
    let all = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), all, "a sequence number used twice");
}

#[test]
fn a_sender_may_give_up_a_transfer_short_of_its_size() {
    let (mut n, now) = sender();
    let id = n
        .offer_file(
            "files/a",
            "a",
            Some(10 * u64::from(CHUNK)),
            CHUNK,
            Bytes::new(),
            now,
        )
        .unwrap();
    n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
        .unwrap();
    n.end_file(id, None, now).unwrap();
    assert_eq!(n.outgoing_files().count(), 0, "kept after giving up");
    let ends: Vec<bool> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileEnd(e) => Some(e.sha256.is_none()),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [true]);
}

/// Sets the bytes waiting in the file lane of `conn`.
fn set_lane(n: &mut Node, conn: u64, bytes: usize) {
    n.conns.get_mut(&ConnId(conn)).unwrap().bulk_bytes = bytes;
}

#[test]
fn a_sender_waits_for_a_lane_past_the_congestion_limit_or_under_skip_for_all_of_them() {
    for skip in [false, true] {
        let policy = if skip {
            crate::OnCongestion::Skip
        } else {
            crate::OnCongestion::Wait
        };
        let (mut n, now) = node(Config::default().on_congestion(policy));
        peer(&mut n, 1, 9, &["files/**"], now);
        peer(&mut n, 2, 10, &["files/**"], now);
        let window = n.config().congestion_limit();
        assert!(!n.file_would_wait("files/a"));
        // Nobody wants the topic: nothing to wait for, under either policy.
        assert!(!n.file_would_wait("other"), "skip {skip}");
        set_lane(&mut n, 1, window);
        assert!(!n.file_would_wait("files/a"), "skip {skip}: at the limit");
        set_lane(&mut n, 1, window + 1);
        assert_eq!(n.file_would_wait("files/a"), !skip, "one lane full");
        set_lane(&mut n, 2, window + 1);
        assert!(n.file_would_wait("files/a"), "skip {skip}: every lane full");
        set_lane(&mut n, 1, 0);
        set_lane(&mut n, 2, 0);
        n.memory_waiting = true;
        assert!(n.file_would_wait("files/a"), "skip {skip}: memory high");
    }
}

#[test]
fn a_repair_waits_for_its_peers_lane_or_for_memory() {
    let (mut n, _) = sender();
    let window = n.config().congestion_limit();
    assert!(!n.repair_would_wait(NodeId(9)));
    assert!(!n.repair_would_wait(NodeId(4)), "a stranger's lane");
    set_lane(&mut n, 1, window);
    assert!(!n.repair_would_wait(NodeId(9)), "at the limit");
    set_lane(&mut n, 1, window + 1);
    assert!(n.repair_would_wait(NodeId(9)));
    set_lane(&mut n, 1, 0);
    n.memory_waiting = true;
    assert!(n.repair_would_wait(NodeId(9)));
    assert!(n.repair_would_wait(NodeId(4)));
}

#[test]
fn a_forgotten_transfer_is_gone_for_whoever_asks() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
        .unwrap();
    n.end_file(id, Some([1; 32]), now).unwrap();
    n.forget_file(id);
    assert_eq!(n.outgoing_files().count(), 0);
    drain(&mut n);
    let me = n.id();
    let want = FileWant {
        origin: me,
        id,
        ranges: vec![(0, 1)],
        end: true,
    };
    let outs = feed(&mut n, 1, Message::FileWant(want), now);
    assert!(deliveries(&outs).is_empty());
    assert!(sent(&outs, ConnId(1))
        .iter()
        .any(|m| matches!(m, Message::FileGone(g) if g.id == id)));
    // Its keep timer finds nothing.
    n.handle_timeout(now + Duration::from_secs(5));
    assert!(!drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Deliver(Delivery::FileExpired { .. }))));
}

#[test]
fn an_end_has_its_own_sequence_number_and_an_empty_file_is_offered_once() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
        .unwrap();
    n.end_file(id, Some([1; 32]), now).unwrap();
    let seqs: Vec<(&str, u64)> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(o) => Some(("offer", o.seq)),
            Message::FileChunk(c) => Some(("chunk", c.seq)),
            Message::FileEnd(e) => Some(("end", e.seq)),
            _ => None,
        })
        .collect();
    let kinds: Vec<&str> = seqs.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["offer", "chunk", "offer", "end"]);
    assert!(
        seqs.windows(2).all(|w| w[1].1 > w[0].1),
        "each frame numbered anew: {seqs:?}"
    );
    // Nothing sent: the end follows the first offer alone.
    let id = n
        .offer_file("files/a", "b", Some(0), CHUNK, Bytes::new(), now)
        .unwrap();
    n.end_file(id, Some([2; 32]), now).unwrap();
    let kinds: Vec<&str> = sent(&drain(&mut n), ConnId(1))
        .iter()
        .filter_map(|m| match m {
            Message::FileOffer(_) => Some("offer"),
            Message::FileEnd(_) => Some("end"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["offer", "end"]);
}

#[test]
fn a_want_over_several_ranges_is_cut_at_256_chunks_in_all() {
    let (mut n, now) = sender();
    let id = n
        .offer_file("files/a", "a", None, CHUNK, Bytes::new(), now)
        .unwrap();
    for _ in 0..400 {
        n.send_chunk(id, Bytes::from(vec![0; CHUNK as usize]), now)
            .unwrap();
    }
    drain(&mut n);
    let me = n.id();
    let want = FileWant {
        origin: me,
        id,
        ranges: vec![(10, 110), (200, 400)],
        end: false,
    };
    let outs = feed(&mut n, 1, Message::FileWant(want), now);
    let ranges = deliveries(&outs).into_iter().find_map(|d| match d {
        Delivery::FileWanted { ranges, .. } => Some(ranges.clone()),
        _ => None,
    });
    assert_eq!(ranges, Some(vec![(10, 110), (200, 356)]));
}

#[test]
fn file_frames_are_taken_once_never_our_own_nor_on_the_roots_topic() {
    let (mut n, now) = receiver(FileLimits::default());
    // 8 relays to us; 11 wants files too.
    peer(&mut n, 2, 8, &["files/**"], now);
    peer(&mut n, 3, 11, &["files/**"], now);
    drain(&mut n);
    let offers_to = |outs: &[Output], conn| {
        sent(outs, ConnId(conn))
            .iter()
            .filter(|m| matches!(m, Message::FileOffer(_)))
            .count()
    };
    // The sender's offer through 8: passed to 11 only, never back to 8 nor to the sender.
    let o = offer(1, 1, Some(10));
    let outs = feed(&mut n, 2, Message::FileOffer(o.clone()), now);
    assert_eq!(
        [
            offers_to(&outs, 1),
            offers_to(&outs, 2),
            offers_to(&outs, 3)
        ],
        [0, 0, 1]
    );
    assert_eq!(deliveries(&outs).len(), 1);
    // The same frame from the sender itself: a duplicate, neither delivered nor passed on.
    let before = n.counters().duplicates;
    let outs = feed(&mut n, 1, Message::FileOffer(o.clone()), now);
    assert!(deliveries(&outs).is_empty());
    assert_eq!(offers_to(&outs, 2) + offers_to(&outs, 3), 0);
    assert_eq!(n.counters().duplicates, before + 1);
    // Our own offer, come back: a duplicate too.
    let own = FileOffer {
        origin: n.id(),
        seq: 50,
        id: 5,
        ..o.clone()
    };
    let outs = feed(&mut n, 2, Message::FileOffer(own), now);
    assert!(deliveries(&outs).is_empty());
    assert_eq!(offers_to(&outs, 1) + offers_to(&outs, 3), 0);
    assert_eq!(n.counters().duplicates, before + 2);
    // On the root's own topic: dropped and counted, nobody hears of it.
    let reserved = FileOffer {
        topic: "@".into(),
        seq: 60,
        id: 6,
        ..o
    };
    let outs = feed(&mut n, 1, Message::FileOffer(reserved), now);
    assert!(deliveries(&outs).is_empty());
    assert_eq!(offers_to(&outs, 2) + offers_to(&outs, 3), 0);
    assert_eq!(n.counters().reserved_dropped, 1);
    assert_eq!(n.counters().duplicates, before + 2);
    assert!(n.is_connected_to(NodeId(SENDER)));
}

#[test]
fn a_relay_counts_a_lane_full_only_past_the_congestion_limit() {
    for skip in [false, true] {
        let policy = if skip {
            crate::OnCongestion::Skip
        } else {
            crate::OnCongestion::Wait
        };
        let (mut n, now) = node(Config::default().root(true).on_congestion(policy));
        peer(&mut n, 1, SENDER, &[], now);
        peer(&mut n, 2, 9, &["files/**"], now);
        let window = n.config().congestion_limit();
        set_lane(&mut n, 2, window);
        feed(&mut n, 1, Message::FileOffer(offer(1, 1, None)), now);
        assert!(
            !n.read_paused.contains(&ConnId(1)),
            "skip {skip}: at the limit"
        );
        assert_eq!(n.counters().congestion_skipped, 0);
        set_lane(&mut n, 2, window + 1);
        feed(&mut n, 1, Message::FileChunk(chunk(1, 2, 0, 10)), now);
        assert_eq!(n.read_paused.contains(&ConnId(1)), !skip, "past the limit");
        assert_eq!(n.counters().congestion_skipped, u64::from(skip));
    }
}
