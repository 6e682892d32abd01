//! Files over real sockets, on every runtime: a file through a root to two receivers (bytes,
//! SHA-256, metadata, sender), publishes flowing beside it; what a receiver refuses, renames
//! and keeps inside its directory; a cancelled transfer and hostile frames (a wrong hash, an
//! end whose size lies) leaving nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaski_api::{block_on, Config, Error, FileError, FileEvent, Files, ReceiveOptions};
use chaski_proto::files::{FileChunk, FileEnd, FileOffer, MIN_CHUNK};
use chaski_proto::{Message, NodeId};
use sha2::{Digest, Sha256};

use crate::raw::{hello, RawConn};
use crate::{start_on, wait_until, Harness, TestNode};

const WAIT: Duration = Duration::from_secs(30);

fn cfg(name: &str) -> Config {
    Config::default().name(name).reconnections(0)
}

/// A directory of its own, removed at the end.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary one.
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("chaski-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The names in it, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ everywhere (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The next event that is not progress, within `limit`.
fn next_outcome(files: &Files, limit: Duration) -> Option<FileEvent> {
    let end = Instant::now() + limit;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match files.recv_timeout(left)? {
            FileEvent::Offered { .. } | FileEvent::Progress { .. } => {}
            other => return Some(other),
        }
    }
    None
}

fn receive<N: TestNode>(n: &N, dir: &TempDir, options: ReceiveOptions) -> Files {
    block_on(n.handle().receive_files("files/**", dir.path(), options)).expect("receiving files")
}

/// Waits until `n` has an edge to each of `peers` that knows their subscription to `topic`.
fn knows<N: TestNode>(n: &N, peers: &[&N], topic: &str) {
    let ok = wait_until(WAIT, || {
        let edges = n.edges();
        peers.iter().all(|p| {
            edges
                .iter()
                .any(|e| e.id == p.id() && e.topics.iter().any(|t| t == topic))
        })
    });
    assert!(ok, "the subscription to {topic} never reached its peer");
}

pub fn files_through_a_root<H: Harness>(h: &H, host: &str) {
    let root = start_on(h, host, cfg("root").root(true));
    let sender = start_on(h, host, cfg("sender"));
    let rs = [start_on(h, host, cfg("r0")), start_on(h, host, cfg("r1"))];
    let dirs = [TempDir::new("r0"), TempDir::new("r1")];
    let files: Vec<Files> = rs
        .iter()
        .zip(&dirs)
        .map(|(r, d)| receive(r, d, ReceiveOptions::default()))
        .collect();
    rs[0].subscribe("news").unwrap();
    for n in rs.iter().chain([&sender]) {
        n.connect(&root.addr().to_string()).unwrap();
    }
    knows(&root, &[&rs[0], &rs[1]], "files/**");
    let src = TempDir::new("src");
    let data = noise(6 * 1024 * 1024 + 123, 7);
    let path = src.path().join("model.bin");
    std::fs::write(&path, &data).unwrap();
    let transfer =
        block_on(sender.handle().send_file("files/models", &path, "v2")).expect("send_file");
    assert_eq!(transfer.size(), Some(data.len() as u64));
    // Publishes go on beside the transfer.
    for k in 0..20 {
        sender.publish("news", format!("n{k}").as_bytes()).unwrap();
    }
    let sent = transfer.wait().expect("sent");
    let hash: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!(sent.sha256, hash);
    assert_eq!(sent.size, data.len() as u64);
    for (k, (f, d)) in files.iter().zip(&dirs).enumerate() {
        let got = next_outcome(f, WAIT);
        let Some(FileEvent::Received(file)) = got else {
            panic!("receiver {k}: {got:?}");
        };
        assert_eq!(file.name, "model.bin");
        assert_eq!(file.path, d.path().join("model.bin"));
        assert_eq!(file.sha256, hash);
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.meta, Bytes::from_static(b"v2"));
        assert_eq!(file.from(), sender.id());
        assert_eq!(file.topic, "files/models");
        assert!(
            std::fs::read(&file.path).unwrap() == data,
            "receiver {k}: bytes differ"
        );
        assert_eq!(d.names(), ["model.bin"], "receiver {k} left something else");
    }
    for k in 0..20 {
        let m = rs[0].recv(WAIT).unwrap_or_else(|| panic!("news {k} lost"));
        assert_eq!(m.payload, format!("n{k}").as_bytes());
    }
    drop(files);
    for n in rs.iter().chain([&sender, &root]) {
        n.shutdown();
    }
}

