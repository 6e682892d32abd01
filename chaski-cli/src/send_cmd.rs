//! `chaski send ADDR TOPIC FILE...`: connect, send each file on the topic (to every node that
//! receives files there, through roots), print one line per file sent, and stay a little for
//! receivers that missed chunks.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, Node, Sent};

use crate::client;
use crate::failure::{Failure, USAGE};
use crate::progress::Progress;

/// The options of `chaski send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// A node to connect to (a root, or a node that receives files on TOPIC).
    addr: String,
    /// The topic to send on.
    topic: String,
    /// Files to send, one after the other.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The sender's data about each file (UTF-8; receivers get it as is).
    #[arg(long, default_value = "")]
    meta: String,
    /// Seconds to stay after the last file, answering receivers that missed chunks.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    keep: f64,
    /// Address to bind (receivers that miss chunks dial it; default: the local address that
    /// reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
    /// One JSON object per file sent: name, size, sha256.
    #[arg(long)]
    json: bool,
}

/// One sent file as printed.
fn show(path: &std::path::Path, s: &Sent, json: bool) -> String {
    if json {
        serde_json::json!({
            "file": path.display().to_string(),
            "name": s.name,
            "size": s.size,
            "sha256": s.sha256_hex(),
        })
        .to_string()
    } else {
        format!(
            "sent {} ({} bytes, sha256 {})",
            Escaped(&path.display().to_string()),
            s.size,
            s.sha256_hex()
        )
    }
}

/// Sends every file; fails on the first that cannot be sent.
pub async fn run(args: SendArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let keep = crate::secs(args.keep)?;
    for f in &args.files {
        if !f.is_file() {
            return Err(Failure {
                code: USAGE,
                message: format!("{}: not a readable file", Escaped(&f.display().to_string())),
            });
        }
    }
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, base).await?;
    let edge = node.connect(&addr).await?;
    if !edge.root
        && !edge
            .topics
            .iter()
            .any(|t| chaski_proto::topic::matches(t, &args.topic))
    {
        crate::note!(
            "note: {} neither receives on {:?} nor is a root: it will not take these files",
            Escaped(&edge.name),
            args.topic
        );
    }
    for path in &args.files {
        let transfer = node
            .send_file(&args.topic, path, args.meta.clone().into_bytes())
            .await
            .map_err(|e| Failure::from(e).context(&path.display().to_string()))?;
        let mut bar = Progress::new(transfer.name(), transfer.size());
        let mut transfer = std::pin::pin!(transfer);
        let sent = loop {
            tokio::select! {
                r = &mut transfer => break r,
                _ = tokio::time::sleep(Duration::from_millis(100)) => bar.update(transfer.sent()),
            }
        };
        bar.finish();
        let sent = sent.map_err(|e| Failure::from(e).context(&path.display().to_string()))?;
        if client::line(show(path, &sent, args.json)).is_err() {
            break;
        }
    }
    // Receivers that missed chunks ask the sender: stay a little for them.
    tokio::time::sleep(keep).await;
    Ok(node.shutdown().await?)
}
