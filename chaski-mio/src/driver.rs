//! The embeddable driver: a node inside a caller's `mio::Poll` loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::event::Event as Readiness;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token, Waker};
use tracing::debug;

use crate::calls::Calls;
use chaski_api::{
    resolve, Command, Engine, Handle, HandleParts, Invocation, Io, Messages, Result, COMMAND_BATCH,
};
use chaski_proto::{Config, ConnId, Direction, Event, Node as Core, Received};

/// Largest read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per readiness event before others get a turn.
const READS_PER_TURN: usize = 16;

struct Conn {
    stream: TcpStream,
    token: Token,
    /// Dialing: waiting for the first writable event.
    connecting: bool,
    out: VecDeque<Bytes>,
    /// Bytes of `out[0]` already written.
    offset: usize,
    queued: usize,
    closing: bool,
}

/// The [`Io`] side: mio sockets, registered by token.
struct MioIo {
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, ConnId>,
    next_token: usize,
    registry: Registry,
    /// Dials opened this turn, to report once registered.
    failed_dials: Vec<(ConnId, std::io::Error)>,
    /// Calls to run off the driver's thread.
    calls: Vec<Invocation>,
    /// Connections to close after this turn (their queue flushed).
    closed: Vec<ConnId>,
}

#[derive(Clone)]
struct PartsTemplate {
    notify: chaski_api::Notify,
    local: SocketAddr,
    id: chaski_proto::NodeId,
    name: String,
    config: Arc<Config>,
    messages: Messages<Received>,
    events: Messages<Event>,
}

/// A Chaski node inside your own `mio::Poll` loop, with no thread of its own.
///
/// Give it a registry and the first token it may use (it uses that token and every one above
/// it); after every `poll`, hand it the events it [`owns`](Driver::owns), then call
/// [`Driver::tick`]; sleep at most [`Driver::timeout`]. Other threads may use
/// [`Driver::handle`] (its calls wake the loop through a `mio::Waker`).
pub struct Driver {
    engine: Engine,
    io: MioIo,
    listener: TcpListener,
    udp: UdpSocket,
    first: usize,
    cmds: async_channel::Receiver<Command>,
    /// Makes handles without keeping the command channel open by itself.
    commands: async_channel::WeakSender<Command>,
    parts: PartsTemplate,
    handed_out: bool,
    next_inbound: u64,
    /// Connections with unread data left because the message queue was full.
    unread: HashSet<ConnId>,
    responses: async_channel::Receiver<Command>,
    calls: Calls,
    buf: Vec<u8>,
}

