//! `chaski bench`: throughput, latency, RPC, discovery at scale and memory, beside the raw TCP
//! limit measured in the same run. Prints one table; asserts nothing about timings.

use serde_json::json;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chaski_api::pki::Ca;
use chaski_api::{block_on, Config, Handle, Service};
use chaski_proto::codec::encode_frame;
use chaski_proto::message::{Hello, PROTOCOL_VERSION};
use chaski_proto::sim::mesh::random_mesh;
use chaski_proto::{Message, NodeId};

use crate::bench_proc::Proc;

/// The options of `chaski bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Small counts: a quick smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Runtimes to measure (comma-separated).
    #[arg(long, default_value = "tokio,smol,mio", value_delimiter = ',')]
    runtime: Vec<String>,
    /// Idle edges for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    edges: usize,
    /// Simulated nodes for the discovery-at-scale line.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Parts to run (comma-separated): throughput, rtt, mesh, memory, files, observe, patterns,
    /// fanout, processes.
    #[arg(
        long,
        default_value = "throughput,rtt,mesh,memory,files,observe,patterns,fanout,processes",
        value_delimiter = ','
    )]
    only: Vec<String>,
    /// The `zenoh-compare` program (build it in `benches/zenoh-compare`): Zenoh on the same
    /// work in the same run, and a ratio to it on every row.
    #[arg(long, value_name = "PATH")]
    zenoh: Option<std::path::PathBuf>,
    /// No progress lines on stderr (there are none when stderr is not a terminal).
    #[arg(long)]
    quiet: bool,
    /// One JSON object per result (part, implementation, runtime, size, rates, ratios)
    /// instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs `chaski bench` (outside any runtime: it starts its own).
pub fn main(args: BenchArgs) -> Result<(), crate::failure::Failure> {
    // smol's global executor runs one thread unless told otherwise; the tokio nodes get two
    // workers, so the smol ones get two threads too (set before smol starts any).
    if std::env::var_os("SMOL_THREADS").is_none() {
        std::env::set_var("SMOL_THREADS", "2");
    }
    let opts = Options {
        quick: args.quick,
        runtimes: args.runtime,
        edges: args.edges,
        nodes: args.nodes,
        parts: args.only,
        zenoh: args.zenoh,
        quiet: args.quiet,
        json: args.json,
    };
    check(&opts).map_err(|message| crate::failure::Failure {
        code: crate::failure::USAGE,
        message: format!("bench: {message}"),
    })?;
    run(opts).map_err(|message| format!("bench: {message}").into())
}

/// Knobs of one benchmark run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small counts: a smoke test (for CI), not a measurement.
    pub quick: bool,
    /// Runtimes to measure.
    pub runtimes: Vec<String>,
    /// Idle edges for the memory line.
    pub edges: usize,
    /// Simulated nodes for the discovery line (`mesh`).
    pub nodes: usize,
    /// Parts to run (see [`PARTS`]).
    pub parts: Vec<String>,
    /// The `zenoh-compare` program (`benches/zenoh-compare`): Zenoh on the same work, in the
    /// same run, for a ratio on every row.
    pub zenoh: Option<std::path::PathBuf>,
    /// No progress lines (they go to stderr, and only when it is a terminal).
    pub quiet: bool,
    /// One JSON object per result line instead of the table.
    pub json: bool,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }

    /// Prints a result: its JSON object with `--json`, else its table line.
    fn emit(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
        if self.json {
            crate::say!("{}", json());
        } else {
            crate::say!("{}", text());
        }
    }

    /// Prints a table's header or blank line (nothing with `--json`).
    fn text(&self, line: impl FnOnce() -> String) {
        if !self.json {
            crate::say!("{}", line());
        }
    }

    /// A progress line on stderr for a long part, unless quiet or stderr is not a terminal.
    fn progress(&self, what: &str) {
        if !self.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            crate::note!("… {what}");
        }
    }
}

const TOPIC: &str = "bench";
const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

/// Messages to send for a payload size: about the same number of bytes for the large sizes.
fn count_for(size: usize, quick: bool) -> u64 {
    let full = match size {
        0..=64 => 2_000_000,
        65..=1024 => 1_000_000,
        _ => 40_000,
    };
    if quick {
        full / 200
    } else {
        full
    }
}

/// Messages per second, and how many of those sent were delivered.
#[derive(Debug, Clone, Copy)]
struct Rate {
    msgs: f64,
    delivered: u64,
    sent: u64,
}

impl Rate {
    fn new(delivered: u64, sent: u64, took: Duration) -> Rate {
        let s = took.as_secs_f64().max(1e-9);
        Rate {
            msgs: delivered as f64 / s,
            delivered,
            sent,
        }
    }
}

