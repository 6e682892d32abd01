//! Files in the simulator: a sender (driven here as a runtime would: chunks while the core
//! lets it, repairs when asked) and receivers through a root. Asserted for every scenario: a
//! receiver's file is complete, byte for byte, with the SHA-256 the sender gave; chunks lost
//! to a cut (the end too) are fetched from the sender; a receiver that joins late gets the
//! whole file; two senders of one name stay two files.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chaski_proto::files::{FileKey, FileLimits, MIN_CHUNK};
use chaski_proto::sim::{Idx, Sim};
use chaski_proto::{Config, Delivery};
use sha2::{Digest, Sha256};

const CHUNK: usize = MIN_CHUNK as usize;

fn cfg(name: &str) -> Config {
    Config::default()
        .name(name)
        .reconnect_initial(Duration::from_millis(200))
        .reconnect_max(Duration::from_secs(1))
}

/// A file of `len` bytes that differ from chunk to chunk.
fn content(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 7) as u8 ^ salt ^ (i >> 14) as u8)
        .collect()
}

/// The sending side, as a runtime drives it.
struct Sending {
    node: Idx,
    id: u64,
    data: Vec<u8>,
    next: usize,
    ended: bool,
    repairs: u64,
}

impl Sending {
    fn start(sim: &mut Sim, node: Idx, topic: &str, name: &str, data: Vec<u8>) -> Sending {
        let size = Some(data.len() as u64);
        let id = sim
            .turn(node, |n, now| {
                n.offer_file(topic, name, size, MIN_CHUNK, Bytes::new(), now)
            })
            .expect("offered");
        Sending {
            node,
            id,
            data,
            next: 0,
            ended: false,
            repairs: 0,
        }
    }

    /// Sends up to `max` chunks (as the core allows), the end after the last, and every
    /// repair asked for.
    fn pump(&mut self, sim: &mut Sim, max: usize) {
        for _ in 0..max {
            if self.next >= self.data.len() {
                break;
            }
            let topic_waits = sim.turn(self.node, |n, _| n.file_would_wait("files/x"));
            if topic_waits {
                break;
            }
            let end = (self.next + CHUNK).min(self.data.len());
            let piece = Bytes::copy_from_slice(&self.data[self.next..end]);
            let id = self.id;
            sim.turn(self.node, |n, now| n.send_chunk(id, piece, now))
                .expect("chunk");
            self.next = end;
        }
        if self.next >= self.data.len() && !self.ended {
            let hash: [u8; 32] = Sha256::digest(&self.data).into();
            let id = self.id;
            sim.turn(self.node, |n, now| n.end_file(id, Some(hash), now))
                .expect("end");
            self.ended = true;
        }
        for (_, d) in sim.take_delivered(self.node) {
            if let Delivery::FileWanted { peer, id, ranges } = d {
                if id != self.id {
                    continue;
                }
                for (a, b) in ranges {
                    for index in a..b {
                        let start = index as usize * CHUNK;
                        let end = (start + CHUNK).min(self.data.len());
                        let piece = Bytes::copy_from_slice(&self.data[start..end]);
                        sim.turn(self.node, |n, now| {
                            n.repair_chunk(peer, id, index, piece, now)
                        })
                        .expect("repair");
                        self.repairs += 1;
                    }
                }
            }
        }
    }
}

/// What a receiver wrote, as a runtime would: bytes at their offsets, then the check.
#[derive(Default)]
struct Receiving {
    files: BTreeMap<FileKey, (String, Vec<u8>)>,
    /// Finished files: name, bytes, whether their SHA-256 matched.
    done: Vec<(FileKey, String, Vec<u8>, bool)>,
    failed: Vec<String>,
}

