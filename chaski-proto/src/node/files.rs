//! Files over the mesh (see [`crate::files`]): the sender's side (offer, chunks in order, the
//! end with the hash, repairs for receivers that missed chunks, kept for `file_keep`) and the
//! receiver's (what it accepts, within its bounds; which chunks arrived; asking the sender for
//! the rest, dialing it if it must; giving up after `file_timeout` without progress).
//!
//! File frames travel like publishes (by topic, relayed, de-duplicated by `(origin, seq)`),
//! but behind every other frame of a connection (its bulk lane): a transfer takes what the
//! link has left, and publishes and calls keep flowing.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::timers::TimerKey;
use super::{Delivery, Node, Purpose, ROOT_TOPIC};
use crate::codec::encode_frame;
use crate::error::{CodecError, CommandError};
use crate::files::{
    FileChunk, FileEnd, FileError, FileGone, FileKey, FileLimits, FileOffer, FileWant,
    MAX_FILE_SIZE, MAX_WANT_CHUNKS, MAX_WANT_RANGES, MIN_CHUNK,
};
use crate::id::{ConnId, NodeId};
use crate::message::Message;
use crate::text::Escaped;

/// A sender offers a transfer again every this many chunks (and every `file_repair_after`,
/// and before its end), for receivers that join late.
const OFFER_EVERY: u64 = 64;

/// Transfers a receiver remembers being done with (refused, failed, finished), so that their
/// offers, sent again, are not taken anew.
const DONE_KEPT: usize = 256;

/// Bytes an offer leaves free in a frame for the larger sequence numbers of the offers sent
/// again (a CBOR integer takes at most 9 bytes).
const OFFER_SEQ_ROOM: usize = 8;

/// Bytes a frame adds to a chunk's data, at most (topic and ids aside).
const CHUNK_OVERHEAD: usize = 512;

/// A transfer this node sends.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Its offer (sent again every `file_repair_after` while chunks go, for receivers that
    /// join late).
    offer: FileOffer,
    last_offer: Instant,
    /// The next chunk's number, and the bytes sent so far.
    next: u64,
    sent: u64,
    /// Once ended: its size and hash, and until when it is kept for repairs.
    ended: Option<(u64, Bytes, Instant)>,
}

/// A transfer this node receives.
#[derive(Debug)]
pub(super) struct Incoming {
    chunk: u32,
    size: Option<u64>,
    limits: FileLimits,
    /// Where to dial the sender for missing chunks.
    addr: Option<std::net::SocketAddr>,
    /// One bit per chunk that arrived.
    have: Vec<u64>,
    received: u64,
    /// One past the highest chunk number seen.
    highest: u64,
    /// The size and hash, once the end arrived.
    end: Option<(u64, Bytes)>,
    last_progress: Instant,
    /// Ask the sender at the next timer, progress or not.
    ask_now: bool,
    /// Repairs asked for and not arrived yet (the next window is asked when they have).
    asked: u64,
}

