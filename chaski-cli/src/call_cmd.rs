//! `chaski call ADDR SERVICE.PATH [JSON]`: one remote call (or attribute read), its answer
//! printed as JSON.

use clap::Args;

use chaski_tokio::{Config, Error, Node};

use crate::client::{self, line};
use crate::failure::{self, Failure};

/// The options of `chaski call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The node offering the service.
    addr: String,
    /// Service and method path, e.g. `demo.add` or `demo.random.normal`.
    target: String,
    /// JSON arguments.
    #[arg(default_value = "null")]
    args: String,
    /// Read an attribute instead of calling a method.
    #[arg(long)]
    get: bool,
    /// Seconds the whole call may take (dial, handshake and answer).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Address to bind (default: the local address that reaches ADDR; a server found
    /// through ADDR on another host dials this one back, so give a reachable address then).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// Calls once; prints the answer.
pub async fn run(args: CallArgs, base: Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let (service, path) = args
        .target
        .split_once('.')
        .unwrap_or((args.target.as_str(), ""));
    let json: serde_json::Value = serde_json::from_str(&args.args).map_err(|err| Failure {
        code: failure::USAGE,
        message: format!("JSON_ARGS is not valid JSON: {err}"),
    })?;
    let limit = crate::secs(args.timeout)?;
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, base).await?;
    // The timeout covers the whole call: dial, handshake and answer.
    let call = async {
        node.connect(&addr).await?;
        let proxy = node.proxy(service).await?.with_timeout(limit);
        if args.get {
            proxy.get::<serde_json::Value>(path).await
        } else {
            proxy.call::<_, serde_json::Value>(path, &json).await
        }
    };
    let out = tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(Error::Timeout));
    let _ = node.shutdown().await;
    line(out?)?;
    Ok(())
}
