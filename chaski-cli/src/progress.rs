//! A progress line for transfers on a terminal: bytes, rate and time left, redrawn in place on
//! standard error (nothing when standard error is not a terminal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chaski_proto::text::Escaped;

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(200);

/// One transfer's progress line.
pub struct Progress {
    name: String,
    size: Option<u64>,
    start: Instant,
    drawn: Option<Instant>,
    shown: bool,
}

impl Progress {
    /// A line for `name` of `size` bytes (if known); drawn only on a terminal.
    pub fn new(name: &str, size: Option<u64>) -> Progress {
        Progress {
            name: Escaped(name).to_string(),
            size,
            start: Instant::now(),
            drawn: None,
            shown: std::io::stderr().is_terminal(),
        }
    }

    /// `done` bytes so far: redraws the line if it is time.
    pub fn update(&mut self, done: u64) {
        if !self.shown || self.drawn.is_some_and(|d| d.elapsed() < EVERY) {
            return;
        }
        self.drawn = Some(Instant::now());
        let line = line(&self.name, done, self.size, self.start.elapsed());
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line (before the result is printed).
    pub fn finish(&mut self) {
        if self.shown && self.drawn.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// `name  12.0/48.0 MiB  35.2 MB/s  ETA 1 s`.
pub fn line(name: &str, done: u64, size: Option<u64>, elapsed: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    match size {
        Some(size) => {
            let left = size.saturating_sub(done) as f64 / rate.max(1.0);
            format!(
                "{name}  {:.1}/{:.1} MiB  {:.1} MB/s  ETA {:.0} s",
                mib(done),
                mib(size),
                rate / 1e6,
                left
            )
        }
        None => format!("{name}  {:.1} MiB  {:.1} MB/s", mib(done), rate / 1e6),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_line_gives_bytes_rate_and_time_left() {
        let l = super::line(
            "a.bin",
            10 << 20,
            Some(40 << 20),
            std::time::Duration::from_secs(1),
        );
        assert_eq!(l, "a.bin  10.0/40.0 MiB  10.5 MB/s  ETA 3 s");
        let l = super::line("s", 1 << 20, None, std::time::Duration::from_secs(2));
        assert_eq!(l, "s  1.0 MiB  0.5 MB/s");
    }
}
