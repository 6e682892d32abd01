//! The README's quick start, as it stands there (a test checks they are the same): two nodes
//! on loopback subscribe, connect, publish and receive; one serves a method the other calls.
//!
//! `cargo run -p chaski-tokio --example quickstart`

use chaski_tokio::{Config, Error, Node, Service};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
    let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;

    b.subscribe("news").await?;
    a.connect(&b.address()).await?; // returns once both Hellos have crossed
    a.publish("news", "hello").await?; // sent only to neighbours subscribed to "news"
    let msg = b.messages().next().await.unwrap();
    assert_eq!(&msg.payload[..], b"hello");

    b.serve(
        "math",
        Service::builder()
            .method("add", |(x, y): (i64, i64)| Ok(x + y))
            .build(),
    )
    .await?;
    let sum: i64 = a.proxy("math").await?.call("add", &(2, 3)).await?;
    assert_eq!(sum, 5);
    a.shutdown().await?; // goodbye to every peer; nothing is redialed
    b.shutdown().await
}
