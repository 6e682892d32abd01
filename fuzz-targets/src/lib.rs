//! The bodies of Chaski's fuzz targets. `fuzz/` runs them under libFuzzer (`fuzz/run.sh`);
//! `cargo test` replays every input of the committed corpus (`fuzz/corpus/TARGET`) through
//! them, so a regression on an input the fuzzer once found interesting fails the suite.

pub mod frame_decoder;
pub mod message_decode;
pub mod node_inputs;
pub mod secure_inputs;
