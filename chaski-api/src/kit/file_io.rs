//! Files, the runtime's half (the same on every runtime, on threads of their own since files
//! are blocking I/O): a sender's thread reads its file once, hashing as it goes, sends chunks
//! as the core lets it and answers repairs until the transfer expires; a receiver's writer
//! thread puts each chunk in place in a temporary file, checks the SHA-256 at the end and
//! moves the file under a safe, unique name.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::future::poll_fn;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use ring::digest::{Context as Hasher, SHA256};
use tracing::{debug, warn};

use chaski_proto::files::{safe_name, FileError, FileKey, DEFAULT_CHUNK};
use chaski_proto::{Node, SlowConsumer};

use super::engine::Engine;
use super::transfers::{Repair, Repairs, Transfers, WriteOp};
use crate::api::block_on;
use crate::error::{Error, Result};
use crate::files::{FileEvent, ReceivedFile, Sending, Sent};
use crate::queue::{MessageQueue, Messages};

/// Chunks a sender's thread answers between two chunks of its own.
const REPAIRS_PER_CHUNK: usize = 4;
/// Items, and bytes, a receiver's writer may have waiting before the node stops reading.
const WRITE_QUEUE: (usize, usize) = (4096, 16 << 20);
/// Events a receiver keeps for the application before the oldest is dropped.
const EVENT_QUEUE: usize = 4096;
/// A transfer's progress is told at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

// ----- receiving -------------------------------------------------------------------------

/// Starts a writer for `pattern` into `dir`; gives its id and the application's events.
pub(crate) fn start_sink(
    engine: &Arc<Engine>,
    transfers: &mut Transfers,
    pattern: &str,
    dir: PathBuf,
    overwrite: bool,
) -> Result<(u64, Messages<FileEvent>)> {
    let (queue, ops) = MessageQueue::new(WRITE_QUEUE.0, WRITE_QUEUE.1, SlowConsumer::BackPressure);
    let (events, stream) = MessageQueue::new(EVENT_QUEUE, usize::MAX, SlowConsumer::DropOldest);
    let writer = Writer {
        dir,
        overwrite,
        events,
        engine: Arc::downgrade(engine),
        open: HashMap::new(),
    };
    std::thread::Builder::new()
        .name("chaski-files".into())
        .spawn(move || writer.run(ops))
        .map_err(Error::from)?;
    Ok((transfers.add_sink(pattern, queue), stream))
}

/// A file being written.
struct Writing {
    file: File,
    temp: PathBuf,
    topic: String,
    name: String,
    size: Option<u64>,
    meta: Bytes,
    hasher: Hasher,
    /// Bytes hashed: everything before this offset, in order.
    hashed: u64,
    written: u64,
    told: Instant,
}

/// A receiver's writer thread.
struct Writer {
    dir: PathBuf,
    overwrite: bool,
    events: MessageQueue<FileEvent>,
    engine: Weak<Engine>,
    open: HashMap<FileKey, Writing>,
}

impl Writer {
    fn run(mut self, ops: Messages<WriteOp>) {
        for op in ops.blocking_iter() {
            match op {
                WriteOp::Open {
                    key,
                    topic,
                    name,
                    size,
                    meta,
                } => self.open(key, topic, name, size, meta),
                WriteOp::Data { key, offset, data } => {
                    if let Err(e) = self.write(key, offset, &data) {
                        self.fail(key, io_error(&e), true);
                    }
                }
                WriteOp::Complete { key, size, sha256 } => self.complete(key, size, &sha256),
                WriteOp::Failed { key, error } => self.fail(key, error, false),
                WriteOp::Refused(ev) => self.events.push(ev),
            }
        }
        // Stopped receiving, or the node shut down: nothing half-written stays.
        for (_, w) in self.open.drain() {
            let _ = fs::remove_file(&w.temp);
        }
        self.events.close();
    }

