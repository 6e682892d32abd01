//! Two secure nodes over a link the fuzz data controls (see chaski_fuzz_targets::secure_inputs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chaski_fuzz_targets::secure_inputs::run(data));
