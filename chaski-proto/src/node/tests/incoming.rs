//! Which chunks a receiver asks for again: ranges within the file and within their bounds.

use super::*;

/// A transfer of `chunks` chunks whose chunks `have` arrived.
fn incoming(chunks: u64, have: impl IntoIterator<Item = u64>) -> Incoming {
    let mut t = Incoming {
        chunk: MIN_CHUNK,
        size: Some(chunks * u64::from(MIN_CHUNK)),
        limits: FileLimits::default(),
        addr: None,
        have: Vec::new(),
        received: 0,
        highest: 0,
        end: None,
        last_progress: Instant::now(),
        ask_now: false,
        asked: 0,
    };
    for i in have {
        t.set(i);
    }
    t
}

#[test]
fn missing_chunks_are_ranges_within_the_file() {
    assert_eq!(incoming(10, [0, 1, 5]).missing(), [(2, 5), (6, 10)]);
    assert_eq!(incoming(10, 0..10).missing(), []);
    assert_eq!(incoming(3, []).missing(), [(0, 3)]);
}

#[test]
fn missing_chunks_are_asked_within_their_bounds_exactly() {
    // Many missing in a row: exactly MAX_WANT_CHUNKS of them, in one range.
    let t = incoming(10_000, []);
    assert_eq!(t.missing(), [(0, MAX_WANT_CHUNKS)]);
    // Missing and present in turn: ranges up to MAX_WANT_RANGES, nothing empty.
    let t = incoming(10_000, (0..10_000).filter(|i| i % 2 == 1));
    let ranges = t.missing();
    assert_eq!(ranges.len(), MAX_WANT_RANGES);
    assert!(ranges.iter().all(|(s, e)| e - s == 1));
    // The chunk bound reached across ranges: no empty range after it.
    let t = incoming(10_000, (0..10_000).filter(|i| i % 100 == 99));
    let ranges = t.missing();
    let asked: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    assert_eq!(asked, MAX_WANT_CHUNKS);
    assert!(ranges.iter().all(|(s, e)| e > s), "{ranges:?}");
}
