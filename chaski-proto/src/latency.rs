//! Round-trip estimation in the style of RFC 6298.
//!
//! ```
//! use std::time::Duration;
//! use chaski_proto::latency::RttEstimator;
//! let mut e = RttEstimator::default();
//! e.sample(Duration::from_millis(10));
//! assert_eq!(e.srtt(), Some(Duration::from_millis(10)));
//! assert_eq!(e.latency(), Some(Duration::from_millis(5)));
//! assert_eq!(e.jitter(), Some(Duration::from_millis(5)));
//! ```

use std::time::Duration;

/// Smoothed RTT and its variance, updated per pong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    latest: Option<Duration>,
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    /// Feeds one round-trip sample.
    pub fn sample(&mut self, rtt: Duration) {
        self.latest = Some(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smoothed round-trip time.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// One-way latency: half the smoothed RTT.
    pub fn latency(&self) -> Option<Duration> {
        self.srtt.map(|s| s / 2)
    }

    /// Jitter: the RTT variance estimate.
    pub fn jitter(&self) -> Option<Duration> {
        self.srtt.map(|_| self.rttvar)
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        *self = RttEstimator::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_tracks_spread() {
        let mut e = RttEstimator::default();
        for _ in 0..100 {
            e.sample(Duration::from_millis(20));
        }
        assert_eq!(e.srtt(), Some(Duration::from_millis(20)));
        assert!(e.jitter().unwrap() < Duration::from_millis(1));
        for i in 0..100 {
            e.sample(Duration::from_millis(if i % 2 == 0 { 10 } else { 30 }));
        }
        assert!(e.jitter().unwrap() > Duration::from_millis(5));
        e.reset();
        assert_eq!(e.latency(), None);
    }
}
