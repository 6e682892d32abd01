//! `chaski edges ADDR`: a node's edges and their latencies, as the node reports them through
//! its built-in `@node` service (answered only when its `introspect` setting is on).

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{EdgeReport, Error, Node, NODE_SERVICE};

use crate::client::{self, line};
use crate::failure::Failure;

/// The options of `chaski edges`.
#[derive(Args, Debug)]
pub struct EdgesArgs {
    /// The node.
    addr: String,
    /// Seconds the whole query may take.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON object: the node's name and id, and its edges.
    #[arg(long)]
    json: bool,
    /// Address to bind (default: the local address that reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// Connects to the node, asks for its edges and prints them (without the edge to this
/// client); names, topics and services as the peer gave them, escaped.
pub async fn run(args: EdgesArgs, base: chaski_tokio::Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let (limit, json) = (crate::secs(args.timeout)?, args.json);
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, base).await?;
    let ask = async {
        let edge = node.connect(&addr).await?;
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
        let line_json = serde_json::json!({
            "name": edge.name,
            "id": edge.id.to_string(),
            "edges": list,
        });
        line(line_json)?;
        return Ok(());
    }
    line(format_args!(
        "{} ({}): {} edges",
        Escaped(&edge.name),
        edge.addr,
        edges.len()
    ))?;
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let names: Vec<String> = edges.iter().map(|e| Escaped(&e.name).to_string()).collect();
    let w = names.iter().map(String::len).max().unwrap_or(0).max(4);
    line(format_args!(
        "{:<w$} {:<24} {:<4} {:>9} {:>11} {:>10}  TOPICS / SERVICES",
        "NAME", "ADDRESS", "DIR", "RTT ms", "LATENCY ms", "JITTER ms"
    ))?;
    for (e, name) in edges.iter().zip(&names) {
        let mut what: Vec<String> = e.topics.iter().map(|t| Escaped(t).to_string()).collect();
        what.extend(e.services.iter().map(|s| format!("service:{}", Escaped(s))));
        if e.root {
            what.insert(0, "root".into());
        }
        line(format_args!(
            "{:<w$} {:<24} {:<4} {:>9} {:>11} {:>10}  {}",
            name,
            e.addr.to_string(),
            if e.outbound { "out" } else { "in" },
            fmt(ms(e.rtt_us)),
            fmt(ms(e.latency_us)),
            fmt(ms(e.jitter_us)),
            what.join(" ")
        ))?;
    }
    Ok(())
}
