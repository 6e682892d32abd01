//! The part of a node's driver that is the same on every runtime: applying the handle's
//! commands to the core, and carrying the core's outputs to an [`Io`] (the runtime's sockets
//! and tasks) and to the [`Hub`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use chaski_proto::{
    CallKind, ConnId, Direction, EdgeInfo, Node as Core, NodeId, Output, RemoteError, Status,
};

use crate::error::{Error, Result};
use crate::hub::{Hub, Invocation, Waiter};
use crate::service::Service;

/// Datagrams waiting for the UDP socket before the oldest is dropped.
const DATAGRAM_QUEUE: usize = 1024;

/// A one-shot answer to a command.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// Commands applied in one turn of a driver before its output is written.
pub const COMMAND_BATCH: usize = 256;

/// Socket reads a driver hands the core in one turn before its output is written.
pub const INPUT_BATCH: usize = 64;

/// What a runtime's socket tasks report to its driver (runtimes whose connections are tasks:
/// tokio and smol).
pub enum Input<S> {
    /// Bytes read from a connection.
    Data(ConnId, Bytes),
    /// A connection ended (EOF, reset, or a failed write).
    Closed(ConnId),
    /// A dial finished.
    Dialed(ConnId, std::io::Result<S>),
    /// A local service answered a request.
    Respond(NodeId, u64, std::result::Result<Bytes, RemoteError>),
}

/// The socket side of a runtime whose connections are tasks.
pub trait StreamIo: Io {
    /// The runtime's TCP stream.
    type Stream;
    /// The stream's peer address.
    fn peer_addr(stream: &Self::Stream) -> std::io::Result<SocketAddr>;
    /// Adopts a dialed stream as connection `conn` (starts its reader and writer).
    fn attach(&mut self, conn: ConnId, stream: Self::Stream);
    /// Forgets a connection that ended.
    fn forget(&mut self, conn: ConnId);
}

/// What a node handle asks its driver to do. Every runtime's handle sends these.
pub enum Command {
    /// Dial and wait for the edge.
    Connect(SocketAddr, Waiter<EdgeInfo>),
    /// Subscribe.
    Subscribe(String, Reply<()>),
    /// Unsubscribe.
    Unsubscribe(String, Reply<()>),
    /// Publish (checked by the handle already; nothing is answered).
    Publish(String, Bytes),
    /// Best-effort UDP publish to one node.
    PublishDatagram(SocketAddr, String, Bytes, Reply<()>),
    /// Discover; answered once every topic is paired.
    Discover(Waiter<()>),
    /// Ping a peer with padding.
    Ping(NodeId, usize, Waiter<Duration>),
    /// UDP status query.
    Status(SocketAddr, Waiter<Status>),
    /// This node's status.
    LocalStatus(Reply<Status>),
    /// Edge snapshot.
    Edges(Reply<Vec<EdgeInfo>>),
    /// Close the edge to a peer.
    Close(NodeId, Reply<()>),
    /// Offer a service.
    Serve(String, Service, Reply<()>),
    /// Withdraw a service.
    Unserve(String, Reply<()>),
    /// The first peer offering a service.
    FindService(String, Reply<Option<NodeId>>),
    /// A remote call.
    Call {
        /// Serving peer.
        peer: NodeId,
        /// Service.
        service: String,
        /// Dotted path.
        path: String,
        /// Call or get.
        kind: CallKind,
        /// Encoded arguments.
        args: Bytes,
        /// Per-call timeout.
        timeout: Option<Duration>,
        /// Where the answer goes.
        reply: Waiter<Bytes>,
    },
    /// A local service finished a request.
    Respond(NodeId, u64, Result<Bytes, RemoteError>),
    /// Goodbye to everyone; answered once every connection is closed.
    Shutdown(Reply<()>),
}

/// The runtime's side: sockets and tasks, driven by the engine.
pub trait Io {
    /// Queue bytes for writing on a connection, in order.
    fn transmit(&mut self, conn: ConnId, data: Bytes);
    /// Open a TCP connection (giving up after `timeout`), then report it to the engine.
    fn dial(&mut self, conn: ConnId, addr: SocketAddr, timeout: Duration);
    /// Flush what is queued for the connection, then close it.
    fn close(&mut self, conn: ConnId);
    /// Drop the connection at once with whatever it could not write: its peer stopped reading,
    /// so a flush would never end (and would keep holding the node's memory and socket).
    fn abort(&mut self, conn: ConnId);
    /// Run a request for a local service, then send [`Command::Respond`] to the engine.
    fn spawn_call(&mut self, call: Invocation);
    /// Connections holding more than `limit` bytes they could not write yet.
    fn backlogged(&self, limit: usize) -> Vec<ConnId>;
}

