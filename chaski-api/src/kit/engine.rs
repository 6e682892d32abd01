//! A node's state, shared by its handles and its tasks: the core and the hub behind one lock.
//!
//! Whoever has something for the node (a handle's command, a task's socket read, a timer)
//! takes the lock, calls the core inline, and [`State::carry_out`]s its outputs: a connection with
//! bytes to write has its task woken, received messages go to the application's queue, and
//! dials and service calls are started once the lock is released. The pumps below (a
//! connection, the UDP socket, accepting, timers) are the same on every runtime.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use chaski_proto::{Config, ConnId, Direction, Node as Core, NodeId, Output, Received};

use super::datagrams::DatagramQueue;
use super::hub::{Hub, Invocation, Reply};
use super::runtime::UdpIo;
use crate::queue::{Events, Messages};

/// Largest chunk read from, or written to, a socket at once.
const CHUNK: usize = 256 * 1024;
/// Socket operations one task does before it lets others run.
pub(super) const BUDGET: usize = 32;

thread_local! {
    /// Whether this thread runs a turn now (the node's lock is not reentrant).
    static IN_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Every task reads into this thread's buffer (an idle connection holds none).
    pub(super) static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
    /// And writes from this one: bytes are copied out of the core under the lock, and written
    /// without it.
    pub(super) static WRITE_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; CHUNK]);
}

/// What the runtime must start once the lock is released.
pub(crate) enum Action {
    Dial(ConnId, SocketAddr),
    Call(Invocation),
}

/// The runtime's part in starting things: dials and service calls.
pub trait Launcher: Send + Sync + 'static {
    /// Opens connection `conn` to `addr`, then reports it with [`Engine::dialed`] and drives
    /// it with [`Engine::poll_conn`].
    fn dial(&self, shared: &Arc<Engine>, conn: ConnId, addr: SocketAddr);
    /// Runs a request for a local service off the lock, then answers it with
    /// [`Engine::respond`].
    fn call(&self, shared: &Arc<Engine>, call: Invocation);
}

/// The runtime's side of one connection.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) waker: Option<Waker>,
    /// The core closed it: write what is left, then end.
    pub(super) closing: bool,
    /// A small write was put off once, so that more bytes join it.
    pub(super) deferred: bool,
}

/// Everything behind the node's lock.
pub struct State {
    pub(crate) core: Core,
    pub(crate) hub: Hub,
    pub(super) slots: HashMap<ConnId, Slot>,
    datagrams: DatagramQueue,
    udp: Option<Waker>,
    listener: Option<Waker>,
    timer: Option<Waker>,
    /// The deadline the timer task sleeps until.
    armed: Option<Instant>,
    /// Publishes waiting for a congested peer.
    publishers: Vec<Waker>,
    /// The core's congestion releases when the publishers last looked.
    released: u64,
    shutdown: Vec<Reply<()>>,
    actions: Vec<Action>,
    next_inbound: u64,
    pub(super) finished: bool,
}

fn wake(w: &Option<Waker>) {
    if let Some(w) = w {
        w.wake_by_ref();
    }
}

pub(super) fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

impl State {
    /// Carries out everything the core asked for, until it has nothing left: what the hub
    /// does in turn (answers it gives, calls it cancels) leaves before the lock is released.
    fn carry_out(&mut self, now: Instant) {
        loop {
            self.drain(now);
            self.hub.sweep(&mut self.core, now);
            if !self.core.has_pending_output() {
                break;
            }
        }
        self.hub.deliver();
        self.wake_waiters();
    }

