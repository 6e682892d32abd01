//! `chaski edges ADDR`: a node's edges and their latencies, as the node reports them through
//! its built-in `@node` service (answered only when its `introspect` setting is on).

use std::time::Duration;

use chaski_tokio::{EdgeReport, Error, Node, NODE_SERVICE};

use crate::failure::Failure;

/// Connects to `addr`, asks for its edges and prints them (without the edge to this client).
pub async fn run(
    base: chaski_tokio::Config,
    addr: &str,
    limit: Duration,
    json: bool,
) -> Result<(), Failure> {
    let node = Node::bind(crate::client_bind(addr).await?, base).await?;
    let ask = async {
        let edge = node.connect(addr).await?;
        let edges: Vec<EdgeReport> = node
            .proxy_on(edge.id, NODE_SERVICE)
            .with_timeout(limit)
            .call("edges", &())
            .await?;
        Ok::<_, Error>((edge, edges))
    };
    let out = tokio::time::timeout(limit, ask)
        .await
        .unwrap_or(Err(Error::Timeout));
    let me = node.id();
    let _ = node.shutdown().await;
    let (edge, mut edges) = out?;
    edges.retain(|e| e.id != me);
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
    if json {
        let list: Vec<_> = edges
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id.to_string(),
                    "name": e.name,
                    "addr": e.addr.to_string(),
                    "listen": e.listen.map(|a| a.to_string()),
                    "direction": if e.outbound { "outbound" } else { "inbound" },
                    "root": e.root,
                    "pairing": e.pairing,
                    "topics": e.topics,
                    "services": e.services,
                    "rtt_ms": ms(e.rtt_us),
                    "latency_ms": ms(e.latency_us),
                    "jitter_ms": ms(e.jitter_us),
                })
            })
            .collect();
        let line = serde_json::json!({
            "name": edge.name,
            "id": edge.id.to_string(),
            "edges": list,
        });
        println!("{line}");
        return Ok(());
    }
    println!("{} ({}): {} edges", edge.name, edge.addr, edges.len());
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let w = edges.iter().map(|e| e.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<w$} {:<24} {:<4} {:>9} {:>11} {:>10}  TOPICS / SERVICES",
        "NAME", "ADDRESS", "DIR", "RTT ms", "LATENCY ms", "JITTER ms"
    );
    for e in &edges {
        let mut what: Vec<String> = e.topics.clone();
        what.extend(e.services.iter().map(|s| format!("service:{s}")));
        if e.root {
            what.insert(0, "root".into());
        }
        println!(
            "{:<w$} {:<24} {:<4} {:>9} {:>11} {:>10}  {}",
            e.name,
            e.addr.to_string(),
            if e.outbound { "out" } else { "in" },
            fmt(ms(e.rtt_us)),
            fmt(ms(e.latency_us)),
            fmt(ms(e.jitter_us)),
            what.join(" ")
        );
    }
    Ok(())
}
