//! The driver task: smol sockets and timers in, the engine's outputs out.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use smol::future::{or, pending};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Async;

type UdpSocket = Async<std::net::UdpSocket>;
use smol::{Task, Timer};

use chaski_api::{Command, Engine, Invocation, Io, StreamIo, WriteBatch, INPUT_BATCH};
use chaski_proto::{ConnId, Direction};

/// Largest read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

type Input = chaski_api::Input<TcpStream>;

enum Wake {
    Ctl(Input),
    Cmd(Option<Command>),
    Input(Input),
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Datagram(std::io::Result<(usize, SocketAddr)>),
    Timer,
    Tick,
}

struct ConnIo {
    tx: async_channel::Sender<Bytes>,
    pending: Arc<AtomicUsize>,
    _reader: Task<()>,
    /// Detached on a close (it flushes, then shuts down); dropped, so cancelled, on an abort.
    writer: Task<()>,
}

struct SmolIo {
    conns: HashMap<ConnId, ConnIo>,
    input: async_channel::Sender<Input>,
    ctl: async_channel::Sender<Input>,
}

pub(crate) struct Driver {
    engine: Engine,
    io: SmolIo,
    listener: TcpListener,
    udp: UdpSocket,
    cmds: async_channel::Receiver<Command>,
    input_rx: async_channel::Receiver<Input>,
    ctl_rx: async_channel::Receiver<Input>,
    next_inbound: u64,
}

