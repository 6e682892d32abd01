//! `chaski status ADDR`: a node's status over UDP.

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, Node};

use crate::client::{self, line};
use crate::failure::Failure;

/// The options of `chaski status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node.
    addr: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
    /// Address to bind (default: the local address that reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// Asks once, prints the answer.
pub async fn run(args: StatusArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let cfg = base.status_timeout(crate::secs(args.timeout)?);
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, cfg).await?;
    let asked = node.status(&addr).await;
    let _ = node.shutdown().await;
    let s = asked?;
    if args.json {
        line(serde_json::json!({
            "name": s.name,
            "id": s.id.to_string(),
            "root": s.root,
            "edges": s.edges,
            "reconnecting": s.reconnecting,
            "topics": s.paired,
            "services": s.services,
            "truncated": s.truncated,
        }))?;
        return Ok(());
    }
    line(format_args!("name:         {}", Escaped(&s.name)))?;
    line(format_args!("id:           {}", s.id))?;
    line(format_args!("root:         {}", s.root))?;
    line(format_args!("edges:        {}", s.edges))?;
    line(format_args!("reconnecting: {}", s.reconnecting))?;
    for (t, p) in &s.paired {
        let state = if *p { "paired" } else { "not paired" };
        line(format_args!("topic:        {} ({state})", Escaped(t)))?;
    }
    for svc in &s.services {
        line(format_args!("service:      {}", Escaped(svc)))?;
    }
    Ok(())
}
