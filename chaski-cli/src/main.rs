//! `chaski`: run a demo mesh, a root, a subscriber, a publisher, a service; query a status;
//! call a remote method. This file only parses the command line and hands each subcommand to
//! its own module (`<name>_cmd.rs`).

mod bench;
mod bench_fanout;
mod bench_files;
mod bench_observe;
mod bench_patterns;
mod bench_proc;
mod bench_processes;
mod bench_receive;
mod call_cmd;
mod client;
mod demo;
mod draw;
mod edges_cmd;
mod failure;
mod graph_cmd;
mod http;
mod mesh;
mod metrics;
mod node_cmd;
mod ping_cmd;
mod pki_cmd;
mod progress;
mod pub_cmd;
mod receive_cmd;
mod root_cmd;
mod send_cmd;
mod serve_cmd;
mod settings;
mod status_cmd;
mod stay;
mod sub_cmd;

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    Demo(demo::DemoArgs),
    /// Run a root node (accepts every topic, relays, never pairs) until SIGINT or SIGTERM.
    Root(root_cmd::RootArgs),
    /// A long-running node for scripts and containers: connect, subscribe, print what arrives,
    /// publish periodically, serve the example service; until SIGINT or SIGTERM.
    Node(node_cmd::NodeArgs),
    /// Connect to ADDR, subscribe to the topics, and print every message received.
    Sub(sub_cmd::SubArgs),
    /// Connect to ADDR and publish MESSAGE on TOPIC.
    Pub(pub_cmd::PubArgs),
    /// Connect to ADDR and send each FILE on TOPIC to every node that receives files there
    /// (through roots): one line per file sent, a progress line on a terminal.
    Send(send_cmd::SendArgs),
    /// Connect to ADDR and receive the files offered on TOPIC into --dir (each checked against
    /// its SHA-256 before it gets its name): one line per file received.
    Receive(receive_cmd::ReceiveArgs),
    /// Ask a node for its status over UDP.
    Status(status_cmd::StatusArgs),
    /// Connect to a node and measure round trips, like `ping`: one line per ping, then the
    /// minimum, median, 99th percentile and maximum.
    Ping(ping_cmd::PingArgs),
    /// Connect to a node and list its edges with their latencies, topics and services (what the
    /// node's built-in `@node` service reports; off when its `introspect` setting is false).
    Edges(edges_cmd::EdgesArgs),
    /// Walk the whole mesh from ADDR through each node's `@node` introspection and print it
    /// (text, --json, --dot), or draw it (--svg FILE, --html FILE): nodes with roles and
    /// topics, links with kind and latency, latency statistics and heatmap.
    Graph(graph_cmd::GraphArgs),
    /// Call SERVICE.PATH on a node with JSON arguments (an array for several, null for none).
    /// A service the node does not serve is looked for through the mesh behind it.
    Call(call_cmd::CallArgs),
    /// Measure pub/sub throughput, ping and RPC round trips on every runtime beside the raw TCP
    /// limit, discovery at scale in the simulator, and memory per idle edge; print one table.
    Bench(bench::BenchArgs),
    /// A cluster certificate authority for secure meshes.
    Ca {
        #[command(subcommand)]
        action: pki_cmd::CaAction,
    },
    /// Node certificates signed by the cluster CA.
    Cert {
        #[command(subcommand)]
        action: pki_cmd::CertAction,
    },
    /// Serve the example service `demo` (add, echo, upper, fail, random.uniform; attribute
    /// version) until SIGINT or SIGTERM.
    Serve(serve_cmd::ServeArgs),
}

/// Seconds as a duration; a negative or absurd number is a usage error.
pub(crate) fn secs(s: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(s).map_err(|_| Failure {
        code: failure::USAGE,
        message: format!("invalid duration: {s}"),
    })
}

/// Runs one subcommand (all but the benchmark, which starts its own runtimes).
async fn run(cli: Cli) -> Result<(), Failure> {
    let mut base = settings::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.tls_dir {
        base = base.secure(chaski_api::tls_from_dir(dir).map_err(|err| Failure {
            code: failure::USAGE,
            message: format!("--tls-dir {}: {err}", dir.display()),
        })?);
    }
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Root(args) => root_cmd::run(args, base).await,
        Command::Node(args) => node_cmd::run(args, base).await,
        Command::Sub(args) => sub_cmd::run(args, base).await,
        Command::Pub(args) => pub_cmd::run(args, base).await,
        Command::Send(args) => send_cmd::run(args, base).await,
        Command::Receive(args) => receive_cmd::run(args, base).await,
        Command::Status(args) => status_cmd::run(args, base).await,
        Command::Ping(args) => ping_cmd::run(args, base).await,
        Command::Edges(args) => edges_cmd::run(args, base).await,
        Command::Graph(args) => graph_cmd::run(args, base).await,
        Command::Call(args) => call_cmd::run(args, base).await,
        Command::Serve(args) => serve_cmd::run(args, base).await,
        Command::Ca { action } => pki_cmd::ca(action),
        Command::Cert { action } => pki_cmd::cert(action),
        Command::Bench(_) => unreachable!("the benchmark runs outside a runtime"),
    }
}

/// The command line, with every node-starting subcommand's `--help` listing the settings'
/// environment variables and the exit codes.
fn command_line() -> clap::Command {
    let help = format!("{}\n{}", settings::env_help(), failure::EXIT_CODES);
    let mut cmd = Cli::command();
    for name in [
        "root", "node", "sub", "pub", "send", "receive", "status", "ping", "edges", "graph",
        "call", "serve",
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
            crate::note!("chaski: --log {filter:?} is not a log level or filter: {err}");
            std::process::exit(failure::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let outcome = match cli.command {
        Command::Bench(args) => bench::main(args),
        _ => match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(cli)),
            Err(err) => Err(format!("cannot start the runtime: {err}").into()),
        },
    };
    if let Err(f) = outcome {
        if f.code != failure::QUIET_EXIT {
            crate::note!("chaski: {f}");
        }
        std::process::exit(f.code);
    }
}