impl Incoming {
    fn has(&self, i: u64) -> bool {
        usize::try_from(i / 64)
            .ok()
            .and_then(|w| self.have.get(w))
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Marks chunk `i` arrived (its number is within the file's bounds, checked before).
    fn set(&mut self, i: u64) {
        let w = (i / 64) as usize;
        if self.have.len() <= w {
            self.have.resize(w + 1, 0);
        }
        self.have[w] |= 1 << (i % 64);
        self.received += 1;
        self.highest = self.highest.max(i + 1);
    }

    /// The file's size, once known.
    fn known_size(&self) -> Option<u64> {
        self.end.as_ref().map(|(s, _)| *s).or(self.size)
    }

    /// Chunks the file has, once its size is known.
    fn chunks(&self) -> Option<u64> {
        Some(self.known_size()?.div_ceil(u64::from(self.chunk)))
    }

    /// The first missing chunks, as ranges (a bounded window).
    fn missing(&self) -> Vec<(u64, u64)> {
        let upto = self.chunks().unwrap_or(self.highest);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut asked = 0;
        let mut i = 0;
        while i < upto && asked < MAX_WANT_CHUNKS && ranges.len() < MAX_WANT_RANGES {
            if self.has(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < upto && !self.has(i) && asked < MAX_WANT_CHUNKS {
                i += 1;
                asked += 1;
            }
            ranges.push((start, i));
        }
        ranges
    }

    /// Bytes this transfer counts against `max_in_flight`: its size, or what arrived.
    fn weight(&self) -> u64 {
        self.known_size()
            .unwrap_or(self.highest.saturating_mul(u64::from(self.chunk)))
    }
}

impl Node {
    // ----- receiving -------------------------------------------------------------------------

    /// Takes the files offered on topics `pattern` matches, within `limits` (the node must
    /// also subscribe to `pattern` for them to come its way). Replaces earlier limits for it.
    pub fn accept_files(&mut self, pattern: &str, limits: FileLimits) -> Result<(), CommandError> {
        self.check_live()?;
        self.check_name("topic", pattern)?;
        crate::topic::check_pattern(pattern)?;
        if limits.max_size > MAX_FILE_SIZE || limits.max_transfers == 0 {
            return Err(CommandError::Limit(
                "file limits: max_size up to 1 TiB, max_transfers from 1",
            ));
        }
        self.file_patterns.retain(|(p, _)| p != pattern);
        if self.file_patterns.len() >= self.cfg.max_peer_patterns {
            return Err(CommandError::Limit("max_peer_patterns"));
        }
        self.file_patterns.push((pattern.to_string(), limits));
        Ok(())
    }

    /// Stops taking files on `pattern` (transfers under way go on).
    pub fn refuse_files(&mut self, pattern: &str) {
        self.file_patterns.retain(|(p, _)| p != pattern);
    }

    /// The transfers this node is receiving.
    pub fn incoming_files(&self) -> impl Iterator<Item = FileKey> + '_ {
        self.incoming.keys().copied()
    }

    /// The transfers this node sends or keeps for repairs.
    pub fn outgoing_files(&self) -> impl Iterator<Item = u64> + '_ {
        self.outgoing.keys().copied()
    }

    /// The runtime gave a transfer up (it could not write the file, or the application
    /// cancelled it): it is forgotten, nothing more is asked for it.
    pub fn file_failed(&mut self, key: FileKey) {
        if self.incoming.remove(&key).is_some() {
            self.file_done(key);
            self.timers.cancel(&TimerKey::FileRepair(key));
        }
    }

    /// The limits for a topic, if this node takes files on it.
    fn file_limits(&self, topic: &str) -> Option<FileLimits> {
        self.file_patterns
            .iter()
            .find(|(p, _)| crate::topic::matches(p, topic))
            .map(|(_, l)| *l)
    }

    pub(super) fn on_file_offer(
        &mut self,
        conn: ConnId,
        from: NodeId,
        mut offer: FileOffer,
        now: Instant,
    ) {
        if let Err(reason) = self.check_published_topic(&offer.topic) {
            return self.bad_peer(conn, reason, now);
        }
        if !self.fresh(offer.origin, offer.seq, &offer.topic) {
            return;
        }
        // The first hop knows where the sender can be dialed.
        if offer.origin == from {
            if let Some(listen) = self.edges.get(&from).and_then(|e| e.listen) {
                offer.addr = Some(listen);
            }
        }
        if offer.ttl > 1 {
            let mut next = offer.clone();
            next.ttl -= 1;
            next.hops = next.hops.saturating_add(1);
            let topic = next.topic.clone();
            self.relay_bulk(&topic, next.origin, from, &Message::FileOffer(next), now);
        }
        let key = FileKey {
            origin: offer.origin,
            id: offer.id,
        };
        let Some(limits) = self.file_limits(&offer.topic) else {
            return;
        };
        if let Some(t) = self.incoming.get_mut(&key) {
            // An offer again (sent while chunks go): where to dial may have changed.
            if offer.addr.is_some() {
                t.addr = offer.addr;
            }
            return;
        }
        if self.done_files.contains(&key) {
            return;
        }
        if let Err(error) = self.check_offer(&offer, limits) {
            debug!(origin = %key.origin, id = key.id, %error, "file refused");
            self.counters.files_refused += 1;
            self.file_done(key);
            return self.push_delivery(Delivery::FileRefused {
                key,
                topic: offer.topic,
                name: offer.name,
                size: offer.size,
                error,
            });
        }
        debug!(origin = %key.origin, id = key.id, name = %Escaped(&offer.name), "file offered");
        self.incoming.insert(
            key,
            Incoming {
                chunk: offer.chunk,
                size: offer.size,
                limits,
                addr: offer.addr,
                have: Vec::new(),
                received: 0,
                highest: 0,
                end: None,
                last_progress: now,
                ask_now: false,
                asked: 0,
            },
        );
        self.timers
            .set(TimerKey::FileRepair(key), now + self.cfg.file_repair_after);
        self.push_delivery(Delivery::FileOffered {
            key,
            topic: offer.topic,
            name: offer.name,
            size: offer.size,
            chunk: offer.chunk,
            meta: offer.meta,
        });
        // A transfer of nothing is complete once its end is known.
        self.maybe_complete(key);
    }

    /// Whether an offer fits the frame limits and the receiver's `limits` (with the transfers
    /// it takes already).
    fn check_offer(&self, offer: &FileOffer, limits: FileLimits) -> Result<(), FileError> {
        if offer.chunk < MIN_CHUNK || offer.chunk as usize + CHUNK_OVERHEAD > self.cfg.max_frame_len
        {
            return Err(FileError::Malformed(format!(
                "chunks of {} bytes",
                offer.chunk
            )));
        }
        if offer.name.is_empty() || offer.name.len() > self.cfg.max_name_len {
            return Err(FileError::Malformed(format!(
                "a name of {} bytes",
                offer.name.len()
            )));
        }
        if let Some(size) = offer.size.filter(|s| *s > limits.max_size) {
            return Err(FileError::TooLarge(format!(
                "{size} bytes, over the limit of {}",
                limits.max_size
            )));
        }
        let (count, in_flight) = self
            .incoming
            .values()
            .filter(|t| t.limits == limits)
            .fold((0usize, 0u64), |(n, b), t| {
                (n + 1, b.saturating_add(t.weight()))
            });
        if count >= limits.max_transfers {
            return Err(FileError::NotAccepted(format!(
                "{count} transfers under way, the limit"
            )));
        }
        if in_flight.saturating_add(offer.size.unwrap_or(0)) > limits.max_in_flight {
            return Err(FileError::NotAccepted(format!(
                "{in_flight} bytes in flight, the limit is {}",
                limits.max_in_flight
            )));
        }
        Ok(())
    }

    pub(super) fn on_file_chunk(
        &mut self,
        conn: ConnId,
        from: NodeId,
        mut chunk: FileChunk,
        now: Instant,
    ) {
        if chunk.repair {
            // Repairs come from the sender itself, to this node alone.
            if from != chunk.origin {
                return;
            }
        } else {
            if let Err(reason) = self.check_published_topic(&chunk.topic) {
                return self.bad_peer(conn, reason, now);
            }
            if !self.fresh(chunk.origin, chunk.seq, &chunk.topic) {
                return;
            }
            if chunk.ttl > 1 {
                let next = FileChunk {
                    ttl: chunk.ttl - 1,
                    hops: chunk.hops.saturating_add(1),
                    topic: chunk.topic.clone(),
                    data: chunk.data.clone(),
                    ..chunk
                };
                let topic = chunk.topic.clone();
                self.relay_bulk(&topic, chunk.origin, from, &Message::FileChunk(next), now);
            }
        }
        let key = FileKey {
            origin: chunk.origin,
            id: chunk.id,
        };
        let Some(t) = self.incoming.get_mut(&key) else {
            return;
        };
        let size = u64::from(t.chunk);
        let len = chunk.data.len() as u64;
        let offset = chunk.index.saturating_mul(size);
        let end = offset.saturating_add(len);
        if end > t.limits.max_size {
            let error = FileError::TooLarge(format!("chunk {} goes past the limit", chunk.index));
            return self.fail_file(key, error);
        }
        let fits = len > 0
            && len <= size
            && t.known_size()
                .is_none_or(|s| end == s || (len == size && end < s));
        if !fits {
            let error =
                FileError::Malformed(format!("chunk {} does not fit the file", chunk.index));
            return self.fail_file(key, error);
        }
        if t.has(chunk.index) {
            return;
        }
        t.set(chunk.index);
        t.last_progress = now;
        if chunk.repair && t.asked > 0 {
            t.asked -= 1;
            if t.asked == 0 {
                // The window asked for is in: ask for the next one at once.
                t.ask_now = true;
                self.timers.set(TimerKey::FileRepair(key), now);
            }
        }
        self.push_delivery(Delivery::FileData {
            key,
            offset,
            data: std::mem::take(&mut chunk.data),
        });
        self.maybe_complete(key);
    }

    pub(super) fn on_file_end(&mut self, conn: ConnId, from: NodeId, end: FileEnd, now: Instant) {
        if end.repair {
            if from != end.origin {
                return;
            }
        } else {
            if let Err(reason) = self.check_published_topic(&end.topic) {
                return self.bad_peer(conn, reason, now);
            }
            if !self.fresh(end.origin, end.seq, &end.topic) {
                return;
            }
            if end.ttl > 1 {
                let mut next = end.clone();
                next.ttl -= 1;
                next.hops = next.hops.saturating_add(1);
                let topic = next.topic.clone();
                self.relay_bulk(&topic, end.origin, from, &Message::FileEnd(next), now);
            }
        }
        let key = FileKey {
            origin: end.origin,
            id: end.id,
        };
        let Some(t) = self.incoming.get_mut(&key) else {
            return;
        };
        if t.end.is_some() {
            return;
        }
        let Some(sha) = end.sha256.filter(|h| h.len() == 32) else {
            return self.fail_file(key, FileError::Abandoned("the sender gave up".into()));
        };
        let chunk = u64::from(t.chunk);
        let last_seen = t.highest.checked_sub(1).map(|i| i.saturating_mul(chunk));
        if t.size.is_some_and(|s| s != end.size)
            || end.size > t.limits.max_size
            || last_seen.is_some_and(|offset| offset >= end.size)
        {
            let error = FileError::Malformed(format!(
                "the end says {} bytes, not what came before",
                end.size
            ));
            return self.fail_file(key, error);
        }
        t.end = Some((end.size, sha));
        t.last_progress = now;
        if !self.maybe_complete(key) {
            // Something is missing: ask now rather than at the next stall.
            if let Some(t) = self.incoming.get_mut(&key) {
                t.ask_now = true;
            }
            self.timers.set(TimerKey::FileRepair(key), now);
        }
    }

    /// Delivers the end of a transfer whose every chunk arrived; `true` if it was.
    fn maybe_complete(&mut self, key: FileKey) -> bool {
        let Some(t) = self.incoming.get(&key) else {
            return false;
        };
        let (Some((size, sha)), Some(chunks)) = (t.end.clone(), t.chunks()) else {
            return false;
        };
        if t.received < chunks {
            return false;
        }
        self.incoming.remove(&key);
        self.timers.cancel(&TimerKey::FileRepair(key));
        self.file_done(key);
        self.push_delivery(Delivery::FileComplete {
            key,
            size,
            sha256: sha,
        });
        true
    }

    /// Remembers that this node is done with a transfer.
    fn file_done(&mut self, key: FileKey) {
        if self.done_files.len() >= DONE_KEPT {
            self.done_files.pop_front();
        }
        self.done_files.push_back(key);
    }

    fn fail_file(&mut self, key: FileKey, error: FileError) {
        if self.incoming.remove(&key).is_some() {
            self.file_done(key);
            debug!(origin = %key.origin, id = key.id, %error, "file failed");
            self.timers.cancel(&TimerKey::FileRepair(key));
            self.push_delivery(Delivery::FileFailed { key, error });
        }
    }

    /// A receiving transfer's timer: give up after `file_timeout` without progress, else ask
    /// the sender for what is missing when nothing came for `file_repair_after` (or at once,
    /// when the end or a window of repairs came), dialing it if there is no edge.
    pub(super) fn file_repair_timeout(&mut self, key: FileKey, now: Instant) {
        let (repair_after, timeout) = (self.cfg.file_repair_after, self.cfg.file_timeout);
        let Some(t) = self.incoming.get_mut(&key) else {
            return;
        };
        if now >= t.last_progress + timeout {
            let quiet = now.saturating_duration_since(t.last_progress);
            return self.fail_file(key, FileError::Stalled(format!("nothing for {quiet:?}")));
        }
        let quiet_until = t.last_progress + repair_after;
        if now < quiet_until && !t.ask_now {
            return self.timers.set(TimerKey::FileRepair(key), quiet_until);
        }
        t.ask_now = false;
        let ranges = t.missing();
        let want_end = t.end.is_none();
        let addr = t.addr;
        t.asked = ranges.iter().map(|(a, b)| b - a).sum();
        let next = (now + repair_after).min(t.last_progress + timeout);
        self.timers.set(TimerKey::FileRepair(key), next);
        if ranges.is_empty() && !want_end {
            return;
        }
        if self.edges.contains_key(&key.origin) {
            let want = Message::FileWant(FileWant {
                origin: key.origin,
                id: key.id,
                ranges,
                end: want_end,
            });
            return self.send_to_peer(key.origin, &want, now);
        }
        // No edge to the sender: dial it (once per `dial_interval`); the edge, once up, is
        // asked at once.
        let dialing = self
            .conns
            .values()
            .any(|c| matches!(c.purpose, Some(Purpose::Fetch(o)) if o == key.origin));
        if let Some(addr) = addr.filter(|_| !dialing) {
            if self.conns.len() < self.cfg.max_edges && self.may_dial(addr, now) {
                debug!(origin = %key.origin, %addr, "dialing a file's sender for missing chunks");
                self.dial(addr, Purpose::Fetch(key.origin), now);
            }
        }
    }

    /// An edge to `peer` came up: transfers from it ask for what they miss at once.
    pub(super) fn file_sender_connected(&mut self, peer: NodeId, now: Instant) {
        let keys: Vec<FileKey> = self
            .incoming
            .range(
                FileKey {
                    origin: peer,
                    id: 0,
                }..=FileKey {
                    origin: peer,
                    id: u64::MAX,
                },
            )
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(t) = self.incoming.get_mut(&key) {
                t.ask_now = true;
                self.timers.set(TimerKey::FileRepair(key), now);
            }
        }
    }

