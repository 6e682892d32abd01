//! A `chaski` child process of a bench (the file row's processes, the 500 nodes of the
//! processes row): its output lines read on a thread, its memory read from `/proc`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `chaski` child, killed when dropped.
pub struct Proc {
    /// What the bench calls it in its errors and rows.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its output, line by line.
    pub lines: mpsc::Receiver<String>,
    /// Resident memory (KiB) once started and idle, and the peak seen.
    pub rest_kib: u64,
    pub peak_kib: u64,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `chaski ARGS`; its stdout lines are read on a thread (`stderr`: its stderr's
    /// lines instead, the stdout left to take; else its stderr is dropped), with `envs` set.
    pub fn start(
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        stderr: bool,
    ) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .map_err(|e| format!("{name}: {e}"))?;
        let out: Box<dyn std::io::Read + Send> = if stderr {
            Box::new(child.stderr.take().ok_or("no stderr")?)
        } else {
            Box::new(child.stdout.take().ok_or("no stdout")?)
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(Proc {
            name: name.to_string(),
            child,
            lines,
            rest_kib: 0,
            peak_kib: 0,
        })
    }

    /// The next line within `limit`.
    pub fn line(&self, limit: Duration) -> Result<String, String> {
        self.lines
            .recv_timeout(limit)
            .map_err(|_| format!("{}: no output within {limit:?}", self.name))
    }

    /// The loopback address a `chaski root` or `chaski node` prints in its first line (read
    /// within `limit`).
    pub fn listen_addr(&self, limit: Duration) -> Result<std::net::SocketAddr, String> {
        let first = self.line(limit)?;
        first
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(';').parse().ok())
            .ok_or_else(|| format!("{}: no address in {first:?}", self.name))
    }

    /// `VmRSS` or `VmHWM` of the process, in KiB (0 if unknown).
    pub fn mem(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn sample(&mut self) {
        self.peak_kib = self.peak_kib.max(self.mem("VmHWM:"));
    }
}
