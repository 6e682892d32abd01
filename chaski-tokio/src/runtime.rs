//! tokio as a [`Runtime`]: what differs between runtimes, and nothing else.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use chaski_api::kit::{retry_until_ready, Runtime, TcpIo, UdpIo};
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The tokio runtime the node was bound on.
#[derive(Clone)]
pub(crate) struct Tokio(pub(crate) tokio::runtime::Handle);

/// A TCP stream, read and written by one task.
pub(crate) struct Tcp(TcpStream);

impl TcpIo for Tcp {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        retry_until_ready(cx, || self.0.try_read(buf), |cx| self.0.poll_read_ready(cx))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        retry_until_ready(
            cx,
            || self.0.try_write(buf),
            |cx| self.0.poll_write_ready(cx),
        )
    }

    fn shutdown_write(&self) {
        // Everything was written with `try_write`: nothing is buffered above the socket.
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Write);
    }
}

/// The node's UDP socket.
pub(crate) struct Udp(pub(crate) UdpSocket);

impl UdpIo for Udp {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut b = ReadBuf::new(buf);
        let from = ready!(self.0.poll_recv_from(cx, &mut b))?;
        Poll::Ready(Ok((b.filled().len(), from)))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, buf, to)
    }
}

impl Runtime for Tokio {
    type Tcp = Tcp;
    type Listener = TcpListener;
    type Udp = Udp;
    type Timer = tokio::time::Sleep;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(task);
    }

    async fn connect(addr: SocketAddr) -> io::Result<(Tcp, SocketAddr)> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let peer = s.peer_addr()?;
        Ok((Tcp(s), peer))
    }

    fn poll_accept(
        listener: &TcpListener,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Tcp, SocketAddr)>> {
        let (s, peer) = ready!(listener.poll_accept(cx))?;
        let _ = s.set_nodelay(true);
        Poll::Ready(Ok((Tcp(s), peer)))
    }

    fn timer(at: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(at.into())
    }

    fn reset(timer: Pin<&mut tokio::time::Sleep>, at: Instant) {
        if timer.deadline() != at.into() {
            timer.reset(at.into());
        }
    }
}
