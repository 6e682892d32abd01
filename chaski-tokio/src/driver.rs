//! The driver task: sockets and timers in, the core's outputs out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::debug;

use chaski_api::{Error, Hub, Result, Service, Status, Waiter};
use chaski_proto::{
    CallKind, ConnId, Direction, EdgeInfo, Node as Core, NodeId, Output, RemoteError,
};

/// Largest read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Datagrams waiting for the UDP socket to be writable before the oldest is dropped.
const DATAGRAM_QUEUE: usize = 1024;

pub(crate) type Reply<T> = futures_channel::oneshot::Sender<Result<T>>;

/// Commands from the handle.
pub(crate) enum Cmd {
    Connect(SocketAddr, Waiter<EdgeInfo>),
    Subscribe(String, Reply<()>),
    Unsubscribe(String, Reply<()>),
    Publish(String, Bytes, Reply<u64>),
    PublishDatagram(SocketAddr, String, Bytes, Reply<()>),
    Discover(Waiter<()>),
    Ping(NodeId, usize, Waiter<Duration>),
    Status(SocketAddr, Waiter<Status>),
    LocalStatus(Reply<Status>),
    Edges(Reply<Vec<EdgeInfo>>),
    Close(NodeId, Reply<()>),
    Serve(String, Service, Reply<()>),
    Unserve(String, Reply<()>),
    FindService(String, Reply<Option<NodeId>>),
    Call {
        peer: NodeId,
        service: String,
        path: String,
        kind: CallKind,
        args: Bytes,
        timeout: Option<Duration>,
        reply: Waiter<Bytes>,
    },
    Shutdown(Reply<()>),
}

/// What connection tasks and helpers tell the driver.
enum Ctl {
    Dialed(ConnId, std::io::Result<TcpStream>),
    WriteFailed(ConnId),
    Respond(NodeId, u64, Result<Bytes, RemoteError>),
}

/// What readers tell the driver, in order per connection.
enum Input {
    Data(ConnId, Bytes),
    Closed(ConnId),
}

struct ConnIo {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<AtomicUsize>,
    reader: tokio::task::JoinHandle<()>,
}

pub(crate) struct Driver {
    core: Core,
    hub: Hub,
    listener: TcpListener,
    udp: UdpSocket,
    cmds: mpsc::Receiver<Cmd>,
    ctl_tx: mpsc::UnboundedSender<Ctl>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    input_tx: mpsc::Sender<Input>,
    input_rx: mpsc::Receiver<Input>,
    conns: HashMap<ConnId, ConnIo>,
    next_inbound: u64,
    /// Bytes pending on one connection above which publishing waits.
    congestion: usize,
    shutdown_reply: Option<Reply<()>>,
    datagrams: VecDeque<(SocketAddr, Bytes)>,
    datagrams_dropped: u64,
}

impl Driver {
    pub(crate) fn new(
        core: Core,
        hub: Hub,
        listener: TcpListener,
        udp: UdpSocket,
        cmds: mpsc::Receiver<Cmd>,
    ) -> Self {
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (input_tx, input_rx) = mpsc::channel(256);
        let congestion = (core.config().max_outbound / 8).max(READ_CHUNK);
        Driver {
            core,
            hub,
            listener,
            udp,
            cmds,
            ctl_tx,
            ctl_rx,
            input_tx,
            input_rx,
            conns: HashMap::new(),
            next_inbound: 0,
            congestion,
            shutdown_reply: None,
            datagrams: VecDeque::new(),
            datagrams_dropped: 0,
        }
    }

    fn congested(&self) -> bool {
        self.conns
            .values()
            .any(|c| c.pending.load(Ordering::Relaxed) > self.congestion)
    }

