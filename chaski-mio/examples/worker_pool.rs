//! A worker pool behind a service name, without an async runtime: three workers serve `work`
//! behind a hub; a client that only knows the hub finds them through the mesh (`proxy`
//! searches, the workers dial it), sends 30 jobs at once from threads (spread by fewest in
//! flight), then loses a worker in the middle of a second batch: its jobs move to the others and
//! every job is answered. The program checks its own output and fails otherwise.
//!
//! `cargo run -p chaski-mio --example worker_pool`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaski_mio::{Config, Error, Node, Proxy, Service};

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// A worker's service: `square` takes a moment, then answers who did it and the result.
fn work(name: &'static str) -> Service {
    Service::builder()
        .method("square", move |n: u64| {
            std::thread::sleep(Duration::from_millis(20));
            Ok((name.to_string(), n * n))
        })
        .build()
}

/// Runs jobs `range` at once, one thread each; returns how many each worker did.
fn batch(pool: &Proxy, range: std::ops::Range<u64>) -> Result<BTreeMap<String, u32>, Error> {
    let done: Vec<Result<String, Error>> = std::thread::scope(|s| {
        let jobs: Vec<_> = range
            .map(|n| {
                s.spawn(move || {
                    let (worker, sq): (String, u64) = pool.call("square", &n)?;
                    assert_eq!(sq, n * n, "{worker} got job {n} wrong");
                    Ok(worker)
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("a job thread"))
            .collect()
    });
    let mut tally = BTreeMap::new();
    for worker in done {
        *tally.entry(worker?).or_default() += 1;
    }
    Ok(tally)
}

fn main() -> Result<(), Error> {
    let hub = Node::bind("127.0.0.1:0", Config::default().name("hub"))?;
    let mut workers = Vec::new();
    for name in WORKERS {
        let w = Node::bind("127.0.0.1:0", Config::default().name(name))?;
        w.serve("work", work(name))?;
        w.connect(&hub.address())?;
        workers.push(w);
    }
    let client = Node::bind("127.0.0.1:0", Config::default().name("client"))?;
    client.connect(&hub.address())?;
    let pool = client.proxy("work")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.servers().len() < WORKERS.len() {
        assert!(Instant::now() < deadline, "the workers never all connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "client: found {} workers of `work` through the hub",
        WORKERS.len()
    );

    let tally = batch(&pool, 0..30)?;
    println!("client: 30 jobs done: {tally:?}");
    assert_eq!(tally.len(), WORKERS.len(), "every worker took jobs");

    let gone = workers.remove(0);
    let tally = std::thread::scope(|s| {
        let second = s.spawn(|| batch(&pool, 30..60));
        std::thread::sleep(Duration::from_millis(5));
        gone.shutdown()?;
        second.join().expect("the second batch")
    })?;
    println!("client: w1 left mid-batch; 30 more jobs done: {tally:?}");
    assert_eq!(tally.values().sum::<u32>(), 30, "every job answered");

    for w in workers {
        w.shutdown()?;
    }
    client.shutdown()?;
    hub.shutdown()?;
    println!("pool: 60 jobs answered over 3 workers, one lost mid-batch");
    Ok(())
}
