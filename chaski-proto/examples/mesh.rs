//! A random mesh in the deterministic simulator: nodes on a few topics, random bootstrap links,
//! every node discovering at a random moment. Prints convergence: simulated time until every
//! node is paired and every topic forms one cluster, frames sent, and wall time. Exits 1 if the
//! mesh did not converge.
//!
//! `cargo run --release -p chaski-proto --features sim --example mesh -- [NODES] [TOPICS] [SEED]`

use chaski_proto::sim::mesh::random_mesh;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let r = random_mesh(n, k, seed);
    println!("Chaski simulated mesh: {n} nodes, {k} topics, seed {seed}");
    println!("  bootstrap edges:            {}", r.bootstrap_edges);
    println!(
        "  every node paired:          {} after {:.3} s simulated (discovery spread over 5 s)",
        r.converged,
        r.paired_after.as_secs_f64()
    );
    println!(
        "  each topic one cluster:     {} (clusters per topic: {:?})",
        r.one_cluster_per_topic(),
        r.clusters
    );
    println!("  edges after pairing:        {}", r.edges);
    println!("  frames sent:                {}", r.frames);
    println!("  bytes carried:              {}", r.bytes);
    println!(
        "  wall time:                  {:.3} s",
        r.wall.as_secs_f64()
    );
    if !(r.converged && r.one_cluster_per_topic()) {
        std::process::exit(1);
    }
}