impl Driver {
    pub(crate) fn new(
        engine: Engine,
        listener: TcpListener,
        udp: UdpSocket,
        cmds: async_channel::Receiver<Command>,
    ) -> Self {
        let (input, input_rx) = async_channel::bounded(256);
        let (ctl, ctl_rx) = async_channel::unbounded();
        Driver {
            engine,
            io: SmolIo {
                conns: HashMap::new(),
                input,
                ctl,
            },
            listener,
            udp,
            cmds,
            input_rx,
            ctl_rx,
            next_inbound: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut udp_buf = vec![0u8; 65_536];
        let limit = self.engine.congestion_limit();
        loop {
            let deadline = self.engine.poll_timeout();
            let full = self.engine.messages_full();
            let congested = !self.io.backlogged(limit).is_empty();
            let shut = self.engine.is_shut_down();
            let (ctl_rx, cmds, input_rx, listener, udp) = (
                &self.ctl_rx,
                &self.cmds,
                &self.input_rx,
                &self.listener,
                &self.udp,
            );
            let ctl = async {
                match ctl_rx.recv().await {
                    Ok(i) => Wake::Ctl(i),
                    Err(_) => pending().await,
                }
            };
            let cmd = async {
                if congested && !shut {
                    pending::<()>().await;
                }
                Wake::Cmd(cmds.recv().await.ok())
            };
            let input = async {
                if full {
                    pending::<()>().await;
                }
                match input_rx.recv().await {
                    Ok(i) => Wake::Input(i),
                    Err(_) => pending().await,
                }
            };
            let accept = async {
                if shut {
                    pending::<()>().await;
                }
                Wake::Accepted(listener.accept().await)
            };
            let datagram = async { Wake::Datagram(udp.recv_from(&mut udp_buf).await) };
            let timer = async {
                match deadline {
                    Some(d) => {
                        Timer::at(d).await;
                        Wake::Timer
                    }
                    None => pending().await,
                }
            };
            let tick = async {
                if !(congested || full) {
                    pending::<()>().await;
                }
                Timer::after(Duration::from_millis(1)).await;
                Wake::Tick
            };
            let has_datagrams = self.engine.has_datagrams();
            let writable = async {
                if !has_datagrams {
                    pending::<()>().await;
                }
                let _ = udp.writable().await;
                Wake::Tick
            };
            let wake = or(
                ctl,
                or(
                    cmd,
                    or(
                        input,
                        or(accept, or(datagram, or(timer, or(tick, writable)))),
                    ),
                ),
            )
            .await;
            let now = Instant::now();
            match wake {
                Wake::Ctl(i) => self.on_input(i),
                Wake::Input(i) => {
                    self.on_input(i);
                    // Take what else arrived, so one turn's output leaves in one write.
                    for _ in 1..INPUT_BATCH {
                        if self.engine.messages_full() {
                            break;
                        }
                        match self.input_rx.try_recv() {
                            Ok(i) => self.on_input(i),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Cmd(Some(cmd)) => self.engine.commands(cmd, &self.cmds, now),
                // Every handle is gone: shut down.
                Wake::Cmd(None) => self.engine.core().shutdown(now),
                Wake::Accepted(Ok((stream, peer))) => {
                    self.next_inbound += 1;
                    let conn = ConnId(self.next_inbound);
                    self.io.attach(conn, stream);
                    self.engine
                        .core()
                        .handle_connected(conn, peer, Direction::Inbound, now);
                }
                Wake::Accepted(Err(_)) => {}
                Wake::Datagram(Ok((n, from))) => {
                    self.engine.core().handle_datagram(from, &udp_buf[..n], now)
                }
                Wake::Datagram(Err(_)) | Wake::Tick => {}
                Wake::Timer => self.engine.core().handle_timeout(now),
            }
            self.engine.drain(&mut self.io);
            let udp = &self.udp;
            self.engine
                .flush_datagrams(|data, to| udp.get_ref().send_to(data, to));
            if self.engine.is_finished(self.io.conns.len()) {
                break;
            }
        }
        self.engine.finish(&self.cmds);
    }

    fn on_input(&mut self, input: Input) {
        self.engine.input(&mut self.io, input, Instant::now());
    }
}

impl SmolIo {
    fn adopt(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut rd = stream.clone();
        let input = self.input.clone();
        let reader = smol::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let mut chunk = vec![0u8; READ_CHUNK];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
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
        let (tx, rx) = async_channel::unbounded::<Bytes>();
        let pending = Arc::new(AtomicUsize::new(0));
        let pend = pending.clone();
        let failed = self.input.clone();
        let mut wr = stream;
        let writer = smol::spawn(async move {
            let mut batch = WriteBatch::default();
            while let Ok(first) = rx.recv().await {
                let data = batch.gather(first, || rx.try_recv().ok());
                let res = wr.write_all(&data).await;
                pend.fetch_sub(data.len(), Ordering::Relaxed);
                if res.is_err() {
                    let _ = failed.send(Input::Closed(conn)).await;
                    return;
                }
            }
            // The driver closed this connection: everything queued is written; send FIN.
            let _ = wr.flush().await;
            let _ = wr.shutdown(Shutdown::Write);
        });
        self.conns.insert(
            conn,
            ConnIo {
                tx,
                pending,
                _reader: reader,
                writer,
            },
        );
    }
}

impl StreamIo for SmolIo {
    type Stream = TcpStream;
    fn peer_addr(stream: &TcpStream) -> std::io::Result<SocketAddr> {
        stream.peer_addr()
    }
    fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        self.adopt(conn, stream);
    }
    fn forget(&mut self, conn: ConnId) {
        if let Some(io) = self.conns.remove(&conn) {
            // The writer still owes what was queued before the peer's EOF, if it can.
            io.writer.detach();
        }
    }
}

impl Io for SmolIo {
    fn transmit(&mut self, conn: ConnId, data: Bytes) {
        if let Some(io) = self.conns.get(&conn) {
            io.pending.fetch_add(data.len(), Ordering::Relaxed);
            let _ = io.tx.try_send(data);
        }
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr, timeout: Duration) {
        let ctl = self.ctl.clone();
        smol::spawn(async move {
            let res = or(TcpStream::connect(addr), async {
                Timer::after(timeout).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })
            .await;
            let _ = ctl.send(Input::Dialed(conn, res)).await;
        })
        .detach();
    }

    fn close(&mut self, conn: ConnId) {
        // Dropping the writer's sender lets it flush, then shut the socket down; dropping the
        // reader task cancels it.
        if let Some(io) = self.conns.remove(&conn) {
            io.writer.detach();
        }
    }

    fn abort(&mut self, conn: ConnId) {
        // Dropping both tasks cancels them and closes the socket.
        self.conns.remove(&conn);
    }

    fn spawn_call(&mut self, call: Invocation) {
        let ctl = self.ctl.clone();
        smol::spawn(async move {
            let result = call.future.await;
            let _ = ctl.send(Input::Respond(call.peer, call.id, result)).await;
        })
        .detach();
    }

    fn backlogged(&self, limit: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.pending.load(Ordering::Relaxed) > limit)
            .map(|(id, _)| *id)
            .collect()
    }
}
