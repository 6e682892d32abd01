//! Files' values: what a receiver is told ([`FileEvent`], [`ReceivedFile`]), what a sender
//! learns ([`Sent`]), and how a receiver takes files ([`ReceiveOptions`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

pub use chaski_proto::files::{FileError, FileKey, FileLimits};
use chaski_proto::NodeId;

use crate::queue::Weigh;

/// How a node takes the files offered on a pattern.
///
/// ```
/// let opts = chaski_api::ReceiveOptions::default().max_size(1 << 30).overwrite(true);
/// assert_eq!(opts.limits.max_size, 1 << 30);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// The largest file, bytes in flight, transfers at once.
    pub limits: FileLimits,
    /// A finished file may replace one of the same name (by default it gets a new name:
    /// `name (1).ext`).
    pub overwrite: bool,
}

impl ReceiveOptions {
    /// Sets [`FileLimits::max_size`].
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.limits.max_size = bytes;
        self
    }

    /// Sets [`FileLimits::max_in_flight`].
    pub fn max_in_flight(mut self, bytes: u64) -> Self {
        self.limits.max_in_flight = bytes;
        self
    }

    /// Sets [`FileLimits::max_transfers`].
    pub fn max_transfers(mut self, n: usize) -> Self {
        self.limits.max_transfers = n;
        self
    }

    /// Sets [`ReceiveOptions::overwrite`].
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }
}

/// A file received whole, its SHA-256 checked, under its final name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The transfer (its sender is `key.origin`).
    pub key: FileKey,
    /// The topic it came on.
    pub topic: String,
    /// The name it was stored under (the sender's, made safe, and unique in the directory).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// The sender's data about it.
    pub meta: Bytes,
}

impl ReceivedFile {
    /// The sender.
    pub fn from(&self) -> NodeId {
        self.key.origin
    }

    /// The SHA-256 in hexadecimal.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// What happens to the files offered on a pattern a node receives.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileEvent {
    /// A transfer began.
    Offered {
        /// The transfer.
        key: FileKey,
        /// The topic.
        topic: String,
        /// The name the sender gave (shown escaped; stored under a safe one).
        name: String,
        /// Its size, if the sender said it.
        size: Option<u64>,
        /// The sender's data about it.
        meta: Bytes,
    },
    /// Bytes arrived (at most a few times a second per transfer).
    Progress {
        /// The transfer.
        key: FileKey,
        /// Bytes written so far.
        received: u64,
        /// The size, if known.
        size: Option<u64>,
    },
    /// A file is complete and in place.
    Received(ReceivedFile),
    /// A transfer ended without a file (nothing is left under its name).
    Failed {
        /// The transfer.
        key: FileKey,
        /// The name the sender gave.
        name: String,
        /// Why.
        error: FileError,
    },
    /// An offer this node would not take (past its limits, or malformed).
    Refused {
        /// The transfer.
        key: FileKey,
        /// The name the sender gave.
        name: String,
        /// Its size, if the sender said it.
        size: Option<u64>,
        /// Why.
        error: FileError,
    },
}

impl Weigh for FileEvent {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// A transfer sent whole (its receivers may still ask for chunks for
/// [`Config::file_keep`](chaski_proto::Config::file_keep)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The sender's number for it.
    pub id: u64,
    /// The name it was offered under.
    pub name: String,
    /// Bytes sent.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

impl Sent {
    /// The SHA-256 in hexadecimal.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// What a sending transfer shares with its [`Transfer`](crate::Transfer) handle.
#[derive(Debug, Default)]
pub(crate) struct Sending {
    sent: AtomicU64,
    cancel: AtomicBool,
}

impl Sending {
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
