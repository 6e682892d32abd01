//! Remote calls to one service ([`Handle::proxy`](crate::Handle::proxy),
//! [`Handle::proxy_on`](crate::Handle::proxy_on)): spread over its servers, failed over,
//! cancelled when the caller gives up.

use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use chaski_proto::{CallKind, NodeId, RemoteCall};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kit::{Engine, Keepalive};
use crate::service::{decode, encode};

/// Remote calls to one service, spread over the servers of it this node is connected to (see
/// [`Handle::proxy`](crate::Handle::proxy)). Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    engine: Arc<Engine>,
    /// A proxy keeps its node running, as a handle does.
    _keepalive: Arc<Keepalive>,
    service: String,
    /// Set for [`Handle::proxy_on`](crate::Handle::proxy_on): the one peer called.
    peer: Option<NodeId>,
    timeout: Duration,
}

/// Cancels a call whose future is dropped before its answer.
struct Abandon<'a> {
    engine: &'a Arc<Engine>,
    id: chaski_proto::RequestId,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            let id = self.id;
            self.engine.outside_turn(|s, now| {
                s.hub.abandon_call(&mut s.core, id, now);
            });
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("service", &self.service)
            .field("peer", &self.peer)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Proxy {
    /// A proxy of the node `engine` runs to `service` (on `peer` only, if given), calls
    /// waiting `timeout`.
    pub(super) fn new(
        engine: &Arc<Engine>,
        service: &str,
        peer: Option<NodeId>,
        timeout: Duration,
    ) -> Proxy {
        Proxy {
            engine: engine.clone(),
            _keepalive: engine.keepalive(),
            service: service.to_string(),
            peer,
            timeout,
        }
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The connected servers of the service, in the order their edges were established (for
    /// [`Handle::proxy_on`](crate::Handle::proxy_on): its peer, while connected).
    pub async fn servers(&self) -> Vec<NodeId> {
        self.engine.turn(|s, _| match self.peer {
            Some(p) => s.core.is_connected_to(p).then_some(p).into_iter().collect(),
            None => s.core.servers(&self.service),
        })
    }

    /// The same proxy with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn raw(&self, path: &str, kind: CallKind, args: Bytes) -> Result<Bytes> {
        let timeout = Some(self.timeout);
        let (tx, rx) = oneshot::channel();
        let id = self.engine.turn(|s, now| {
            let what = RemoteCall {
                service: &self.service,
                path,
                kind,
                args,
            };
            let id = match self.peer {
                Some(peer) => s.core.call(peer, what, timeout, now),
                None => s.core.call_service(what, timeout, now),
            }
            .map_err(|e| match e {
                chaski_proto::CommandError::NoEdges => Error::NoService(self.service.clone()),
                e => e.into(),
            })?;
            s.hub.wait_call(id, tx);
            Ok::<_, Error>(id)
        })?;
        // Dropping this future cancels the call at once: the server is told then, not at the
        // node's next turn.
        let mut guard = Abandon {
            engine: &self.engine,
            id,
            armed: true,
        };
        let answer = rx.await;
        guard.armed = false;
        answer.map_err(|_| Error::ShutDown)?
    }

    /// Calls the method at `path` (dotted for nested services) with serde-typed arguments
    /// (a tuple for several, `()` for none).
    pub async fn call<A: Serialize, R: DeserializeOwned>(&self, path: &str, args: &A) -> Result<R> {
        let out = self.raw(path, CallKind::Call, encode(args)?).await?;
        decode(&out)
    }

    /// Reads the attribute at `path`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R> {
        // No arguments: CBOR null, as PROTOCOL §3 says (an empty byte string is no value).
        let out = self
            .raw(path, CallKind::Get, Bytes::from_static(&[0xf6]))
            .await?;
        decode(&out)
    }
}