impl Receiving {
    fn collect(&mut self, sim: &mut Sim, node: Idx) {
        for (_, d) in sim.take_delivered(node) {
            match d {
                Delivery::FileOffered { key, name, .. } => {
                    self.files.insert(key, (name, Vec::new()));
                }
                Delivery::FileData { key, offset, data } => {
                    let (_, buf) = self.files.get_mut(&key).expect("data of an offered file");
                    let end = offset as usize + data.len();
                    if buf.len() < end {
                        buf.resize(end, 0);
                    }
                    buf[offset as usize..end].copy_from_slice(&data);
                }
                Delivery::FileComplete { key, size, sha256 } => {
                    let (name, buf) = self.files.remove(&key).expect("an offered file ended");
                    assert_eq!(buf.len() as u64, size);
                    let ok = Sha256::digest(&buf)[..] == sha256[..];
                    self.done.push((key, name, buf, ok));
                }
                Delivery::FileFailed { error, .. } => self.failed.push(error.to_string()),
                _ => {}
            }
        }
    }
}

/// A root, a sender and `n` receivers of `files/**`, each with an edge to the root.
fn mesh(seed: u64, receivers: usize) -> (Sim, Idx, Idx, Vec<Idx>) {
    let mut sim = Sim::new(seed);
    let root = sim.add_node(cfg("root").root(true));
    let sender = sim.add_node(cfg("sender"));
    let mut rs = Vec::new();
    for k in 0..receivers {
        let r = sim.add_node(cfg(&format!("r{k}")));
        sim.turn(r, |n, now| {
            n.subscribe("files/**", now)?;
            n.accept_files("files/**", FileLimits::default())
        })
        .unwrap();
        rs.push(r);
    }
    for &i in rs.iter().chain([&sender]) {
        sim.connect(i, root);
    }
    assert!(sim.run_until(Duration::from_secs(2), |s| {
        s.connected(sender, root) && rs.iter().all(|&r| s.connected(r, root))
    }));
    (sim, root, sender, rs)
}

/// Runs the transfer(s) until every receiver finished `want` files, or `limit` passes; each
/// sender sends `rate` chunks per 5 ms step at most.
#[allow(clippy::too_many_arguments)]
fn run(
    sim: &mut Sim,
    rate: usize,
    senders: &mut [&mut Sending],
    rs: &[Idx],
    got: &mut [Receiving],
    want: usize,
    limit: Duration,
    mut each_step: impl FnMut(&mut Sim),
) {
    let end = sim.elapsed() + limit;
    while sim.elapsed() < end {
        for s in senders.iter_mut() {
            s.pump(sim, rate);
        }
        for (r, g) in rs.iter().zip(got.iter_mut()) {
            g.collect(sim, *r);
        }
        if got.iter().all(|g| g.done.len() >= want) {
            return;
        }
        each_step(sim);
        sim.run_for(Duration::from_millis(5));
    }
}

fn assert_received(g: &Receiving, data: &[u8], name: &str) {
    assert!(g.failed.is_empty(), "failed: {:?}", g.failed);
    let [(_, got_name, bytes, ok)] = &g.done[..] else {
        panic!("{} files finished", g.done.len());
    };
    assert_eq!(got_name, name);
    assert!(*ok, "SHA-256 does not match");
    assert!(bytes[..] == data[..], "the bytes differ");
}

#[test]
fn a_file_reaches_every_receiver_through_a_root() {
    let (mut sim, _, sender, rs) = mesh(1, 2);
    let data = content(3 * 1024 * 1024 + 5, 1);
    let mut s = Sending::start(&mut sim, sender, "files/x", "model.bin", data.clone());
    let mut got = vec![Receiving::default(), Receiving::default()];
    run(
        &mut sim,
        16,
        &mut [&mut s],
        &rs,
        &mut got,
        1,
        Duration::from_secs(20),
        |_| {},
    );
    for g in &got {
        assert_received(g, &data, "model.bin");
    }
    assert_eq!(s.repairs, 0, "repairs with nothing lost");
}

