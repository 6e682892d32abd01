//! Local service calls, run off the loop's thread on one worker that polls them all
//! concurrently (a hanging method holds no thread of its own).

use std::sync::Arc;

use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use mio::Waker;

use chaski_api::{block_on, Command, Invocation};

/// Hands invocations to the worker thread, started at the first call. Dropping it ends the
/// worker (and any call still running: the node is gone).
pub(crate) struct Calls {
    tx: Option<async_channel::Sender<Invocation>>,
    responder: async_channel::Sender<Command>,
    waker: Arc<Waker>,
}

impl Calls {
    pub(crate) fn new(responder: async_channel::Sender<Command>, waker: Arc<Waker>) -> Calls {
        Calls {
            tx: None,
            responder,
            waker,
        }
    }

    /// Runs `call`; its answer comes back as a `Command::Respond` and a wake-up.
    pub(crate) fn run(&mut self, call: Invocation) {
        let tx = self.tx.get_or_insert_with(|| {
            let (tx, rx) = async_channel::unbounded();
            let (responder, waker) = (self.responder.clone(), self.waker.clone());
            let spawned = std::thread::Builder::new()
                .name("chaski-mio-calls".into())
                .spawn(move || block_on(worker(rx, responder, waker)));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the service-call thread");
            }
            tx
        });
        // If the worker could not start, dropping the call answers nothing; the caller's
        // deadline ends it.
        let _ = tx.try_send(call);
    }
}

async fn worker(
    rx: async_channel::Receiver<Invocation>,
    responder: async_channel::Sender<Command>,
    waker: Arc<Waker>,
) {
    let mut running = FuturesUnordered::new();
    loop {
        let call = if running.is_empty() {
            match rx.recv().await {
                Ok(call) => call,
                Err(_) => return,
            }
        } else {
            match select(Box::pin(rx.recv()), running.next()).await {
                Either::Left((Ok(call), _)) => call,
                Either::Left((Err(_), _)) => return,
                Either::Right((Some((peer, id, result)), _)) => {
                    let _ = responder.send(Command::Respond(peer, id, result)).await;
                    let _ = waker.wake();
                    continue;
                }
                Either::Right((None, _)) => continue,
            }
        };
        let Invocation { peer, id, future } = call;
        running.push(async move { (peer, id, future.await) });
    }
}
