//! Files over the mesh, the user's side: [`Handle::send_file`], [`Handle::send_stream`] and
//! their [`Transfer`]s; [`Handle::receive_files`] and its stream of [`FileEvent`]s.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_core::Stream;

use super::handle::Handle;
use crate::error::{Error, Result};
use crate::files::{FileEvent, ReceiveOptions, Sending, Sent};
use crate::kit::file_io::{start_send, start_sink, Source};
use crate::kit::Engine;
use crate::queue::{BlockingIter, Messages};

/// A file being sent: its progress, and (as a future, or [`Transfer::wait`]) its outcome, once
/// every chunk and the end are sent. Dropping it does not stop the transfer
/// ([`Transfer::cancel`] does); the sender keeps answering receivers that miss chunks for
/// [`Config::file_keep`](chaski_proto::Config::file_keep) after the end either way.
#[derive(Debug)]
pub struct Transfer {
    id: u64,
    name: String,
    size: Option<u64>,
    state: Arc<Sending>,
    outcome: oneshot::Receiver<Result<Sent>>,
}

impl Transfer {
    /// The sender's number for it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name it is offered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.state.sent()
    }

    /// Its size, when known ahead (a file's; not a stream's).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Stops it: receivers are told the sender gave up (and drop what they wrote); the outcome
    /// is [`FileError::Cancelled`](crate::FileError::Cancelled).
    pub fn cancel(&self) {
        self.state.cancel();
    }

    /// Blocks until it is sent (for programs without an async runtime).
    pub fn wait(self) -> Result<Sent> {
        super::block_on(self)
    }
}

impl Future for Transfer {
    type Output = Result<Sent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Sent>> {
        Pin::new(&mut self.get_mut().outcome)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ShutDown)))
    }
}

/// What happens to the files offered on a pattern this node receives: a `Stream` of
/// [`FileEvent`]s on async runtimes, [`Files::recv_timeout`] or [`Files::blocking_iter`]
/// without one. Dropping it stops receiving (transfers under way are dropped, their temporary
/// files removed). The stream ends when the node shuts down.
#[derive(Debug)]
pub struct Files {
    pattern: String,
    events: Messages<FileEvent>,
    _registration: Registration,
}

struct Registration {
    engine: Arc<Engine>,
    id: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.id)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.id;
        self.engine.turn(|s, now| {
            if let Some(pattern) = s.hub.transfers.remove_sink(id) {
                s.core.refuse_files(&pattern);
                if !s.hub.wants(&pattern) {
                    let _ = s.core.unsubscribe(&pattern, now);
                }
            }
        });
    }
}

impl Files {
    /// The topic or pattern files are taken on.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<FileEvent> {
        self.events.try_recv()
    }

    /// Blocks up to `timeout` for the next event; `None` on timeout or once the node has shut
    /// down and every event was taken.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<FileEvent> {
        self.events.recv_timeout(timeout)
    }

    /// Iterates, blocking for each event, until the node has shut down.
    pub fn blocking_iter(&self) -> BlockingIter<FileEvent> {
        self.events.blocking_iter()
    }
}

impl Stream for Files {
    type Item = FileEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FileEvent>> {
        Pin::new(&mut self.get_mut().events).poll_next(cx)
    }
}

impl Handle {
    /// Sends the file at `path` on `topic` to every node that receives files there
    /// ([`Handle::receive_files`]), with `meta` (the sender's data about it, opaque to Chaski):
    /// read once in chunks, never whole, hashed (SHA-256) as it goes. Offered under the last
    /// component of `path`.
    ///
    /// ```no_run
    /// # async fn f(node: chaski_api::Handle) -> chaski_api::Result<()> {
    /// let sent = node.send_file("models", "weights.bin", "v2").await?.await?;
    /// println!("{} bytes, sha256 {}", sent.size, sent.sha256_hex());
    /// # Ok(()) }
    /// ```
    pub async fn send_file(
        &self,
        topic: &str,
        path: impl AsRef<Path>,
        meta: impl Into<Bytes>,
    ) -> Result<Transfer> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::io(format!("{} names no file", path.display())))?;
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let source = Source::File(file, path.to_path_buf(), size);
        self.start_transfer(topic, &name, source, Some(size), meta.into())
    }

    /// Sends what `reader` gives, under `name`, on `topic` (its size is learned at the end;
    /// a copy is kept in a temporary file for receivers that miss chunks).
    pub async fn send_stream(
        &self,
        topic: &str,
        name: &str,
        reader: impl Read + Send + 'static,
        meta: impl Into<Bytes>,
    ) -> Result<Transfer> {
        let source = Source::Stream(Box::new(reader));
        self.start_transfer(topic, name, source, None, meta.into())
    }

    fn start_transfer(
        &self,
        topic: &str,
        name: &str,
        source: Source,
        size: Option<u64>,
        meta: Bytes,
    ) -> Result<Transfer> {
        let state = Arc::new(Sending::default());
        let (tx, outcome) = oneshot::channel();
        let id = start_send(self.engine(), topic, name, source, meta, state.clone(), tx)?;
        Ok(Transfer {
            id,
            name: name.to_string(),
            size,
            state,
            outcome,
        })
    }

    /// Receives the files offered on topics `pattern` matches into `dir` (which must exist),
    /// within `options`' limits: each is written under a temporary name and moved into place
    /// only once whole and its SHA-256 matches, under the last component of the sender's name
    /// made safe, and never over another file unless `options.overwrite`. Subscribes to
    /// `pattern`; dropping the [`Files`] stops receiving.
    ///
    /// ```no_run
    /// # async fn f(node: chaski_api::Handle) -> chaski_api::Result<()> {
    /// use chaski_api::{FileEvent, ReceiveOptions};
    /// use futures_util::StreamExt;
    /// let mut files = node.receive_files("models", "/tmp/in", ReceiveOptions::default()).await?;
    /// while let Some(ev) = files.next().await {
    ///     if let FileEvent::Received(f) = ev {
    ///         println!("{} from {}: {}", f.path.display(), f.from(), f.sha256_hex());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn receive_files(
        &self,
        pattern: &str,
        dir: impl AsRef<Path>,
        options: ReceiveOptions,
    ) -> Result<Files> {
        let dir = dir.as_ref();
        if !std::fs::metadata(dir)?.is_dir() {
            return Err(Error::io(format!("{} is not a directory", dir.display())));
        }
        let engine = self.engine().clone();
        let (id, events) = self.turn(|s, now| -> Result<_> {
            s.core.accept_files(pattern, options.limits)?;
            if let Err(e) = s.core.subscribe(pattern, now) {
                s.core.refuse_files(pattern);
                return Err(e.into());
            }
            start_sink(
                &engine,
                &mut s.hub.transfers,
                pattern,
                dir.to_path_buf(),
                options.overwrite,
            )
        })?;
        Ok(Files {
            pattern: pattern.to_string(),
            events,
            _registration: Registration { engine, id },
        })
    }
}