/// Median and 99th percentile of samples.
#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut v: Vec<Duration>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    })
}

// ----- the raw limit ----------------------------------------------------------------------------

/// Plain length-prefixed frames over one loopback TCP connection, buffered writes and reads.
fn raw_throughput(size: usize, count: u64) -> std::io::Result<Rate> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (s, _) = listener.accept()?;
        let mut r = BufReader::with_capacity(256 * 1024, s);
        let mut body = vec![0u8; 16 * 1024 * 1024];
        let mut got = 0;
        let mut len = [0u8; 4];
        while got < count {
            r.read_exact(&mut len)?;
            let n = u32::from_be_bytes(len) as usize;
            r.read_exact(&mut body[..n])?;
            got += 1;
        }
        Ok((got, Instant::now()))
    });
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut w = BufWriter::with_capacity(256 * 1024, stream);
    let payload = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..count {
        w.write_all(&(size as u32).to_be_bytes())?;
        w.write_all(&payload)?;
    }
    w.flush()?;
    let (got, end) = reader
        .join()
        .map_err(|_| std::io::Error::other("raw reader panicked"))??;
    Ok(Rate::new(got, count, end - start))
}

/// Round trips of a 16-byte frame echoed by a plain TCP server.
fn raw_echo(samples: usize) -> std::io::Result<Option<Percentiles>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut frame = [0u8; 20];
        loop {
            if s.read_exact(&mut frame).is_err() {
                return Ok(());
            }
            s.write_all(&frame)?;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut frame = [0u8; 20];
    frame[..4].copy_from_slice(&16u32.to_be_bytes());
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        s.write_all(&frame)?;
        s.read_exact(&mut frame)?;
        times.push(t.elapsed());
    }
    drop(s);
    let _ = server.join();
    Ok(percentiles(times))
}

// ----- Chaski, the same code for every runtime --------------------------------------------------

/// Two connected nodes of one runtime, seen through the shared [`Handle`].
struct Pair {
    a: Handle,
    b: Handle,
    /// Keeps the runtime alive (tokio's) for as long as the nodes run.
    _guard: Option<Box<dyn std::any::Any>>,
}

fn bench_config(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnections(0)
        .message_queue(65_536)
}

/// The nodes' configuration: plain, or secure with certificates of `ca`.
fn pair_config(name: &str, ca: Option<&Ca>) -> Result<Config, String> {
    let cfg = bench_config(name);
    let Some(ca) = ca else {
        return Ok(cfg);
    };
    let (identity, _) = ca.issue(name, 1).map_err(|e| e.to_string())?;
    Ok(cfg.secure(chaski_api::tls(&identity).map_err(|e| e.to_string())?))
}

fn start_pair(runtime: &str, ca: Option<&Ca>) -> Result<Pair, String> {
    let (ca_cfg, cb_cfg) = (pair_config("a", ca)?, pair_config("b", ca)?);
    let (a, b, guard): (Handle, Handle, Option<Box<dyn std::any::Any>>) = match runtime {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let (a, b) = rt
                .block_on(async {
                    let a = chaski_tokio::Node::bind("127.0.0.1:0", ca_cfg).await?;
                    let b = chaski_tokio::Node::bind("127.0.0.1:0", cb_cfg).await?;
                    Ok::<_, chaski_api::Error>((a, b))
                })
                .map_err(|e| e.to_string())?;
            ((*a).clone(), (*b).clone(), Some(Box::new(rt)))
        }
        "smol" => {
            let (a, b) = smol::block_on(async {
                let a = chaski_smol::Node::bind("127.0.0.1:0", ca_cfg).await?;
                let b = chaski_smol::Node::bind("127.0.0.1:0", cb_cfg).await?;
                Ok::<_, chaski_api::Error>((a, b))
            })
            .map_err(|e| e.to_string())?;
            ((*a).clone(), (*b).clone(), None)
        }
        "mio" => {
            let a = chaski_mio::Node::bind("127.0.0.1:0", ca_cfg).map_err(|e| e.to_string())?;
            let b = chaski_mio::Node::bind("127.0.0.1:0", cb_cfg).map_err(|e| e.to_string())?;
            (a.handle().clone(), b.handle().clone(), None)
        }
        other => return Err(format!("unknown runtime {other:?} (tokio, smol or mio)")),
    };
    block_on(async {
        b.subscribe(TOPIC).await?;
        b.serve(
            "bench",
            Service::builder()
                .method("add", |(x, y): (i64, i64)| Ok(x + y))
                .build(),
        )
        .await?;
        a.connect(&b.local_addr().to_string()).await?;
        Ok::<_, chaski_api::Error>(())
    })
    .map_err(|e| e.to_string())?;
    // The publisher knows the subscription from the Hello; the service from it too.
    Ok(Pair {
        a,
        b,
        _guard: guard,
    })
}

