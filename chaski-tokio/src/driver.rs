//! The driver task: tokio sockets and timers in, the engine's outputs out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use chaski_api::{Command, Engine, Invocation, Io, StreamIo, WriteBatch, INPUT_BATCH};
use chaski_proto::{ConnId, Direction};

/// Largest read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// What connection tasks tell the driver, in order per connection.
type Input = chaski_api::Input<TcpStream>;

struct ConnIo {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Arc<AtomicUsize>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

/// The tokio side of [`Io`].
struct TokioIo {
    conns: HashMap<ConnId, ConnIo>,
    input: mpsc::Sender<Input>,
    /// Dial results and local services' answers (unbounded: never blocked by back-pressure).
    ctl: mpsc::UnboundedSender<Input>,
}

pub(crate) struct Driver {
    engine: Engine,
    io: TokioIo,
    listener: TcpListener,
    udp: UdpSocket,
    cmds: async_channel::Receiver<Command>,
    input_rx: mpsc::Receiver<Input>,
    ctl_rx: mpsc::UnboundedReceiver<Input>,
    next_inbound: u64,
}

impl Driver {
    pub(crate) fn new(
        engine: Engine,
        listener: TcpListener,
        udp: UdpSocket,
        cmds: async_channel::Receiver<Command>,
    ) -> Self {
        let (input, input_rx) = mpsc::channel(256);
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        Driver {
            engine,
            io: TokioIo {
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
            let deadline = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let full = self.engine.messages_full();
            let congested = !self.io.backlogged(limit).is_empty();
            let shut = self.engine.is_shut_down();
            tokio::select! {
                biased;
                Some(input) = self.ctl_rx.recv() => self.on_input(input),
                cmd = self.cmds.recv(), if !congested || shut => match cmd {
                    Ok(cmd) => self.engine.commands(cmd, &self.cmds, Instant::now()),
                    // Every handle is gone: shut down.
                    Err(_) => self.engine.core().shutdown(Instant::now()),
                },
                Some(input) = self.input_rx.recv(), if !full => {
                    self.on_input(input);
                    // Take what else arrived, so one turn's output leaves in one write.
                    for _ in 1..INPUT_BATCH {
                        if self.engine.messages_full() {
                            break;
                        }
                        match self.input_rx.try_recv() {
                            Ok(input) => self.on_input(input),
                            Err(_) => break,
                        }
                    }
                }
                accepted = self.listener.accept(), if !shut => {
                    if let Ok((stream, peer)) = accepted {
                        self.next_inbound += 1;
                        let conn = ConnId(self.next_inbound);
                        self.io.attach(conn, stream);
                        self.engine.core().handle_connected(conn, peer, Direction::Inbound, Instant::now());
                    }
                }
                Ok((n, from)) = self.udp.recv_from(&mut udp_buf) => {
                    self.engine.core().handle_datagram(from, &udp_buf[..n], Instant::now());
                }
                Ok(()) = self.udp.writable(), if self.engine.has_datagrams() => {}
                _ = sleep_until(deadline) => self.engine.core().handle_timeout(Instant::now()),
                _ = tokio::time::sleep(Duration::from_millis(1)), if congested || full => {}
            }
            self.engine.drain(&mut self.io);
            let udp = &self.udp;
            self.engine
                .flush_datagrams(|data, to| udp.try_send_to(data, to));
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

impl TokioIo {
    fn adopt(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let input = self.input.clone();
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
        let failed = self.input.clone();
        let writer = tokio::spawn(async move {
            let mut batch = WriteBatch::default();
            while let Some(first) = rx.recv().await {
                let data = batch.gather(first, || rx.try_recv().ok());
                let res = wr.write_all(&data).await;
                pend.fetch_sub(data.len(), Ordering::Relaxed);
                if res.is_err() {
                    let _ = failed.send(Input::Closed(conn)).await;
                    return;
                }
            }
            // The driver closed this connection: everything queued is written; send FIN.
            let _ = wr.shutdown().await;
        });
        self.conns.insert(
            conn,
            ConnIo {
                tx,
                pending,
                reader,
                writer,
            },
        );
    }

    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(io) = self.conns.remove(&conn) {
            io.reader.abort();
        }
    }
}

impl StreamIo for TokioIo {
    type Stream = TcpStream;
    fn peer_addr(stream: &TcpStream) -> std::io::Result<SocketAddr> {
        stream.peer_addr()
    }
    fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        self.adopt(conn, stream);
    }
    fn forget(&mut self, conn: ConnId) {
        self.drop_conn(conn);
    }
}

impl Io for TokioIo {
    fn transmit(&mut self, conn: ConnId, data: Bytes) {
        if let Some(io) = self.conns.get(&conn) {
            io.pending.fetch_add(data.len(), Ordering::Relaxed);
            let _ = io.tx.send(data);
        }
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr, timeout: Duration) {
        let dials = self.ctl.clone();
        tokio::spawn(async move {
            let res = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            };
            let _ = dials.send(Input::Dialed(conn, res));
        });
    }

    fn close(&mut self, conn: ConnId) {
        // Dropping the writer's sender lets it flush, then shut the socket down.
        self.drop_conn(conn);
    }

    fn abort(&mut self, conn: ConnId) {
        if let Some(io) = self.conns.remove(&conn) {
            io.reader.abort();
            io.writer.abort();
        }
    }

    fn spawn_call(&mut self, call: Invocation) {
        let ctl = self.ctl.clone();
        tokio::spawn(async move {
            let result = call.future.await;
            let _ = ctl.send(Input::Respond(call.peer, call.id, result));
        });
    }

    fn backlogged(&self, limit: usize) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.pending.load(Ordering::Relaxed) > limit)
            .map(|(id, _)| *id)
            .collect()
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
