//! The frame decoder on arbitrary bytes split anywhere (see chaski_fuzz_targets::frame_decoder).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaski_fuzz_targets::frame_decoder::run(data));
