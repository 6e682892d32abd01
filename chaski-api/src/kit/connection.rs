//! A connection's task, the same on every runtime: the write half (as quinn's
//! `drive_transmit`: fill the write buffer from the core under the lock, flush it to the socket
//! without the lock, until the core has nothing, the socket takes nothing, or the budget is
//! spent), then the read half (one chunk from the socket, handed to the core by this task).

use std::sync::Arc;
use std::task::{Context, Poll};

use chaski_proto::ConnId;

use super::engine::{register, Engine, BUDGET, READ_BUF, WRITE_BUF};
use super::runtime::TcpIo;

/// Below this many waiting bytes, a connection's task lets others run once before writing,
/// so that a burst of small publishes leaves in one write.
const SMALL_WRITE: usize = 16 * 1024;
/// From this many waiting bytes on, a write goes straight from the core's buffer under the lock
/// (no copy): the copy would cost more than the publishers wait.
const DIRECT_WRITE: usize = 128 * 1024;

/// What one half of the task (writing, reading) leaves it to do.
enum Next {
    /// Go on: to the other half, then round again.
    Go,
    /// Let other tasks run, then come back at once.
    Yield,
    /// Sleep until woken (the socket or the node has something).
    Wait,
    /// The core closed the connection and everything is written: send FIN, end.
    Shutdown,
    /// The socket failed: the core is told, the task ends.
    Lost,
    /// Forgotten, or the node finished: end.
    End,
}

/// What the fill step put in the write buffer.
enum Fill {
    /// This many bytes, to flush.
    Copied(usize),
    /// Nothing to flush: written straight from the core's buffer (large), fill again.
    Written,
    /// Nothing to write now; the half ends with this.
    Stop(Next),
}

impl Engine {
    /// Drives one connection: writes what the core has for it as far as the socket takes
    /// it, and hands what arrives to the core. `Ready` when the connection is over (drop the
    /// socket then). Call again whenever the task is woken.
    pub fn poll_conn<T: TcpIo + ?Sized>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        conn: ConnId,
        io: &T,
    ) -> Poll<()> {
        let mut budget = BUDGET;
        loop {
            let next = match self.transmit(cx, conn, io, &mut budget) {
                Next::Go => self.receive(cx, conn, io, &mut budget),
                other => other,
            };
            match next {
                Next::Go => {}
                Next::Yield => {
                    // Others get a turn; this task comes back at once.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Next::Wait => return Poll::Pending,
                Next::Shutdown => {
                    io.shutdown_write();
                    return Poll::Ready(());
                }
                Next::Lost => {
                    self.lost(conn);
                    return Poll::Ready(());
                }
                Next::End => return Poll::Ready(()),
            }
        }
    }

    /// The write half: fill, then flush, while the core has bytes and the socket takes them.
    fn transmit<T: TcpIo + ?Sized>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        conn: ConnId,
        io: &T,
        budget: &mut usize,
    ) -> Next {
        WRITE_BUF.with_borrow_mut(|buf| {
            // What the last flush wrote, reported at the next fill (one lock for both).
            let mut written = 0;
            loop {
                if *budget == 0 {
                    self.fill(cx, conn, written, false, None, io);
                    return Next::Yield;
                }
                *budget -= 1;
                let n = match self.fill(cx, conn, written, false, Some(&mut buf[..]), io) {
                    Fill::Copied(n) => n,
                    Fill::Written => {
                        written = 0;
                        continue;
                    }
                    Fill::Stop(next) => return next,
                };
                written = match io.poll_write(cx, &buf[..n]) {
                    Poll::Ready(Ok(k)) if k > 0 => k,
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                    Poll::Ready(_) => return Next::Lost,
                    Poll::Pending => {
                        // The socket is full: the core starts the peer's stall clock, and the
                        // task is woken when the socket takes bytes again.
                        return match self.fill(cx, conn, 0, true, None, io) {
                            Fill::Stop(next) => next,
                            _ => Next::Go,
                        };
                    }
                };
            }
        })
    }

    /// The fill step, under the lock: reports the last flush (`written` bytes; `blocked` if
    /// the socket took nothing), then copies the next chunk into `buf` (when given).
    fn fill<T: TcpIo + ?Sized>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        conn: ConnId,
        written: usize,
        blocked: bool,
        buf: Option<&mut [u8]>,
        io: &T,
    ) -> Fill {
        self.turn(|s, now| {
            if written > 0 || blocked {
                s.core.advance(conn, written, now);
            }
            if s.finished {
                return Fill::Stop(Next::End);
            }
            let Some(slot) = s.slots.get_mut(&conn) else {
                return Fill::Stop(Next::End);
            };
            register(&mut slot.waker, cx);
            let Some(buf) = buf else {
                return Fill::Stop(Next::Go);
            };
            let waiting = s.core.outbound_len(conn);
            if waiting > 0 && waiting < SMALL_WRITE && !slot.deferred && !slot.closing {
                // Small: let the publishers of this moment add to it first.
                slot.deferred = true;
                return Fill::Stop(Next::Yield);
            }
            slot.deferred = false;
            let data = s.core.outbound(conn);
            if data.is_empty() {
                if slot.closing {
                    s.slots.remove(&conn);
                    return Fill::Stop(Next::Shutdown);
                }
                return Fill::Stop(Next::Go);
            }
            if data.len() >= DIRECT_WRITE {
                // Large: written straight from the core's buffer (no copy), under the lock.
                return match io.poll_write(cx, data) {
                    Poll::Ready(Ok(k)) if k > 0 => {
                        s.core.advance(conn, k, now);
                        Fill::Written
                    }
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                        Fill::Written
                    }
                    Poll::Ready(_) => Fill::Stop(Next::Lost),
                    Poll::Pending => {
                        s.core.advance(conn, 0, now);
                        Fill::Stop(Next::Go)
                    }
                };
            }
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            Fill::Copied(n)
        })
    }

    /// The read half: one chunk from the socket, decoded and delivered by this task (unless
    /// the application's queues are full: back-pressure).
    fn receive<T: TcpIo + ?Sized>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        conn: ConnId,
        io: &T,
        budget: &mut usize,
    ) -> Next {
        READ_BUF.with_borrow_mut(|buf| {
            {
                let s = self.lock();
                if s.read_paused(cx)
                    || !s.core.wants_read(conn)
                    || s.slots.get(&conn).is_none_or(|slot| slot.closing)
                {
                    return Next::Wait;
                }
            }
            match io.poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => Next::Lost,
                Poll::Ready(Ok(n)) => {
                    self.turn(|s, now| s.core.handle_bytes(conn, &buf[..n], now));
                    progress(budget)
                }
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    progress(budget)
                }
                Poll::Ready(Err(_)) => Next::Lost,
                Poll::Pending => Next::Wait,
            }
        })
    }
}

/// One more socket operation done: go on while the budget lasts, then let others run.
fn progress(budget: &mut usize) -> Next {
    if *budget > 0 {
        *budget -= 1;
        Next::Go
    } else {
        Next::Yield
    }
}
