//! `chaski serve`: the example service `demo` until SIGINT or SIGTERM.

use clap::Args;

use chaski_tokio::{Config, Node, Service, ServiceError};

use crate::failure::Failure;
use crate::stay;

/// The options of `chaski serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:8514")]
    bind: String,
    /// Name (default ChaskiRemote), advertised address, peers to keep, liveness.
    #[command(flatten)]
    member: stay::Membership,
}

/// Serves `demo` until stopped; then says goodbye to every peer.
pub async fn run(args: ServeArgs, base: Config) -> Result<(), Failure> {
    let cfg = args.member.apply(base, Some("ChaskiRemote"))?;
    let node = Node::bind(&args.bind, cfg).await?;
    node.serve("demo", example_service()).await?;
    crate::client::line(format_args!(
        "serving `demo` at {}; try: chaski call {} demo.add '[2, 3]'",
        chaski_proto::text::Escaped(&node.address()),
        node.local_addr()
    ))?;
    Ok(stay::run_until_stopped(&node, &args.member, Vec::new()).await?)
}

/// The example service of `chaski serve`, `chaski node --serve` and the demo: `add`, `echo`,
/// `upper`, `fail`, `random.uniform`, and the attribute `version`.
pub fn example_service() -> Service {
    let random = Service::builder()
        .method("uniform", |(lo, hi): (f64, f64)| {
            if hi < lo {
                return Err(ServiceError::bad_arguments("hi must not be below lo"));
            }
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            Ok(lo + (hi - lo) * f64::from(nanos % 1000) / 1000.0)
        })
        .build();
    Service::builder()
        .method(
            "add",
            |(a, b): (serde_json::Value, serde_json::Value)| match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => Ok(a + b),
                _ => Err(ServiceError::bad_arguments("add takes two numbers")),
            },
        )
        .method("echo", |v: serde_json::Value| Ok(v))
        .method("upper", |s: String| Ok(s.to_uppercase()))
        .method("fail", |msg: String| {
            Err::<(), _>(ServiceError::failed(msg))
        })
        .attr("version", env!("CARGO_PKG_VERSION"))
        .nested("random", random)
        .build()
}
