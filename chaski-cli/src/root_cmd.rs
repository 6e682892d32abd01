//! `chaski root`: a root node (accepts every topic, relays, never pairs) until SIGINT or
//! SIGTERM.

use clap::Args;

use chaski_tokio::{Config, Node};

use crate::failure::Failure;
use crate::stay;

/// The options of `chaski root`.
#[derive(Args, Debug)]
pub struct RootArgs {
    /// Address to bind (TCP and UDP).
    #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:8511")]
    bind: String,
    /// Name (default ChaskiRoot), advertised address, other roots to join, liveness.
    #[command(flatten)]
    member: stay::Membership,
}

/// Runs the root until stopped; then says goodbye to every peer.
pub async fn run(args: RootArgs, base: Config) -> Result<(), Failure> {
    let cfg = args.member.apply(base.root(true), Some("ChaskiRoot"))?;
    let node = Node::bind(&args.bind, cfg).await?;
    crate::client::line(format_args!(
        "root {} listening on {} (TCP and UDP); SIGINT or SIGTERM to stop",
        chaski_proto::text::Escaped(node.name()),
        node.local_addr()
    ))?;
    Ok(stay::run_until_stopped(&node, &args.member, Vec::new()).await?)
}
