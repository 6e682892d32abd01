//! A Chaski node embedded in a hand-written `mio::Poll` loop: no thread of its own.
//!
//! The loop owns token 0 for its own socket (a UDP "control" socket here) and gives the driver
//! token 1 and above. A second node (the blocking handle, on its own thread) connects and
//! publishes five messages; the loop prints them, answers each one, and shuts down.
//!
//! Run: `cargo run -p chaski-mio --example embed`

use std::time::{Duration, Instant};

use chaski_mio::{Config, Driver, Event, Node};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

const CONTROL: Token = Token(0);
const CHASKI: Token = Token(1);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut poll = Poll::new()?;

    // The loop's own socket: anything sent to it stops the program early.
    let mut control = UdpSocket::bind("127.0.0.1:0".parse()?)?;
    poll.registry()
        .register(&mut control, CONTROL, Interest::READABLE)?;

    // The embedded node: sockets registered with our poll, tokens from 1 up.
    let mut driver = Driver::bind(
        "127.0.0.1:0",
        Config::default().name("embedded"),
        poll.registry(),
        CHASKI,
    )?;
    driver.turn(|node, now| node.subscribe("ticks", now))?;
    println!("embedded node listens on {}", driver.local_addr());

    // A peer on its own thread (the blocking handle), publishing to us.
    let peer = Node::bind("127.0.0.1:0", Config::default().name("peer"))?;
    peer.subscribe("acks")?;
    let target = driver.local_addr().to_string();
    let publisher = std::thread::spawn(move || -> chaski_mio::Result<usize> {
        peer.connect(&target)?;
        for i in 0..5 {
            peer.publish("ticks", format!("tick {i}"))?;
        }
        let acks = peer.messages();
        let mut got = 0;
        while got < 5 {
            match acks.recv_timeout(Duration::from_secs(5)) {
                Some(_) => got += 1,
                None => break,
            }
        }
        peer.shutdown()?;
        Ok(got)
    });

    let messages = driver.messages();
    let events = driver.events();
    let mut poll_events = Events::with_capacity(256);
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !driver.is_finished() {
        // Sleep no longer than the driver's next timer.
        poll.poll(
            &mut poll_events,
            driver.timeout().or(Some(Duration::from_millis(100))),
        )?;
        for event in poll_events.iter() {
            if driver.owns(event.token()) {
                driver.handle_event(event);
            } else if event.token() == CONTROL {
                println!("control socket poked: stopping");
                driver.turn(|node, now| node.shutdown(now));
            }
        }
        driver.tick();

        while let Some(event) = events.try_recv() {
            if let Event::PeerConnected { info, .. } = &event {
                println!("peer connected: {} at {}", info.name, info.addr);
            }
        }
        while let Some(msg) = messages.try_recv() {
            received += 1;
            println!(
                "received on {:?}: {}",
                msg.topic,
                String::from_utf8_lossy(&msg.payload)
            );
            let reply = format!("ack {received}");
            driver.turn(|node, now| node.publish("acks", reply.into(), now))?;
        }
        if received == 5 && !driver.turn(|node, _| node.is_shut_down()) {
            // The answers leave with the goodbye: the core flushes before closing.
            driver.turn(|node, now| node.shutdown(now));
        }
        if Instant::now() > deadline {
            return Err("the peer did not publish in time".into());
        }
        // Drain what this turn's commands produced.
        driver.tick();
    }
    let acks = publisher.join().map_err(|_| "publisher panicked")??;
    println!("embedded node received {received} messages; the peer got {acks} answers");
    if received != 5 || acks != 5 {
        return Err("messages were lost".into());
    }
    Ok(())
}