    /// Takes every output of the core once.
    fn drain(&mut self, now: Instant) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn } | Output::Resume { conn } => {
                    if let Some(s) = self.slots.get(&conn) {
                        wake(&s.waker);
                    }
                }
                Output::Close { conn } => {
                    if let Some(s) = self.slots.get_mut(&conn) {
                        s.closing = true;
                        wake(&s.waker);
                    }
                }
                Output::Dial { conn, addr } => {
                    self.slots.insert(conn, Slot::default());
                    self.actions.push(Action::Dial(conn, addr));
                }
                Output::Datagram { to, data } => {
                    self.datagrams.push(to, data);
                    wake(&self.udp);
                }
                Output::Event(ev) => self.hub.event(ev),
                Output::Deliver(d) => {
                    if let Some(call) = self.hub.delivery(&mut self.core, d, now) {
                        self.actions.push(Action::Call(call));
                    }
                }
            }
        }
    }

    /// Wakes whoever waits on what carrying out changed.
    fn wake_waiters(&mut self) {
        let released = self.core.congestion_released();
        if !self.publishers.is_empty() && (released != self.released || self.core.is_shut_down()) {
            for w in self.publishers.drain(..) {
                w.wake();
            }
        }
        self.released = released;
        let next = self.core.poll_timeout();
        if next.is_some() && (self.armed.is_none() || next < self.armed) {
            wake(&self.timer);
        }
        if self.core.is_shut_down()
            && !self.finished
            && self.core.connection_count() == 0
            && self.core.closing_count() == 0
        {
            self.finish();
        }
    }

    /// Every connection is closed after a shutdown: answer everyone and end every task.
    fn finish(&mut self) {
        self.finished = true;
        self.hub.shutdown();
        for w in self.shutdown.drain(..) {
            let _ = w.send(Ok(()));
        }
        for s in self.slots.values() {
            wake(&s.waker);
        }
        wake(&self.udp);
        wake(&self.listener);
        wake(&self.timer);
        for w in self.publishers.drain(..) {
            w.wake();
        }
    }

    /// Whether reading must wait for the application (back-pressure, queue full); registers
    /// the task to be woken when it has room.
    pub(super) fn read_paused(&self, cx: &Context<'_>) -> bool {
        self.hub.poll_space(cx).is_pending()
    }

    /// Whether publishing on `topic` waits for a congested peer; registers the task if so.
    pub(crate) fn publish_waits(&mut self, topic: &str, cx: &Context<'_>) -> bool {
        if self.core.is_shut_down() || !self.core.publish_would_wait(topic) {
            return false;
        }
        self.wait_release(cx);
        true
    }

    /// Registers a task to be woken when a congested peer takes its bytes (or the node's
    /// outbound memory falls), as a waiting publish is.
    pub(crate) fn wait_release(&mut self, cx: &Context<'_>) {
        // A task polled again while it waits registers once (bounded by the waiting tasks).
        if !self.publishers.iter().any(|w| w.will_wake(cx.waker())) {
            self.publishers.push(cx.waker().clone());
        }
        self.released = self.core.congestion_released();
    }

    /// Waits for the end of a shutdown (`None`: it is over already).
    pub(crate) fn wait_finished(&mut self, w: Reply<()>) -> Option<Reply<()>> {
        if self.finished {
            Some(w)
        } else {
            self.shutdown.push(w);
            None
        }
    }

    /// The protocol core, for a runtime's direct commands (their outputs are carried out when
    /// the lock is released).
    pub fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Whether the node has shut down and closed every connection.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Datagrams dropped because the UDP socket could not keep up.
    pub fn datagrams_dropped(&self) -> u64 {
        self.datagrams.dropped()
    }
}

/// Fixed facts of a node, readable without the lock.
#[derive(Clone, Debug)]
pub struct Info {
    /// The bound address.
    pub local: SocketAddr,
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// The configuration.
    pub config: Arc<Config>,
    /// Received messages.
    pub messages: Messages<Received>,
    /// Lifecycle events.
    pub events: Events,
}

/// Keeps the node running while someone holds it (every handle does); when the last one goes,
/// the node shuts down.
pub struct Keepalive(Arc<Engine>);

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.0.turn(|s, now| s.core.shutdown(now));
    }
}

/// One node's shared state and the pumps that drive it.
pub struct Engine {
    state: Mutex<State>,
    launcher: Box<dyn Launcher>,
    info: Info,
    keepalive: Mutex<Weak<Keepalive>>,
}

impl Engine {
    /// A node over `core`, started by `launcher`.
    pub fn new(core: Core, launcher: Box<dyn Launcher>) -> Arc<Engine> {
        let config = core.config().clone();
        let (hub, messages, events) = Hub::new(&config);
        let info = Info {
            local: core
                .listen_addr()
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            id: core.id(),
            name: core.name().to_string(),
            config: Arc::new(config),
            messages,
            events,
        };
        Arc::new(Engine {
            state: Mutex::new(State {
                core,
                hub,
                slots: HashMap::new(),
                datagrams: DatagramQueue::default(),
                udp: None,
                listener: None,
                timer: None,
                armed: None,
                publishers: Vec::new(),
                released: 0,
                shutdown: Vec::new(),
                actions: Vec::new(),
                next_inbound: 0,
                finished: false,
            }),
            launcher,
            info,
            keepalive: Mutex::new(Weak::new()),
        })
    }