#[test]
fn chunks_and_the_end_lost_to_a_cut_are_fetched_from_the_sender() {
    for seed in 0..4 {
        let (mut sim, root, sender, rs) = mesh(10 + seed, 2);
        // Two chunks per 5 ms: the 4 MiB file takes about 640 ms.
        let data = content(4 * 1024 * 1024, 2);
        let mut s = Sending::start(&mut sim, sender, "files/x", "rec.wav", data.clone());
        let mut got = vec![Receiving::default(), Receiving::default()];
        let cut_at = sim.elapsed() + Duration::from_millis(100 + 50 * seed);
        let (mut cut, mut healed) = (false, false);
        let victim = rs[0];
        run(
            &mut sim,
            2,
            &mut [&mut s],
            &rs,
            &mut got,
            1,
            Duration::from_secs(30),
            |sim| {
                if !cut && sim.elapsed() >= cut_at {
                    sim.cut(victim, root);
                    // The receiver cannot reach the sender either while cut.
                    sim.cut(victim, sender);
                    cut = true;
                }
                if cut && !healed && sim.elapsed() >= cut_at + Duration::from_secs(2) {
                    sim.heal(victim, root);
                    sim.heal(victim, sender);
                    healed = true;
                }
            },
        );
        assert!(healed, "seed {seed}: the transfer ended before the heal");
        for g in &got {
            assert_received(g, &data, "rec.wav");
        }
        assert!(s.repairs > 0, "seed {seed}: nothing was repaired");
    }
}

#[test]
fn a_receiver_that_joins_late_gets_the_whole_file() {
    let (mut sim, root, sender, mut rs) = mesh(3, 1);
    let data = content(2 * 1024 * 1024 + 100, 3);
    let mut s = Sending::start(&mut sim, sender, "files/x", "late.bin", data.clone());
    let mut got = vec![Receiving::default()];
    run(
        &mut sim,
        2,
        &mut [&mut s],
        &rs,
        &mut got,
        1,
        Duration::from_millis(120),
        |_| {},
    );
    assert!(
        got[0].done.is_empty(),
        "over before the late receiver joined"
    );
    let late = sim.add_node(cfg("late"));
    sim.turn(late, |n, now| {
        n.subscribe("files/**", now)?;
        n.accept_files("files/**", FileLimits::default())
    })
    .unwrap();
    sim.connect(late, root);
    rs.push(late);
    got.push(Receiving::default());
    run(
        &mut sim,
        2,
        &mut [&mut s],
        &rs,
        &mut got,
        1,
        Duration::from_secs(30),
        |_| {},
    );
    for g in &got {
        assert_received(g, &data, "late.bin");
    }
    assert!(
        s.repairs > 0,
        "the late receiver's first chunks came from nowhere"
    );
}

#[test]
fn two_senders_of_one_name_make_two_files() {
    let (mut sim, root, a, rs) = mesh(4, 1);
    let b = sim.add_node(cfg("other sender"));
    sim.connect(b, root);
    assert!(sim.run_until(Duration::from_secs(2), |s| s.connected(b, root)));
    let (da, db) = (content(300_000, 4), content(200_000, 5));
    let mut sa = Sending::start(&mut sim, a, "files/x", "same.txt", da.clone());
    let mut sb = Sending::start(&mut sim, b, "files/x", "same.txt", db.clone());
    let mut got = vec![Receiving::default()];
    run(
        &mut sim,
        4,
        &mut [&mut sa, &mut sb],
        &rs,
        &mut got,
        2,
        Duration::from_secs(20),
        |_| {},
    );
    let g = &got[0];
    assert!(g.failed.is_empty(), "{:?}", g.failed);
    assert_eq!(g.done.len(), 2);
    let mut contents: Vec<&Vec<u8>> = g.done.iter().map(|(_, _, bytes, _)| bytes).collect();
    contents.sort_by_key(|c| c.len());
    assert!(
        contents[0] == &db && contents[1] == &da,
        "the two files mixed"
    );
    assert!(g
        .done
        .iter()
        .all(|(_, name, _, ok)| name == "same.txt" && *ok));
    assert_ne!(g.done[0].0, g.done[1].0);
}
