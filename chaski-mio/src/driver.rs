//! The embeddable driver: a node inside a caller's `mio::Poll` loop. It owns the node's
//! sockets and calls the pumps every runtime shares (`chaski_api::Engine`) when mio reports
//! them ready or when another thread wakes them.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use mio::event::Event as Readiness;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};
use tracing::debug;

use crate::calls::Calls;
use chaski_api::kit::{Engine, Invocation, Launcher, TcpIo, TimerWait, UdpIo};
use chaski_api::Event;
use chaski_api::{resolve, Handle, Messages, Result};
use chaski_proto::{Config, ConnId, Node as Core, Received};

thread_local! {
    /// Set while this thread runs the driver: its own wake-ups need no `mio::Waker` syscall.
    static IN_DRIVER: Cell<bool> = const { Cell::new(false) };
}

/// What other threads (and the node's pumps) asked the driver to look at.
#[derive(Default)]
struct Pending {
    conns: Vec<ConnId>,
    dials: Vec<(ConnId, SocketAddr)>,
    udp: bool,
    timer: bool,
}

/// Wake-ups for the loop: recorded, then the loop is woken if it may be asleep.
struct Wakes {
    pending: Mutex<Pending>,
    waker: mio::Waker,
}

impl Wakes {
    fn note(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if !IN_DRIVER.get() {
            let _ = self.waker.wake();
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn any(&self) -> bool {
        let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        !p.conns.is_empty() || !p.dials.is_empty() || p.udp || p.timer
    }
}

/// Wakes one connection (or the UDP socket, or the timers).
struct Wakeup {
    wakes: Arc<Wakes>,
    what: What,
}

#[derive(Clone, Copy)]
enum What {
    Conn(ConnId),
    Udp,
    Timer,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.note(|p| match self.what {
            What::Conn(c) => p.conns.push(c),
            What::Udp => p.udp = true,
            What::Timer => p.timer = true,
        });
    }
}

fn waker(wakes: &Arc<Wakes>, what: What) -> Waker {
    Waker::from(Arc::new(Wakeup {
        wakes: wakes.clone(),
        what,
    }))
}

/// The node's start-ups on mio: dials go to the loop, calls to the worker thread.
struct MioLauncher {
    wakes: Arc<Wakes>,
    calls: Mutex<Calls>,
}

impl Launcher for MioLauncher {
    fn dial(&self, _: &Arc<Engine>, conn: ConnId, addr: SocketAddr) {
        self.wakes.note(|p| p.dials.push((conn, addr)));
    }

    fn call(&self, shared: &Arc<Engine>, call: Invocation) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .run(Arc::downgrade(shared), call);
    }
}

/// A mio TCP stream as the shared pumps use it: `Pending` means "wait for mio's next event".
struct Tcp(TcpStream);

