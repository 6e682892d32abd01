//! A sensor network: a root, three sensors publishing on `sensors/<room>/temperature` and
//! `sensors/<room>/humidity`, and a display that subscribes with a pattern,
//! `sensors/*/temperature`, through the root. The display prints what arrives, checks that only
//! temperatures do, and the program ends once every room has been heard twice.
//!
//! `cargo run -p chaski-tokio --example sensors` (the same program: `chaski-smol`'s and
//! `chaski-mio`'s `sensors` examples)

use std::collections::BTreeMap;
use std::time::Duration;

use chaski_tokio::{Config, Error, Node};
use futures_util::StreamExt;

const ROOMS: [&str; 3] = ["kitchen", "hall", "attic"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let root = Node::bind("127.0.0.1:0", Config::default().name("root").root(true)).await?;
    let display = Node::bind("127.0.0.1:0", Config::default().name("display")).await?;
    let mut temperatures = display.subscriber("sensors/*/temperature").await?;
    display.connect(&root.address()).await?;
    let mut sensors = Vec::new();
    for room in ROOMS {
        let sensor = Node::bind("127.0.0.1:0", Config::default().name(room)).await?;
        sensor.connect(&root.address()).await?;
        sensors.push((room, sensor));
    }
    let publishing = tokio::spawn(async move {
        for i in 0..50u32 {
            for (room, sensor) in &sensors {
                let celsius = format!("{:.1}", 18.0 + f64::from(i) / 10.0);
                sensor
                    .publish(&format!("sensors/{room}/temperature"), celsius)
                    .await?;
                sensor
                    .publish(&format!("sensors/{room}/humidity"), format!("{}%", 40 + i))
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, Error>(sensors)
    });
    let mut heard: BTreeMap<String, u32> = BTreeMap::new();
    while heard.len() < ROOMS.len() || heard.values().any(|&n| n < 2) {
        let m = tokio::time::timeout(Duration::from_secs(10), temperatures.next())
            .await
            .map_err(|_| Error::Timeout)?
            .ok_or(Error::ShutDown)?;
        assert!(
            m.topic.ends_with("/temperature"),
            "the pattern let {} through",
            m.topic
        );
        let room = m.topic.split('/').nth(1).unwrap_or("?").to_string();
        println!(
            "display: {room:>8} {} °C (hops {})",
            String::from_utf8_lossy(&m.payload),
            m.hops
        );
        *heard.entry(room).or_default() += 1;
    }
    for (_, sensor) in publishing.await.expect("the publishing task")? {
        sensor.shutdown().await?;
    }
    display.shutdown().await?;
    root.shutdown().await?;
    println!("display: every room heard twice, temperatures only");
    Ok(())
}
