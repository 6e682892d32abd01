//! A chat over a root, without an async runtime: alice, bob and carol each connect only to a
//! root, subscribe to `chat/lobby` and say three lines from a thread of their own; the root
//! relays each line to the others. Every user checks that it heard every line of the other two,
//! in the order they were said.
//!
//! `cargo run -p chaski-mio --example chat`

use std::time::Duration;

use chaski_mio::{Config, Error, Node};

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const LINES: usize = 3;

fn main() -> Result<(), Error> {
    let root = Node::bind("127.0.0.1:0", Config::default().name("root").root(true))?;
    let mut users = Vec::new();
    for name in USERS {
        let user = Node::bind("127.0.0.1:0", Config::default().name(name))?;
        let lobby = user.subscriber("chat/lobby")?;
        user.connect(&root.address())?;
        users.push((name, user, lobby));
    }
    let listening: Vec<_> = users
        .into_iter()
        .map(|(name, user, lobby)| {
            std::thread::spawn(move || {
                for i in 1..=LINES {
                    user.publish("chat/lobby", format!("{name}: hello #{i}"))?;
                }
                let mut heard: Vec<String> = Vec::new();
                while heard.len() < (USERS.len() - 1) * LINES {
                    let m = lobby
                        .recv_timeout(Duration::from_secs(10))
                        .ok_or(Error::Timeout)?;
                    let line = String::from_utf8_lossy(&m.payload).to_string();
                    assert!(!line.starts_with(name), "{name} heard itself");
                    println!("{name:>5} sees  {line}");
                    heard.push(line);
                }
                for other in USERS.iter().filter(|u| **u != name) {
                    let theirs: Vec<&String> =
                        heard.iter().filter(|l| l.starts_with(other)).collect();
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
            })
        })
        .collect();
    for t in listening {
        t.join().expect("a user thread")?.shutdown()?;
    }
    root.shutdown()?;
    println!(
        "chat: each of {} users heard every line of the others, in order",
        USERS.len()
    );
    Ok(())
}
