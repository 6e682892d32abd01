//! Message decoding on arbitrary bytes (see chaski_fuzz_targets::message_decode).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaski_fuzz_targets::message_decode::run(data));
