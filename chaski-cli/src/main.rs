//! `chaski`: run a demo mesh, a root, a subscriber, a publisher, a service; query a status;
//! call a remote method.

mod bench;
mod demo;
mod edges_cmd;
mod failure;
mod node_cmd;
mod pki_cmd;
mod settings;
mod stay;

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use futures_util::StreamExt;

use chaski_tokio::{Config, Error, Node, Service, ServiceError};
use failure::Failure;

#[derive(Parser)]
#[command(
    name = "chaski",
    version,
    about = "Chaski: nodes that discover, pair, publish and call each other",
    after_help = failure::EXIT_CODES
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace), or a tracing filter (default: RUST_LOG,
    /// else warn).
    #[arg(long, global = true, env = "CHASKI_LOG")]
    log: Option<String>,
    /// A TOML file of node settings (the fields of `Config`, durations in seconds), under the
    /// environment's `CHASKI_<SETTING>` variables and the subcommand's flags.
    #[arg(long, global = true, env = "CHASKI_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Run secure: TLS 1.3 with the certificate in DIR (ca.pem, node.pem, node.key, as
    /// `chaski cert issue` writes them); peers without a certificate of the same CA are
    /// refused, UDP publishes are off and UDP status answers the node's own host only.
    #[arg(long, global = true, env = "CHASKI_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a root and six nodes on loopback; show discovery, pairing, latencies, routing and a
    /// remote call; exit.
    Demo,
    /// Run a root node (accepts every topic, relays, never pairs) until SIGINT or SIGTERM.
    Root {
        /// Address to bind (TCP and UDP).
        #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:8511")]
        bind: String,
        /// Name (default ChaskiRoot), advertised address, other roots to join, liveness.
        #[command(flatten)]
        member: stay::Membership,
    },
    /// A long-running node for scripts and containers: connect, subscribe, print what arrives,
    /// publish periodically, serve the example service; until SIGINT or SIGTERM.
    Node(node_cmd::NodeArgs),
    /// Connect to ADDR, subscribe to the topics, and print every message received.
    Sub {
        /// A node to connect to (host:port, [v6]:port, Name@host:port).
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
    },
    /// Connect to ADDR and publish MESSAGE on TOPIC.
    Pub {
        /// A node to connect to.
        addr: String,
        /// Topic.
        topic: String,
        /// The message (sent as UTF-8 bytes).
        message: String,
        /// Address to bind.
        #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:0")]
        bind: String,
    },
    /// Ask a node for its status over UDP.
    Status {
        /// The node.
        addr: String,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
        /// Print the status as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Connect to a node and measure round trips, like `ping`: one line per ping, then the
    /// minimum, median, 99th percentile and maximum.
    Ping {
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
    },
    /// Connect to a node and list its edges with their latencies, topics and services (what the
    /// node's built-in `@node` service reports; off when its `introspect` setting is false).
    Edges {
        /// The node.
        addr: String,
        /// Seconds the whole query may take.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print one JSON object: the node's name and id, and its edges.
        #[arg(long)]
        json: bool,
    },
    /// Call SERVICE.PATH on a node with JSON arguments (an array for several, null for none).
    /// A service the node does not serve is looked for through the mesh behind it.
    Call {
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
    },
    /// Measure pub/sub throughput, ping and RPC round trips on every runtime beside the raw TCP
    /// limit, discovery at scale in the simulator, and memory per idle edge; print one table.
    Bench {
        /// Small counts: a quick smoke test, not a measurement.
        #[arg(long)]
        quick: bool,
        /// Runtimes to measure (comma-separated).
        #[arg(long, default_value = "tokio,smol,mio", value_delimiter = ',')]
        runtime: Vec<String>,
        /// Idle edges for the memory measurement.
        #[arg(long, default_value_t = 1000)]
        edges: usize,
        /// Parts to run (comma-separated): throughput, rtt, mesh, memory.
        #[arg(
            long,
            default_value = "throughput,rtt,mesh,memory",
            value_delimiter = ','
        )]
        only: Vec<String>,
        /// The `zenoh-compare` program (build it in `benches/zenoh-compare`): Zenoh on the same
        /// work in the same run, and a ratio to it on every row.
        #[arg(long, value_name = "PATH")]
        zenoh: Option<std::path::PathBuf>,
        /// No progress lines on stderr (there are none when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
        /// One JSON object per result (part, implementation, runtime, size, rates, ratios)
        /// instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// A cluster certificate authority for secure meshes.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Node certificates signed by the cluster CA.
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
    /// Serve the example service `demo` (add, echo, upper, fail, random.uniform; attribute
    /// version) until SIGINT or SIGTERM.
    Serve {
        /// Address to bind.
        #[arg(long, env = "CHASKI_BIND", default_value = "0.0.0.0:8514")]
        bind: String,
        /// Name (default ChaskiRemote), advertised address, peers to keep, liveness.
        #[command(flatten)]
        member: stay::Membership,
    },
}

