//! `chaski receive ADDR TOPIC --dir DIR`: connect, take the files offered on the topic into a
//! directory (each checked against its SHA-256 before it gets its name), and print one line per
//! file received.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;

use chaski_proto::text::Escaped;
use chaski_tokio::{Config, FileEvent, Node, ReceiveOptions, ReceivedFile};

use crate::client;
use crate::failure::{self, Failure};
use crate::progress::Progress;
use crate::stay;

/// The options of `chaski receive`.
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// A node to connect to (a root, or the sender).
    addr: String,
    /// The topic or pattern to receive files on.
    topic: String,
    /// The directory files go to (it must exist).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The largest file taken, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 30)]
    max_size: u64,
    /// Replace a file of the same name (by default a new file gets a new name: `a (1).txt`).
    #[arg(long)]
    overwrite: bool,
    /// Exit after this many files.
    #[arg(long)]
    count: Option<usize>,
    /// Give up (exit code 4) when this many seconds pass without a file.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Address to bind.
    #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:0")]
    bind: String,
    /// The address peers should dial, when the bound one is not reachable from them.
    #[arg(long, env = "CHASKI_ADVERTISE")]
    advertise: Option<String>,
    /// One JSON object per file: name, path, size, sha256, from, topic, meta.
    #[arg(long)]
    json: bool,
}

/// One received file as printed.
fn show(f: &ReceivedFile, json: bool) -> String {
    if json {
        serde_json::json!({
            "name": f.name,
            "path": f.path.display().to_string(),
            "size": f.size,
            "sha256": f.sha256_hex(),
            "from": f.from().to_string(),
            "topic": f.topic,
            "meta": String::from_utf8_lossy(&f.meta),
        })
        .to_string()
    } else {
        format!(
            "received {} ({} bytes, sha256 {}) from {}",
            Escaped(&f.path.display().to_string()),
            f.size,
            f.sha256_hex(),
            f.from()
        )
    }
}

/// Receives and prints until `--count`, `--timeout`, a signal, or a closed output.
pub async fn run(args: ReceiveArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let quiet = args.timeout.map(crate::secs).transpose()?;
    if !args.dir.is_dir() {
        return Err(Failure {
            code: failure::USAGE,
            message: format!(
                "--dir {}: not a directory",
                Escaped(&args.dir.display().to_string())
            ),
        });
    }
    let cfg = base.advertise(stay::advertised(args.advertise.as_deref())?);
    let node = Node::bind(&args.bind, cfg).await?;
    let options = ReceiveOptions::default()
        .max_size(args.max_size)
        .overwrite(args.overwrite);
    let mut files = node.receive_files(&args.topic, &args.dir, options).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let edge = stay::connect_retrying(&node, &addr, Some(deadline)).await?;
    crate::note!(
        "connected to {} at {}; receiving files on {} into {}",
        Escaped(&edge.name),
        edge.addr,
        Escaped(&args.topic),
        Escaped(&args.dir.display().to_string())
    );
    let released = stay::Released::default();
    let watcher = tokio::spawn(stay::watch_events(node.clone(), false, released.clone()));
    let keeper = tokio::spawn(stay::keep_connected(
        node.clone(),
        vec![(addr.clone(), Some(edge.id))],
        released,
    ));
    let stop = stay::stop_signal();
    tokio::pin!(stop);
    let mut bars: HashMap<_, Progress> = HashMap::new();
    let mut n = 0;
    let mut outcome = Ok(());
    loop {
        let silence = async {
            match quiet {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let ev = tokio::select! {
            ev = files.next() => ev,
            _ = &mut stop => break,
            _ = silence => {
                outcome = Err(Failure {
                    code: failure::TIMEOUT,
                    message: format!("no file for {} s", quiet.unwrap_or_default().as_secs_f64()),
                });
                break;
            }
        };
        let Some(ev) = ev else { break };
        match ev {
            FileEvent::Offered {
                key, name, size, ..
            } => {
                bars.insert(key, Progress::new(&name, size));
            }
            FileEvent::Progress { key, received, .. } => {
                if let Some(b) = bars.get_mut(&key) {
                    b.update(received);
                }
            }
            FileEvent::Received(f) => {
                if let Some(mut b) = bars.remove(&f.key) {
                    b.finish();
                }
                if client::line(show(&f, args.json)).is_err() {
                    break;
                }
                n += 1;
                if args.count.is_some_and(|c| n >= c) {
                    break;
                }
            }
            FileEvent::Failed { key, name, error } => {
                if let Some(mut b) = bars.remove(&key) {
                    b.finish();
                }
                crate::note!("{} from {}: failed: {error}", Escaped(&name), key.origin);
            }
            FileEvent::Refused {
                key, name, error, ..
            } => {
                crate::note!("{} from {}: refused: {error}", Escaped(&name), key.origin);
            }
            _ => {}
        }
    }
    drop(files);
    keeper.abort();
    watcher.abort();
    node.shutdown().await?;
    outcome
}
