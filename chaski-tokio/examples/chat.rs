//! A chat over a root: alice, bob and carol each connect only to a root, subscribe to
//! `chat/lobby` and say three lines; the root relays each line to the others. Every user checks
//! that it heard every line of the other two, in the order they were said.
//!
//! `cargo run -p chaski-tokio --example chat` (the same program: `chaski-smol`'s and
//! `chaski-mio`'s `chat` examples)

use std::time::Duration;

use chaski_tokio::{Config, Error, Node};
use futures_util::StreamExt;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const LINES: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let root = Node::bind("127.0.0.1:0", Config::default().name("root").root(true)).await?;
    let mut users = Vec::new();
    for name in USERS {
        let user = Node::bind("127.0.0.1:0", Config::default().name(name)).await?;
        let lobby = user.subscriber("chat/lobby").await?;
        user.connect(&root.address()).await?;
        users.push((name, user, lobby));
    }
    let mut listening = Vec::new();
    for (name, user, mut lobby) in users {
        listening.push(tokio::spawn(async move {
            for i in 1..=LINES {
                user.publish("chat/lobby", format!("{name}: hello #{i}"))
                    .await?;
            }
            let mut heard: Vec<String> = Vec::new();
            while heard.len() < (USERS.len() - 1) * LINES {
                let m = tokio::time::timeout(Duration::from_secs(10), lobby.next())
                    .await
                    .map_err(|_| Error::Timeout)?
                    .ok_or(Error::ShutDown)?;
                let line = String::from_utf8_lossy(&m.payload).to_string();
                assert!(!line.starts_with(name), "{name} heard itself");
                println!("{name:>5} sees  {line}");
                heard.push(line);
            }
            for other in USERS.iter().filter(|u| **u != name) {
                let theirs: Vec<&String> = heard.iter().filter(|l| l.starts_with(other)).collect();
                let said: Vec<String> = (1..=LINES)
                    .map(|i| format!("{other}: hello #{i}"))
                    .collect();
                assert_eq!(
                    theirs,
                    said.iter().collect::<Vec<_>>(),
                    "{name} missed {other}"
                );
            }
            Ok::<_, Error>(user)
        }));
    }
    for task in listening {
        task.await.expect("a user task")?.shutdown().await?;
    }
    root.shutdown().await?;
    println!(
        "chat: each of {} users heard every line of the others, in order",
        USERS.len()
    );
    Ok(())
}