    fn open(&mut self, key: FileKey, topic: String, name: String, size: Option<u64>, meta: Bytes) {
        let temp = self
            .dir
            .join(format!(".chaski-{}-{}.part", key.origin, key.id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp);
        self.events.push(FileEvent::Offered {
            key,
            topic: topic.clone(),
            name: name.clone(),
            size,
            meta: meta.clone(),
        });
        match file {
            Ok(file) => {
                self.open.insert(
                    key,
                    Writing {
                        file,
                        temp,
                        topic,
                        name,
                        size,
                        meta,
                        hasher: Hasher::new(&SHA256),
                        hashed: 0,
                        written: 0,
                        told: Instant::now(),
                    },
                );
            }
            Err(e) => {
                self.events.push(FileEvent::Failed {
                    key,
                    name,
                    error: io_error(&e),
                });
                self.give_up(key);
            }
        }
    }

    fn write(&mut self, key: FileKey, offset: u64, data: &[u8]) -> io::Result<()> {
        let Some(w) = self.open.get_mut(&key) else {
            return Ok(());
        };
        if w.file.stream_position()? != offset {
            w.file.seek(SeekFrom::Start(offset))?;
        }
        w.file.write_all(data)?;
        if offset == w.hashed {
            w.hasher.update(data);
            w.hashed += data.len() as u64;
        }
        w.written += data.len() as u64;
        if w.told.elapsed() >= PROGRESS_EVERY {
            w.told = Instant::now();
            self.events.push(FileEvent::Progress {
                key,
                received: w.written,
                size: w.size,
            });
        }
        Ok(())
    }

    fn complete(&mut self, key: FileKey, size: u64, sha256: &[u8]) {
        let Some(mut w) = self.open.remove(&key) else {
            return;
        };
        let checked = finish_hash(&mut w, size).and_then(|hash| {
            if hash[..] != *sha256 {
                return Ok(Err(FileError::HashMismatch));
            }
            w.file.set_len(size).map_err(|e| io_error(&e))?;
            drop(w.file);
            let (name, path) = self.place(&w.temp, &w.name)?;
            Ok(Ok(ReceivedFile {
                key,
                topic: w.topic.clone(),
                name,
                path,
                size,
                sha256: hash,
                meta: w.meta.clone(),
            }))
        });
        match checked {
            Ok(Ok(file)) => {
                debug!(path = %file.path.display(), size, "file received");
                self.events.push(FileEvent::Received(file));
            }
            Ok(Err(error)) | Err(error) => {
                let _ = fs::remove_file(&w.temp);
                warn!(origin = %key.origin, id = key.id, %error, "file not kept");
                self.events.push(FileEvent::Failed {
                    key,
                    name: w.name,
                    error,
                });
            }
        }
    }

    /// Moves a checked file from `temp` to a safe name in the directory: never over another
    /// file unless asked (`name (1).ext`, `name (2).ext`, ... instead).
    fn place(&self, temp: &Path, given: &str) -> std::result::Result<(String, PathBuf), FileError> {
        let base = safe_name(given).unwrap_or_else(|| "file".to_string());
        if self.overwrite {
            let path = self.dir.join(&base);
            fs::rename(temp, &path).map_err(|e| io_error(&e))?;
            return Ok((base, path));
        }
        let (stem, ext) = match base.rfind('.') {
            Some(dot) if dot > 0 => (&base[..dot], &base[dot..]),
            _ => (&base[..], ""),
        };
        for n in 0..10_000u32 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{stem} ({n}){ext}")
            };
            let path = self.dir.join(&name);
            // A hard link never replaces a file: the name is ours only if it was free.
            match fs::hard_link(temp, &path) {
                Ok(()) => {
                    let _ = fs::remove_file(temp);
                    return Ok((name, path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(_) => {
                    // No hard links here (some file systems): claim the name, then move.
                    match OpenOptions::new().write(true).create_new(true).open(&path) {
                        Ok(_) => {
                            fs::rename(temp, &path).map_err(|e| io_error(&e))?;
                            return Ok((name, path));
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(io_error(&e)),
                    }
                }
            }
        }
        Err(FileError::Io(format!("no free name for {base}")))
    }

    /// A transfer ends without a file; `tell_core` when this side gave it up.
    fn fail(&mut self, key: FileKey, error: FileError, tell_core: bool) {
        if let Some(w) = self.open.remove(&key) {
            drop(w.file);
            let _ = fs::remove_file(&w.temp);
            self.events.push(FileEvent::Failed {
                key,
                name: w.name,
                error,
            });
        }
        if tell_core {
            self.give_up(key);
        }
    }

    fn give_up(&self, key: FileKey) {
        if let Some(engine) = self.engine.upgrade() {
            engine.turn(|s, _| s.core.file_failed(key));
        }
    }
}

/// The SHA-256 of a finished file: what was hashed as it came in order, then the rest read
/// back from the file.
fn finish_hash(w: &mut Writing, size: u64) -> std::result::Result<[u8; 32], FileError> {
    if w.hashed < size {
        w.file
            .seek(SeekFrom::Start(w.hashed))
            .map_err(|e| io_error(&e))?;
        let mut rest = (&w.file).take(size - w.hashed);
        let mut buf = vec![0; 256 * 1024];
        loop {
            let n = rest.read(&mut buf).map_err(|e| io_error(&e))?;
            if n == 0 {
                break;
            }
            w.hasher.update(&buf[..n]);
        }
    }
    let done = std::mem::replace(&mut w.hasher, Hasher::new(&SHA256)).finish();
    done.as_ref()
        .try_into()
        .map_err(|_| FileError::Io("a SHA-256 that is not 32 bytes".into()))
}

fn io_error(e: &io::Error) -> FileError {
    if e.kind() == io::ErrorKind::StorageFull {
        FileError::NoSpace
    } else {
        FileError::Io(e.to_string())
    }
}

// ----- sending ---------------------------------------------------------------------------

/// Where a sender's bytes come from.
pub(crate) enum Source {
    /// A file of known size (read once; repairs open it again at `path`).
    File(File, PathBuf, u64),
    /// A stream (kept in a spool file for repairs).
    Stream(Box<dyn Read + Send>),
}

/// Offers a transfer and starts the thread that sends it; gives its number.
pub(crate) fn start_send(
    engine: &Arc<Engine>,
    topic: &str,
    name: &str,
    source: Source,
    meta: Bytes,
    state: Arc<Sending>,
    done: oneshot::Sender<Result<Sent>>,
) -> Result<u64> {
    let size = match &source {
        Source::File(_, _, size) => Some(*size),
        Source::Stream(_) => None,
    };
    let repairs = Arc::new(Repairs::default());
    let id = engine.turn(|s, now| -> Result<u64> {
        let id = s
            .core
            .offer_file(topic, name, size, DEFAULT_CHUNK, meta, now)?;
        s.hub.transfers.add_sending(id, repairs.clone());
        Ok(id)
    })?;
    let sender = Sender {
        engine: engine.clone(),
        topic: topic.to_string(),
        name: name.to_string(),
        id,
        repairs,
        state,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("chaski-send-{id}"))
        .spawn(move || sender.run(source, done));
    if let Err(e) = spawned {
        engine.turn(|s, now| {
            let _ = s.core.end_file(id, None, now);
            s.hub.transfers.remove_sending(id);
        });
        return Err(e.into());
    }
    Ok(id)
}

/// A sender's thread.
struct Sender {
    engine: Arc<Engine>,
    topic: String,
    name: String,
    id: u64,
    repairs: Arc<Repairs>,
    state: Arc<Sending>,
}

impl Sender {
    fn run(self, source: Source, done: oneshot::Sender<Result<Sent>>) {
        let outcome = self.send(source);
        let (result, again) = match outcome {
            Ok((sent, again)) => (Ok(sent), Some(again)),
            Err(e) => {
                // Receivers learn it is over; nothing is kept for repairs.
                let id = self.id;
                self.engine.turn(|s, now| {
                    let _ = s.core.end_file(id, None, now);
                    s.core.forget_file(id);
                    s.hub.transfers.remove_sending(id);
                });
                (Err(e), None)
            }
        };
        let _ = done.send(result);
        if let Some(mut again) = again {
            // Repairs until the transfer expires or the node goes.
            while self.serve(&mut again, usize::MAX, true) {}
        }
        self.engine
            .turn(|s, _| s.hub.transfers.remove_sending(self.id));
    }

    /// Reads and sends the whole; gives what was sent and where repairs read from.
    fn send(&self, source: Source) -> Result<(Sent, Reread)> {
        let (mut input, mut again, size): (Box<dyn Read + Send>, Reread, Option<u64>) = match source
        {
            Source::File(file, path, size) => {
                // A handle of its own: repairs seek it while the first one reads on.
                let again = Reread::File(File::open(path)?);
                (Box::new(file.take(size)), again, Some(size))
            }
            Source::Stream(stream) => (stream, Reread::spool()?, None),
        };
        let chunk = DEFAULT_CHUNK as usize;
        let mut hasher = Hasher::new(&SHA256);
        let mut total = 0u64;
        loop {
            self.serve(&mut again, REPAIRS_PER_CHUNK, false);
            if self.state.cancelled() {
                return Err(Error::File(FileError::Cancelled));
            }
            let mut buf = BytesMut::zeroed(chunk);
            let n = read_full(&mut input, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let data = buf.freeze();
            hasher.update(&data);
            again.keep(&data)?;
            self.wait(|core| core.file_would_wait(&self.topic))?;
            let id = self.id;
            self.engine
                .turn(|s, now| s.core.send_chunk(id, data, now))?;
            total += n as u64;
            self.state.add(n as u64);
            if n < chunk {
                break;
            }
        }
        if size.is_some_and(|s| s != total) {
            return Err(Error::io(format!(
                "the file changed while it was sent: {total} of {} bytes",
                size.unwrap_or(0)
            )));
        }
        let sha256: [u8; 32] = hasher
            .finish()
            .as_ref()
            .try_into()
            .map_err(|_| Error::io("a SHA-256 that is not 32 bytes"))?;
        let id = self.id;
        self.engine
            .turn(|s, now| s.core.end_file(id, Some(sha256), now))?;
        let sent = Sent {
            id,
            name: self.name.clone(),
            size: total,
            sha256,
        };
        Ok((sent, again))
    }

    /// Answers up to `max` asked chunks; with `block`, waits for some first. `false` once
    /// the transfer is over (expired, or the node gone).
    fn serve(&self, again: &mut Reread, max: usize, block: bool) -> bool {
        for _ in 0..max {
            let (peer, index) = match self.repairs.next(block) {
                Repair::Chunk(peer, index) => (peer, index),
                Repair::None => return true,
                Repair::Over => return false,
            };
            let chunk = u64::from(DEFAULT_CHUNK);
            let data = match again.read_at(index * chunk, chunk) {
                Ok(d) if !d.is_empty() => d,
                Ok(_) => continue,
                Err(e) => {
                    warn!(id = self.id, error = %e, "cannot read a chunk again for a repair");
                    continue;
                }
            };
            if self.wait(|core| core.repair_would_wait(peer)).is_err() {
                return false;
            }
            let id = self.id;
            let _ = self
                .engine
                .turn(|s, now| s.core.repair_chunk(peer, id, index, data, now));
        }
        true
    }

    /// Waits while `waits` says so (congested peers), woken as publishers are.
    fn wait(&self, waits: impl Fn(&Node) -> bool) -> Result<()> {
        block_on(poll_fn(|cx| {
            self.engine.turn(|s, _| {
                if s.core.is_shut_down() {
                    return Poll::Ready(Err(Error::ShutDown));
                }
                if waits(&s.core) {
                    s.wait_release(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            })
        }))
    }
}

/// Reads until `buf` is full or the input ends; gives the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where repairs read a sent chunk again.
enum Reread {
    File(File),
    /// A stream's bytes, kept in a temporary file removed when the transfer is over.
    Spool(File, PathBuf),
}

impl Reread {
    fn spool() -> io::Result<Reread> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("chaski-spool-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Reread::Spool(file, path))
    }

    /// Keeps what was read (a stream's bytes; a file has them).
    fn keep(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Reread::File(_) => Ok(()),
            Reread::Spool(f, _) => {
                f.seek(SeekFrom::End(0))?;
                f.write_all(data)
            }
        }
    }

    fn read_at(&mut self, offset: u64, len: u64) -> io::Result<Bytes> {
        let f = match self {
            Reread::File(f) | Reread::Spool(f, _) => f,
        };
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = BytesMut::zeroed(len as usize);
        let n = read_full(&mut (&*f).take(len), &mut buf)?;
        buf.truncate(n);
        Ok(buf.freeze())
    }
}

impl Drop for Reread {
    fn drop(&mut self) {
        if let Reread::Spool(_, path) = self {
            let _ = fs::remove_file(path);
        }
    }
}