    pub(crate) async fn run(mut self) {
        let mut udp_buf = vec![0u8; 65_536];
        loop {
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            let full = self.hub.messages().is_full();
            let congested = self.congested();
            tokio::select! {
                biased;
                Some(ctl) = self.ctl_rx.recv() => self.on_ctl(ctl),
                cmd = self.cmds.recv(), if !congested || self.shutdown_reply.is_some() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    // Every handle is gone: shut down.
                    None => self.core.shutdown(Instant::now()),
                },
                Some(input) = self.input_rx.recv(), if !full => self.on_input(input),
                accepted = self.listener.accept(), if !self.core.is_shut_down() => {
                    if let Ok((stream, peer)) = accepted {
                        self.next_inbound += 1;
                        let conn = ConnId(self.next_inbound);
                        self.attach(conn, stream);
                        self.core.handle_connected(conn, peer, Direction::Inbound, Instant::now());
                    }
                }
                Ok((n, from)) = self.udp.recv_from(&mut udp_buf) => {
                    self.core.handle_datagram(from, &udp_buf[..n], Instant::now());
                }
                Ok(()) = self.udp.writable(), if !self.datagrams.is_empty() => self.flush_datagrams(),
                _ = sleep_until(deadline) => self.core.handle_timeout(Instant::now()),
                _ = tokio::time::sleep(Duration::from_millis(1)), if congested || full => {}
            }
            self.drain();
            if self.core.is_shut_down() && self.conns.is_empty() {
                break;
            }
        }
        self.hub.shutdown();
        if let Some(r) = self.shutdown_reply.take() {
            let _ = r.send(Ok(()));
        }
    }

    fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let input = self.input_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            loop {
                buf.reserve(READ_CHUNK);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if input
                            .send(Input::Data(conn, buf.split().freeze()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = input.send(Input::Closed(conn)).await;
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        let pend = pending.clone();
        let ctl = self.ctl_tx.clone();
        tokio::spawn(async move {
            let mut batch = BytesMut::new();
            while let Some(first) = rx.recv().await {
                let mut n = first.len();
                let res = if let Ok(second) = rx.try_recv() {
                    // Coalesce whatever else is queued into one write.
                    batch.extend_from_slice(&first);
                    batch.extend_from_slice(&second);
                    n += second.len();
                    while batch.len() < 1 << 20 {
                        let Ok(more) = rx.try_recv() else { break };
                        n += more.len();
                        batch.extend_from_slice(&more);
                    }
                    let r = wr.write_all(&batch).await;
                    batch.clear();
                    r
                } else {
                    wr.write_all(&first).await
                };
                pend.fetch_sub(n, Ordering::Relaxed);
                if res.is_err() {
                    let _ = ctl.send(Ctl::WriteFailed(conn));
                    return;
                }
            }
            // The driver closed this connection: everything queued is written; say FIN.
            let _ = wr.shutdown().await;
        });
        self.conns.insert(
            conn,
            ConnIo {
                tx,
                pending,
                reader,
            },
        );
    }

    fn on_ctl(&mut self, ctl: Ctl) {
        let now = Instant::now();
        match ctl {
            Ctl::Dialed(conn, Ok(stream)) => {
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                self.attach(conn, stream);
                self.core
                    .handle_connected(conn, peer, Direction::Outbound, now);
            }
            Ctl::Dialed(conn, Err(e)) => self.core.handle_dial_failed(conn, &e.to_string(), now),
            Ctl::WriteFailed(conn) => {
                self.drop_io(conn);
                self.core.handle_closed(conn, now);
            }
            Ctl::Respond(peer, id, result) => {
                let _ = self.core.respond(peer, id, result);
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Data(conn, data) => self.core.handle_bytes(conn, &data, now),
            Input::Closed(conn) => {
                self.drop_io(conn);
                self.core.handle_closed(conn, now);
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = Instant::now();
        let core = &mut self.core;
        match cmd {
            Cmd::Connect(addr, w) => match core.connect(addr, now) {
                Ok(conn) => self.hub.wait_connect(conn, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Cmd::Subscribe(t, r) => {
                let _ = r.send(core.subscribe(&t, now).map_err(Error::from));
            }
            Cmd::Unsubscribe(t, r) => {
                let _ = r.send(core.unsubscribe(&t, now).map_err(Error::from));
            }
            Cmd::Publish(t, p, r) => {
                let _ = r.send(core.publish(&t, p, now).map_err(Error::from));
            }
            Cmd::PublishDatagram(a, t, p, r) => {
                let _ = r.send(core.publish_datagram(a, &t, p).map_err(Error::from));
            }
            Cmd::Discover(w) => match core.discover(now) {
                Ok(()) => self.hub.wait_paired(core, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Cmd::Ping(peer, size, w) => match core.ping(peer, size, now) {
                Ok(id) => self.hub.wait_ping(id, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Cmd::Status(addr, w) => match core.query_status(addr, now) {
                Ok(t) => self.hub.wait_status(t, w),
                Err(e) => {
                    let _ = w.send(Err(e.into()));
                }
            },
            Cmd::LocalStatus(r) => {
                let _ = r.send(Ok(core.status()));
            }
            Cmd::Edges(r) => {
                let _ = r.send(Ok(core.edges()));
            }
            Cmd::Close(peer, r) => {
                let _ = r.send(core.close(peer, now).map_err(Error::from));
            }
            Cmd::Serve(name, svc, r) => {
                let res = core.serve(&name).map_err(Error::from);
                if res.is_ok() {
                    self.hub.add_service(&name, svc);
                }
                let _ = r.send(res);
            }
            Cmd::Unserve(name, r) => {
                self.hub.remove_service(&name);
                let _ = r.send(core.unserve(&name).map_err(Error::from));
            }
            Cmd::FindService(name, r) => {
                let _ = r.send(Ok(core.find_service(&name)));
            }
            Cmd::Call {
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
            Cmd::Shutdown(r) => {
                core.shutdown(now);
                self.shutdown_reply = Some(r);
            }
        }
    }

    /// Sends queued datagrams until the socket would block (the rest wait for writability).
    fn flush_datagrams(&mut self) {
        while let Some((to, data)) = self.datagrams.front() {
            match self.udp.try_send_to(data, *to) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => debug!(%to, error = %e, "datagram not sent"),
                Ok(_) => {}
            }
            self.datagrams.pop_front();
        }
    }

    fn drop_io(&mut self, conn: ConnId) {
        if let Some(io) = self.conns.remove(&conn) {
            io.reader.abort();
        }
    }

    /// Carries out every output of the core.
    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn, data } => {
                    if let Some(io) = self.conns.get(&conn) {
                        io.pending.fetch_add(data.len(), Ordering::Relaxed);
                        let _ = io.tx.send(data);
                    }
                }
                Output::Datagram { to, data } => {
                    if self.datagrams.len() >= DATAGRAM_QUEUE {
                        self.datagrams.pop_front();
                        self.datagrams_dropped += 1;
                    }
                    self.datagrams.push_back((to, data));
                    self.flush_datagrams();
                }
                Output::Dial { conn, addr } => {
                    let ctl = self.ctl_tx.clone();
                    let limit = self.core.config().handshake_timeout;
                    tokio::spawn(async move {
                        let res = match tokio::time::timeout(limit, TcpStream::connect(addr)).await
                        {
                            Ok(r) => r,
                            Err(_) => Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "connect timed out",
                            )),
                        };
                        let _ = ctl.send(Ctl::Dialed(conn, res));
                    });
                }
                Output::Close { conn } => {
                    // Dropping the writer's sender lets it flush, then shut the socket down.
                    self.drop_io(conn);
                }
                Output::Event(ev) => {
                    if let Some(inv) = self.hub.route(&mut self.core, ev) {
                        let ctl = self.ctl_tx.clone();
                        tokio::spawn(async move {
                            let r = inv.future.await;
                            let _ = ctl.send(Ctl::Respond(inv.peer, inv.id, r));
                        });
                    }
                }
            }
        }
        self.hub.sweep(&mut self.core);
        // Stalled peers: more than the outbound limit waiting to be written.
        let max = self.core.config().max_outbound;
        let stalled: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, io)| io.pending.load(Ordering::Relaxed) > max)
            .map(|(c, _)| *c)
            .collect();
        for conn in stalled {
            self.drop_io(conn);
            self.core.handle_stalled(conn, Instant::now());
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
