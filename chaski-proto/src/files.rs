//! Files over the mesh: the frames of a transfer and what a receiver accepts.
//!
//! A sender offers a file on a topic ([`FileOffer`]), sends it in numbered chunks
//! ([`FileChunk`]) and ends it with its size and SHA-256 ([`FileEnd`]): all three travel like
//! publishes (to the neighbours subscribed to the topic, and to roots; relayed; de-duplicated by
//! `(origin, seq)`). A receiver that misses chunks asks the sender for them directly
//! ([`FileWant`]; dialing it if it must) and gets them on that edge alone (`repair` chunks); a
//! sender that no longer has the transfer says so ([`FileGone`]). The core keeps the
//! bookkeeping (which chunks arrived, what to ask again, every bound); reading and writing the
//! file itself is the runtime's ([`crate::Delivery`] says what to do).
//!
//! The hash comes at the end, so a sender reads its file once (and a stream, which cannot be
//! read twice, can be sent too).

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::id::NodeId;

/// Bytes of a chunk, unless the sender says otherwise.
pub const DEFAULT_CHUNK: u32 = 64 * 1024;
/// The smallest chunk a sender may use (a transfer's bookkeeping is a bit per chunk).
pub const MIN_CHUNK: u32 = 16 * 1024;
/// Most ranges in one [`FileWant`], and most chunks it may ask for.
pub const MAX_WANT_RANGES: usize = 64;
/// Most chunks one [`FileWant`] asks for (a window: the receiver asks again for the rest).
pub const MAX_WANT_CHUNKS: u64 = 256;

/// One transfer: its sender and the sender's number for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// The sender.
    pub origin: NodeId,
    /// The sender's number for the transfer.
    pub id: u64,
}

/// A file offered on a topic: the first frame of a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOffer {
    /// The sender.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The sender's sequence number (shared with its publishes: the de-duplication key).
    #[serde(rename = "s")]
    pub seq: u64,
    /// The topic it travels on.
    #[serde(rename = "t")]
    pub topic: String,
    /// Hops left.
    #[serde(rename = "l")]
    pub ttl: u8,
    /// Hops travelled.
    #[serde(rename = "h")]
    pub hops: u8,
    /// The sender's number for the transfer.
    #[serde(rename = "f")]
    pub id: u64,
    /// The file's name as the sender gives it (a receiver keeps only a safe last component).
    pub name: String,
    /// Its size, when the sender knows it ahead (a file does; a stream may not).
    pub size: Option<u64>,
    /// Bytes of every chunk but the last.
    pub chunk: u32,
    /// The sender's own data about the file (opaque to the protocol; a CBOR value by
    /// convention).
    pub meta: Bytes,
    /// Where to reach the sender for missing chunks.
    pub addr: Option<SocketAddr>,
}

/// A piece of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    /// The sender.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The sender's sequence number (0 for a repair).
    #[serde(rename = "s")]
    pub seq: u64,
    /// The topic.
    #[serde(rename = "t")]
    pub topic: String,
    /// Hops left.
    #[serde(rename = "l")]
    pub ttl: u8,
    /// Hops travelled.
    #[serde(rename = "h")]
    pub hops: u8,
    /// The transfer.
    #[serde(rename = "f")]
    pub id: u64,
    /// The chunk's number (its bytes start at `index * chunk`).
    #[serde(rename = "i")]
    pub index: u64,
    /// Its bytes.
    #[serde(rename = "d")]
    pub data: Bytes,
    /// Sent to one peer that asked for it ([`FileWant`]): neither relayed nor de-duplicated.
    #[serde(rename = "r", default)]
    pub repair: bool,
}

/// The end of a transfer: how big the file is and its SHA-256 (`None`: the sender gave up).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEnd {
    /// The sender.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The sender's sequence number.
    #[serde(rename = "s")]
    pub seq: u64,
    /// The topic.
    #[serde(rename = "t")]
    pub topic: String,
    /// Hops left.
    #[serde(rename = "l")]
    pub ttl: u8,
    /// Hops travelled.
    #[serde(rename = "h")]
    pub hops: u8,
    /// The transfer.
    #[serde(rename = "f")]
    pub id: u64,
    /// The file's size.
    pub size: u64,
    /// The SHA-256 of the whole file (32 bytes); absent when the sender gave up.
    pub sha256: Option<Bytes>,
    /// Sent again to one peer that asked for it ([`FileWant::end`]): neither relayed nor
    /// de-duplicated.
    #[serde(rename = "r", default)]
    pub repair: bool,
}

/// A receiver asks the sender for the chunks it misses, as ranges `[start, end)` of chunk
/// numbers (at most [`MAX_WANT_RANGES`] of them, [`MAX_WANT_CHUNKS`] chunks in all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWant {
    /// The transfer's sender.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The transfer.
    #[serde(rename = "f")]
    pub id: u64,
    /// Chunk numbers wanted, as `[start, end)` ranges.
    pub ranges: Vec<(u64, u64)>,
    /// The receiver has not seen the transfer's end: the sender sends it again (if it ended).
    #[serde(default)]
    pub end: bool,
}

