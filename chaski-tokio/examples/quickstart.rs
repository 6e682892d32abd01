//! Two nodes on loopback: subscribe, connect, publish, receive; serve and call a method.
//!
//! `cargo run -p chaski-tokio --example quickstart`

use chaski_tokio::{Config, Error, Node, Service};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
    let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;

    // Pub/sub: b subscribes, a connects and publishes.
    b.subscribe("news").await?;
    a.connect(&b.address()).await?;
    a.publish("news", "hello").await?;
    let msg = b.messages().next().await.expect("a message");
    println!(
        "b got {:?} on {:?} from {:?}",
        String::from_utf8_lossy(&msg.payload),
        msg.topic,
        msg.origin
    );

    // Remote call: b serves, a calls through a proxy.
    b.serve(
        "math",
        Service::builder()
            .method("add", |(x, y): (i64, i64)| Ok(x + y))
            .build(),
    )
    .await?;
    let proxy = loop {
        match a.proxy("math").await {
            Ok(p) => break p,
            // The service list travels over the wire; it is there within a round trip.
            Err(Error::NoService(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(e),
        }
    };
    let sum: i64 = proxy.call("add", &(2, 3)).await?;
    println!("math.add(2, 3) = {sum}");

    a.shutdown().await?;
    b.shutdown().await?;
    Ok(())
}