pub fn files_refused_renamed_and_confined<H: Harness>(h: &H, host: &str) {
    let sender = start_on(h, host, cfg("sender"));
    let receiver = start_on(h, host, cfg("receiver"));
    let outer = TempDir::new("outer");
    let dir = outer.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let in_dir = TempDir(dir.clone());
    let files = receive(
        &receiver,
        &in_dir,
        ReceiveOptions::default().max_size(1 << 20),
    );
    sender.connect(&receiver.addr().to_string()).unwrap();
    knows(&sender, &[&receiver], "files/**");
    let node = sender.handle();
    // Too large, said ahead: refused with a reason.
    let src = TempDir::new("src");
    let big = noise(2 << 20, 1);
    std::fs::write(src.path().join("big.bin"), &big).unwrap();
    let t = block_on(node.send_file("files/a", src.path().join("big.bin"), "")).unwrap();
    t.wait().unwrap();
    let refused = next_outcome(&files, WAIT);
    assert!(
        matches!(
            &refused,
            Some(FileEvent::Refused { error: FileError::TooLarge(_), size: Some(s), .. }) if *s == 2 << 20
        ),
        "{refused:?}"
    );
    // Too large, found out on the way (a stream): failed, nothing written.
    let transfer =
        block_on(node.send_stream("files/a", "big.bin", std::io::Cursor::new(big.clone()), ""))
            .unwrap();
    let refused = next_outcome(&files, WAIT);
    assert!(
        matches!(
            &refused,
            Some(FileEvent::Failed {
                error: FileError::TooLarge(_),
                ..
            })
        ),
        "{refused:?}"
    );
    transfer.wait().unwrap();
    // A name that climbs out, twice: kept inside, the second under a new name.
    for (k, content) in [b"first".as_slice(), b"second".as_slice()]
        .into_iter()
        .enumerate()
    {
        let t = block_on(node.send_stream(
            "files/a",
            "../../escape.txt",
            std::io::Cursor::new(content.to_vec()),
            "",
        ))
        .unwrap();
        t.wait().unwrap();
        let got = next_outcome(&files, WAIT);
        let Some(FileEvent::Received(file)) = got else {
            panic!("{k}: {got:?}");
        };
        let name = if k == 0 {
            "escape.txt"
        } else {
            "escape (1).txt"
        };
        assert_eq!(file.name, name);
        assert_eq!(file.path, dir.join(name));
        assert_eq!(std::fs::read(&file.path).unwrap(), content);
    }
    assert_eq!(outer.names(), ["in"], "a file escaped the directory");
    // An empty file.
    let t = block_on(node.send_stream("files/a", "empty", std::io::empty(), "")).unwrap();
    t.wait().unwrap();
    let got = next_outcome(&files, WAIT);
    let Some(FileEvent::Received(file)) = got else {
        panic!("{got:?}");
    };
    assert_eq!((file.size, file.sha256), (0, Sha256::digest(b"").into()));
    assert_eq!(in_dir.names(), ["empty", "escape (1).txt", "escape.txt"]);
    // Stopping receiving: a new offer is not taken.
    drop(files);
    let t = block_on(node.send_stream("files/a", "late", std::io::Cursor::new(vec![1; 10]), ""))
        .unwrap();
    t.wait().unwrap();
    let quiet = wait_until(Duration::from_millis(300), || in_dir.names().len() != 3);
    assert!(
        !quiet,
        "a file arrived after receiving stopped: {:?}",
        in_dir.names()
    );
    sender.shutdown();
    receiver.shutdown();
}

/// An endless stream of zeros.
struct Endless;

impl std::io::Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

