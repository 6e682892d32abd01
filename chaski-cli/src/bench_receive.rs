//! The consumer side every throughput bench shares: counts messages as they arrive.

use std::time::{Duration, Instant};

/// Takes messages until `count` have come, or none comes for 5 s: how many came, and when the
/// last one did (what every throughput row measures at its subscribers).
pub fn receive(messages: chaski_api::Messages<chaski_api::Received>, count: u64) -> (u64, Instant) {
    let mut got = 0u64;
    let mut last = Instant::now();
    while got < count {
        match messages.recv_timeout(Duration::from_secs(5)) {
            Some(_) => {
                got += 1;
                last = Instant::now();
            }
            None => break,
        }
    }
    (got, last)
}
