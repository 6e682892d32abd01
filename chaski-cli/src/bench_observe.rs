//! `chaski bench --only observe`: how long `chaski graph`'s walk takes over a mesh of 200 real
//! nodes (in this process, on loopback), and how long `/metrics` takes on a node with 256
//! edges (the rendering alone, and the whole HTTP exchange).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use chaski_tokio::{Config, Node};

/// What the part measured.
pub struct Observed {
    /// Nodes in the walked mesh, links found, and how long the walk took.
    pub nodes: usize,
    /// Links the walk found.
    pub links: usize,
    /// The walk's time.
    pub walk: Duration,
    /// Whether every node was asked.
    pub complete: bool,
    /// Edges of the scraped node.
    pub edges: usize,
    /// Bytes of one scrape.
    pub scrape_bytes: usize,
    /// Median and slowest of the scrapes over HTTP.
    pub scrape_p50: Duration,
    /// The slowest scrape.
    pub scrape_max: Duration,
    /// Median time to take the metrics and render them (no HTTP).
    pub render_p50: Duration,
}

/// A mesh of `members` nodes around one root (each member also dials the one before it),
/// walked from the root; then the root is given `edges` edges in all and scraped.
pub fn measure(quick: bool) -> Result<Observed, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(
        if quick { 19 } else { 199 },
        if quick { 32 } else { 256 },
    ))
}

async fn run(members: usize, edges: usize) -> Result<Observed, String> {
    let e = |e: chaski_tokio::Error| e.to_string();
    let cfg = Config::default().max_edges(edges + 8);
    let root = Node::bind("127.0.0.1:0", cfg.clone().root(true).name("root"))
        .await
        .map_err(e)?;
    let root_addr = root.local_addr().to_string();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..members {
        let n = Node::bind("127.0.0.1:0", cfg.clone().name(format!("m{i}")))
            .await
            .map_err(e)?;
        n.subscribe(&format!("t{}", i % 8)).await.map_err(e)?;
        n.connect(&root_addr).await.map_err(e)?;
        if let Some(before) = nodes.last() {
            n.connect(&before.local_addr().to_string())
                .await
                .map_err(e)?;
        }
        nodes.push(n);
    }
    // The walk, as `chaski graph` does it.
    let client = Node::bind("127.0.0.1:0", cfg.clone().max_edges(64))
        .await
        .map_err(e)?;
    let start = Instant::now();
    let mesh = crate::mesh::walk(&client, &root_addr, crate::mesh::WalkLimits::default())
        .await
        .map_err(e)?;
    let walk = start.elapsed();
    let _ = client.shutdown().await;
    // More edges on the root, from nodes that only connect.
    let mut extra = Vec::new();
    while root.metrics().await.map_err(e)?.edges.len() < edges {
        let n = Node::bind("127.0.0.1:0", Config::default())
            .await
            .map_err(e)?;
        n.connect(&root_addr).await.map_err(e)?;
        extra.push(n);
    }
    let m = root.metrics().await.map_err(e)?;
    let n_edges = m.edges.len();
    let mut render = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let m = root.metrics().await.map_err(e)?;
        let text = crate::metrics::render(m, None, 64);
        render.push(t.elapsed());
        std::hint::black_box(text);
    }
    let (web, task) = crate::http::Endpoint::start(root.clone(), "127.0.0.1:0", false, 64).await?;
    let mut scrapes = Vec::new();
    let mut bytes = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(web)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.map_err(|e| e.to_string())?;
        scrapes.push(t.elapsed());
        if !body.starts_with(b"HTTP/1.1 200") {
            return Err("a scrape failed".into());
        }
        bytes = body.len();
    }
    task.abort();
    render.sort();
    scrapes.sort();
    for n in nodes.iter().chain(&extra).chain([&root]) {
        let _ = n.shutdown().await;
    }
    Ok(Observed {
        nodes: mesh.nodes.len(),
        links: mesh.links.len(),
        walk,
        complete: mesh.complete,
        edges: n_edges,
        scrape_bytes: bytes,
        scrape_p50: scrapes[scrapes.len() / 2],
        scrape_max: scrapes[scrapes.len() - 1],
        render_p50: render[render.len() / 2],
    })
}
