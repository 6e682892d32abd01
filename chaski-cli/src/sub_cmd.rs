//! `chaski sub ADDR TOPIC...`: connect, subscribe, and print every message received.

use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, Node, Received};

use crate::client;
use crate::failure::{self, Failure};
use crate::stay;

/// The options of `chaski sub`.
#[derive(Args, Debug)]
pub struct SubArgs {
    /// A node to connect to (host:port, Name@host:port; an IPv6 host in brackets).
    addr: String,
    /// Topics to subscribe to.
    #[arg(required = true)]
    topics: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<usize>,
    /// Give up (exit code 4) when this many seconds pass without a message.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Run discovery after connecting, to pair with the topics' clusters.
    #[arg(long)]
    discover: bool,
    /// Address to bind (peers that pair with it dial it here).
    #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:0")]
    bind: String,
    /// The address peers should dial, when the bound one is not reachable from them.
    #[arg(long, env = "CHASKI_ADVERTISE")]
    advertise: Option<String>,
    /// One JSON object per message: topic, payload (UTF-8, lossy), hops, origin.
    #[arg(long)]
    json: bool,
}

/// One message as `sub` prints it: JSON, or `[topic] payload (hops n)` with whatever a peer
/// chose (topic and payload) escaped.
pub fn show(m: &Received, json: bool) -> String {
    let payload = String::from_utf8_lossy(&m.payload);
    if json {
        serde_json::json!({
            "topic": m.topic,
            "payload": payload,
            "hops": m.hops,
            "origin": m.origin.map(|o| o.to_string()),
        })
        .to_string()
    } else {
        format!(
            "[{}] {} (hops {})",
            Escaped(&m.topic),
            Escaped(&payload),
            m.hops
        )
    }
}

/// Subscribes and prints until `--count`, `--timeout`, a signal, or a closed output.
pub async fn run(args: SubArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let quiet = args.timeout.map(crate::secs).transpose()?;
    let cfg = base.advertise(stay::advertised(args.advertise.as_deref())?);
    let node = Node::bind(&args.bind, cfg).await?;
    for t in &args.topics {
        node.subscribe(t).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let edge = stay::connect_retrying(&node, &addr, Some(deadline)).await?;
    crate::note!(
        "connected to {} at {}; subscribed to {}",
        Escaped(&edge.name),
        edge.addr,
        Escaped(&args.topics.join(", "))
    );
    if args.discover {
        node.discover().await?;
    }
    // Stays connected to ADDR: dials it again if it says goodbye (a restart).
    let released = stay::Released::default();
    let watcher = tokio::spawn(stay::watch_events(node.clone(), false, released.clone()));
    let keeper = tokio::spawn(stay::keep_connected(
        node.clone(),
        vec![(addr.clone(), Some(edge.id))],
        released,
    ));
    let mut messages = node.messages();
    let mut n = 0;
    let stop = stay::stop_signal();
    tokio::pin!(stop);
    let mut outcome = Ok(());
    loop {
        let silence = async {
            match quiet {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let m = tokio::select! {
            m = messages.next() => m,
            _ = &mut stop => break,
            _ = silence => {
                outcome = Err(Failure {
                    code: failure::TIMEOUT,
                    message: format!(
                        "no message for {} s",
                        quiet.unwrap_or_default().as_secs_f64()
                    ),
                });
                break;
            }
        };
        let Some(m) = m else { break };
        if client::line(show(&m, args.json)).is_err() {
            // Nobody reads our output any more: stop, with a goodbye to the peers.
            break;
        }
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            break;
        }
    }
    keeper.abort();
    watcher.abort();
    node.shutdown().await?;
    outcome
}
