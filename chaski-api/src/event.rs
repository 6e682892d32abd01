//! The lifecycle events a node reports to the application ([`Handle::events`](crate::Handle::events)):
//! only those; messages, requests and the answers to calls, pings and status queries reach the
//! application through their own streams and futures.

use std::net::SocketAddr;
use std::time::Duration;

use chaski_proto::{ConnId, ConnectError, DisconnectReason, EdgeInfo, NodeId};

/// Something that happened to the node's edges, pairing or latency.
///
/// ```no_run
/// # async fn f(node: chaski_api::Handle) {
/// use chaski_api::Event;
/// use futures_util::StreamExt;
/// let mut events = node.events();
/// while let Some(ev) = events.next().await {
///     if let Event::PeerLost { name, reason, .. } = ev {
///         println!("lost {name}: {reason}");
///     }
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// An edge exists: both Hellos have crossed.
    PeerConnected {
        /// The connection it runs on.
        conn: ConnId,
        /// A snapshot of the edge.
        info: Box<EdgeInfo>,
        /// Whether this restores an edge lost earlier.
        reconnected: bool,
    },
    /// A `connect` (or a redial) did not give an edge.
    ConnectFailed {
        /// The connection id of the attempt.
        conn: ConnId,
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        error: ConnectError,
    },
    /// An edge ended.
    PeerLost {
        /// The peer.
        peer: NodeId,
        /// Its name.
        name: String,
        /// Why.
        reason: DisconnectReason,
        /// Whether the peer said goodbye (`reason` is then the peer's).
        by_peer: bool,
        /// Whether the node will redial it.
        reconnecting: bool,
    },
    /// Redialing a lost peer stopped after this many attempts.
    ReconnectGaveUp {
        /// The peer.
        peer: NodeId,
        /// Attempts made.
        attempts: u32,
    },
    /// A peer's topics or services changed.
    PeerUpdated {
        /// The peer.
        peer: NodeId,
    },
    /// This node now belongs to the topic's cluster.
    Paired {
        /// Topic.
        topic: String,
        /// The peer paired with, or `None` when the node became the topic's anchor.
        with: Option<NodeId>,
    },
    /// A pong arrived.
    Latency {
        /// The peer.
        peer: NodeId,
        /// This round trip.
        rtt: Duration,
        /// Half the smoothed RTT.
        latency: Duration,
        /// RTT variance.
        jitter: Duration,
    },
    /// A peer sent a message of a kind this node does not know (a newer protocol version):
    /// skipped, and the connection goes on.
    UnknownMessage {
        /// The peer.
        peer: NodeId,
        /// The message's kind, as its encoding names it.
        kind: String,
    },
    /// A connection was closed because of bad input from the peer.
    BadPeer {
        /// The connection.
        conn: ConnId,
        /// The peer, if the Hello had arrived.
        peer: Option<NodeId>,
        /// The reason sent in the goodbye.
        reason: DisconnectReason,
    },
}

impl Event {
    /// The application's view of a core event: `None` for those that go elsewhere (messages,
    /// requests, responses, status replies, cancels, service searches).
    pub fn from_core(ev: chaski_proto::Event) -> Option<Event> {
        use chaski_proto::Event as E;
        Some(match ev {
            E::PeerConnected {
                conn,
                info,
                reconnected,
            } => Event::PeerConnected {
                conn,
                info,
                reconnected,
            },
            E::ConnectFailed { conn, addr, error } => Event::ConnectFailed { conn, addr, error },
            E::PeerLost {
                peer,
                name,
                reason,
                by_peer,
                reconnecting,
            } => Event::PeerLost {
                peer,
                name,
                reason,
                by_peer,
                reconnecting,
            },
            E::ReconnectGaveUp { peer, attempts } => Event::ReconnectGaveUp { peer, attempts },
            E::PeerUpdated { peer } => Event::PeerUpdated { peer },
            E::Paired { topic, with } => Event::Paired { topic, with },
            E::Latency {
                peer,
                rtt,
                latency,
                jitter,
                ..
            } => Event::Latency {
                peer,
                rtt,
                latency,
                jitter,
            },
            E::BadPeer { conn, peer, reason } => Event::BadPeer { conn, peer, reason },
            E::UnknownMessage { peer, kind } => Event::UnknownMessage { peer, kind },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaski_proto::{Event as E, RemoteError, RequestId};

    /// Lifecycle events reach the application; what has its own stream or future does not.
    #[test]
    fn only_lifecycle_events_reach_the_application() {
        let peer = NodeId(3);
        assert!(matches!(
            Event::from_core(E::PeerUpdated { peer }),
            Some(Event::PeerUpdated { peer: p }) if p == peer
        ));
        assert!(matches!(
            Event::from_core(E::Paired {
                topic: "t".into(),
                with: None
            }),
            Some(Event::Paired { .. })
        ));
        let internal = [
            E::Response {
                id: RequestId(1),
                result: Err(RemoteError::Timeout),
            },
            E::Cancelled { peer, id: 1 },
            E::ServiceFound {
                service: "s".into(),
                peer: None,
            },
            E::Status {
                token: 1,
                addr: ([127, 0, 0, 1], 1).into(),
                status: None,
            },
        ];
        for ev in internal {
            assert!(Event::from_core(ev).is_none());
        }
    }
}
