//! Files, the hub's part: the core's file deliveries routed to the receiving patterns' writers
//! (their queues hold the node's reading back when the disk is slow) and to the sending
//! transfers' repair queues. The threads that read and write the files are in
//! [`super::file_io`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::task::Context;

use bytes::Bytes;

use chaski_proto::files::{FileError, FileKey};
use chaski_proto::{Delivery, Node, NodeId};

use crate::files::FileEvent;
use crate::queue::{MessageQueue, Weigh};

/// Chunk numbers a sending transfer keeps asked for at once (more are asked again later).
const MAX_REPAIRS: usize = 4096;

/// What a receiver's writer does, in order.
pub(crate) enum WriteOp {
    Open {
        key: FileKey,
        topic: String,
        name: String,
        size: Option<u64>,
        meta: Bytes,
    },
    Data {
        key: FileKey,
        offset: u64,
        data: Bytes,
    },
    Complete {
        key: FileKey,
        size: u64,
        sha256: Bytes,
    },
    Failed {
        key: FileKey,
        error: FileError,
    },
    Refused(FileEvent),
}

impl Weigh for WriteOp {
    fn weight(&self) -> usize {
        match self {
            WriteOp::Data { data, .. } => data.len(),
            _ => 64,
        }
    }
}

/// A receiving pattern: its writer's queue.
pub(crate) struct Sink {
    id: u64,
    pattern: String,
    queue: MessageQueue<WriteOp>,
}

/// Chunks receivers asked a sending transfer for, and whether it is over.
#[derive(Default)]
pub(crate) struct Repairs {
    state: Mutex<RepairState>,
    cond: Condvar,
}

#[derive(Default)]
struct RepairState {
    wanted: BTreeSet<(NodeId, u64)>,
    over: bool,
}

/// What a sending transfer's thread is to do next.
pub(crate) enum Repair {
    /// Send chunk `index` again to `peer`.
    Chunk(NodeId, u64),
    /// Nothing asked for now.
    None,
    /// The transfer is over (expired, or the node gone).
    Over,
}

impl Repairs {
    fn lock(&self) -> std::sync::MutexGuard<'_, RepairState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self) {
        self.lock().over = true;
        self.cond.notify_all();
    }

    /// The next chunk asked for; with `block`, waits until one is (or the transfer is over).
    pub(crate) fn next(&self, block: bool) -> Repair {
        let mut g = self.lock();
        if block {
            while g.wanted.is_empty() && !g.over {
                g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        }
        if g.over {
            return Repair::Over;
        }
        match g.wanted.pop_first() {
            Some((peer, index)) => Repair::Chunk(peer, index),
            None => Repair::None,
        }
    }
}

/// The hub's part of files: receiving patterns and sending transfers.
#[derive(Default)]
pub(crate) struct Transfers {
    sinks: Vec<Sink>,
    next_sink: u64,
    /// Which sink each receiving transfer goes to.
    routes: HashMap<FileKey, u64>,
    sending: HashMap<u64, std::sync::Arc<Repairs>>,
}

impl Transfers {
    /// A receiving pattern whose writer reads `queue`: its id.
    pub(crate) fn add_sink(&mut self, pattern: &str, queue: MessageQueue<WriteOp>) -> u64 {
        self.next_sink += 1;
        self.sinks.push(Sink {
            id: self.next_sink,
            pattern: pattern.to_string(),
            queue,
        });
        self.next_sink
    }

    /// A sending transfer's repair queue.
    pub(crate) fn add_sending(&mut self, id: u64, repairs: std::sync::Arc<Repairs>) {
        self.sending.insert(id, repairs);
    }

    /// A sending transfer's thread is done.
    pub(crate) fn remove_sending(&mut self, id: u64) {
        self.sending.remove(&id);
    }

    /// Whether a receiving pattern holds `pattern`.
    pub(crate) fn holds(&self, pattern: &str) -> bool {
        self.sinks.iter().any(|s| s.pattern == pattern)
    }

