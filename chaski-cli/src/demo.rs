//! `chaski demo`: a root and six nodes on loopback discover and pair, measure latency, publish,
//! and call a remote service; everything printed for a newcomer to follow.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chaski_tokio::{Config, ConnectError, Error, Node, OnPair, Received};

const NODES: [(&str, &[&str]); 6] = [
    ("Thermo-1", &["temperature"]),
    ("Hygro-1", &["humidity"]),
    ("Thermo-2", &["temperature"]),
    ("Display", &["temperature", "humidity"]),
    ("Hygro-2", &["humidity"]),
    ("Thermo-3", &["temperature"]),
];

fn ms(d: Option<Duration>) -> String {
    d.map_or("   -   ".to_string(), |d| {
        format!("{:>6.3} ms", d.as_secs_f64() * 1000.0)
    })
}

/// The options of `chaski demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Also draw the mesh, as `chaski graph --svg` does, into FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

/// Runs the demo (the README's main job).
pub async fn run(args: DemoArgs) -> Result<(), crate::failure::Failure> {
    Ok(mesh(args).await?)
}

async fn mesh(args: DemoArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    crate::say!(
        "Chaski demo: a root and {} nodes on 127.0.0.1\n",
        NODES.len()
    );
    let cfg = |name: &str| {
        Config::default()
            .name(name)
            .discovery_timeout(Duration::from_millis(300))
            .on_pair(OnPair::Disconnect)
    };
    let root = Node::bind("127.0.0.1:0", cfg("Root").root(true)).await?;
    crate::say!(
        "1. {} listens on {} (TCP and UDP). Every node joins through it.",
        root.name(),
        root.local_addr()
    );

    crate::say!("\n2. Each node connects to the root, then discovers peers for its topics:");
    let mut nodes = Vec::new();
    for (name, topics) in NODES {
        let node = Node::bind("127.0.0.1:0", cfg(name)).await?;
        for t in topics {
            node.subscribe(t).await?;
        }
        node.connect(&root.address()).await?;
        let t = Instant::now();
        node.discover().await?;
        // Let the pairing link settle (the bootstrap link to the root may be dropped).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let edges = node.edges().await?;
        let peers: Vec<String> = edges.iter().map(|e| e.name.clone()).collect();
        crate::say!(
            "   {name:<9} topics {:<24} paired in {:>4} ms, linked to {}",
            topics.join(", "),
            t.elapsed().as_millis(),
            peers.join(", ")
        );
        nodes.push(node);
    }

    crate::say!("\n3. Topology, with latency measured by ping (half the round trip):");
    let mut all = vec![root.clone()];
    all.extend(nodes.iter().cloned());
    for node in &all {
        for e in node.edges().await? {
            let _ = node.ping(e.id, 0).await;
        }
    }
    for node in &all {
        let edges = node.edges().await?;
        crate::say!("   {}", node.name());
        for e in edges {
            let kind = if e.root {
                "root link"
            } else if e.pairing {
                "pairing link"
            } else {
                "bootstrap link"
            };
            let topics: Vec<&str> = e
                .topics
                .iter()
                .map(String::as_str)
                .filter(|t| *t != "@")
                .collect();
            crate::say!(
                "      -> {:<9} {}  {kind:<14} topics: {}",
                e.name,
                ms(e.latency),
                if topics.is_empty() {
                    "(all, as a root)".to_string()
                } else {
                    topics.join(", ")
                }
            );
        }
    }

    crate::say!(
        "\n4. Publishing: a message goes only to subscribers of its topic, relayed hop by hop:"
    );
    let sends = [(2usize, "temperature", "21.5 C"), (4, "humidity", "40 %")];
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for (name, topics) in NODES {
        let n = sends
            .iter()
            .filter(|(from, t, _)| topics.contains(t) && NODES[*from].0 != name)
            .count();
        expected.insert(name.to_string(), n);
    }
    for (from, topic, msg) in sends {
        nodes[from].publish(topic, msg).await?;
        crate::say!("   {} publishes {msg:?} on {topic:?}", nodes[from].name());
    }
    let mut got: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    for node in &nodes {
        let want = expected[node.name()];
        let stream = node.messages();
        let mut mine = Vec::new();
        while mine.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let s = stream.clone();
            match tokio::task::spawn_blocking(move || s.recv_timeout(left))
                .await
                .ok()
                .flatten()
            {
                Some(m) => mine.push(m),
                None => break,
            }
        }
        got.insert(node.name().to_string(), mine);
    }
    let mut complete = true;
    for (name, topics) in NODES {
        let msgs = &got[name];
        let shown: Vec<String> = msgs
            .iter()
            .map(|m| {
                let hops = if m.hops == 1 {
                    "1 hop".to_string()
                } else {
                    format!("{} hops", m.hops)
                };
                format!(
                    "{:?} on {} ({hops})",
                    String::from_utf8_lossy(&m.payload),
                    m.topic
                )
            })
            .collect();
        crate::say!(
            "   {name:<9} [{}] received {}",
            topics.join(", "),
            if shown.is_empty() {
                "nothing (its own or none of its topics)".to_string()
            } else {
                shown.join("; ")
            }
        );
        complete &= msgs.len() == expected[name];
    }
    if !complete {
        return Err(Error::io("some subscriber did not receive its messages"));
    }

    crate::say!(
        "\n5. A remote service: Display serves `demo`; Thermo-1 connects to it and calls it:"
    );
    let display = &nodes[3];
    display
        .serve("demo", crate::serve_cmd::example_service())
        .await?;
    let client = &nodes[0];
    match client.connect(&display.address()).await {
        Ok(_) | Err(Error::Connect(ConnectError::Duplicate)) => {}
        Err(e) => return Err(e),
    }
    // The service list reaches Thermo-1 over the wire: wait (with a deadline) until it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    let proxy = loop {
        match client.proxy("demo").await {
            Ok(p) => break p,
            Err(Error::NoService(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => return Err(e),
        }
    };
    let t = Instant::now();
    let sum: f64 = proxy.call("add", &(2.0, 3.0)).await?;
    let rtt = t.elapsed();
    let show = |call: &str, out: String| crate::say!("   {call:<28} {out}");
    show(
        "demo.add(2, 3)",
        format!(
            "= {sum}   ({:.3} ms round trip)",
            rtt.as_secs_f64() * 1000.0
        ),
    );
    let up: String = proxy.call("upper", &"chaski").await?;
    show("demo.upper(\"chaski\")", format!("= {up:?}"));
    let r: f64 = proxy.call("random.uniform", &(0.0, 1.0)).await?;
    show("demo.random.uniform(0, 1)", format!("= {r}"));
    let version: String = proxy.get("version").await?;
    show("demo.version (attribute)", format!("= {version:?}"));
    match proxy.call::<_, ()>("fail", &"on purpose").await {
        Err(e) => show("demo.fail(\"on purpose\")", format!("-> error: {e}")),
        Ok(()) => return Err(Error::io("demo.fail did not fail")),
    }
    match proxy.call::<_, f64>("nope", &()).await {
        Err(e) => show("demo.nope()", format!("-> error: {e}")),
        Ok(_) => return Err(Error::io("demo.nope answered")),
    }

    crate::say!("\n6. The mesh as `chaski graph` draws it (each node asked through @node):");
    let client = Node::bind("127.0.0.1:0", Config::default()).await?;
    let starts: Vec<String> = nodes
        .iter()
        .chain(std::iter::once(&root))
        .map(|n| n.local_addr().to_string())
        .collect();
    let picture =
        crate::mesh::walk_from(&client, &starts, crate::mesh::WalkLimits::default()).await?;
    client.shutdown().await?;
    for line in crate::draw::text(&picture).lines() {
        crate::say!("   {line}");
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, crate::draw::page_svg(&picture))?;
        crate::say!("   (drawn into {})", path.display());
    }

    crate::say!("\n7. Everyone says goodbye.");
    for node in nodes.iter().chain(std::iter::once(&root)) {
        node.shutdown().await?;
    }
    crate::say!("\nDone in {:.2} s.", t0.elapsed().as_secs_f64());
    Ok(())
}
