//! What a runtime gives the shared driver: non-blocking sockets polled with a task context,
//! and (for async runtimes) tasks and timers. tokio and smol implement [`Runtime`]; the mio
//! driver implements only the socket traits and calls the same pumps from its own loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Tries `op` until it stops failing with `WouldBlock`, waiting with `ready` in between: the
/// loop every readiness-based socket operation needs (`ready` registers the task when it is
/// `Pending`).
pub fn retry_until_ready<T>(
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> io::Result<T>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
) -> Poll<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
        std::task::ready!(ready(cx))?;
    }
}

/// A connected TCP stream, read and written through `&self` (one task does both).
pub trait TcpIo: Send + Sync + 'static {
    /// Reads into `buf`; `Pending` registers the task for readability.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `buf`; `Pending` registers the task for writability.
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Sends FIN once everything written is out.
    fn shutdown_write(&self);
}

/// The node's UDP socket.
pub trait UdpIo: Send + Sync + 'static {
    /// Receives one datagram; `Pending` registers the task for readability.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;
    /// Sends one datagram; `Pending` registers the task for writability.
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>>;
}

/// An async runtime: tasks, timers and sockets. Everything else (the node's tasks, what they
/// do with the core) is written once, in this crate, over this trait.
pub trait Runtime: Clone + Send + Sync + Sized + 'static {
    /// A TCP stream.
    type Tcp: TcpIo;
    /// A TCP listener.
    type Listener: Send + Sync + 'static;
    /// A UDP socket.
    type Udp: UdpIo;
    /// A timer that can be moved.
    type Timer: Future + Send + 'static;

    /// Runs a task in the background (from any thread: a handle may be used outside the
    /// runtime).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Opens a TCP connection (with `TCP_NODELAY`) and gives its peer's address.
    fn connect(
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send + 'static;
    /// Accepts a connection (with `TCP_NODELAY`).
    fn poll_accept(
        listener: &Self::Listener,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Tcp, SocketAddr)>>;
    /// A timer that fires at `at`.
    fn timer(at: Instant) -> Self::Timer;
    /// Moves a timer to `at`.
    fn reset(timer: Pin<&mut Self::Timer>, at: Instant);
}
