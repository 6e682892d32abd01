//! `chaski node`: a long-running node for scripts and containers, configured by flags or
//! `CHASKI_*` environment variables, so a compose file needs no code of its own.

use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;

use chaski_tokio::{Config, Node};

use crate::client;
use crate::failure::Failure;
use crate::stay;

/// The options of `chaski node` (each also read from the environment variable named).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to bind (TCP and UDP).
    #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:8511")]
    bind: String,
    #[command(flatten)]
    member: stay::Membership,
    /// Topics to subscribe to; what arrives is printed, one line each (repeat, or
    /// comma-separated).
    #[arg(long = "sub", env = "CHASKI_SUB", value_delimiter = ',')]
    sub: Vec<String>,
    /// A topic to publish on every `--every` seconds.
    #[arg(long = "pub", env = "CHASKI_PUB")]
    publish: Option<String>,
    /// Seconds between two publishes.
    #[arg(long, env = "CHASKI_EVERY", default_value_t = 1.0)]
    every: f64,
    /// The text published: `{seq}` becomes the message's number (from 1), `{name}` the
    /// node's name.
    #[arg(long, env = "CHASKI_MESSAGE", default_value = "{name} #{seq}")]
    message: String,
    /// Serve the example service `demo` (see `chaski serve`).
    #[arg(long, env = "CHASKI_SERVE")]
    serve: bool,
    /// Call `demo.add` on the mesh every `--every` seconds and print the answers.
    #[arg(long, env = "CHASKI_CALL")]
    call: bool,
    /// Run discovery once connected, to pair with the topics' clusters.
    #[arg(long, env = "CHASKI_DISCOVER")]
    discover: bool,
    /// Run as a root (accepts every topic, relays, never pairs).
    #[arg(long, env = "CHASKI_ROOT")]
    root: bool,
}

/// Runs the node until SIGINT or SIGTERM (or until nobody reads what it prints); then says
/// goodbye to every peer.
pub async fn run(args: NodeArgs, base: Config) -> Result<(), Failure> {
    let root = base.root || args.root;
    let cfg = args.member.apply(base.root(root), None)?;
    let every = crate::secs(args.every)?;
    if every.is_zero() {
        return Err(Failure {
            code: crate::failure::USAGE,
            message: "--every must be more than 0 seconds".into(),
        });
    }
    let node = Node::bind(&args.bind, cfg).await?;
    for t in &args.sub {
        node.subscribe(t).await?;
    }
    if args.serve {
        node.serve("demo", crate::serve_cmd::example_service())
            .await?;
    }
    client::line(format_args!(
        "node {} listening on {} (TCP and UDP); subscribed to [{}]{}",
        chaski_proto::text::Escaped(node.name()),
        node.local_addr(),
        args.sub.join(", "),
        if args.serve { "; serving demo" } else { "" }
    ))?;
    let mut tasks = Vec::new();
    if args.discover && !args.sub.is_empty() {
        let n = node.clone();
        tasks.push(tokio::spawn(
            async move { discover_when_connected(n).await },
        ));
    }
    if let Some(topic) = args.publish.clone() {
        let (n, text) = (node.clone(), args.message.clone());
        tasks.push(tokio::spawn(async move {
            publish_every(n, topic, text, every).await
        }));
    }
    if args.call {
        let n = node.clone();
        tasks.push(tokio::spawn(async move { call_every(n, every).await }));
    }
    if !args.sub.is_empty() {
        let mut messages = node.messages();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                if client::line(crate::sub_cmd::show(&m, false)).is_err() {
                    return stay::output_closed();
                }
            }
        }));
    }
    Ok(stay::run_until_stopped(&node, &args.member, tasks).await?)
}

/// Runs discovery once the node has an edge.
async fn discover_when_connected(node: Node) {
    while node.edges().await.is_ok_and(|e| e.is_empty()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Err(err) = node.discover().await {
        crate::note!("discovery failed: {err}");
    }
}

/// Publishes on `topic` every `every`, numbering the messages from 1.
async fn publish_every(node: Node, topic: String, text: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
        tick.tick().await;
        // `{n}` is the placeholder's older name.
        let msg = text
            .replace("{seq}", &n.to_string())
            .replace("{n}", &n.to_string())
            .replace("{name}", node.name());
        if let Err(err) = node.publish(&topic, msg.into_bytes()).await {
            crate::note!("publish on {topic} failed: {err}");
            return;
        }
    }
}

/// Calls `demo.add(n, n)` every `every` on whichever peer serves `demo`; prints each answer.
async fn call_every(node: Node, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
        tick.tick().await;
        let answer = match node.proxy("demo").await {
            Ok(p) => p
                .call::<_, serde_json::Value>("add", &(n, n))
                .await
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match answer {
            Ok(v) => {
                if client::line(format_args!("call demo.add({n}, {n}) = {v}")).is_err() {
                    return stay::output_closed();
                }
            }
            Err(err) => crate::note!("call demo.add({n}, {n}) failed: {err}"),
        }
    }
}
