//! Replays the committed fuzz corpus through each target: every input must run without a
//! panic (the targets assert their invariants).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{target} panicked on {}", path.display());
        n += 1;
    }
    assert!(n > 10, "only {n} inputs in {}", dir.display());
    eprintln!("{target}: {n} corpus inputs replayed");
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", chaski_fuzz_targets::frame_decoder::run);
}

#[test]
fn message_decode_corpus() {
    replay("message_decode", chaski_fuzz_targets::message_decode::run);
}

#[test]
fn secure_inputs_corpus() {
    replay("secure_inputs", chaski_fuzz_targets::secure_inputs::run);
}

#[test]
fn node_inputs_corpus() {
    replay("node_inputs", chaski_fuzz_targets::node_inputs::run);
}
