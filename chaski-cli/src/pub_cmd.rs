//! `chaski pub ADDR TOPIC MESSAGE`: connect, publish one message, and leave.

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, Node};

use crate::client;
use crate::failure::Failure;

/// The options of `chaski pub`.
#[derive(Args, Debug)]
pub struct PubArgs {
    /// A node to connect to.
    addr: String,
    /// Topic.
    topic: String,
    /// The message (sent as UTF-8 bytes).
    message: String,
    /// Address to bind (default: the local address that reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// Publishes once; the shutdown writes the message (and a goodbye) before the process ends.
pub async fn run(args: PubArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, base).await?;
    let edge = node.connect(&addr).await?;
    if !edge.root && !edge.topics.contains(&args.topic) {
        crate::note!(
            "note: {} neither subscribes to {:?} nor is a root: it will not receive this",
            Escaped(&edge.name),
            args.topic
        );
    }
    node.publish(&args.topic, args.message.into_bytes()).await?;
    crate::note!("published on {:?} to {}", args.topic, Escaped(&edge.name));
    Ok(node.shutdown().await?)
}
