//! A worker pool behind a service name: three workers serve `work` behind a hub; a client that
//! only knows the hub finds them through the mesh (`proxy` searches, the workers dial it), sends
//! 30 jobs at once (spread by fewest in flight), then loses a worker in the middle of a second
//! batch: its jobs move to the others and every job is answered. The program checks its own
//! output and fails otherwise.
//!
//! `cargo run -p chaski-smol --example worker_pool`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaski_smol::{Config, Error, Node, Proxy, Service};
use futures_util::future::join_all;

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// A worker's service: `square` takes a moment, then answers who did it and the result.
fn work(name: &'static str) -> Service {
    Service::builder()
        .method_async("square", move |n: u64| async move {
            smol::Timer::after(Duration::from_millis(20)).await;
            Ok((name.to_string(), n * n))
        })
        .build()
}

/// Runs jobs `range` at once; returns how many each worker did.
async fn batch(pool: &Proxy, range: std::ops::Range<u64>) -> Result<BTreeMap<String, u32>, Error> {
    let jobs = range.map(|n| {
        let pool = pool.clone();
        async move {
            let (worker, sq): (String, u64) = pool.call("square", &n).await?;
            assert_eq!(sq, n * n, "{worker} got job {n} wrong");
            Ok::<_, Error>(worker)
        }
    });
    let mut tally = BTreeMap::new();
    for worker in join_all(jobs).await {
        *tally.entry(worker?).or_default() += 1;
    }
    Ok(tally)
}

fn main() -> Result<(), Error> {
    smol::block_on(run())
}

async fn run() -> Result<(), Error> {
    let hub = Node::bind("127.0.0.1:0", Config::default().name("hub")).await?;
    let mut workers = Vec::new();
    for name in WORKERS {
        let w = Node::bind("127.0.0.1:0", Config::default().name(name)).await?;
        w.serve("work", work(name)).await?;
        w.connect(&hub.address()).await?;
        workers.push(w);
    }
    let client = Node::bind("127.0.0.1:0", Config::default().name("client")).await?;
    client.connect(&hub.address()).await?;
    let pool = client.proxy("work").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.servers().await.len() < WORKERS.len() {
        assert!(Instant::now() < deadline, "the workers never all connected");
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    println!(
        "client: found {} workers of `work` through the hub",
        WORKERS.len()
    );

    let tally = batch(&pool, 0..30).await?;
    println!("client: 30 jobs done: {tally:?}");
    assert_eq!(tally.len(), WORKERS.len(), "every worker took jobs");

    let gone = workers.remove(0);
    let second = smol::spawn({
        let pool = pool.clone();
        async move { batch(&pool, 30..60).await }
    });
    smol::Timer::after(Duration::from_millis(5)).await;
    gone.shutdown().await?;
    let tally = second.await?;
    println!("client: w1 left mid-batch; 30 more jobs done: {tally:?}");
    assert_eq!(tally.values().sum::<u32>(), 30, "every job answered");

    for w in workers {
        w.shutdown().await?;
    }
    client.shutdown().await?;
    hub.shutdown().await?;
    println!("pool: 60 jobs answered over 3 workers, one lost mid-batch");
    Ok(())
}
