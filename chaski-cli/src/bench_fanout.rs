//! `chaski bench --only fanout`: one publisher to eight subscribers (directly, and through a
//! root) and eight publishers to one subscriber, on tokio over loopback, 64-byte messages; the
//! rate is what the subscribers receive together.

use std::time::Instant;

use bytes::Bytes;

use chaski_tokio::{Config, Node};

const TOPIC: &str = "fan";

/// The three rows, in messages per second delivered (all subscribers together).
pub struct FanRates {
    /// One publisher to eight subscribers, each connected to it.
    pub direct: f64,
    /// One publisher to eight subscribers through a root.
    pub through_root: f64,
    /// Eight publishers to one subscriber.
    pub fan_in: f64,
}

fn cfg(name: &str) -> Config {
    Config::default().name(name).message_queue(65_536)
}

/// Counts what `subs` receive until each has `each` messages (or stays silent for 5 s); the
/// rate over the time from `start` to the last message.
async fn deliver(
    subs: &[Node],
    each: u64,
    publish: impl std::future::Future<Output = Result<(), String>>,
) -> Result<f64, String> {
    let consumers: Vec<_> = subs
        .iter()
        .map(|s| {
            let messages = s.messages();
            tokio::task::spawn_blocking(move || crate::bench_receive::receive(messages, each))
        })
        .collect();
    let start = Instant::now();
    publish.await?;
    let mut total = 0;
    let mut end = start;
    for c in consumers {
        let (got, last) = c.await.map_err(|e| e.to_string())?;
        if got < each {
            return Err(format!("a subscriber got {got} of {each} messages"));
        }
        total += got;
        end = end.max(last);
    }
    Ok(total as f64 / end.duration_since(start).as_secs_f64())
}

async fn nodes(prefix: &str, n: usize) -> Result<Vec<Node>, String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            Node::bind("127.0.0.1:0", cfg(&format!("{prefix}{i}")))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(out)
}

async fn publish_from(node: &Node, count: u64) -> Result<(), String> {
    let payload = Bytes::from(vec![7u8; 64]);
    for _ in 0..count {
        node.publish(TOPIC, payload.clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn fan_out(count: u64, root: bool) -> Result<f64, String> {
    let e = |e: chaski_tokio::Error| e.to_string();
    let subs = nodes("s", 8).await?;
    let publisher = Node::bind("127.0.0.1:0", cfg("p")).await.map_err(e)?;
    let hub = if root {
        Some(
            Node::bind("127.0.0.1:0", cfg("root").root(true))
                .await
                .map_err(e)?,
        )
    } else {
        None
    };
    for s in &subs {
        s.subscribe(TOPIC).await.map_err(e)?;
        match &hub {
            Some(h) => s.connect(&h.local_addr().to_string()).await.map_err(e)?,
            None => publisher
                .connect(&s.local_addr().to_string())
                .await
                .map_err(e)?,
        };
    }
    if let Some(h) = &hub {
        publisher
            .connect(&h.local_addr().to_string())
            .await
            .map_err(e)?;
    }
    let rate = deliver(&subs, count, publish_from(&publisher, count)).await;
    for n in subs.iter().chain([&publisher]).chain(hub.iter()) {
        let _ = n.shutdown().await;
    }
    rate
}

async fn fan_in(count: u64) -> Result<f64, String> {
    let e = |e: chaski_tokio::Error| e.to_string();
    let sub = Node::bind("127.0.0.1:0", cfg("s")).await.map_err(e)?;
    sub.subscribe(TOPIC).await.map_err(e)?;
    let pubs = nodes("p", 8).await?;
    for p in &pubs {
        p.connect(&sub.local_addr().to_string()).await.map_err(e)?;
    }
    let each = count / 8;
    let all = async {
        let runs = pubs.iter().map(|p| publish_from(p, each));
        for r in futures_util::future::join_all(runs).await {
            r?;
        }
        Ok(())
    };
    let rate = deliver(std::slice::from_ref(&sub), each * 8, all).await;
    for n in pubs.iter().chain([&sub]) {
        let _ = n.shutdown().await;
    }
    rate
}

/// Runs the part (`quick`: small counts).
pub fn measure(quick: bool) -> Result<FanRates, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let count = if quick { 2_000 } else { 200_000 };
    Ok(FanRates {
        direct: rt.block_on(fan_out(count, false))?,
        through_root: rt.block_on(fan_out(count, true))?,
        fan_in: rt.block_on(fan_in(count * 4))?,
    })
}