#[derive(Subcommand)]
enum CaAction {
    /// Create a CA in DIR: ca.pem (give it to every node) and ca.key (owner-only; keep it on
    /// the machine that issues certificates).
    Init {
        /// Where to write it.
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum CertAction {
    /// Issue a certificate for node NAME, signed by the CA in --ca, into --out (default
    /// ./NAME): ca.pem, node.pem and node.key (owner-only), for `--tls-dir`.
    Issue {
        /// The node's name (in the certificate; its id is derived from its key).
        name: String,
        /// The CA's directory (from `chaski ca init`).
        #[arg(long, value_name = "DIR")]
        ca: std::path::PathBuf,
        /// Where to write the node's files.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// The example service of `chaski serve` and the demo.
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

pub(crate) fn secs(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("invalid duration: {s}"))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let e = Failure::from;
    let mut base = settings::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.tls_dir {
        base = base.secure(chaski_api::tls_from_dir(dir).map_err(|err| Failure {
            code: failure::USAGE,
            message: format!("--tls-dir {}: {err}", dir.display()),
        })?);
    }
    match cli.command {
        Command::Ca {
            action: CaAction::Init { dir },
        } => pki_cmd::init(&dir),
        Command::Cert {
            action:
                CertAction::Issue {
                    name,
                    ca,
                    out,
                    days,
                },
        } => {
            let out = out.unwrap_or_else(|| std::path::PathBuf::from(&name));
            pki_cmd::issue(&name, &ca, &out, days)
        }
        Command::Demo => demo::run().await.map_err(e),
        Command::Ping {
            addr,
            count,
            interval,
            json,
        } => ping(base, &addr, count, secs(interval)?, json).await,
        Command::Edges {
            addr,
            timeout,
            json,
        } => edges_cmd::run(base, &addr, secs(timeout)?, json).await,
        Command::Root { bind, member } => {
            let cfg = member.apply(base.root(true), Some("ChaskiRoot"))?;
            let node = Node::bind(&bind, cfg).await.map_err(e)?;
            println!(
                "root {} listening on {} (TCP and UDP); SIGINT or SIGTERM to stop",
                node.name(),
                node.local_addr()
            );
            Ok(stay::run_until_stopped(&node, &member, Vec::new()).await?)
        }
        Command::Node(args) => Ok(node_cmd::run(args, base).await?),
        Command::Sub {
            addr,
            topics,
            count,
            timeout,
            discover,
            bind,
            advertise,
            json,
        } => {
            let quiet = timeout.map(secs).transpose()?;
            let cfg = base.advertise(stay::advertised(advertise.as_deref())?);
            let node = Node::bind(&bind, cfg).await.map_err(e)?;
            for t in &topics {
                node.subscribe(t).await.map_err(e)?;
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let edge = stay::connect_retrying(&node, &addr, Some(deadline)).await?;
            eprintln!(
                "connected to {} at {}; subscribed to {}",
                edge.name,
                edge.addr,
                topics.join(", ")
            );
            if discover {
                node.discover().await.map_err(e)?;
            }
            // Stays connected to ADDR: dials it again if it says goodbye (a restart).
            let keeper = tokio::spawn(stay::keep_connected(
                node.clone(),
                vec![(addr.clone(), Some(edge.id))],
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
                            message: format!("no message for {} s", quiet.unwrap_or_default().as_secs_f64()),
                        });
                        break;
                    }
                };
                let Some(m) = m else { break };
                if json {
                    let line = serde_json::json!({
                        "topic": m.topic,
                        "payload": String::from_utf8_lossy(&m.payload),
                        "hops": m.hops,
                        "origin": m.origin.map(|o| o.to_string()),
                    });
                    println!("{line}");
                } else {
                    println!(
                        "[{}] {} (hops {})",
                        m.topic,
                        String::from_utf8_lossy(&m.payload),
                        m.hops
                    );
                }
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
            }
            keeper.abort();
            node.shutdown().await.map_err(e)?;
            outcome
        }
        Command::Pub {
            addr,
            topic,
            message,
            bind,
        } => {
            let node = Node::bind(&bind, base).await.map_err(e)?;
            let edge = node.connect(&addr).await.map_err(e)?;
            if !edge.root && !edge.topics.contains(&topic) {
                eprintln!("note: {} neither subscribes to {topic:?} nor is a root: it will not receive this", edge.name);
            }
            node.publish(&topic, message.into_bytes())
                .await
                .map_err(e)?;
            eprintln!("published on {topic:?} to {}", edge.name);
            node.shutdown().await.map_err(e)
        }
        Command::Status {
            addr,
            timeout,
            json,
        } => {
            let node = Node::bind(
                client_bind(&addr).await?,
                base.status_timeout(secs(timeout)?),
            )
            .await
            .map_err(e)?;
            let s = node.status(&addr).await.map_err(e)?;
            if json {
                let line = serde_json::json!({
                    "name": s.name,
                    "id": s.id.to_string(),
                    "root": s.root,
                    "edges": s.edges,
                    "reconnecting": s.reconnecting,
                    "topics": s.paired,
                    "services": s.services,
                    "truncated": s.truncated,
                });
                println!("{line}");
                return node.shutdown().await.map_err(e);
            }
            println!("name:         {}", s.name);
            println!("id:           {}", s.id);
            println!("root:         {}", s.root);
            println!("edges:        {}", s.edges);
            println!("reconnecting: {}", s.reconnecting);
            for (t, p) in &s.paired {
                println!(
                    "topic:        {t} ({})",
                    if *p { "paired" } else { "not paired" }
                );
            }
            for svc in &s.services {
                println!("service:      {svc}");
            }
            node.shutdown().await.map_err(e)
        }
        Command::Call {
            addr,
            target,
            args,
            get,
            timeout,
        } => {
            let (service, path) = target.split_once('.').unwrap_or((target.as_str(), ""));
            let args: serde_json::Value = serde_json::from_str(&args)
                .map_err(|err| format!("JSON_ARGS is not valid JSON: {err}"))?;
            let limit = secs(timeout)?;
            let node = Node::bind(client_bind(&addr).await?, base)
                .await
                .map_err(e)?;
            // The timeout covers the whole call: dial, handshake and answer.
            let call = async {
                node.connect(&addr).await?;
                let proxy = node.proxy(service).await?.with_timeout(limit);
                if get {
                    proxy.get::<serde_json::Value>(path).await
                } else {
                    proxy.call::<_, serde_json::Value>(path, &args).await
                }
            };
            let out = tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(Error::Timeout));
            let _ = node.shutdown().await;
            println!("{}", out.map_err(e)?);
            Ok(())
        }
        // Handled in `main`: the benchmark starts its own runtimes.
        Command::Bench { .. } => Err("the benchmark does not run inside a runtime"
            .to_string()
            .into()),
        Command::Serve { bind, member } => {
            let cfg = member.apply(base, Some("ChaskiRemote"))?;
            let node = Node::bind(&bind, cfg).await.map_err(e)?;
            node.serve("demo", example_service()).await.map_err(e)?;
            println!(
                "serving `demo` at {}; try: chaski call {} demo.add '[2, 3]'",
                node.address(),
                node.local_addr()
            );
            Ok(stay::run_until_stopped(&node, &member, Vec::new()).await?)
        }
    }
}