impl Pair {
    fn shutdown(self) {
        let _ = block_on(self.a.shutdown());
        let _ = block_on(self.b.shutdown());
    }
}

/// Publishes `count` messages of `size` bytes from a to b; the rate is measured at b.
fn chaski_throughput(p: &Pair, size: usize, count: u64) -> Result<Rate, String> {
    let messages = p.b.messages();
    let consumer = thread::spawn(move || crate::bench_receive::receive(messages, count));
    let payload = Bytes::from(vec![7u8; size]);
    let start = Instant::now();
    let sent = block_on(async {
        let mut sent = 0;
        for _ in 0..count {
            if p.a.publish(TOPIC, payload.clone()).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let (got, last) = consumer
        .join()
        .map_err(|_| "consumer panicked".to_string())?;
    Ok(Rate::new(got, sent, last.saturating_duration_since(start)))
}

fn chaski_ping(p: &Pair, samples: usize) -> Option<Percentiles> {
    let peer = p.b.id();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        if block_on(p.a.ping(peer, 0)).is_err() {
            break;
        }
        times.push(t.elapsed());
    }
    percentiles(times)
}

fn chaski_rpc(p: &Pair, samples: usize) -> Option<Percentiles> {
    let proxy = block_on(p.a.proxy("bench")).ok()?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples as i64 {
        let t = Instant::now();
        match block_on(proxy.call::<_, i64>("add", &(i, 1))) {
            Ok(r) if r == i + 1 => times.push(t.elapsed()),
            _ => break,
        }
    }
    percentiles(times)
}

// ----- Zenoh, for comparison --------------------------------------------------------------------

/// Runs `zenoh-compare ARGS` and gives the numbers of its one line of output.
fn zenoh(bin: &std::path::Path, args: &[String]) -> Result<Vec<f64>, String> {
    let out = std::process::Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| {
            w.parse::<f64>()
                .map_err(|e| format!("zenoh-compare printed {w:?}: {e}"))
        })
        .collect()
}

/// A ratio column: `x / of`, or blank.
fn ratio(x: f64, of: Option<f64>) -> String {
    ratio_of(x, of).map_or_else(String::new, |r| format!("{r:.2}"))
}

/// `x / of`, if `of` is known and positive.
fn ratio_of(x: f64, of: Option<f64>) -> Option<f64> {
    of.filter(|o| *o > 0.0).map(|o| x / o)
}

// ----- memory -----------------------------------------------------------------------------------

/// Resident bytes a tokio node spends per idle edge: a `chaski root` of its own process, and
/// `edges` plain sockets of this one, each completing a Hello with it; the growth of the root's
/// RSS is divided by the edges. Then the share of a core the root uses while those edges stay
/// idle for `idle_window`. (Two processes: each holds one end of every edge, so 10,000 edges
/// need 10,000 descriptors in each, not 20,000 in one.)
fn idle_edge_memory(
    edges: usize,
    idle_window: Duration,
) -> Result<Option<(usize, f64, Option<f64>)>, String> {
    // Every raw peer comes from 127.0.0.1, all at once: room for all of them.
    let room = (edges + 16).to_string();
    let env = [
        ("CHASKI_MAX_EDGES", room.as_str()),
        ("CHASKI_MAX_HANDSHAKES", room.as_str()),
        ("CHASKI_MAX_HANDSHAKES_PER_IP", room.as_str()),
        // The raw peers never answer its pings: not dropped as silent while 10,000 of them
        // connect and then idle (the pings are still sent, and counted in the CPU line).
        ("CHASKI_IDLE_TIMEOUT", "300"),
    ];
    let hub = Proc::start("hub", &["root", "--bind", "127.0.0.1:0"], &env, false)?;
    let addr = hub.listen_addr(Duration::from_secs(30))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let asker = rt
        .block_on(chaski_tokio::Node::bind(
            "127.0.0.1:0",
            Config::default().name("asker"),
        ))
        .map_err(|e| e.to_string())?;
    let edges_now = || {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), asker.status(&addr.to_string())).await
        })
        .ok()
        .and_then(Result::ok)
        .map_or(0, |s| s.edges)
    };
    let ready = |n: usize| -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while Instant::now() < end {
            seen = edges_now();
            if seen >= n {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the hub reached {seen} edges of {n}"))
    };
    // Warm up: one edge, so lazily built tables exist before the baseline.
    let mut socks = Vec::with_capacity(edges + 1);
    socks.push(raw_hello(addr, 1)?);
    ready(1)?;
    let before = hub.mem("VmRSS:");
    if before == 0 {
        return Ok(None);
    }
    for i in 0..edges {
        socks.push(raw_hello(addr, 2 + i as u128)?);
    }
    ready(edges + 1)?;
    let after = hub.mem("VmRSS:");
    let per_thousand = after.saturating_sub(before) as f64 * 1024.0 / edges as f64 * 1000.0;
    // Idle: the node only runs its timers (keep-alive pings every 7 to 10.5 s per edge).
    let cpu = cpu_time(hub.child.id()).map(|c0| {
        let t0 = Instant::now();
        thread::sleep(idle_window);
        let used = cpu_time(hub.child.id()).unwrap_or(c0).saturating_sub(c0);
        used.as_secs_f64() / t0.elapsed().as_secs_f64()
    });
    let still = edges_now();
    let _ = rt.block_on(asker.shutdown());
    drop(socks);
    if still < edges {
        return Err(format!(
            "{still} of {edges} idle edges left during the idle window"
        ));
    }
    Ok(Some((edges, per_thousand, cpu)))
}