/// The sender no longer has the transfer (it expired, or never was).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGone {
    /// The transfer's sender.
    #[serde(rename = "o")]
    pub origin: NodeId,
    /// The transfer.
    #[serde(rename = "f")]
    pub id: u64,
}

/// The largest file a receiver may take (its bookkeeping is a bit per chunk).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// What a receiver takes (per pattern it accepts files on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimits {
    /// The largest file (at most [`MAX_FILE_SIZE`]).
    pub max_size: u64,
    /// Bytes of all the files it receives at once (their sizes, or what arrived of those
    /// whose size is not known yet).
    pub max_in_flight: u64,
    /// Transfers at once.
    pub max_transfers: usize,
}

impl Default for FileLimits {
    /// 4 GiB files, 8 GiB in flight, 16 transfers at once.
    fn default() -> Self {
        FileLimits {
            max_size: 4 << 30,
            max_in_flight: 8 << 30,
            max_transfers: 16,
        }
    }
}

/// Why a transfer a receiver took did not end with a file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Larger than the receiver takes, or than its size said.
    #[error("the file is too large: {0}")]
    TooLarge(String),
    /// The receiver takes no more at once (transfers, or bytes in flight).
    #[error("not accepted: {0}")]
    NotAccepted(String),
    /// The offer, a chunk or the end did not fit together.
    #[error("the transfer is malformed: {0}")]
    Malformed(String),
    /// The bytes do not have the SHA-256 the sender gave.
    #[error("the file's SHA-256 does not match")]
    HashMismatch,
    /// The sender gave up, or no longer has it.
    #[error("the sender ended the transfer: {0}")]
    Abandoned(String),
    /// Nothing arrived for too long, and the sender could not be asked.
    #[error("the transfer stalled: {0}")]
    Stalled(String),
    /// The disk is full.
    #[error("no space left to write the file")]
    NoSpace,
    /// Writing the file failed (no permission, a bad directory).
    #[error("cannot write the file: {0}")]
    Io(String),
    /// The application cancelled it.
    #[error("cancelled")]
    Cancelled,
}

/// The name a file from a peer is stored under: the last component of what the peer said,
/// without control or invisible characters, never `.`, `..`, empty, hidden (`.name` becomes
/// `_name`) or longer than 200 bytes; `None` if nothing usable is left.
///
/// ```
/// use chaski_proto::files::safe_name;
/// assert_eq!(safe_name("../../.bashrc").as_deref(), Some("_bashrc"));
/// assert_eq!(safe_name("C:\\Windows\\evil.dll").as_deref(), Some("evil.dll"));
/// assert_eq!(safe_name("report.pdf").as_deref(), Some("report.pdf"));
/// assert_eq!(safe_name(".."), None);
/// ```
pub fn safe_name(name: &str) -> Option<String> {
    // The last component, whatever separator the sender's system uses.
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    // A drive prefix (`C:name`) and stream suffixes (`name:stream`) go with the colons.
    let last = last.rsplit(':').next().unwrap_or("");
    let mut out: String = last
        .chars()
        .filter(|c| !crate::text::needs_escape(*c))
        .collect();
    let trimmed = out.trim_matches(|c: char| c == ' ' || c == '.').len();
    if trimmed == 0 {
        return None;
    }
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    while out.len() > 200 {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_keep_one_safe_component() {
        for (given, kept) in [
            ("report.pdf", Some("report.pdf")),
            ("dir/sub/report.pdf", Some("report.pdf")),
            ("/etc/passwd", Some("passwd")),
            ("../../.bashrc", Some("_bashrc")),
            ("..", None),
            (".", None),
            ("", None),
            ("   ", None),
            ("a/b/", None),
            ("C:\\Windows\\evil.dll", Some("evil.dll")),
            ("C:evil.dll", Some("evil.dll")),
            ("file.txt:stream", Some("stream")),
            ("evil\nname\u{1b}[31m\u{0}.txt", Some("evilname[31m.txt")),
            ("\u{202e}gpj.exe", Some("gpj.exe")),
            ("東京.txt", Some("東京.txt")),
        ] {
            assert_eq!(safe_name(given).as_deref(), kept, "{given:?}");
        }
        let long = "x".repeat(10_000);
        assert_eq!(safe_name(&long).map(|n| n.len()), Some(200));
        let deep = "a/".repeat(10_000) + "end";
        assert_eq!(safe_name(&deep).as_deref(), Some("end"));
        // Never a component that walks the tree, whatever is given.
        for given in ["../x", "..\\x", "a/../../x", "/..", "x/.."] {
            let n = safe_name(given);
            assert!(
                n.as_deref()
                    .is_none_or(|n| !n.contains('/') && !n.contains('\\') && n != ".."),
                "{given:?} gave {n:?}"
            );
        }
    }
}