/// `chaski ping`: round trips to the node at `addr`.
async fn ping(
    base: Config,
    addr: &str,
    count: usize,
    interval: Duration,
    json: bool,
) -> Result<(), Failure> {
    if count == 0 {
        return Err(Failure {
            code: failure::USAGE,
            message: "--count must be at least 1".into(),
        });
    }
    let node = Node::bind(client_bind(addr).await?, base).await?;
    let edge = node.connect(addr).await?;
    if !json {
        println!("PING {} ({})", edge.name, edge.addr);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut rtts = Vec::with_capacity(count);
    for seq in 1..=count {
        let rtt = node.ping(edge.id, 0).await?;
        rtts.push(rtt);
        if json {
            println!("{}", serde_json::json!({ "seq": seq, "rtt_ms": ms(rtt) }));
        } else {
            println!("seq={seq} rtt={:.3} ms", ms(rtt));
        }
        if seq < count {
            tokio::time::sleep(interval).await;
        }
    }
    rtts.sort();
    let at = |q: f64| rtts[((rtts.len() as f64 * q).ceil() as usize).clamp(1, rtts.len()) - 1];
    let (min, p50, p99, max) = (rtts[0], at(0.5), at(0.99), rtts[rtts.len() - 1]);
    if json {
        let summary = serde_json::json!({
            "peer": edge.name,
            "count": count,
            "min_ms": ms(min),
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
            "max_ms": ms(max),
        });
        println!("{summary}");
    } else {
        println!(
            "{count} pings: min {:.3} / p50 {:.3} / p99 {:.3} / max {:.3} ms",
            ms(min),
            ms(p50),
            ms(p99),
            ms(max)
        );
    }
    Ok(node.shutdown().await?)
}

/// The command line, with every node-starting subcommand's `--help` listing the settings'
/// environment variables and the exit codes.
fn command_line() -> clap::Command {
    let help = format!("{}\n{}", settings::env_help(), failure::EXIT_CODES);
    let mut cmd = Cli::command();
    for name in [
        "root", "node", "sub", "pub", "status", "ping", "edges", "call", "serve",
    ] {
        cmd = cmd.mut_subcommand(name, |c| c.after_help(help.clone()));
    }
    cmd
}

fn main() {
    let cli = Cli::from_arg_matches(&command_line().get_matches()).unwrap_or_else(|e| e.exit());
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".into());
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("chaski: --log {filter:?} is not a log level or filter: {err}");
            std::process::exit(failure::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Command::Bench {
        quick,
        runtime,
        edges,
        only,
        zenoh,
        quiet,
        json,
    } = cli.command
    {
        // smol's global executor runs one thread unless told otherwise; the tokio nodes get two
        // workers, so the smol ones get two threads too (set before smol starts any).
        if std::env::var_os("SMOL_THREADS").is_none() {
            std::env::set_var("SMOL_THREADS", "2");
        }
        let opts = bench::Options {
            quick,
            runtimes: runtime,
            edges,
            parts: only,
            zenoh,
            quiet,
            json,
        };
        if let Err(msg) = bench::check(&opts) {
            eprintln!("chaski bench: {msg}");
            std::process::exit(failure::USAGE);
        }
        if let Err(msg) = bench::run(opts) {
            eprintln!("chaski bench: {msg}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("chaski: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(f) = rt.block_on(run(cli)) {
        eprintln!("chaski: {f}");
        std::process::exit(f.code);
    }
}

/// Where a short-lived client node binds to reach `target`: every local address of the
/// target's family (a loopback-only or IPv4-only socket cannot reach another host, or `[::1]`).
pub(crate) async fn client_bind(target: &str) -> Result<&'static str, String> {
    let to = chaski_api::resolve_all(target)
        .await
        .map_err(|err| err.to_string())?;
    Ok(if to[0].is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
}
