//! A node's tasks on an async runtime, written once over [`Runtime`]: one task per
//! connection (it reads and writes), one for accepting, one for UDP and one for timers.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use chaski_proto::{Config, ConnId, Node as Core};

use super::engine::{Engine, Launcher, TimerWait};
use super::hub::Invocation;
use super::runtime::{Runtime, TcpIo};

/// Timers sleep this much past their deadline, so deadlines close together (keep-alives of
/// many idle edges) are handled in one wake-up.
pub const TIMER_SLACK: Duration = Duration::from_millis(10);

/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Starts a node on runtime `R` over sockets bound at `local`: spawns its tasks, gives its
/// engine. Fails if the configuration is not valid.
pub fn spawn<R: Runtime>(
    rt: R,
    config: Config,
    local: SocketAddr,
    listener: R::Listener,
    udp: R::Udp,
) -> crate::Result<Arc<Engine>> {
    let core = Core::new(super::seeded(config, local), Some(local))?;
    let shared = Engine::new(core, Box::new(AsyncLauncher(rt.clone())));
    rt.spawn(accept(rt.clone(), shared.clone(), listener));
    rt.spawn(datagrams::<R>(shared.clone(), udp));
    rt.spawn(timers::<R>(shared.clone()));
    Ok(shared)
}

struct AsyncLauncher<R>(R);

impl<R: Runtime> Launcher for AsyncLauncher<R> {
    fn dial(&self, shared: &Arc<Engine>, conn: ConnId, addr: SocketAddr) {
        let shared = shared.clone();
        let deadline = Instant::now() + shared.info().config.handshake_timeout;
        self.0.spawn(async move {
            let result = race(R::connect(addr), R::timer(deadline))
                .await
                .unwrap_or_else(|| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))
                });
            match result {
                Ok((io, peer)) => {
                    if shared.dialed(conn, Ok(peer)) {
                        drive(shared, conn, io).await;
                    }
                }
                Err(e) => {
                    shared.dialed(conn, Err(e));
                }
            }
        });
    }

    fn call(&self, shared: &Arc<Engine>, call: Invocation) {
        let shared = shared.clone();
        self.0.spawn(async move {
            let Invocation { peer, id, future } = call;
            let result = future.await;
            shared.respond(peer, id, result);
        });
    }
}

/// Drives one connection until it is over; dropping `io` closes the socket.
async fn drive<T: TcpIo>(shared: Arc<Engine>, conn: ConnId, io: T) {
    poll_fn(|cx| shared.poll_conn(cx, conn, &io)).await;
}

async fn accept<R: Runtime>(rt: R, shared: Arc<Engine>, listener: R::Listener) {
    loop {
        let accepted = poll_fn(|cx| {
            if shared.listener_done(cx) {
                return Poll::Ready(None);
            }
            R::poll_accept(&listener, cx).map(Some)
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((io, peer))) => {
                if let Some(conn) = shared.accepted(peer) {
                    rt.spawn(drive(shared.clone(), conn, io));
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "accept failed");
                let _ = R::timer(Instant::now() + ACCEPT_RETRY).await;
            }
        }
    }
}

async fn datagrams<R: Runtime>(shared: Arc<Engine>, udp: R::Udp) {
    poll_fn(|cx| shared.poll_udp(cx, &udp)).await;
}

async fn timers<R: Runtime>(shared: Arc<Engine>) {
    let mut timer = pin!(R::timer(Instant::now() + Duration::from_secs(3600)));
    poll_fn(|cx| loop {
        match shared.poll_timers(cx) {
            TimerWait::Finished => return Poll::Ready(()),
            TimerWait::Next(None) => return Poll::Pending,
            TimerWait::Next(Some(at)) => {
                R::reset(timer.as_mut(), at + TIMER_SLACK);
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    })
    .await;
}

/// `a`'s output, or `None` if `b` finishes first.
async fn race<A: Future, B: Future>(a: A, b: B) -> Option<A::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Some(x));
        }
        if b.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