/// The core and the hub of one node, with the logic every driver shares.
pub struct Engine {
    core: Core,
    hub: Hub,
    datagrams: VecDeque<(SocketAddr, Bytes)>,
    datagrams_dropped: u64,
    shutdown_reply: Option<Reply<()>>,
}

impl Engine {
    /// An engine over a core and its hub.
    pub fn new(core: Core, hub: Hub) -> Self {
        Engine {
            core,
            hub,
            datagrams: VecDeque::new(),
            datagrams_dropped: 0,
            shutdown_reply: None,
        }
    }

    /// The core, for the runtime's inputs (`handle_connected`, `handle_bytes`, ...).
    pub fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Whether the application's message queue is full (stop reading sockets).
    pub fn messages_full(&self) -> bool {
        self.hub.messages().is_full()
    }

    /// Bytes queued on one connection above which publishing waits (an eighth of
    /// `max_outbound`).
    pub fn congestion_limit(&self) -> usize {
        (self.core.config().max_outbound / 8).max(64 * 1024)
    }

    /// When the core next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Whether the node has shut down (stop accepting).
    pub fn is_shut_down(&self) -> bool {
        self.core.is_shut_down()
    }

    /// Whether a shutdown was asked for and every connection is closed: the driver may end.
    pub fn is_finished(&self, open_connections: usize) -> bool {
        self.core.is_shut_down() && open_connections == 0
    }

