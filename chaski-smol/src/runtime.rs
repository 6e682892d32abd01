//! smol (async-io) as a [`Runtime`]: what differs between runtimes, and nothing else.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use chaski_api::kit::{retry_until_ready, Runtime, TcpIo, UdpIo};
use smol::{Async, Timer};

/// smol's global executor.
#[derive(Clone)]
pub(crate) struct Smol;

/// A TCP stream, read and written by one task.
pub(crate) struct Tcp(Async<TcpStream>);

impl TcpIo for Tcp {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        retry_until_ready(
            cx,
            || self.0.get_ref().read(buf),
            |cx| self.0.poll_readable(cx),
        )
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        retry_until_ready(
            cx,
            || self.0.get_ref().write(buf),
            |cx| self.0.poll_writable(cx),
        )
    }

    fn shutdown_write(&self) {
        let _ = self.0.get_ref().shutdown(Shutdown::Write);
    }
}

/// The node's UDP socket.
pub(crate) struct Udp(pub(crate) Async<UdpSocket>);

impl UdpIo for Udp {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        retry_until_ready(
            cx,
            || self.0.get_ref().recv_from(buf),
            |cx| self.0.poll_readable(cx),
        )
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        retry_until_ready(
            cx,
            || self.0.get_ref().send_to(buf, to),
            |cx| self.0.poll_writable(cx),
        )
    }
}

impl Runtime for Smol {
    type Tcp = Tcp;
    type Listener = Async<TcpListener>;
    type Udp = Udp;
    type Timer = Timer;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    async fn connect(addr: SocketAddr) -> io::Result<(Tcp, SocketAddr)> {
        let s = Async::<TcpStream>::connect(addr).await?;
        s.get_ref().set_nodelay(true)?;
        let peer = s.get_ref().peer_addr()?;
        Ok((Tcp(s), peer))
    }

    fn poll_accept(
        listener: &Async<TcpListener>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Tcp, SocketAddr)>> {
        let (s, peer) = ready!(retry_until_ready(
            cx,
            || listener.get_ref().accept(),
            |cx| listener.poll_readable(cx)
        ))?;
        let _ = s.set_nodelay(true);
        Poll::Ready(Async::new(s).map(|s| (Tcp(s), peer)))
    }

    fn timer(at: Instant) -> Timer {
        Timer::at(at)
    }

    fn reset(mut timer: Pin<&mut Timer>, at: Instant) {
        timer.set_at(at);
    }
}