impl Driver {
    /// Binds TCP and UDP on the same address and registers them with `registry`, using
    /// `first_token` and every token above it.
    pub fn bind(
        addr: &str,
        config: Config,
        registry: &Registry,
        first_token: Token,
    ) -> Result<Driver> {
        let want = resolve(addr)?;
        let (listener, udp) = chaski_api::bind_std(want)?;
        let (mut listener, mut udp) = (TcpListener::from_std(listener), UdpSocket::from_std(udp));
        let local = listener.local_addr()?;
        let first = first_token.0;
        registry.register(&mut listener, Token(first), Interest::READABLE)?;
        registry.register(
            &mut udp,
            Token(first + 1),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let waker = Arc::new(Waker::new(registry, Token(first + 2))?);
        let w = waker.clone();
        let notify: chaski_api::Notify = Arc::new(move || {
            let _ = w.wake();
        });
        let (engine, p, rx) = chaski_api::start(config, local, Some(notify.clone()));
        let parts = PartsTemplate {
            notify,
            local,
            id: p.id,
            name: p.name,
            config: p.config,
            messages: p.messages,
            events: p.events,
        };
        // The driver keeps only a weak sender: when every handle is gone, the node stops.
        let commands = p.commands.downgrade();
        drop(p.commands);
        let (responder, responses) = async_channel::unbounded();
        Ok(Driver {
            engine,
            io: MioIo {
                conns: HashMap::new(),
                tokens: HashMap::new(),
                next_token: first + 3,
                registry: registry.try_clone()?,
                failed_dials: Vec::new(),
                calls: Vec::new(),
                closed: Vec::new(),
            },
            listener,
            udp,
            first,
            cmds: rx,
            commands,
            parts,
            handed_out: false,
            next_inbound: 0,
            unread: HashSet::new(),
            responses,
            calls: Calls::new(responder, waker),
            buf: vec![0u8; READ_CHUNK],
        })
    }

    /// A handle other threads may use (async; [`crate::Node`] wraps it in blocking calls). Once
    /// handles were handed out and all of them are dropped, the node shuts down.
    pub fn handle(&mut self) -> Handle {
        self.handed_out = true;
        let commands = self.commands.upgrade().unwrap_or_else(|| {
            // Every earlier handle is gone; a fresh channel serves the new one.
            let (tx, rx) = async_channel::bounded(chaski_api::COMMAND_QUEUE);
            self.cmds = rx;
            self.commands = tx.downgrade();
            tx
        });
        let p = self.parts.clone();
        Handle::new(HandleParts {
            commands,
            notify: Some(p.notify),
            local: p.local,
            id: p.id,
            name: p.name,
            config: p.config,
            messages: p.messages,
            events: p.events,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.parts.local
    }

    /// The protocol core, for direct, non-blocking commands from the loop's own thread
    /// (`subscribe`, `publish`, `connect`, ...; their outcomes arrive as events).
    pub fn node(&mut self) -> &mut Core {
        self.engine.core()
    }

    /// Received messages.
    pub fn messages(&self) -> Messages<Received> {
        self.parts.messages.clone()
    }

    /// Lifecycle events.
    pub fn events(&self) -> Messages<Event> {
        self.parts.events.clone()
    }

    /// Whether `token` belongs to this driver.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first
    }

    /// How long the loop may sleep before calling [`Driver::tick`] again.
    pub fn timeout(&self) -> Option<Duration> {
        let mut t = self
            .engine
            .poll_timeout()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let congested = !self
            .io
            .backlogged(self.engine.congestion_limit())
            .is_empty();
        let more_commands = !congested && !self.cmds.is_empty();
        if (!self.unread.is_empty() && !self.engine.messages_full()) || congested || more_commands {
            t = Some(Duration::ZERO);
        } else if !self.unread.is_empty() {
            // Waiting for the application to read: look again soon.
            t = Some(t.map_or(Duration::from_millis(1), |t| {
                t.min(Duration::from_millis(1))
            }));
        }
        t
    }

    /// Whether the node has shut down and closed every connection (the loop may end).
    pub fn is_finished(&self) -> bool {
        self.engine.is_finished(self.io.conns.len())
    }

    /// Handles one readiness event of a token this driver [`owns`](Driver::owns).
    pub fn handle_event(&mut self, event: &Readiness) {
        let now = Instant::now();
        let token = event.token();
        if token.0 == self.first {
            self.accept(now);
        } else if token.0 == self.first + 1 {
            if event.is_readable() {
                self.read_datagrams(now);
            }
        } else if token.0 == self.first + 2 {
            // The waker: commands are taken in `tick`.
        } else if let Some(&conn) = self.io.tokens.get(&token) {
            if self.io.conns.get(&conn).is_some_and(|c| c.connecting) {
                self.finish_dial(conn, now);
            }
            if event.is_writable() {
                self.io.flush(conn);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read_conn(conn, now);
            }
        }
    }

    /// Runs due timers and queued commands, and carries out everything the node wants done.
    /// Call after every poll, whatever it returned.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.core().handle_timeout(now);
        }
        while let Ok(r) = self.responses.try_recv() {
            self.engine.command(r, now);
        }
        let congested = !self
            .io
            .backlogged(self.engine.congestion_limit())
            .is_empty();
        if !congested || self.engine.is_shut_down() {
            for _ in 0..COMMAND_BATCH {
                match self.cmds.try_recv() {
                    Ok(cmd) => self.engine.command(cmd, now),
                    Err(_) => break,
                }
            }
        }
        if self.handed_out
            && self.commands.upgrade().is_none()
            && self.cmds.is_empty()
            && !self.engine.is_shut_down()
        {
            // Every handle is gone.
            self.engine.core().shutdown(now);
        }
        if !self.engine.messages_full() {
            for conn in std::mem::take(&mut self.unread) {
                self.read_conn(conn, now);
            }
        }
        self.turn();
    }

