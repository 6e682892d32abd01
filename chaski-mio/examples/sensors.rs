//! A sensor network, without an async runtime: a root, three sensors publishing on
//! `sensors/<room>/temperature` and `sensors/<room>/humidity` from a thread, and a display that
//! subscribes with a pattern, `sensors/*/temperature`, through the root and reads with a
//! blocking `recv_timeout`. It checks that only temperatures arrive, and the program ends once
//! every room has been heard twice.
//!
//! `cargo run -p chaski-mio --example sensors`

use std::collections::BTreeMap;
use std::time::Duration;

use chaski_mio::{Config, Error, Node};

const ROOMS: [&str; 3] = ["kitchen", "hall", "attic"];

fn main() -> Result<(), Error> {
    let root = Node::bind("127.0.0.1:0", Config::default().name("root").root(true))?;
    let display = Node::bind("127.0.0.1:0", Config::default().name("display"))?;
    let temperatures = display.subscriber("sensors/*/temperature")?;
    display.connect(&root.address())?;
    let mut sensors = Vec::new();
    for room in ROOMS {
        let sensor = Node::bind("127.0.0.1:0", Config::default().name(room))?;
        sensor.connect(&root.address())?;
        sensors.push((room, sensor));
    }
    let publishing = std::thread::spawn(move || {
        for i in 0..50u32 {
            for (room, sensor) in &sensors {
                let celsius = format!("{:.1}", 18.0 + f64::from(i) / 10.0);
                sensor.publish(&format!("sensors/{room}/temperature"), celsius)?;
                sensor.publish(&format!("sensors/{room}/humidity"), format!("{}%", 40 + i))?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok::<_, Error>(sensors)
    });
    let mut heard: BTreeMap<String, u32> = BTreeMap::new();
    while heard.len() < ROOMS.len() || heard.values().any(|&n| n < 2) {
        let m = temperatures
            .recv_timeout(Duration::from_secs(10))
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
    for (_, sensor) in publishing.join().expect("the publishing thread")? {
        sensor.shutdown()?;
    }
    display.shutdown()?;
    root.shutdown()?;
    println!("display: every room heard twice, temperatures only");
    Ok(())
}
