//! `chaski bench --only patterns`: a root relaying to a subscriber that holds one pattern, then
//! one that holds a thousand distinct patterns (one of them matching): the rate delivered in
//! each case, and the cost of deciding one message against the thousand patterns, matched one
//! by one and as one set.

use std::time::Instant;

use bytes::Bytes;

use chaski_proto::patterns::PatternSet;
use chaski_tokio::{Config, Node};

/// What the part measured.
pub struct PatternRates {
    /// Messages per second delivered with one pattern at the root, and with `many`.
    pub one: f64,
    /// With `many` patterns.
    pub many_rate: f64,
    /// How many patterns the second subscriber holds.
    pub many: usize,
    /// Nanoseconds to decide one topic against the patterns matched one by one, and as a set.
    pub each_ns: f64,
    /// As a set.
    pub set_ns: f64,
}

/// Last in any order a list of the patterns could be scanned in (announced, or sorted).
const TOPIC: &str = "zbench/t";

/// The patterns of a subscriber: `many - 1` that never match, and `zbench/*`.
fn patterns(many: usize) -> Vec<String> {
    (1..many)
        .map(|i| format!("x{i}/*/v"))
        .chain(["zbench/*".to_string()])
        .collect()
}

async fn rate(many: usize, count: u64) -> Result<f64, String> {
    let e = |e: chaski_tokio::Error| e.to_string();
    let cfg = |name: &str| {
        Config::default()
            .name(name)
            .message_queue(65_536)
            .max_peer_patterns(many + 8)
            .max_peer_topics(many + 8)
    };
    let root = Node::bind("127.0.0.1:0", cfg("root").root(true))
        .await
        .map_err(e)?;
    let sub = Node::bind("127.0.0.1:0", cfg("sub")).await.map_err(e)?;
    let publisher = Node::bind("127.0.0.1:0", cfg("pub")).await.map_err(e)?;
    for p in patterns(many) {
        sub.subscribe(&p).await.map_err(e)?;
    }
    let root_addr = root.local_addr().to_string();
    sub.connect(&root_addr).await.map_err(e)?;
    publisher.connect(&root_addr).await.map_err(e)?;
    // The root knows the subscriber's patterns from its Hello.
    let messages = sub.messages();
    let consumer =
        tokio::task::spawn_blocking(move || crate::bench_receive::receive(messages, count));
    let payload = Bytes::from(vec![7u8; 64]);
    let start = Instant::now();
    for _ in 0..count {
        publisher.publish(TOPIC, payload.clone()).await.map_err(e)?;
    }
    let (got, last) = consumer.await.map_err(|e| e.to_string())?;
    for n in [&publisher, &sub, &root] {
        let _ = n.shutdown().await;
    }
    if got < count {
        return Err(format!("{got} of {count} messages arrived"));
    }
    Ok(got as f64 / last.duration_since(start).as_secs_f64())
}

/// Runs the part (`quick`: small counts).
pub fn measure(quick: bool) -> Result<PatternRates, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (count, many) = if quick { (2_000, 100) } else { (300_000, 1000) };
    let one = rt.block_on(rate(1, count))?;
    let many_rate = rt.block_on(rate(many, count))?;
    // One decision, both ways.
    let list = patterns(many);
    let set = PatternSet::new(&list);
    let rounds = if quick { 100 } else { 20_000 };
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(
            list.iter()
                .any(|p| chaski_proto::topic::matches(p, std::hint::black_box(TOPIC))),
        );
    }
    let each_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(set.matches(std::hint::black_box(TOPIC)));
    }
    let set_ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    Ok(PatternRates {
        one,
        many_rate,
        many,
        each_ns,
        set_ns,
    })
}