/// CPU time (user and system) of process `pid` so far (Linux), if known.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux ABI Rust supports.
    Some(Duration::from_millis(ticks * 10))
}

/// A plain socket that says Hello as a made-up node and then stays idle.
fn raw_hello(addr: SocketAddr, id: u128) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        max_version: None,
        id: NodeId(id),
        name: format!("idle{id}"),
        listen: None,
        topics: vec![],
        paired: vec![],
        services: vec![],
        root: false,
        pairing: None,
        nonce: 1,
    });
    let mut out = BytesMut::new();
    encode_frame(&hello, &mut out, 1 << 20).map_err(|e| e.to_string())?;
    s.write_all(&out).map_err(|e| e.to_string())?;
    Ok(s)
}

// ----- the table --------------------------------------------------------------------------------

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn human_size(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// Runs everything asked for and prints the table.
/// Checks every option before anything is measured.
/// The parts of a run, in the order they run.
pub const PARTS: [&str; 9] = [
    "memory",
    "throughput",
    "files",
    "rtt",
    "fanout",
    "patterns",
    "observe",
    "mesh",
    "processes",
];

pub fn check(opts: &Options) -> Result<(), String> {
    for part in &opts.parts {
        if !PARTS.contains(&part.as_str()) {
            return Err(format!("unknown part {part:?} ({})", PARTS.join(", ")));
        }
    }
    for runtime in &opts.runtimes {
        if !["tokio", "smol", "mio"].contains(&runtime.as_str()) {
            return Err(format!("unknown runtime {runtime:?} (tokio, smol, mio)"));
        }
    }
    if opts.edges == 0 && opts.runs("memory") {
        return Err("--edges must be at least 1".into());
    }
    if opts.nodes < 2 && opts.runs("mesh") {
        return Err("--nodes must be at least 2".into());
    }
    Ok(())
}

/// Runs the parts asked for and prints the table.
pub fn run(opts: Options) -> Result<(), String> {
    check(&opts)?;
    let q = opts.quick;
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    opts.emit(
        || {
            format!(
                "chaski bench{} ({cores} cores; loopback TCP; raw = plain length-prefixed frames, buffered)",
                if q {
                    " --quick (smoke test: counts too small to measure)"
                } else {
                    ""
                },
            )
        },
        || json!({ "part": "run", "cores": cores, "quick": q }),
    );
    if opts.runs("memory") {
        opts.progress(&format!("memory and idle CPU of {} idle edges", opts.edges));
        // First, before the other parts churn the heap (freed memory the allocator keeps would
        // hide the growth).
        opts.text(String::new);
        let edges = if q { opts.edges.min(100) } else { opts.edges };
        let window = Duration::from_secs(if q { 1 } else { 10 });
        let measured = idle_edge_memory(edges, window)?;
        opts.emit(
            || match measured {
                Some((n, per, cpu)) => {
                    let idle = match cpu {
                        Some(c) => format!(
                            "idle: {:.2}% of a core with {n} idle edges, over {} s",
                            c * 100.0,
                            window.as_secs()
                        ),
                        None => "idle: unknown on this system (no /proc/self/stat)".into(),
                    };
                    format!(
                        "memory: {:.0} KiB resident per 1,000 idle edges (a chaski root process, {n} edges from plain sockets)\n{idle}",
                        per / 1024.0
                    )
                }
                None => "memory: unknown on this system (no /proc/self/status)".into(),
            },
            || {
                let (n, per, cpu) = measured.map_or((edges, None, None), |(n, per, cpu)| {
                    (n, Some(per / 1024.0), cpu)
                });
                json!({
                    "part": "memory",
                    "edges": n,
                    "kib_per_1000_edges": per,
                    "idle_core_fraction": cpu,
                    "window_s": window.as_secs(),
                })
            },
        );
    }
    let mut pubsub_64k = None;
    if opts.runs("throughput") {
        opts.progress("pub/sub throughput: raw TCP, then each runtime");
        pubsub_64k = throughput_table(&opts)?;
    }
    if opts.runs("files") {
        opts.progress("a file through a root to two receivers (separate processes)");
        files_row(&opts, pubsub_64k)?;
    }
    if opts.runs("rtt") {
        opts.progress("round trips: raw echo, ping and RPC on each runtime");
        rtt_table(&opts)?;
    }
    if opts.runs("fanout") {
        opts.progress("fan-out to 8 subscribers (direct, through a root), fan-in from 8");
        fanout_row(&opts)?;
    }
    if opts.runs("patterns") {
        opts.progress("a root relaying to a subscriber of 1 pattern, then of 1,000");
        patterns_row(&opts)?;
    }
    if opts.runs("observe") {
        opts.progress("chaski graph over 200 nodes, /metrics of a node with 256 edges");
        observe_row(&opts)?;
    }
    if opts.runs("mesh") {
        opts.progress("discovery in a simulated mesh (about 20 s for 1,000 nodes)");
        opts.text(String::new);
        let (nodes, topics) = if q {
            (opts.nodes.min(100), 4)
        } else {
            (opts.nodes, 8)
        };
        let m = random_mesh(nodes, topics, 42);
        opts.emit(
            || {
                format!(
                    "discovery at scale (simulator, seed 42)\n  {nodes} nodes, {topics} topics: every node paired: {} after {:.3} s simulated; one cluster per topic: {}\n  frames sent {} ({:.0} per node), bytes {}, wall time {:.2} s",
                    m.converged,
                    m.paired_after.as_secs_f64(),
                    m.one_cluster_per_topic(),
                    m.frames,
                    m.frames as f64 / nodes as f64,
                    m.bytes,
                    m.wall.as_secs_f64()
                )
            },
            || {
                json!({
                    "part": "mesh",
                    "nodes": nodes,
                    "topics": topics,
                    "converged": m.converged,
                    "paired_after_s": m.paired_after.as_secs_f64(),
                    "one_cluster_per_topic": m.one_cluster_per_topic(),
                    "frames": m.frames,
                    "frames_per_node": m.frames as f64 / nodes as f64,
                    "bytes": m.bytes,
                    "wall_s": m.wall.as_secs_f64(),
                })
            },
        );
    }
    if opts.runs("processes") {
        opts.progress("real chaski node processes joining two roots (about a minute for 500)");
        processes_row(&opts)?;
    }
    Ok(())
}

/// The processes row (see [`crate::bench_processes`]).
fn processes_row(opts: &Options) -> Result<(), String> {
    let r = crate::bench_processes::measure(opts.quick)?;
    opts.text(String::new);
    opts.emit(
        || {
            format!(
                "{} chaski node processes joining 2 connected roots, {} topics (discovery, UDP status)\n  all listening after {:.1} s, all paired after {:.1} s; one message per topic printed by {} of {} nodes within {:.0} ms ({} duplicates)\n  resident memory: node {} KiB mean, {} KiB largest; roots {} and {} KiB with {} and {} edges",
                r.nodes,
                r.topics,
                r.started.as_secs_f64(),
                r.paired.as_secs_f64(),
                r.delivered,
                r.nodes,
                r.delivery.as_secs_f64() * 1000.0,
                r.duplicates,
                r.node_kib_mean,
                r.node_kib_max,
                r.roots_kib[0],
                r.roots_kib[1],
                r.root_edges[0],
                r.root_edges[1],
            )
        },
        || {
            json!({
                "part": "processes",
                "nodes": r.nodes,
                "topics": r.topics,
                "started_s": r.started.as_secs_f64(),
                "paired_s": r.paired.as_secs_f64(),
                "delivered": r.delivered,
                "duplicates": r.duplicates,
                "delivery_ms": r.delivery.as_secs_f64() * 1000.0,
                "node_kib_mean": r.node_kib_mean,
                "node_kib_max": r.node_kib_max,
                "roots_kib": r.roots_kib,
                "root_edges": r.root_edges,
            })
        },
    );
    if r.delivered < r.nodes {
        return Err(format!(
            "{} of {} nodes printed their topic's message",
            r.delivered, r.nodes
        ));
    }
    Ok(())
}

/// The fan-out and fan-in rows (see [`crate::bench_fanout`]).
fn fanout_row(opts: &Options) -> Result<(), String> {
    let r = crate::bench_fanout::measure(opts.quick)?;
    opts.text(String::new);
    opts.emit(
        || {
            format!(
                "fan-out and fan-in (tokio, 64 B, delivered msgs/s, all subscribers together)\n  1 publisher -> 8 subscribers, direct: {:.0}\n  1 publisher -> root -> 8 subscribers: {:.0}\n  8 publishers -> 1 subscriber: {:.0}",
                r.direct, r.through_root, r.fan_in
            )
        },
        || {
            json!({
                "part": "fanout",
                "direct_msgs_s": r.direct,
                "through_root_msgs_s": r.through_root,
                "fan_in_msgs_s": r.fan_in,
            })
        },
    );
    Ok(())
}

/// The rows of a root holding one pattern and a thousand (see [`crate::bench_patterns`]).
fn patterns_row(opts: &Options) -> Result<(), String> {
    let r = crate::bench_patterns::measure(opts.quick)?;
    opts.text(String::new);
    opts.emit(
        || {
            format!(
                "patterns at a root (tokio, 64 B, publisher -> root -> subscriber)\n  1 pattern: {:.0} msgs/s; {} patterns: {:.0} msgs/s ({:.2} of one)\n  one topic against {} patterns: {:.0} ns one by one, {:.0} ns as a set",
                r.one,
                r.many,
                r.many_rate,
                r.many_rate / r.one,
                r.many,
                r.each_ns,
                r.set_ns
            )
        },
        || {
            json!({
                "part": "patterns",
                "one_pattern_msgs_s": r.one,
                "patterns": r.many,
                "many_patterns_msgs_s": r.many_rate,
                "ratio": r.many_rate / r.one,
                "match_each_ns": r.each_ns,
                "match_set_ns": r.set_ns,
            })
        },
    );
    Ok(())
}

/// The rows of `chaski graph` and `/metrics` (see [`crate::bench_observe`]).
fn observe_row(opts: &Options) -> Result<(), String> {
    let o = crate::bench_observe::measure(opts.quick)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    opts.text(String::new);
    opts.emit(
        || {
            format!(
                "seeing the mesh (tokio, loopback, in this process)\n  chaski graph: {} nodes, {} links walked in {:.0} ms (complete: {})\n  /metrics of a node with {} edges: {:.2} ms over HTTP (p50; max {:.2} ms), {:.3} ms to take and render, {} bytes",
                o.nodes,
                o.links,
                ms(o.walk),
                o.complete,
                o.edges,
                ms(o.scrape_p50),
                ms(o.scrape_max),
                ms(o.render_p50),
                o.scrape_bytes
            )
        },
        || {
            json!({
                "part": "observe",
                "nodes": o.nodes,
                "links": o.links,
                "walk_ms": ms(o.walk),
                "complete": o.complete,
                "edges": o.edges,
                "scrape_p50_ms": ms(o.scrape_p50),
                "scrape_max_ms": ms(o.scrape_max),
                "render_p50_ms": ms(o.render_p50),
                "scrape_bytes": o.scrape_bytes,
            })
        },
    );
    Ok(())
}

/// The file row (see [`crate::bench_files`]), beside the 64 KiB pub/sub rate of the run
/// (tokio, plaintext) when it was measured.
fn files_row(opts: &Options, pubsub_64k: Option<f64>) -> Result<(), String> {
    let r = crate::bench_files::measure(opts.quick)?;
    let mb_s = r.size as f64 / r.elapsed.as_secs_f64() / 1e6;
    opts.text(String::new);
    opts.emit(
        || {
            let beside = pubsub_64k.map_or_else(String::new, |p| {
                format!(", {:.2} of the 64 KiB pub/sub rate ({:.0} MB/s)", mb_s / p, p)
            });
            let mem: Vec<String> = r
                .memory
                .iter()
                .map(|(name, rest, peak)| {
                    format!(
                        "{name} {} MiB (+{} MiB)",
                        peak >> 10,
                        peak.saturating_sub(*rest) >> 10
                    )
                })
                .collect();
            format!(
                "file through a root to 2 receivers, {} MiB: {:.2} s, {mb_s:.0} MB/s to each{beside}\n  peak resident memory (growth over rest): {}",
                r.size >> 20,
                r.elapsed.as_secs_f64(),
                mem.join(", ")
            )
        },
        || {
            json!({
                "part": "files",
                "size": r.size,
                "seconds": r.elapsed.as_secs_f64(),
                "mb_per_s": mb_s,
                "pubsub_64k_mb_per_s": pubsub_64k,
                "vs_pubsub_64k": ratio_of(mb_s, pubsub_64k),
                "memory": r.memory.iter().map(|(n, rest, peak)| json!({
                    "process": n, "rest_kib": rest, "peak_kib": peak,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

/// The pub/sub table; gives the 64 KiB rate of plaintext tokio in MB/s, if measured.
fn throughput_table(opts: &Options) -> Result<Option<f64>, String> {
    let q = opts.quick;
    opts.text(String::new);
    opts.text(|| {
        format!(
            "{:<34} {:>14} {:>12} {:>10} {:>10}",
            "pub/sub throughput",
            "msgs/s",
            "MB/s",
            "vs raw",
            if opts.zenoh.is_some() { "vs zenoh" } else { "" }
        )
    });
    let row = |what: &str,
               runtime: Option<&str>,
               size: usize,
               msgs: f64,
               raw: f64,
               zen: Option<f64>,
               lost: Option<(u64, u64)>,
               plain: Option<f64>| {
        opts.emit(
            || {
                let name = match runtime {
                    Some(r) => format!("{what} {r}, {}", human_size(size)),
                    None => format!("{what}, {}", human_size(size)),
                };
                let lost = match lost {
                    Some((d, s)) if d < s => format!("  ({d} of {s} delivered)"),
                    _ => String::new(),
                };
                let secure = ratio_of(msgs, plain)
                    .map_or_else(String::new, |r| format!("  ({r:.2} of plaintext)"));
                format!(
                    "{name:<34} {msgs:>14.0} {:>12.1} {:>10.2} {:>10}{lost}{secure}",
                    msgs * size as f64 / 1e6,
                    msgs / raw,
                    ratio(msgs, zen)
                )
            },
            || {
                json!({
                    "part": "throughput",
                    "impl": what,
                    "runtime": runtime,
                    "size": size,
                    "msgs_per_s": msgs,
                    "mb_per_s": msgs * size as f64 / 1e6,
                    "vs_raw": msgs / raw,
                    "vs_zenoh": ratio_of(msgs, zen),
                    "delivered": lost.map(|l| l.0),
                    "sent": lost.map(|l| l.1),
                    "secure": plain.is_some(),
                    "vs_plaintext": ratio_of(msgs, plain),
                })
            },
        );
    };
    let mut raw = Vec::new();
    for size in SIZES {
        let r = raw_throughput(size, count_for(size, q)).map_err(|e| format!("raw: {e}"))?;
        row("raw TCP", None, size, r.msgs, r.msgs, None, None, None);
        raw.push(r);
    }
    let mut zen = vec![None; SIZES.len()];
    if let Some(bin) = &opts.zenoh {
        for (i, size) in SIZES.into_iter().enumerate() {
            let count = count_for(size, q);
            let v = zenoh(
                bin,
                &["throughput".into(), size.to_string(), count.to_string()],
            )?;
            let msgs = v.first().copied().unwrap_or(0.0);
            let lost = match (v.get(1), v.get(2)) {
                (Some(d), Some(s)) => Some((*d as u64, *s as u64)),
                _ => None,
            };
            row(
                "zenoh 1.x",
                None,
                size,
                msgs,
                raw[i].msgs,
                Some(msgs),
                lost,
                None,
            );
            zen[i] = Some(msgs);
        }
    }
    // Each runtime plain, then secure (TLS 1.3, mutual authentication) beside it.
    let ca = Ca::new().map_err(|e| e.to_string())?;
    let mut tokio_64k = None;
    for runtime in &opts.runtimes {
        let mut plain = [0.0; SIZES.len()];
        for secure in [false, true] {
            let pair = start_pair(runtime, secure.then_some(&ca))?;
            let label = if secure {
                format!("{runtime}+tls")
            } else {
                runtime.clone()
            };
            for (i, size) in SIZES.into_iter().enumerate() {
                let r = chaski_throughput(&pair, size, count_for(size, q))?;
                if !secure {
                    plain[i] = r.msgs;
                    if runtime == "tokio" && size == 64 * 1024 {
                        tokio_64k = Some(r.msgs * size as f64 / 1e6);
                    }
                }
                row(
                    "chaski",
                    Some(&label),
                    size,
                    r.msgs,
                    raw[i].msgs,
                    zen[i],
                    Some((r.delivered, r.sent)),
                    secure.then_some(plain[i]),
                );
            }
            pair.shutdown();
        }
    }
    handshakes(opts, &ca)?;
    Ok(tokio_64k)
}

/// How long an edge takes from `connect` to both Hellos crossed, plain and secure (TCP, the
/// TLS 1.3 handshake with both certificates checked, and the Hellos), on tokio.
fn handshakes(opts: &Options, ca: &Ca) -> Result<(), String> {
    let n = if opts.quick { 5 } else { 200 };
    opts.text(String::new);
    opts.text(|| {
        format!(
            "{:<34} {:>14} {:>12}",
            "edge set-up (connect to Hellos)", "p50", "p99"
        )
    });
    for secure in [false, true] {
        let pair = start_pair("tokio", secure.then_some(ca))?;
        let target = pair.b.local_addr().to_string();
        let peer = pair.b.id();
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            block_on(pair.a.close(peer)).map_err(|e| e.to_string())?;
            // b has taken the goodbye: the next connect is not a duplicate.
            let end = Instant::now() + Duration::from_secs(5);
            while !block_on(pair.b.edges())
                .map_err(|e| e.to_string())?
                .is_empty()
            {
                if Instant::now() > end {
                    return Err("the closed edge never went".into());
                }
                thread::sleep(Duration::from_micros(200));
            }
            let t = Instant::now();
            block_on(pair.a.connect(&target)).map_err(|e| e.to_string())?;
            times.push(t.elapsed());
        }
        pair.shutdown();
        let p = percentiles(times).ok_or("no handshake measured")?;
        opts.emit(
            || {
                format!(
                    "{:<34} {:>14} {:>12}",
                    if secure {
                        "edge set-up, tokio+tls"
                    } else {
                        "edge set-up, tokio"
                    },
                    us(p.p50),
                    us(p.p99)
                )
            },
            || {
                json!({
                    "part": "handshake",
                    "runtime": "tokio",
                    "secure": secure,
                    "p50_us": p.p50.as_secs_f64() * 1e6,
                    "p99_us": p.p99.as_secs_f64() * 1e6,
                    "count": n,
                })
            },
        );
    }
    Ok(())
}

fn rtt_table(opts: &Options) -> Result<(), String> {
    let samples = if opts.quick { 200 } else { 20_000 };
    opts.text(String::new);
    opts.text(|| {
        format!(
            "{:<34} {:>14} {:>12} {:>10} {:>10}",
            "round trip",
            "p50",
            "p99",
            "p50/raw",
            if opts.zenoh.is_some() { "/zenoh" } else { "" }
        )
    });
    let echo = raw_echo(samples).map_err(|e| format!("raw echo: {e}"))?;
    let raw_p50 = echo.map(|e| e.p50.as_secs_f64());
    let row = |name: &str,
               what: &str,
               runtime: Option<&str>,
               p: Option<Percentiles>,
               zen: Option<f64>| {
        opts.emit(
            || match p {
                Some(p) => format!(
                    "{name:<34} {:>14} {:>12} {:>10} {:>10}",
                    us(p.p50),
                    us(p.p99),
                    ratio(p.p50.as_secs_f64(), raw_p50),
                    ratio(p.p50.as_secs_f64(), zen)
                ),
                None => format!("{name:<34} {:>14}", "failed"),
            },
            || {
                let us = |d: Duration| d.as_secs_f64() * 1e6;
                json!({
                    "part": "rtt",
                    "what": what,
                    "runtime": runtime,
                    "p50_us": p.map(|p| us(p.p50)),
                    "p99_us": p.map(|p| us(p.p99)),
                    "vs_raw": p.and_then(|p| ratio_of(p.p50.as_secs_f64(), raw_p50)),
                    "vs_zenoh": p.and_then(|p| ratio_of(p.p50.as_secs_f64(), zen)),
                })
            },
        );
    };
    row("raw TCP echo (16 B)", "raw echo", None, echo, None);
    let mut zen = None;
    if let Some(bin) = &opts.zenoh {
        let v = zenoh(bin, &["get".into(), samples.to_string()])?;
        if let (Some(p50), Some(p99)) = (v.first(), v.get(1)) {
            let p = Percentiles {
                p50: Duration::from_secs_f64(p50 / 1e6),
                p99: Duration::from_secs_f64(p99 / 1e6),
            };
            zen = Some(p.p50.as_secs_f64());
            row("zenoh 1.x get (queryable)", "zenoh get", None, Some(p), zen);
        }
    }
    for runtime in &opts.runtimes {
        let pair = start_pair(runtime, None)?;
        let ping = chaski_ping(&pair, samples);
        let rpc = chaski_rpc(&pair, samples);
        pair.shutdown();
        row(
            &format!("chaski {runtime} ping"),
            "ping",
            Some(runtime),
            ping,
            zen,
        );
        row(
            &format!("chaski {runtime} RPC call"),
            "rpc",
            Some(runtime),
            rpc,
            zen,
        );
    }
    Ok(())
}