    /// Ends the node: fails every waiter, answers the shutdown, and closes the command channel.
    /// Commands still queued are answered too (a `Shutdown` with `Ok`, anything else with
    /// [`Error::ShutDown`]), so no caller waits on a node that is gone.
    pub fn finish(&mut self, commands: &async_channel::Receiver<Command>) {
        self.hub.shutdown();
        if let Some(r) = self.shutdown_reply.take() {
            let _ = r.send(Ok(()));
        }
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            if let Command::Shutdown(r) = cmd {
                let _ = r.send(Ok(()));
            }
            // Dropping any other command drops its reply: the caller sees `Error::ShutDown`.
        }
    }

    /// A dial finished.
    pub fn dialed(&mut self, conn: ConnId, result: std::io::Result<SocketAddr>, now: Instant) {
        match result {
            Ok(peer) => self
                .core
                .handle_connected(conn, peer, Direction::Outbound, now),
            Err(e) => self.core.handle_dial_failed(conn, &e.to_string(), now),
        }
    }

    /// Applies one report of the runtime's socket tasks.
    pub fn input<I: StreamIo>(&mut self, io: &mut I, input: Input<I::Stream>, now: Instant) {
        match input {
            Input::Data(conn, data) => self.core.handle_bytes(conn, &data, now),
            Input::Closed(conn) => {
                io.forget(conn);
                self.core.handle_closed(conn, now);
            }
            Input::Dialed(conn, Ok(stream)) => {
                let peer = I::peer_addr(&stream);
                io.attach(conn, stream);
                self.dialed(conn, peer, now);
            }
            Input::Dialed(conn, Err(e)) => self.dialed(conn, Err(e), now),
            Input::Respond(peer, id, result) => {
                let _ = self.core.respond(peer, id, result);
            }
        }
    }

    /// Applies `first` and then the commands already queued behind it (up to
    /// [`COMMAND_BATCH`]), so that many publishes leave in one write instead of one each.
    pub fn commands(
        &mut self,
        first: Command,
        queue: &async_channel::Receiver<Command>,
        now: Instant,
    ) {
        self.command(first, now);
        for _ in 1..COMMAND_BATCH {
            match queue.try_recv() {
                Ok(cmd) => self.command(cmd, now),
                Err(_) => break,
            }
        }
    }

    /// Applies one command of the handle.
    pub fn command(&mut self, cmd: Command, now: Instant) {
        let core = &mut self.core;
        match cmd {
            Command::Connect(addr, w) => match core.connect(addr, now) {
                Ok(conn) => self.hub.wait_connect(conn, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Command::Subscribe(t, r) => {
                let _ = r.send(core.subscribe(&t, now).map_err(Error::from));
            }
            Command::Unsubscribe(t, r) => {
                let _ = r.send(core.unsubscribe(&t, now).map_err(Error::from));
            }
            Command::Publish(t, p) => {
                if let Err(e) = core.publish(&t, p, now) {
                    tracing::debug!(topic = %t, error = %e, "publish dropped");
                }
            }
            Command::PublishDatagram(a, t, p, r) => {
                let _ = r.send(core.publish_datagram(a, &t, p).map_err(Error::from));
            }
            Command::Discover(w) => match core.discover(now) {
                Ok(()) => self.hub.wait_paired(core, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Command::Ping(peer, size, w) => match core.ping(peer, size, now) {
                Ok(id) => self.hub.wait_ping(id, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Command::Status(addr, w) => match core.query_status(addr, now) {
                Ok(t) => self.hub.wait_status(t, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Command::LocalStatus(r) => {
                let _ = r.send(Ok(core.status()));
            }
            Command::Edges(r) => {
                let _ = r.send(Ok(core.edges()));
            }
            Command::Close(peer, r) => {
                let _ = r.send(core.close(peer, now).map_err(Error::from));
            }
            Command::Serve(name, svc, r) => {
                let res = core.serve(&name).map_err(Error::from);
                if res.is_ok() {
                    self.hub.add_service(&name, svc);
                }
                let _ = r.send(res);
            }
            Command::Unserve(name, r) => {
                self.hub.remove_service(&name);
                let _ = r.send(core.unserve(&name).map_err(Error::from));
            }
            Command::FindService(name, r) => {
                let _ = r.send(Ok(core.find_service(&name)));
            }
            Command::Call {
                peer,
                service,
                path,
                kind,
                args,
                timeout,
                reply,
            } => match core.call(peer, &service, &path, kind, args, timeout, now) {
                Ok(id) => self.hub.wait_call(id, reply),
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Command::Respond(peer, id, result) => {
                let _ = core.respond(peer, id, result);
            }
            Command::Shutdown(r) => {
                core.shutdown(now);
                self.shutdown_reply = Some(r);
            }
        }
    }

    /// Carries out every output of the core, then aborts connections whose peer stopped
    /// reading (more than `max_outbound` unwritten).
    pub fn drain(&mut self, io: &mut impl Io) {
        let handshake = self.core.config().handshake_timeout;
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn, data } => io.transmit(conn, data),
                Output::Datagram { to, data } => {
                    if self.datagrams.len() >= DATAGRAM_QUEUE {
                        self.datagrams.pop_front();
                        self.datagrams_dropped += 1;
                    }
                    self.datagrams.push_back((to, data));
                }
                Output::Dial { conn, addr } => io.dial(conn, addr, handshake),
                Output::Close { conn } => io.close(conn),
                Output::Event(ev) => {
                    if let Some(call) = self.hub.route(&mut self.core, ev) {
                        io.spawn_call(call);
                    }
                }
            }
        }
        self.hub.deliver();
        self.hub.sweep(&mut self.core);
        for conn in io.backlogged(self.core.config().max_outbound) {
            io.abort(conn);
            self.core.handle_stalled(conn, Instant::now());
            // Closing it produced a goodbye and an event: carry those out too.
            while let Some(out) = self.core.poll_output() {
                if let Output::Event(ev) = out {
                    let _ = self.hub.route(&mut self.core, ev);
                }
            }
            self.hub.deliver();
        }
    }

    /// Whether datagrams are waiting for the socket.
    pub fn has_datagrams(&self) -> bool {
        !self.datagrams.is_empty()
    }

    /// Sends queued datagrams with `send` until it reports `WouldBlock`; other errors drop
    /// that datagram.
    pub fn flush_datagrams(
        &mut self,
        mut send: impl FnMut(&[u8], SocketAddr) -> std::io::Result<usize>,
    ) {
        while let Some((to, data)) = self.datagrams.front() {
            match send(data, *to) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => tracing::debug!(%to, error = %e, "datagram not sent"),
                Ok(_) => {}
            }
            self.datagrams.pop_front();
        }
    }

    /// Datagrams dropped because the UDP socket could not keep up.
    pub fn datagrams_dropped(&self) -> u64 {
        self.datagrams_dropped
    }
}

/// Gathers queued writes into one buffer so a writer makes one syscall for many frames.
#[derive(Debug, Default)]
pub struct WriteBatch {
    buf: bytes::BytesMut,
}

/// Largest batch gathered for one write.
const BATCH_LIMIT: usize = 1 << 20;

impl WriteBatch {
    /// Joins `first` with whatever `next` yields (up to 1 MiB); returns the bytes to write and
    /// how many bytes of queued data they hold.
    pub fn gather(&mut self, first: Bytes, mut next: impl FnMut() -> Option<Bytes>) -> Bytes {
        let Some(second) = next() else {
            return first;
        };
        self.buf.extend_from_slice(&first);
        self.buf.extend_from_slice(&second);
        while self.buf.len() < BATCH_LIMIT {
            let Some(more) = next() else { break };
            self.buf.extend_from_slice(&more);
        }
        self.buf.split().freeze()
    }
}