    pub(super) fn on_file_gone(&mut self, from: NodeId, gone: FileGone) {
        if gone.origin != from {
            return;
        }
        let key = FileKey {
            origin: gone.origin,
            id: gone.id,
        };
        self.fail_file(
            key,
            FileError::Abandoned("the sender no longer has it".into()),
        );
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Offers a file on `topic`: `name`, its size if known, the chunk size (at least
    /// [`MIN_CHUNK`], with room in a frame), the sender's `meta`. Returns the transfer's
    /// number for [`Node::send_chunk`] and [`Node::end_file`].
    pub fn offer_file(
        &mut self,
        topic: &str,
        name: &str,
        size: Option<u64>,
        chunk: u32,
        meta: Bytes,
        now: Instant,
    ) -> Result<u64, CommandError> {
        self.check_live()?;
        let meta_len = meta.len();
        Node::check_publish(&self.cfg, topic, meta_len + name.len())?;
        self.check_name("file name", name)?;
        let max = self
            .cfg
            .max_frame_len
            .saturating_sub(CHUNK_OVERHEAD + topic.len());
        if chunk < MIN_CHUNK || chunk as usize > max {
            return Err(CommandError::PayloadTooLarge {
                len: chunk as usize,
                max,
            });
        }
        if self.outgoing.len() >= self.cfg.max_outgoing_files {
            self.forget_expired(now);
            if self.outgoing.len() >= self.cfg.max_outgoing_files {
                return Err(CommandError::Limit("max_outgoing_files"));
            }
        }
        let id = self.next_file + 1;
        let offer = FileOffer {
            origin: self.id,
            seq: self.next_seq + 1,
            topic: topic.to_string(),
            ttl: self.cfg.ttl,
            hops: 1,
            id,
            name: name.to_string(),
            size,
            chunk,
            meta,
            addr: self.listen_addr(),
        };
        // The offer itself must fit a frame (its other fields cost more than a publish's), with
        // room for the larger sequence numbers of the offers sent again: else no receiver
        // would ever hear of the transfer.
        let mut frame = BytesMut::new();
        let message = Message::FileOffer(offer.clone());
        let max_frame = self.cfg.max_frame_len.saturating_sub(OFFER_SEQ_ROOM);
        if let Err(e) = encode_frame(&message, &mut frame, max_frame) {
            let len = name.len() + meta_len;
            let over = match e {
                CodecError::FrameTooLong { len, max } => (len as usize).saturating_sub(max),
                _ => len,
            };
            return Err(CommandError::PayloadTooLarge {
                len,
                max: len.saturating_sub(over),
            });
        }
        self.next_file = id;
        self.next_seq = offer.seq;
        let origin = self.id;
        self.relay_bulk(topic, origin, origin, &message, now);
        self.outgoing.insert(
            id,
            Outgoing {
                offer,
                last_offer: now,
                next: 0,
                sent: 0,
                ended: None,
            },
        );
        self.enforce_budget(now);
        Ok(id)
    }

    /// Sends the next chunk of transfer `id` (chunks go in order: `chunk` bytes each, the last
    /// one fewer). Wait first while [`Node::file_would_wait`] says so.
    pub fn send_chunk(&mut self, id: u64, data: Bytes, now: Instant) -> Result<(), CommandError> {
        self.check_live()?;
        let origin = self.id;
        let Some(t) = self.outgoing.get_mut(&id) else {
            return Err(CommandError::UnknownTransfer(id));
        };
        let len = data.len() as u64;
        let size = u64::from(t.offer.chunk);
        if t.ended.is_some() {
            return Err(CommandError::UnknownTransfer(id));
        }
        if len == 0 || len > size || t.sent % size != 0 {
            return Err(CommandError::BadChunk(format!(
                "{len} bytes after {} (chunks are {size} bytes, the last one fewer)",
                t.sent
            )));
        }
        if t.offer.size.is_some_and(|s| t.sent + len > s) {
            return Err(CommandError::BadChunk(format!(
                "past the size offered ({} bytes)",
                t.offer.size.unwrap_or(0)
            )));
        }
        let topic = t.offer.topic.clone();
        // The offer again now and then, for receivers that join late.
        let offer = if now >= t.last_offer + self.cfg.file_repair_after
            || (t.next > 0 && t.next % OFFER_EVERY == 0)
        {
            t.last_offer = now;
            self.next_seq += 1;
            Some(FileOffer {
                seq: self.next_seq,
                ..t.offer.clone()
            })
        } else {
            None
        };
        let index = t.next;
        t.next += 1;
        t.sent += len;
        if let Some(offer) = offer {
            self.relay_bulk(&topic, origin, origin, &Message::FileOffer(offer), now);
        }
        self.next_seq += 1;
        let chunk = FileChunk {
            origin,
            seq: self.next_seq,
            topic: topic.clone(),
            ttl: self.cfg.ttl,
            hops: 1,
            id,
            index,
            data,
            repair: false,
        };
        self.relay_bulk(&topic, origin, origin, &Message::FileChunk(chunk), now);
        self.enforce_budget(now);
        Ok(())
    }

    /// Ends transfer `id` with the file's SHA-256 (`None`: the sender gives up and forgets
    /// it); an ended transfer is kept for repairs for `file_keep`.
    pub fn end_file(
        &mut self,
        id: u64,
        sha256: Option<[u8; 32]>,
        now: Instant,
    ) -> Result<(), CommandError> {
        self.check_live()?;
        let origin = self.id;
        let keep = now + self.cfg.file_keep;
        let Some(t) = self.outgoing.get_mut(&id) else {
            return Err(CommandError::UnknownTransfer(id));
        };
        if t.ended.is_some() {
            return Err(CommandError::UnknownTransfer(id));
        }
        if sha256.is_some() && t.offer.size.is_some_and(|s| s != t.sent) {
            return Err(CommandError::BadChunk(format!(
                "{} bytes sent of the {} offered",
                t.sent,
                t.offer.size.unwrap_or(0)
            )));
        }
        let hash = sha256.map(|h| Bytes::copy_from_slice(&h));
        let (topic, size) = (t.offer.topic.clone(), t.sent);
        // The offer once more just before the end, for receivers that joined since the last.
        let offer = (t.next > 0 && hash.is_some()).then(|| t.offer.clone());
        if let Some(h) = &hash {
            t.ended = Some((size, h.clone(), keep));
        }
        if let Some(offer) = offer {
            self.next_seq += 1;
            let again = FileOffer {
                seq: self.next_seq,
                ..offer
            };
            self.relay_bulk(&topic, origin, origin, &Message::FileOffer(again), now);
        }
        self.next_seq += 1;
        let end = FileEnd {
            origin,
            seq: self.next_seq,
            topic: topic.clone(),
            ttl: self.cfg.ttl,
            hops: 1,
            id,
            size,
            sha256: hash.clone(),
            repair: false,
        };
        self.relay_bulk(&topic, origin, origin, &Message::FileEnd(end), now);
        if hash.is_some() {
            self.timers.set(TimerKey::FileKeep(id), keep);
        } else {
            self.outgoing.remove(&id);
        }
        Ok(())
    }

    /// Forgets transfer `id` at once (it is no longer kept for repairs: receivers that ask are
    /// told it is gone).
    pub fn forget_file(&mut self, id: u64) {
        if self.outgoing.remove(&id).is_some() {
            self.timers.cancel(&TimerKey::FileKeep(id));
        }
    }

    /// Sends chunk `index` of transfer `id` again, to `peer` alone (it asked:
    /// [`Delivery::FileWanted`]).
    pub fn repair_chunk(
        &mut self,
        peer: NodeId,
        id: u64,
        index: u64,
        data: Bytes,
        now: Instant,
    ) -> Result<(), CommandError> {
        self.check_live()?;
        let Some(t) = self.outgoing.get(&id) else {
            return Err(CommandError::UnknownTransfer(id));
        };
        let size = u64::from(t.offer.chunk);
        let expected = t.sent.saturating_sub(index.saturating_mul(size)).min(size);
        if index >= t.next || data.len() as u64 != expected {
            return Err(CommandError::BadChunk(format!(
                "chunk {index} of {} bytes (expected {expected})",
                data.len()
            )));
        }
        let Some(conn) = self.edges.get(&peer).map(|e| e.conn) else {
            return Err(CommandError::NotConnected);
        };
        let chunk = FileChunk {
            origin: self.id,
            seq: 0,
            topic: t.offer.topic.clone(),
            ttl: 1,
            hops: 1,
            id,
            index,
            data,
            repair: true,
        };
        self.send_bulk(conn, &Message::FileChunk(chunk), now);
        self.enforce_budget(now);
        Ok(())
    }

    /// Whether sending the next chunk on `topic` should wait: a neighbour it goes to holds more
    /// than [`Config::congestion_limit`](crate::Config::congestion_limit) bytes of file frames
    /// (under [`OnCongestion::Skip`](crate::OnCongestion): every one of them does), or the
    /// node's outbound memory is high. The wait ends as for publishes
    /// ([`Node::congestion_released`] changes).
    pub fn file_would_wait(&self, topic: &str) -> bool {
        if self.memory_waiting {
            return true;
        }
        let window = self.cfg.congestion_limit();
        let mut lanes = self
            .edges
            .values()
            .filter(|e| e.wants(topic))
            .filter_map(|e| self.conns.get(&e.conn))
            .map(|c| c.bulk_bytes > window);
        if self.cfg.on_congestion == crate::OnCongestion::Skip {
            let (mut any, mut all) = (false, true);
            for full in lanes {
                any = true;
                all &= full;
            }
            any && all
        } else {
            lanes.any(|full| full)
        }
    }

    /// Whether a repair for `peer` should wait: its bulk lane holds more than the congestion
    /// limit, or the node's outbound memory is high.
    pub fn repair_would_wait(&self, peer: NodeId) -> bool {
        self.memory_waiting
            || self
                .edges
                .get(&peer)
                .and_then(|e| self.conns.get(&e.conn))
                .is_some_and(|c| c.bulk_bytes > self.cfg.congestion_limit())
    }

    pub(super) fn on_file_want(&mut self, from: NodeId, want: FileWant, now: Instant) {
        if want.origin != self.id {
            return;
        }
        let origin = self.id;
        let Some(t) = self.outgoing.get(&want.id) else {
            let gone = Message::FileGone(FileGone {
                origin,
                id: want.id,
            });
            return self.send_to_peer(from, &gone, now);
        };
        let next = t.next;
        if let (true, Some((size, sha, _))) = (want.end, &t.ended) {
            let end = Message::FileEnd(FileEnd {
                origin,
                seq: 0,
                topic: t.offer.topic.clone(),
                ttl: 1,
                hops: 1,
                id: want.id,
                size: *size,
                sha256: Some(sha.clone()),
                repair: true,
            });
            if let Some(conn) = self.edges.get(&from).map(|e| e.conn) {
                self.send_bulk(conn, &end, now);
            }
        }
        // Bounded, and only chunks that were sent.
        let mut ranges = Vec::new();
        let mut count = 0;
        for (a, b) in want.ranges.into_iter().take(MAX_WANT_RANGES) {
            let b = b.min(next).min(a.saturating_add(MAX_WANT_CHUNKS - count));
            if a >= b {
                continue;
            }
            count += b - a;
            ranges.push((a, b));
            if count >= MAX_WANT_CHUNKS {
                break;
            }
        }
        if !ranges.is_empty() {
            self.push_delivery(Delivery::FileWanted {
                peer: from,
                id: want.id,
                ranges,
            });
        }
    }

    /// A sent transfer's keep time is over.
    pub(super) fn file_keep_timeout(&mut self, id: u64, now: Instant) {
        let Some(until) = self
            .outgoing
            .get(&id)
            .and_then(|t| t.ended.as_ref())
            .map(|e| e.2)
        else {
            return;
        };
        if until > now {
            return self.timers.set(TimerKey::FileKeep(id), until);
        }
        self.outgoing.remove(&id);
        self.push_delivery(Delivery::FileExpired { id });
    }

    /// Forgets sent transfers whose keep time is over (to make room).
    fn forget_expired(&mut self, now: Instant) {
        let done: Vec<u64> = self
            .outgoing
            .iter()
            .filter(|(_, t)| t.ended.as_ref().is_some_and(|e| e.2 <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.file_keep_timeout(id, now);
        }
    }

    // ----- routing ---------------------------------------------------------------------------

    /// Whether a routed file frame is new here and of use to this node (de-duplicated with the
    /// origin's publishes; never on the root's topic).
    fn fresh(&mut self, origin: NodeId, seq: u64, topic: &str) -> bool {
        if origin == self.id || !self.seen_publishes.insert(origin, seq) {
            self.counters.duplicates += 1;
            return false;
        }
        if topic == ROOT_TOPIC {
            self.counters.reserved_dropped += 1;
            return false;
        }
        // As a publish: only subscribers and roots take it (and relay it).
        self.cfg.root || self.is_subscribed(topic)
    }

    /// Sends a file frame to every neighbour that wants `topic` (and roots) but `from` and the
    /// origin, in their bulk lane. A neighbour whose lane is past the congestion limit is
    /// skipped under [`OnCongestion::Skip`](crate::OnCongestion) (it asks the sender for what
    /// it missed); else a relayed frame's connection stops being read until the lanes drain.
    fn relay_bulk(
        &mut self,
        topic: &str,
        origin: NodeId,
        from: NodeId,
        msg: &Message,
        now: Instant,
    ) {
        let window = self.cfg.congestion_limit();
        let skip = self.cfg.on_congestion == crate::OnCongestion::Skip;
        let mut full = false;
        let targets: Vec<ConnId> = self
            .edge_order
            .iter()
            .filter(|p| **p != from && **p != origin)
            .filter_map(|p| self.edges.get(p))
            .filter(|e| e.wants(topic))
            .map(|e| e.conn)
            .collect();
        if targets.is_empty() {
            return;
        }
        let Some(frame) = self.bulk_frame(msg) else {
            return;
        };
        for conn in targets {
            let lane = self.conns.get(&conn).map_or(0, |c| c.bulk_bytes);
            if lane > window {
                if skip {
                    self.counters.congestion_skipped += 1;
                    continue;
                }
                full = true;
            }
            self.send_frame_bulk(conn, frame.clone(), msg.kind_index(), now);
        }
        if full && from != self.id {
            if let Some(source) = self.edges.get(&from).map(|e| e.conn) {
                self.read_paused.insert(source);
            }
        }
    }
}

/// Transfers by number, for the node's struct.
pub(super) type OutgoingFiles = BTreeMap<u64, Outgoing>;
/// Transfers by key, for the node's struct.
pub(super) type IncomingFiles = BTreeMap<FileKey, Incoming>;

/// Unit tests of [`Incoming`] (kept with the other node tests; a child of this module for its
/// private fields).
#[cfg(test)]
#[path = "tests/incoming.rs"]
mod tests;