pub fn a_cancelled_transfer_leaves_nothing<H: Harness>(h: &H, host: &str) {
    let sender = start_on(h, host, cfg("sender"));
    let receiver = start_on(h, host, cfg("receiver"));
    let dir = TempDir::new("cancel");
    let files = receive(&receiver, &dir, ReceiveOptions::default().max_size(1 << 30));
    sender.connect(&receiver.addr().to_string()).unwrap();
    knows(&sender, &[&receiver], "files/**");
    let t = block_on(
        sender
            .handle()
            .send_stream("files/a", "endless", Endless, ""),
    )
    .unwrap();
    let offered = files.recv_timeout(WAIT);
    assert!(
        matches!(offered, Some(FileEvent::Offered { .. })),
        "{offered:?}"
    );
    assert!(wait_until(WAIT, || t.sent() > 0));
    t.cancel();
    let outcome = t.wait();
    assert!(
        matches!(outcome, Err(Error::File(FileError::Cancelled))),
        "{outcome:?}"
    );
    let got = next_outcome(&files, WAIT);
    assert!(
        matches!(
            &got,
            Some(FileEvent::Failed {
                error: FileError::Abandoned(_),
                ..
            })
        ),
        "{got:?}"
    );
    assert!(
        wait_until(WAIT, || dir.names().is_empty()),
        "left behind: {:?}",
        dir.names()
    );
    sender.shutdown();
    receiver.shutdown();
}

pub fn hostile_file_frames_leave_nothing<H: Harness>(h: &H, host: &str) {
    let receiver = start_on(h, host, cfg("receiver"));
    let dir = TempDir::new("hostile");
    let files = receive(&receiver, &dir, ReceiveOptions::default());
    let mut raw = RawConn::edge(receiver.addr(), &hello(77, None, &[]));
    let chunk = MIN_CHUNK as u64;
    let size = chunk + 100;
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for (id, end_size, sha, expect) in [
        (1u64, size, vec![0u8; 32], "hash"),
        (2, size + chunk, vec![0; 32], "size"),
    ] {
        raw.send(&Message::FileOffer(FileOffer {
            origin: NodeId(77),
            seq: next(),
            topic: "files/x".into(),
            ttl: 1,
            hops: 1,
            id,
            name: "evil.bin".into(),
            size: Some(size),
            chunk: MIN_CHUNK,
            meta: Bytes::new(),
            addr: None,
        }));
        for (index, len) in [(0, chunk), (1, 100)] {
            raw.send(&Message::FileChunk(FileChunk {
                origin: NodeId(77),
                seq: next(),
                topic: "files/x".into(),
                ttl: 1,
                hops: 1,
                id,
                index,
                data: Bytes::from(vec![9; len as usize]),
                repair: false,
            }));
        }
        raw.send(&Message::FileEnd(FileEnd {
            origin: NodeId(77),
            seq: next(),
            topic: "files/x".into(),
            ttl: 1,
            hops: 1,
            id,
            size: end_size,
            sha256: Some(Bytes::from(sha)),
            repair: false,
        }));
        let got = next_outcome(&files, WAIT);
        let ok = match expect {
            "hash" => matches!(
                &got,
                Some(FileEvent::Failed {
                    error: FileError::HashMismatch,
                    ..
                })
            ),
            _ => matches!(
                &got,
                Some(FileEvent::Failed {
                    error: FileError::Malformed(_),
                    ..
                })
            ),
        };
        assert!(ok, "{expect}: {got:?}");
        assert!(
            wait_until(WAIT, || dir.names().is_empty()),
            "{expect}: left behind {:?}",
            dir.names()
        );
    }
    // The node is fine: it still takes a good file from the same peer.
    let data = vec![5u8; 10];
    for msg in [
        Message::FileOffer(FileOffer {
            origin: NodeId(77),
            seq: next(),
            topic: "files/x".into(),
            ttl: 1,
            hops: 1,
            id: 3,
            name: "good".into(),
            size: Some(10),
            chunk: MIN_CHUNK,
            meta: Bytes::new(),
            addr: None,
        }),
        Message::FileChunk(FileChunk {
            origin: NodeId(77),
            seq: next(),
            topic: "files/x".into(),
            ttl: 1,
            hops: 1,
            id: 3,
            index: 0,
            data: Bytes::from(data.clone()),
            repair: false,
        }),
        Message::FileEnd(FileEnd {
            origin: NodeId(77),
            seq: next(),
            topic: "files/x".into(),
            ttl: 1,
            hops: 1,
            id: 3,
            size: 10,
            sha256: Some(Bytes::copy_from_slice(&Sha256::digest(&data))),
            repair: false,
        }),
    ] {
        raw.send(&msg);
    }
    let got = next_outcome(&files, WAIT);
    assert!(
        matches!(&got, Some(FileEvent::Received(f)) if f.name == "good"),
        "{got:?}"
    );
    receiver.shutdown();
}
