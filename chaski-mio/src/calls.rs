//! Local service calls, run off the loop's thread on one worker that polls them all
//! concurrently (a hanging method holds no thread of its own).

use std::sync::Weak;

use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};

use chaski_api::block_on;
use chaski_api::kit::{Engine, Invocation};

type Job = (Weak<Engine>, Invocation);

/// Hands invocations to the worker thread, started at the first call. Dropping it ends the
/// worker (and any call still running: the node is gone).
#[derive(Default)]
pub(crate) struct Calls {
    tx: Option<async_channel::Sender<Job>>,
}

impl Calls {
    /// Runs `call`; its answer goes to the node (if it still exists).
    pub(crate) fn run(&mut self, node: Weak<Engine>, call: Invocation) {
        let tx = self.tx.get_or_insert_with(|| {
            let (tx, rx) = async_channel::unbounded();
            let spawned = std::thread::Builder::new()
                .name("chaski-mio-calls".into())
                .spawn(move || block_on(worker(rx)));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the service-call thread");
            }
            tx
        });
        // If the worker could not start, dropping the call answers nothing; the caller's
        // deadline ends it.
        let _ = tx.try_send((node, call));
    }
}

async fn worker(rx: async_channel::Receiver<Job>) {
    let mut running = FuturesUnordered::new();
    loop {
        let (node, call) = if running.is_empty() {
            match rx.recv().await {
                Ok(job) => job,
                Err(_) => return,
            }
        } else {
            match select(Box::pin(rx.recv()), running.next()).await {
                Either::Left((Ok(job), _)) => job,
                Either::Left((Err(_), _)) => return,
                Either::Right(_) => continue,
            }
        };
        let Invocation { peer, id, future } = call;
        running.push(async move {
            let result = future.await;
            if let Some(node) = node.upgrade() {
                node.respond(peer, id, result);
            }
        });
    }
}
