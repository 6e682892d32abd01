//! Zenoh on the same work as `chaski bench`: two peers in one process over TCP loopback,
//! multicast scouting off.
//!
//! ```text
//! zenoh-compare throughput SIZE COUNT   # prints: msgs_per_s delivered sent
//! zenoh-compare get SAMPLES             # prints: p50_us p99_us
//! ```
//!
//! `chaski bench --zenoh target/release/zenoh-compare` runs it beside every row.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zenoh::qos::CongestionControl;
use zenoh::{Config, Session, Wait};

fn config(listen: Option<&str>, connect: Option<&str>) -> Config {
    let mut c = Config::default();
    c.insert_json5("mode", r#""peer""#).unwrap();
    c.insert_json5("scouting/multicast/enabled", "false").unwrap();
    c.insert_json5("scouting/gossip/enabled", "false").unwrap();
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!(r#"["tcp/{l}"]"#))
            .unwrap();
    } else {
        c.insert_json5("listen/endpoints", "[]").unwrap();
    }
    if let Some(to) = connect {
        c.insert_json5("connect/endpoints", &format!(r#"["tcp/{to}"]"#))
            .unwrap();
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn pair() -> (Session, Session) {
    let addr = format!("127.0.0.1:{}", free_port());
    let b = zenoh::open(config(Some(&addr), None)).await.expect("peer b");
    let a = zenoh::open(config(None, Some(&addr))).await.expect("peer a");
    // Wait until a sees b.
    for _ in 0..500 {
        if a.info().peers_zid().await.next().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (a, b)
}

async fn throughput(size: usize, count: u64) {
    let (a, b) = pair().await;
    let got = Arc::new(AtomicU64::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let (g, l) = (got.clone(), last.clone());
    let _sub = b
        .declare_subscriber("bench")
        .callback(move |_sample| {
            if g.fetch_add(1, Ordering::Relaxed) + 1 == count {
                *l.lock().unwrap() = Instant::now();
            }
        })
        .await
        .expect("subscriber");
    let publisher = a
        .declare_publisher("bench")
        .congestion_control(CongestionControl::Block)
        .await
        .expect("publisher");
    // Let the subscription reach the publisher.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payload = vec![7u8; size];
    let start = Instant::now();
    let mut sent = 0;
    for _ in 0..count {
        if publisher.put(payload.clone()).wait().is_err() {
            break;
        }
        sent += 1;
    }
    let end = Instant::now() + Duration::from_secs(10);
    while got.load(Ordering::Relaxed) < count && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delivered = got.load(Ordering::Relaxed);
    let took = if delivered == count {
        last.lock().unwrap().duration_since(start)
    } else {
        start.elapsed()
    };
    println!(
        "{:.0} {delivered} {sent}",
        delivered as f64 / took.as_secs_f64()
    );
}

async fn get(samples: usize) {
    let (a, b) = pair().await;
    let _q = b
        .declare_queryable("rpc")
        .callback(|query| {
            let _ = query.reply("rpc", vec![1u8; 8]).wait();
        })
        .await
        .expect("queryable");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let replies = a.get("rpc").await.expect("get");
        let mut n = 0;
        while replies.recv_async().await.is_ok() {
            n += 1;
        }
        if n == 0 {
            eprintln!("no reply");
            std::process::exit(1);
        }
        times.push(t.elapsed());
    }
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!("{:.1} {:.1}", p(0.5), p(0.99));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("usage: zenoh-compare throughput SIZE COUNT | get SAMPLES");
                std::process::exit(2)
            })
    };
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(num(2) as usize, num(3)).await,
        Some("get") => get(num(2) as usize).await,
        _ => {
            eprintln!("usage: zenoh-compare throughput SIZE COUNT | get SAMPLES");
            std::process::exit(2)
        }
    }
}
