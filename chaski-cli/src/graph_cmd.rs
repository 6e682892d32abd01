//! `chaski graph ADDR`: the whole mesh from one address, walked through each node's `@node`
//! introspection (neighbours of neighbours, each node asked once, bounded in nodes and time),
//! printed as text, JSON or DOT, or drawn as SVG or HTML.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use chaski_tokio::Node;

use crate::client::{self, line};
use crate::failure::Failure;
use crate::mesh::WalkLimits;

/// The options of `chaski graph`.
#[derive(Args, Debug)]
pub struct GraphArgs {
    /// A node of the mesh.
    addr: String,
    /// Print the picture as one JSON object (nodes, links, latency statistics).
    #[arg(long, conflicts_with = "dot")]
    json: bool,
    /// Print it in Graphviz's DOT language (`| dot -Tpng`).
    #[arg(long)]
    dot: bool,
    /// Also draw it into FILE as SVG (the graph, then the latency heatmap).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Also draw it into FILE as a self-contained HTML page (statistics, graph, heatmap).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Nodes asked at most.
    #[arg(long, default_value_t = 1000)]
    max_nodes: usize,
    /// Nodes asked at once.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Seconds the whole walk may take (what is not reached by then is left out, and said).
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Address to bind (default: the local address that reaches ADDR).
    #[arg(long, env = "CHASKI_BIND")]
    bind: Option<String>,
}

/// Walks the mesh and prints (and draws) it.
pub async fn run(args: GraphArgs, base: chaski_tokio::Config) -> Result<(), Failure> {
    let addr = client::target("ADDR", &args.addr)?;
    let total = crate::secs(args.timeout)?;
    // A client that many nodes answer at once: room for every edge it opens.
    let mut cfg = base;
    cfg.max_edges = cfg.max_edges.max(args.parallel + 8);
    let node = Node::bind(&client::bind(&addr, args.bind.as_deref()).await?, cfg).await?;
    let limits = WalkLimits {
        max_nodes: args.max_nodes.max(1),
        parallel: args.parallel.max(1),
        per_node: total.min(Duration::from_secs(5)),
        total,
    };
    let mesh = crate::mesh::walk(&node, &addr, limits).await;
    let _ = node.shutdown().await;
    let mesh = mesh?;
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|e| Failure {
            code: crate::failure::USAGE,
            message: format!("{}: {e}", path.display()),
        })
    };
    if let Some(p) = &args.svg {
        write(p, crate::draw::page_svg(&mesh))?;
    }
    if let Some(p) = &args.html {
        write(
            p,
            crate::draw::html(&mesh, &format!("Chaski mesh from {addr}"), false),
        )?;
    }
    if args.json {
        line(serde_json::to_string(&mesh).unwrap_or_default())?;
    } else if args.dot {
        line(crate::draw::dot(&mesh).trim_end())?;
    } else {
        line(crate::draw::text(&mesh).trim_end())?;
    }
    Ok(())
}
