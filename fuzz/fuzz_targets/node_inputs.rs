//! A Node fed an arbitrary sequence of inputs (see chaski_fuzz_targets::node_inputs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaski_fuzz_targets::node_inputs::run(data));