    /// Drains the engine and carries out what the io side collected.
    fn turn(&mut self) {
        loop {
            self.engine.drain(&mut self.io);
            let now = Instant::now();
            let mut more = false;
            for (conn, e) in std::mem::take(&mut self.io.failed_dials) {
                self.engine.dialed(conn, Err(e), now);
                more = true;
            }
            // User code never runs on the loop's thread.
            for call in std::mem::take(&mut self.io.calls) {
                self.calls.run(call);
            }
            for conn in std::mem::take(&mut self.io.closed) {
                self.io.flush(conn);
            }
            if !more {
                break;
            }
        }
        let udp = &self.udp;
        self.engine
            .flush_datagrams(|data, to| udp.send_to(data, to));
        if self.is_finished() {
            self.engine.finish(&self.cmds);
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.engine.is_shut_down() {
                        continue;
                    }
                    let token = Token(self.io.next_token);
                    self.io.next_token += 1;
                    if let Err(e) = self.io.registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        debug!(error = %e, "cannot register an accepted connection");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.next_inbound += 1;
                    let conn = ConnId(self.next_inbound);
                    self.io.insert(conn, stream, token, false);
                    self.engine
                        .core()
                        .handle_connected(conn, peer, Direction::Inbound, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    break;
                }
            }
        }
        self.turn();
    }

    fn read_datagrams(&mut self, now: Instant) {
        loop {
            match self.udp.recv_from(&mut self.buf) {
                Ok((n, from)) => self
                    .engine
                    .core()
                    .handle_datagram(from, &self.buf[..n], now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        self.turn();
    }

    fn finish_dial(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.io.conns.get_mut(&conn) else {
            return;
        };
        match c.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.io.forget(conn);
                self.engine.dialed(conn, Err(e), now);
                return self.turn();
            }
        }
        match c.stream.peer_addr() {
            Ok(peer) => {
                c.connecting = false;
                let _ = c.stream.set_nodelay(true);
                self.engine.dialed(conn, Ok(peer), now);
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => return,
            Err(e) => {
                self.io.forget(conn);
                self.engine.dialed(conn, Err(e), now);
            }
        }
        self.turn();
    }

    fn read_conn(&mut self, conn: ConnId, now: Instant) {
        self.unread.remove(&conn);
        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            if self.engine.messages_full() {
                break;
            }
            let Some(c) = self.io.conns.get_mut(&conn) else {
                drained = true;
                break;
            };
            if c.connecting {
                drained = true;
                break;
            }
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.io.forget(conn);
                    self.engine.core().handle_closed(conn, now);
                    drained = true;
                    break;
                }
                Ok(n) => self.engine.core().handle_bytes(conn, &self.buf[..n], now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.io.forget(conn);
                    self.engine.core().handle_closed(conn, now);
                    drained = true;
                    break;
                }
            }
        }
        // Edge-triggered readiness: data may remain, so come back to it.
        if !drained && self.io.conns.contains_key(&conn) {
            self.unread.insert(conn);
        }
        self.turn();
    }
}

impl MioIo {
    fn insert(&mut self, conn: ConnId, stream: TcpStream, token: Token, connecting: bool) {
        self.tokens.insert(token, conn);
        self.conns.insert(
            conn,
            Conn {
                stream,
                token,
                connecting,
                out: VecDeque::new(),
                offset: 0,
                queued: 0,
                closing: false,
            },
        );
    }

    fn forget(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.tokens.remove(&c.token);
            let _ = self.registry.deregister(&mut c.stream);
        }
    }

    /// Writes what is queued until the socket would block; finishes a requested close.
    fn flush(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.connecting {
            if c.closing {
                self.forget(conn);
            }
            return;
        }
        while let Some(front) = c.out.front() {
            match c.stream.write(&front[c.offset..]) {
                Ok(n) => {
                    c.offset += n;
                    c.queued -= n;
                    if c.offset == front.len() {
                        c.out.pop_front();
                        c.offset = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    c.out.clear();
                    c.queued = 0;
                    break;
                }
            }
        }
        if c.closing {
            let _ = c.stream.shutdown(Shutdown::Write);
            self.forget(conn);
        }
    }
}

impl Io for MioIo {
    fn transmit(&mut self, conn: ConnId, data: Bytes) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queued += data.len();
            c.out.push_back(data);
        }
        self.flush(conn);
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr, _timeout: Duration) {
        // The core's handshake deadline bounds the dial: it closes the connection if needed.
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let token = Token(self.next_token);
                self.next_token += 1;
                match self.registry.register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => self.insert(conn, stream, token, true),
                    Err(e) => self.failed_dials.push((conn, e)),
                }
            }
            Err(e) => self.failed_dials.push((conn, e)),
        }
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
            self.closed.push(conn);
        }
    }

    fn abort(&mut self, conn: ConnId) {
        self.forget(conn);
    }

    fn spawn_call(&mut self, call: Invocation) {
        self.calls.push(call);
    }

    fn backlogged(&self, limit: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.queued > limit)
            .map(|(id, _)| *id)
            .collect()
    }
}
