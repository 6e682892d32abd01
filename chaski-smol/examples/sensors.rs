//! A sensor network: a root, three sensors publishing on `sensors/<room>/temperature` and
//! `sensors/<room>/humidity`, and a display that subscribes with a pattern,
//! `sensors/*/temperature`, through the root. The display prints what arrives, checks that only
//! temperatures do, and the program ends once every room has been heard twice.
//!
//! `cargo run -p chaski-smol --example sensors`

use std::collections::BTreeMap;
use std::time::Duration;

use chaski_smol::{Config, Error, Node};
use futures_util::StreamExt;
use smol::future::FutureExt;

const ROOMS: [&str; 3] = ["kitchen", "hall", "attic"];

fn main() -> Result<(), Error> {
    smol::block_on(async {
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
        let publishing = smol::spawn(async move {
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
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            Ok::<_, Error>(sensors)
        });
        let mut heard: BTreeMap<String, u32> = BTreeMap::new();
        while heard.len() < ROOMS.len() || heard.values().any(|&n| n < 2) {
            let timeout = async {
                smol::Timer::after(Duration::from_secs(10)).await;
                None
            };
            let m = temperatures
                .next()
                .or(timeout)
                .await
                .ok_or(Error::Timeout)?;
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
        for (_, sensor) in publishing.await? {
            sensor.shutdown().await?;
        }
        display.shutdown().await?;
        root.shutdown().await?;
        println!("display: every room heard twice, temperatures only");
        Ok(())
    })
}
