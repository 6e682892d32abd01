//! `chaski bench`'s file row: one file (1 GiB; 64 MiB with `--quick`) from a sender through a
//! root to two receivers, each a `chaski` process of its own on loopback (`send`, `root`,
//! `receive`), in MB/s beside the 64 KiB pub/sub rate of the same run, with the peak resident
//! memory of every process (and its growth over the process at rest).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bench_proc::Proc;

/// What the row measured.
pub struct FileRow {
    /// Bytes of the file.
    pub size: u64,
    /// From the send to the second receiver's file in place.
    pub elapsed: Duration,
    /// Per process: name, resident KiB at rest, peak KiB.
    pub memory: Vec<(String, u64, u64)>,
}

/// Writes `size` bytes of noise to `path` (1 MiB at a time).
fn noise_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for b in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()
}

/// Runs the transfer; every process's files are in a temporary directory removed after.
pub fn measure(quick: bool) -> Result<FileRow, String> {
    let size: u64 = if quick { 64 << 20 } else { 1 << 30 };
    let dir = std::env::temp_dir().join(format!("chaski-bench-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(&dir, size);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, size: u64) -> Result<FileRow, String> {
    let path = |p: &str| -> PathBuf { dir.join(p) };
    for d in ["in0", "in1"] {
        std::fs::create_dir_all(path(d)).map_err(|e| e.to_string())?;
    }
    let src = path("file.bin");
    noise_file(&src, size).map_err(|e| format!("writing the file: {e}"))?;
    let wait = Duration::from_secs(30);
    let mut root = Proc::start("root", &["root", "--bind", "127.0.0.1:0"], &[], false)?;
    let addr = root.listen_addr(wait)?.to_string();
    let mut procs = Vec::new();
    for (k, name) in [(0, "receiver 1"), (1, "receiver 2")] {
        let d = path(&format!("in{k}"));
        let d = d.to_str().ok_or("a temporary path that is not UTF-8")?;
        let p = Proc::start(
            name,
            &[
                "receive",
                &addr,
                "bench-files",
                "--dir",
                d,
                "--count",
                "1",
                "--json",
                "--bind",
                "127.0.0.1:0",
            ],
            &[],
            true,
        )?;
        let l = p.line(wait)?;
        if !l.contains("receiving files") {
            return Err(format!("{name}: {l}"));
        }
        procs.push(p);
    }
    // Their output is JSON on stdout from here: read it instead.
    for p in &mut procs {
        let out = p.child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        p.lines = lines;
    }
    root.rest_kib = root.mem("VmRSS:");
    for p in &mut procs {
        p.rest_kib = p.mem("VmRSS:");
    }
    let start = Instant::now();
    let srcs = src.to_str().ok_or("a temporary path that is not UTF-8")?;
    let mut sender = Proc::start(
        "sender",
        &[
            "send",
            &addr,
            "bench-files",
            srcs,
            "--keep",
            "2",
            "--json",
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
        false,
    )?;
    // The sender at rest: once its process runs (its memory before the file is read).
    std::thread::sleep(Duration::from_millis(20));
    sender.rest_kib = sender.mem("VmRSS:");
    let deadline = start + Duration::from_secs(600);
    let mut got: Vec<Option<serde_json::Value>> = vec![None, None];
    while got.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            return Err("the file did not arrive within 600 s".into());
        }
        root.sample();
        sender.sample();
        for (p, g) in procs.iter_mut().zip(&mut got) {
            p.sample();
            if g.is_none() {
                if let Ok(l) = p.lines.recv_timeout(Duration::from_millis(20)) {
                    *g = Some(
                        serde_json::from_str(&l).map_err(|e| format!("{}: {e}: {l}", p.name))?,
                    );
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let sent = sender.line(wait)?;
    let sent: serde_json::Value =
        serde_json::from_str(&sent).map_err(|e| format!("sender: {e}"))?;
    for g in got.iter().flatten() {
        if g["sha256"] != sent["sha256"] || g["size"] != size {
            return Err(format!("a receiver's file differs: {g} (sent {sent})"));
        }
    }
    let memory = [&root, &sender]
        .into_iter()
        .chain(procs.iter())
        .map(|p| (p.name.clone(), p.rest_kib, p.peak_kib))
        .collect();
    Ok(FileRow {
        size,
        elapsed,
        memory,
    })
}