    /// Fixed facts of the node.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The node's keepalive: while any clone of it lives the node runs; when the last is
    /// dropped, it shuts down (a later one finds it shut down).
    pub fn keepalive(self: &Arc<Self>) -> Arc<Keepalive> {
        let mut k = self.keepalive.lock().unwrap_or_else(|p| p.into_inner());
        k.upgrade().unwrap_or_else(|| {
            let keepalive = Arc::new(Keepalive(self.clone()));
            *k = Arc::downgrade(&keepalive);
            keepalive
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock (a bug) must not turn every later call into a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state under the lock, carries out the core's outputs, then starts what
    /// they asked for (dials, service calls) without the lock.
    pub fn turn<R>(self: &Arc<Self>, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let now = Instant::now();
        let mut g = self.lock();
        let was = IN_TURN.replace(true);
        let r = f(&mut g, now);
        g.carry_out(now);
        let actions = std::mem::take(&mut g.actions);
        IN_TURN.set(was);
        drop(g);
        for a in actions {
            match a {
                Action::Dial(conn, addr) => self.launcher.dial(self, conn, addr),
                Action::Call(call) => self.launcher.call(self, call),
            }
        }
        r
    }

    /// Runs `f` as a [`Engine::turn`] unless this thread is in a turn already (something
    /// dropped under the lock): then the turn under way sees to it (carrying out its outputs sweeps).
    pub(crate) fn outside_turn(self: &Arc<Self>, f: impl FnOnce(&mut State, Instant)) {
        if !IN_TURN.get() {
            self.turn(f);
        }
    }

    /// Whether the node has shut down and closed every connection.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// The node's next deadline, for a runtime without a timer task (mio).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().core.poll_timeout()
    }

    /// A dial finished: `Ok` with the peer's address, or the error. `true` if the
    /// connection should now be driven with [`Engine::poll_conn`].
    pub fn dialed(self: &Arc<Self>, conn: ConnId, result: std::io::Result<SocketAddr>) -> bool {
        self.turn(|s, now| match result {
            Ok(peer) => {
                s.core
                    .handle_connected(conn, peer, Direction::Outbound, now);
                s.slots.contains_key(&conn)
            }
            Err(e) => {
                s.slots.remove(&conn);
                s.core.handle_dial_failed(conn, &e.to_string(), now);
                false
            }
        })
    }

    /// A connection was accepted from `peer`: its id, or `None` if the node refuses it (shut
    /// down). Drive it with [`Engine::poll_conn`].
    pub fn accepted(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnId> {
        self.turn(|s, now| {
            if s.core.is_shut_down() {
                return None;
            }
            s.next_inbound += 1;
            let conn = ConnId(s.next_inbound);
            s.slots.insert(conn, Slot::default());
            s.core.handle_connected(conn, peer, Direction::Inbound, now);
            Some(conn)
        })
    }

    /// A local service finished a request.
    pub fn respond(
        self: &Arc<Self>,
        peer: NodeId,
        id: u64,
        result: std::result::Result<Bytes, chaski_proto::RemoteError>,
    ) {
        self.turn(|s, now| {
            s.hub.answered(peer, id);
            let _ = s.core.respond(peer, id, result, now);
        });
    }

    /// The connection ended (EOF, reset, failed write): forget it.
    pub(super) fn lost(self: &Arc<Self>, conn: ConnId) {
        self.turn(|s, now| {
            s.slots.remove(&conn);
            s.core.handle_closed(conn, now);
        });
    }

    /// Drives the UDP socket: sends queued datagrams, hands received ones to the core.
    /// `Ready` once the node has finished.
    pub fn poll_udp<U: UdpIo + ?Sized>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        udp: &U,
    ) -> Poll<()> {
        loop {
            let next = {
                let mut s = self.lock();
                if s.finished {
                    return Poll::Ready(());
                }
                register(&mut s.udp, cx);
                s.datagrams.front()
            };
            let Some((to, data)) = next else { break };
            match udp.poll_send_to(cx, &data, to) {
                Poll::Pending => break,
                Poll::Ready(r) => {
                    if let Err(e) = r {
                        tracing::debug!(%to, error = %e, "datagram not sent");
                    }
                    self.lock().datagrams.pop();
                }
            }
        }
        for _ in 0..BUDGET {
            let more = READ_BUF.with_borrow_mut(|buf| {
                if self.lock().read_paused(cx) {
                    return false;
                }
                match udp.poll_recv_from(cx, buf) {
                    Poll::Ready(Ok((n, from))) => {
                        self.turn(|s, now| s.core.handle_datagram(from, &buf[..n], now));
                        true
                    }
                    // An ICMP error for an earlier send, for instance: go on.
                    Poll::Ready(Err(_)) => true,
                    Poll::Pending => false,
                }
            });
            if !more {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Registers the listener's task; `true` once the node has shut down (stop accepting).
    pub fn listener_done(&self, cx: &Context<'_>) -> bool {
        let mut s = self.lock();
        register(&mut s.listener, cx);
        s.core.is_shut_down()
    }

    /// Runs the timers due now; gives the next deadline, or `Ready` once the node has
    /// finished. Registers the task to be woken when an earlier deadline is set.
    pub fn poll_timers(self: &Arc<Self>, cx: &Context<'_>) -> TimerWait {
        self.turn(|s, now| {
            if s.finished {
                return TimerWait::Finished;
            }
            if s.core.poll_timeout().is_some_and(|t| t <= now) {
                s.core.handle_timeout(now);
            }
            register(&mut s.timer, cx);
            s.armed = s.core.poll_timeout();
            TimerWait::Next(s.armed)
        })
    }
}

/// What [`Engine::poll_timers`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerWait {
    /// The node has finished: the timer task ends.
    Finished,
    /// Sleep until this deadline (`None`: until woken).
    Next(Option<Instant>),
}
