//! `chaski bench --only processes`: 500 real `chaski node --discover` processes (20 with
//! `--quick`) join two connected roots on this machine, each subscribed to one of 10 topics.
//! Measured: the time until every node reports each of its topics paired (asked over UDP, as
//! `chaski status` does), then the time until one message per topic, published at a root, is
//! printed by every node; the resident memory of the nodes and the roots.
//!
//! Every process is on 127.0.0.1, so the roots and nodes are given room for that many
//! handshakes from one address (`max_handshakes_per_ip`, a bound meant for strangers).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chaski_tokio::{Config, Node};

use crate::bench_proc::Proc;

/// What the row measured.
pub struct ProcessRow {
    /// Node processes and topics.
    pub nodes: usize,
    pub topics: usize,
    /// From the first spawn until every node listened.
    pub started: Duration,
    /// From the first spawn until every node reported each topic paired.
    pub paired: Duration,
    /// Nodes that printed the message of their topic, and the extra copies printed.
    pub delivered: usize,
    pub duplicates: usize,
    /// From the publishes until the last node printed its message.
    pub delivery: Duration,
    /// Resident memory of a node process (mean and largest), and of each root, in KiB.
    pub node_kib_mean: u64,
    pub node_kib_max: u64,
    pub roots_kib: [u64; 2],
    /// Edges each root holds once the nodes paired.
    pub root_edges: [usize; 2],
}

/// Runs the row (its own tokio runtime for the node that asks and publishes).
pub fn measure(quick: bool) -> Result<ProcessRow, String> {
    let (nodes, topics) = if quick { (20, 2) } else { (500, 10) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    run(&rt, nodes, topics)
}

fn run(rt: &tokio::runtime::Runtime, n: usize, topics: usize) -> Result<ProcessRow, String> {
    let room = (n + 16).to_string();
    let root_env = [
        ("CHASKI_MAX_EDGES", room.as_str()),
        ("CHASKI_MAX_HANDSHAKES", room.as_str()),
        ("CHASKI_MAX_HANDSHAKES_PER_IP", room.as_str()),
    ];
    let node_env = [("CHASKI_MAX_HANDSHAKES_PER_IP", "64")];
    let wait = Duration::from_secs(60);
    let a = Proc::start(
        "root A",
        &["root", "--bind", "127.0.0.1:0", "--name", "RootA"],
        &root_env,
        false,
    )?;
    let a_addr = a.listen_addr(wait)?.to_string();
    let b = Proc::start(
        "root B",
        &[
            "root",
            "--bind",
            "127.0.0.1:0",
            "--name",
            "RootB",
            "--connect",
            &a_addr,
        ],
        &root_env,
        false,
    )?;
    let b_addr = b.listen_addr(wait)?.to_string();
    let roots = [a_addr.clone(), b_addr.clone()];
    let t0 = Instant::now();
    let mut procs = Vec::with_capacity(n);
    for i in 0..n {
        let (name, topic) = (format!("n{i}"), format!("t{}", i % topics));
        let args = [
            "node",
            "--bind",
            "127.0.0.1:0",
            "--name",
            &name,
            "--connect",
            &roots[i % 2],
            "--sub",
            &topic,
            "--discover",
        ];
        procs.push(Proc::start(&name, &args, &node_env, false)?);
    }
    let addrs = procs
        .iter()
        .map(|p| p.listen_addr(wait).map(|a| a.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let started = t0.elapsed();
    let asker = rt
        .block_on(Node::bind("127.0.0.1:0", Config::default().name("bench")))
        .map_err(|e| e.to_string())?;
    // Every node's status, asked again until each of its topics is paired.
    let mut waiting: Vec<usize> = (0..n).collect();
    let deadline = t0 + Duration::from_secs(600);
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {n} nodes not paired after 600 s (n{} first)",
                waiting.len(),
                waiting[0]
            ));
        }
        let paired: Vec<bool> = rt.block_on(async {
            let asks = waiting.iter().map(|&i| {
                let (asker, addr) = (&asker, &addrs[i]);
                async move {
                    let status =
                        tokio::time::timeout(Duration::from_secs(2), asker.status(addr)).await;
                    matches!(status, Ok(Ok(s)) if !s.paired.is_empty() && s.paired.values().all(|p| *p))
                }
            });
            futures_util::future::join_all(asks).await
        });
        let mut still = Vec::new();
        for (i, done) in waiting.iter().zip(paired) {
            if !done {
                still.push(*i);
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let paired = t0.elapsed();
    let root_edges = [&a_addr, &b_addr].map(|addr| {
        rt.block_on(asker.status(addr))
            .map(|s| s.edges)
            .unwrap_or(0)
    });
    // One message per topic, published at root A.
    rt.block_on(asker.connect(&a_addr))
        .map_err(|e| format!("connecting to root A: {e}"))?;
    let sent = Instant::now();
    for t in 0..topics {
        rt.block_on(asker.publish(&format!("t{t}"), format!("probe-{t}").into_bytes()))
            .map_err(|e| e.to_string())?;
    }
    let mut got: HashSet<usize> = HashSet::new();
    let mut duplicates = 0;
    let mut last = sent;
    let until = sent + Duration::from_secs(60);
    while got.len() < n && Instant::now() < until {
        let mut any = false;
        for (i, p) in procs.iter().enumerate() {
            while let Ok(line) = p.lines.try_recv() {
                if line.contains(&format!("probe-{} ", i % topics)) {
                    any = true;
                    last = Instant::now();
                    if !got.insert(i) {
                        duplicates += 1;
                    }
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mems: Vec<u64> = procs.iter().map(|p| p.mem("VmRSS:")).collect();
    let roots_kib = [a.mem("VmRSS:"), b.mem("VmRSS:")];
    let _ = rt.block_on(asker.shutdown());
    Ok(ProcessRow {
        nodes: n,
        topics,
        started,
        paired,
        delivered: got.len(),
        duplicates,
        delivery: last.duration_since(sent),
        node_kib_mean: mems.iter().sum::<u64>() / n.max(1) as u64,
        node_kib_max: mems.iter().copied().max().unwrap_or(0),
        roots_kib,
        root_edges,
    })
}