impl TcpIo for Tcp {
    fn poll_read(&self, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        would_block((&self.0).read(buf))
    }
    fn poll_write(&self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        would_block((&self.0).write(buf))
    }
    fn shutdown_write(&self) {
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

struct Udp(UdpSocket);

impl UdpIo for Udp {
    fn poll_recv_from(
        &self,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        would_block(self.0.recv_from(buf))
    }
    fn poll_send_to(
        &self,
        _: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        would_block(self.0.send_to(buf, to))
    }
}

/// Edge-triggered readiness: a `WouldBlock` is followed by an event once the socket is ready.
fn would_block<T>(r: io::Result<T>) -> Poll<io::Result<T>> {
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

struct Conn {
    io: Tcp,
    token: Token,
    waker: Waker,
    /// Dialing: waiting for the first writable event.
    connecting: bool,
}

/// A Chaski node inside your own `mio::Poll` loop, with no thread of its own.
///
/// Give it a registry and the first token it may use (it uses that token and every one above
/// it); after every `poll`, hand it the events it [`owns`](Driver::owns), then call
/// [`Driver::tick`]; sleep at most [`Driver::timeout`]. Other threads may use
/// [`Driver::handle`] (their calls wake the loop through a `mio::Waker`).
pub struct Driver {
    shared: Arc<Engine>,
    wakes: Arc<Wakes>,
    listener: TcpListener,
    udp: Udp,
    udp_waker: Waker,
    timer_waker: Waker,
    deadline: Option<Instant>,
    first: usize,
    next_token: usize,
    registry: Registry,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, ConnId>,
    finished: bool,
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
        config.validate()?;
        let want = resolve(addr)?;
        let (listener, udp) = chaski_api::kit::bind_std(want)?;
        let (mut listener, mut udp) = (TcpListener::from_std(listener), UdpSocket::from_std(udp));
        let local = listener.local_addr()?;
        let first = first_token.0;
        registry.register(&mut listener, Token(first), Interest::READABLE)?;
        registry.register(
            &mut udp,
            Token(first + 1),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let wakes = Arc::new(Wakes {
            pending: Mutex::new(Pending::default()),
            waker: mio::Waker::new(registry, Token(first + 2))?,
        });
        let launcher = MioLauncher {
            wakes: wakes.clone(),
            calls: Mutex::new(Calls::default()),
        };
        let core = Core::new(chaski_api::kit::seeded(config, local), Some(local))?;
        let shared = Engine::new(core, Box::new(launcher));
        Ok(Driver {
            udp_waker: waker(&wakes, What::Udp),
            timer_waker: waker(&wakes, What::Timer),
            shared,
            wakes,
            listener,
            udp: Udp(udp),
            deadline: None,
            first,
            next_token: first + 3,
            registry: registry.try_clone()?,
            conns: HashMap::new(),
            tokens: HashMap::new(),
            finished: false,
        })
    }

    /// A handle other threads may use (async; [`crate::Node`] wraps it in blocking calls).
    /// The node runs while any handle lives; once every handle is dropped, it shuts down.
    pub fn handle(&mut self) -> Handle {
        chaski_api::handle_for(&self.shared)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.info().local
    }

    /// Runs `f` on the protocol core, for direct, non-blocking commands from the loop's own
    /// thread (`subscribe`, `publish`, `connect`, ...; their outcomes arrive as events).
    ///
    /// ```no_run
    /// # fn f(driver: &chaski_mio::Driver) -> Result<(), chaski_proto::CommandError> {
    /// driver.turn(|node, now| node.subscribe("ticks", now))?;
    /// # Ok(()) }
    /// ```
    pub fn turn<R>(&self, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        let _in = InDriver::enter();
        self.shared.turn(|s, now| f(s.core(), now))
    }

    /// Received messages.
    pub fn messages(&self) -> Messages<Received> {
        self.shared.info().messages.clone()
    }

    /// Lifecycle events.
    pub fn events(&self) -> Messages<Event> {
        self.shared.info().events.clone()
    }

    /// Whether `token` belongs to this driver.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first
    }

    /// How long the loop may sleep before calling [`Driver::tick`] again.
    pub fn timeout(&self) -> Option<Duration> {
        if self.wakes.any() {
            return Some(Duration::ZERO);
        }
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the node has shut down and closed every connection (the loop may end).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Handles one readiness event of a token this driver [`owns`](Driver::owns).
    pub fn handle_event(&mut self, event: &Readiness) {
        let _in = InDriver::enter();
        let token = event.token();
        if token.0 == self.first {
            self.accept();
        } else if token.0 == self.first + 1 {
            self.drive_udp();
        } else if token.0 == self.first + 2 {
            // The waker: what it stands for is taken in `tick`.
        } else if let Some(&conn) = self.tokens.get(&token) {
            self.drive(conn);
        }
    }

    /// Starts dials, runs due timers and drives whatever was woken. Call after every poll,
    /// whatever it returned.
    pub fn tick(&mut self) {
        let _in = InDriver::enter();
        // Wake-ups may come in while they are handled: take them until none is left.
        for _ in 0..64 {
            let p = self.wakes.take();
            for (conn, addr) in p.dials {
                self.dial(conn, addr);
            }
            for conn in p.conns {
                self.drive(conn);
            }
            if p.udp {
                self.drive_udp();
            }
            if !self.wakes.any() {
                break;
            }
        }
        self.run_timers();
        if self.shared.is_finished() && !self.finished {
            self.finished = true;
            for conn in self.conns.keys().copied().collect::<Vec<_>>() {
                self.forget(conn);
            }
        }
    }

    fn run_timers(&mut self) {
        let cx = Context::from_waker(&self.timer_waker);
        self.deadline = match self.shared.poll_timers(&cx) {
            TimerWait::Finished => None,
            TimerWait::Next(at) => at.map(|t| t + chaski_api::kit::TIMER_SLACK),
        };
    }

    fn drive_udp(&mut self) {
        let mut cx = Context::from_waker(&self.udp_waker);
        let _ = self.shared.poll_udp(&mut cx, &self.udp);
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let Some(conn) = self.shared.accepted(peer) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    if self.insert(conn, stream, false).is_ok() {
                        self.drive(conn);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    break;
                }
            }
        }
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr) {
        // The core's handshake deadline bounds the dial: it closes the connection if needed.
        let res = TcpStream::connect(addr).and_then(|s| self.insert(conn, s, true));
        if let Err(e) = res {
            self.shared.dialed(conn, Err(e));
        }
    }

    fn insert(&mut self, conn: ConnId, mut stream: TcpStream, connecting: bool) -> io::Result<()> {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.tokens.insert(token, conn);
        self.conns.insert(
            conn,
            Conn {
                io: Tcp(stream),
                token,
                waker: waker(&self.wakes, What::Conn(conn)),
                connecting,
            },
        );
        Ok(())
    }

    fn forget(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.tokens.remove(&c.token);
            let _ = self.registry.deregister(&mut c.io.0);
        }
    }

    /// Drives one connection (finishing its dial first) until it would block.
    fn drive(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.connecting {
            let result = match c.io.0.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match c.io.0.peer_addr() {
                    Err(e) if e.kind() == ErrorKind::NotConnected => return,
                    r => r,
                },
            };
            let ok = result.is_ok();
            if ok {
                c.connecting = false;
                let _ = c.io.0.set_nodelay(true);
            }
            if !self.shared.dialed(conn, result) || !ok {
                return self.forget(conn);
            }
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let mut cx = Context::from_waker(&c.waker);
        if self.shared.poll_conn(&mut cx, conn, &c.io).is_ready() {
            self.forget(conn);
        }
    }
}

/// Marks this thread as running the driver while it lives.
struct InDriver(bool);

impl InDriver {
    fn enter() -> InDriver {
        InDriver(IN_DRIVER.replace(true))
    }
}

impl Drop for InDriver {
    fn drop(&mut self) {
        IN_DRIVER.set(self.0);
    }
}
