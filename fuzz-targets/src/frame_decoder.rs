//! The frame decoder on arbitrary bytes, split at arbitrary points: never a panic, never a
//! buffer beyond one bounded frame, and the same frames whatever the split.

use chaski_proto::codec::FrameDecoder;

const MAX: usize = 4096;

fn frames(data: &[u8], splits: &[usize]) -> (Vec<Vec<u8>>, bool) {
    let mut d = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    let mut at = 0;
    let mut failed = false;
    for &cut in splits.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.clamp(at, data.len());
        d.extend(&data[at..cut]);
        at = cut;
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= MAX);
                    out.push(f.to_vec());
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        // Whole frames were taken: what is held is at most one partial frame.
        assert!(failed || d.buffered() < 4 + MAX);
        if failed {
            break;
        }
    }
    (out, failed)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // The first byte chooses split points; the rest is the stream.
    let step = usize::from(data[0]) + 1;
    let stream = &data[1..];
    let splits: Vec<usize> = (1..stream.len()).step_by(step).collect();
    let whole = frames(stream, &[]);
    let split = frames(stream, &splits);
    let bytewise = frames(stream, &(1..stream.len()).collect::<Vec<_>>());
    assert_eq!(whole, split);
    assert_eq!(whole, bytewise);
}
