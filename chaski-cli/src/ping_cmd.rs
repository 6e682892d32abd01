//! `chaski ping ADDR`: round trips to a node, like `ping`.

use std::time::Duration;

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, Node};

use crate::client::{self, line};
use crate::failure::{self, Failure};

/// The options of `chaski ping`.
#[derive(Args, Debug)]
pub struct PingArgs {
    /// The node.
    addr: String,
    /// How many pings.
    #[arg(long, short = 'c', default_value_t = 5)]
    count: usize,
    /// Seconds between two pings.
    #[arg(long, short = 'i', default_value_t = 0.2)]
    interval: f64,
    /// One JSON object per ping, then one for the summary.
    #[arg(long)]
    json: bool,
    /// Address to bind (default: the local address that reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// One line per ping, then the minimum, median, 99th percentile and maximum.
pub async fn run(args: PingArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let interval = crate::secs(args.interval)?;
    if args.count == 0 {
        return Err(Failure {
            code: failure::USAGE,
            message: "--count must be at least 1".into(),
        });
    }
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, base).await?;
    let edge = node.connect(&addr).await?;
    let name = Escaped(&edge.name);
    if !args.json {
        line(format_args!("PING {name} ({})", edge.addr))?;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rtts = Vec::with_capacity(args.count);
    for seq in 1..=args.count {
        let rtt = node.ping(edge.id, 0).await?;
        rtts.push(rtt);
        if args.json {
            line(serde_json::json!({ "seq": seq, "rtt_ms": ms(rtt) }))?;
        } else {
            line(format_args!("seq={seq} rtt={:.3} ms", ms(rtt)))?;
        }
        if seq < args.count {
            tokio::time::sleep(interval).await;
        }
    }
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1];
    let (min, p50, p99, max) = (rtts[0], at(0.5), at(0.99), rtts[rtts.len() - 1]);
    if args.json {
        line(serde_json::json!({
            "peer": edge.name,
            "count": args.count,
            "min_ms": ms(min),
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
            "max_ms": ms(max),
        }))?;
    } else {
        line(format_args!(
            "{} pings: min {:.3} / p50 {:.3} / p99 {:.3} / max {:.3} ms",
            args.count,
            ms(min),
            ms(p50),
            ms(p99),
            ms(max)
        ))?;
    }
    Ok(node.shutdown().await?)
}