    /// Routes a file delivery; gives back any other.
    pub(crate) fn delivery(&mut self, node: &mut Node, d: Delivery) -> Option<Delivery> {
        let (key, op) = match d {
            Delivery::FileOffered {
                key,
                topic,
                name,
                size,
                meta,
                ..
            } => {
                let Some(sink) = self
                    .sinks
                    .iter()
                    .find(|s| chaski_proto::topic::matches(&s.pattern, &topic))
                else {
                    node.file_failed(key);
                    return None;
                };
                self.routes.insert(key, sink.id);
                let op = WriteOp::Open {
                    key,
                    topic,
                    name,
                    size,
                    meta,
                };
                (key, op)
            }
            Delivery::FileData { key, offset, data } => (key, WriteOp::Data { key, offset, data }),
            Delivery::FileComplete { key, size, sha256 } => {
                let op = WriteOp::Complete { key, size, sha256 };
                let sink = self.routes.remove(&key);
                return self.to_sink(sink, op);
            }
            Delivery::FileFailed { key, error } => {
                let sink = self.routes.remove(&key);
                return self.to_sink(sink, WriteOp::Failed { key, error });
            }
            Delivery::FileRefused {
                key,
                topic,
                name,
                size,
                error,
            } => {
                let sink = self
                    .sinks
                    .iter()
                    .find(|s| chaski_proto::topic::matches(&s.pattern, &topic))
                    .map(|s| s.id);
                let ev = FileEvent::Refused {
                    key,
                    name,
                    size,
                    error,
                };
                return self.to_sink(sink, WriteOp::Refused(ev));
            }
            Delivery::FileWanted { peer, id, ranges } => {
                match self.sending.get(&id) {
                    Some(r) => {
                        let mut g = r.lock();
                        'all: for (a, b) in ranges {
                            for i in a..b {
                                if g.wanted.len() >= MAX_REPAIRS {
                                    break 'all;
                                }
                                g.wanted.insert((peer, i));
                            }
                        }
                        drop(g);
                        r.cond.notify_all();
                    }
                    // Its thread is gone (cancelled, failed): forget it now.
                    None => node.forget_file(id),
                }
                return None;
            }
            Delivery::FileExpired { id } => {
                if let Some(r) = self.sending.remove(&id) {
                    r.end();
                }
                return None;
            }
            other => return Some(other),
        };
        let sink = self.routes.get(&key).copied();
        if sink.is_none() {
            // Its sink went (the application stopped receiving): the core forgets it too.
            node.file_failed(key);
        }
        self.to_sink(sink, op)
    }

    fn to_sink(&self, sink: Option<u64>, op: WriteOp) -> Option<Delivery> {
        if let Some(s) = sink.and_then(|id| self.sinks.iter().find(|s| s.id == id)) {
            s.queue.push(op);
        }
        None
    }

    /// Ready while every writer has room (back-pressure): registers the task with each full one.
    pub(crate) fn poll_space(&self, cx: &Context<'_>) -> bool {
        let mut ready = true;
        for s in &self.sinks {
            ready &= s.queue.poll_space(cx).is_ready();
        }
        ready
    }

    /// A receiving pattern goes: its writer ends (dropping what it had not finished). Gives
    /// the pattern if no other sink holds it.
    pub(crate) fn remove_sink(&mut self, id: u64) -> Option<String> {
        let pos = self.sinks.iter().position(|s| s.id == id)?;
        let gone = self.sinks.remove(pos);
        gone.queue.close();
        self.routes.retain(|_, s| *s != id);
        (!self.holds(&gone.pattern)).then_some(gone.pattern)
    }

    /// The node is done: every writer and sender ends.
    pub(crate) fn shutdown(&mut self) {
        for s in self.sinks.drain(..) {
            s.queue.close();
        }
        for (_, r) in self.sending.drain() {
            r.end();
        }
        self.routes.clear();
    }
}
