//! Our calls: to one peer, or to a service by name. A call by name goes to the connected
//! server with the fewest calls of ours in flight (then the lowest latency), moves to another
//! server when its own is lost, busy or stops serving, and waits (within its deadline) while a
//! search finds one anywhere in the mesh: the search floods like a discovery, and every
//! server that hears it dials the caller.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::{Delivery, Node, Purpose, TimerKey};
use crate::error::CommandError;
use crate::id::{NodeId, RequestId};
use crate::message::RemoteError;
use crate::message::{CallKind, Message, ServiceSearch};
use crate::text::Escaped;

/// How many servers one call by name may try before it gives the last error back.
const MAX_TRIES: usize = 8;

/// One of our calls.
#[derive(Debug)]
pub(super) struct Call {
    /// The peer it was sent to; `None` while it waits for a server.
    peer: Option<NodeId>,
    deadline: Instant,
    /// For a call by service name: what it takes to send it to another server.
    route: Option<Box<Route>>,
}

#[derive(Debug)]
struct Route {
    service: String,
    path: String,
    kind: CallKind,
    args: Bytes,
    /// Servers that were lost, busy or no longer serving while they had it.
    tried: Vec<NodeId>,
}

/// A remote call to make: which method (or attribute) of which service, with what arguments
/// (a CBOR value: see PROTOCOL §8).
///
/// ```
/// use bytes::Bytes;
/// use chaski_proto::{CallKind, RemoteCall};
/// let add = RemoteCall { service: "math", path: "add", kind: CallKind::Call, args: Bytes::from_static(&[0x82, 2, 3]) };
/// assert_eq!(add.path, "add");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCall<'a> {
    /// The service's name.
    pub service: &'a str,
    /// The dotted path of a method or attribute in it (`""` for an attached function).
    pub path: &'a str,
    /// A call, or an attribute read.
    pub kind: CallKind,
    /// The arguments, CBOR-encoded (`null` for none).
    pub args: Bytes,
}

/// Bytes a request's frame adds to its arguments, service and path, at most (its id,
/// kind, deadline and field names).
pub(super) const REQUEST_OVERHEAD: usize = 128;

impl Node {
    /// The connected peers that offer `service`, in edge order.
    pub fn servers(&self, service: &str) -> Vec<NodeId> {
        self.edge_order
            .iter()
            .copied()
            .filter(|p| self.edges[p].services.contains(service))
            .collect()
    }

    /// The connected server of `service` a call by name goes to now: the one with the fewest
    /// of our calls in flight, then the lowest latency, then the oldest edge.
    pub fn find_service(&self, service: &str) -> Option<NodeId> {
        self.best_server(service, &[])
    }

    fn best_server(&self, service: &str, skip: &[NodeId]) -> Option<NodeId> {
        self.edge_order
            .iter()
            .enumerate()
            .filter(|(_, p)| self.edges[*p].services.contains(service) && !skip.contains(p))
            .min_by_key(|(order, p)| {
                let latency = self.edges[*p].rtt.latency().unwrap_or(Duration::MAX);
                (self.in_flight(**p), latency, *order)
            })
            .map(|(_, p)| *p)
    }

    /// Our calls waiting for an answer from `peer`.
    pub fn calls_in_flight(&self, peer: NodeId) -> usize {
        self.in_flight(peer)
    }

    fn in_flight(&self, peer: NodeId) -> usize {
        self.calls.values().filter(|c| c.peer == Some(peer)).count()
    }

    fn check_call(&self, service: &str, path: &str, args: &Bytes) -> Result<(), CommandError> {
        self.check_live()?;
        self.check_name("service", service)?;
        if path.len() > self.cfg.max_name_len {
            return Err(CommandError::TooLong {
                what: "path",
                len: path.len(),
                max: self.cfg.max_name_len,
            });
        }
        // The request's frame holds the names beside the arguments.
        let room = self
            .cfg
            .max_frame_len
            .saturating_sub(REQUEST_OVERHEAD + service.len() + path.len());
        if args.len() > room {
            return Err(CommandError::PayloadTooLarge {
                len: args.len(),
                max: room,
            });
        }
        if self.calls.len() >= self.cfg.max_pending_calls {
            return Err(CommandError::Limit("max_pending_calls"));
        }
        Ok(())
    }

    fn new_call(&mut self, call: Call) -> u64 {
        self.next_request += 1;
        let id = self.next_request;
        self.timers.set(TimerKey::Call(id), call.deadline);
        self.calls.insert(id, call);
        id
    }

    /// Calls `what` on `peer`. The answer arrives as [`Delivery::Response`] with the returned
    /// id, at the latest after `timeout` (default `rpc_timeout`) as [`RemoteError::Timeout`].
    pub fn call(
        &mut self,
        peer: NodeId,
        what: RemoteCall<'_>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RequestId, CommandError> {
        self.check_call(what.service, what.path, &what.args)?;
        if !self.edges.contains_key(&peer) {
            return Err(CommandError::NotConnected);
        }
        let deadline = now + timeout.unwrap_or(self.cfg.rpc_timeout);
        let id = self.new_call(Call {
            peer: Some(peer),
            deadline,
            route: None,
        });
        self.send_request(peer, id, what, deadline, now);
        Ok(RequestId(id))
    }

    /// Calls `path` of `service` on whichever server of it suits best (see
    /// [`Node::find_service`]), wherever it is in the mesh. With no server connected the call
    /// waits while a search ([`Node::seek_service`]) finds one; a server lost, busy or no
    /// longer serving while it has the call passes it to another (a lost one may have run it:
    /// calls that must not run twice should be idempotent). The answer arrives as
    /// [`Delivery::Response`], at the latest at the deadline; [`RemoteError::NotFound`] if no
    /// server was found.
    pub fn call_service(
        &mut self,
        what: RemoteCall<'_>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RequestId, CommandError> {
        self.check_call(what.service, what.path, &what.args)?;
        if self.find_service(what.service).is_none() {
            self.start_search(what.service, now)?;
        }
        let id = self.new_call(Call {
            peer: None,
            deadline: now + timeout.unwrap_or(self.cfg.rpc_timeout),
            route: Some(Box::new(Route {
                service: what.service.to_string(),
                path: what.path.to_string(),
                kind: what.kind,
                args: what.args,
                tried: Vec::new(),
            })),
        });
        self.dispatch(id, now);
        Ok(RequestId(id))
    }

    /// Sends a waiting call by name to the best server it has not tried; `false` if none is
    /// connected.
    fn dispatch(&mut self, id: u64, now: Instant) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(route) = call.route.as_deref() else {
            return false;
        };
        let Some(peer) = self.best_server(&route.service, &route.tried) else {
            return false;
        };
        let deadline = call.deadline;
        let (service, path, kind, args) = (
            route.service.clone(),
            route.path.clone(),
            route.kind,
            route.args.clone(),
        );
        if let Some(c) = self.calls.get_mut(&id) {
            c.peer = Some(peer);
        }
        debug!(service = %Escaped(&service), %peer, id, "call sent to a server");
        let what = RemoteCall {
            service: &service,
            path: &path,
            kind,
            args,
        };
        self.send_request(peer, id, what, deadline, now);
        true
    }

    /// Sends request `id` for `what` to `peer`, telling it how long the caller waits.
    fn send_request(
        &mut self,
        peer: NodeId,
        id: u64,
        what: RemoteCall<'_>,
        deadline: Instant,
        now: Instant,
    ) {
        let left = deadline.saturating_duration_since(now);
        self.counters.calls += 1;
        self.send_to_peer(
            peer,
            &Message::Request {
                id,
                service: what.service.to_string(),
                path: what.path.to_string(),
                kind: what.kind,
                args: what.args,
                timeout_ms: Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            },
            now,
        );
        self.enforce_budget(now);
    }

    /// Forgets a call whose caller gave up; a late answer is ignored, and the server is told
    /// (it may stop working on it). Returns whether it was still pending.
    pub fn cancel_call(&mut self, id: RequestId, now: Instant) -> bool {
        self.timers.cancel(&TimerKey::Call(id.0));
        let Some(call) = self.calls.remove(&id.0) else {
            return false;
        };
        if let Some(peer) = call.peer {
            self.send_to_peer(peer, &Message::Cancel { id: id.0 }, now);
        }
        true
    }

    fn finish_call(&mut self, id: u64, result: Result<Bytes, RemoteError>) {
        self.calls.remove(&id);
        self.timers.cancel(&TimerKey::Call(id));
        if result.is_err() {
            self.counters.call_errors += 1;
        }
        self.push_delivery(Delivery::Response {
            id: RequestId(id),
            result,
        });
    }

    pub(super) fn on_response(
        &mut self,
        peer: NodeId,
        id: u64,
        result: Result<Bytes, RemoteError>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id).filter(|c| c.peer == Some(peer)) else {
            return debug!(%peer, id, "ignoring a response to no pending call");
        };
        // Busy, or not serving it any more: another server may take it.
        let refused = matches!(result, Err(RemoteError::Busy | RemoteError::NotFound(_)));
        let retry = match call.route.as_deref_mut() {
            Some(r) if refused && r.tried.len() < MAX_TRIES => {
                r.tried.push(peer);
                true
            }
            _ => false,
        };
        if retry {
            call.peer = None;
            if self.dispatch(id, now) {
                return;
            }
        }
        self.finish_call(id, result);
    }

    /// The edge to `peer` is gone: its calls by name move to another server (or wait for one
    /// within their deadline), the others fail as [`RemoteError::Disconnected`].
    pub(super) fn fail_calls_to(&mut self, peer: NodeId, now: Instant) {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let movable = !self.shut_down
                && call.deadline > now
                && call
                    .route
                    .as_deref()
                    .is_some_and(|r| r.tried.len() < MAX_TRIES);
            if !movable {
                self.finish_call(id, Err(RemoteError::Disconnected));
                continue;
            }
            call.peer = None;
            let service = match call.route.as_deref_mut() {
                Some(r) => {
                    r.tried.push(peer);
                    r.service.clone()
                }
                None => continue,
            };
            if self.dispatch(id, now) {
                continue;
            }
            debug!(service = %Escaped(&service), id, "server lost: the call waits for another");
            if self.start_search(&service, now).is_err() {
                self.finish_call(id, Err(RemoteError::Disconnected));
            }
        }
    }

    pub(super) fn call_timeout(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.deadline > now {
            let at = call.deadline;
            return self.timers.set(TimerKey::Call(id), at);
        }
        // The server's work is wasted now: tell it.
        if let Some(peer) = call.peer {
            self.send_to_peer(peer, &Message::Cancel { id }, now);
        }
        self.finish_call(id, Err(RemoteError::Timeout));
    }

    /// Fails every call (the node shuts down).
    pub(super) fn fail_all_calls(&mut self) {
        for id in std::mem::take(&mut self.calls).into_keys() {
            self.counters.call_errors += 1;
            self.push_delivery(Delivery::Response {
                id: RequestId(id),
                result: Err(RemoteError::Disconnected),
            });
        }
        for service in std::mem::take(&mut self.searches).into_keys() {
            self.push_delivery(Delivery::ServiceFound {
                service,
                peer: None,
            });
        }
    }

    // ----- finding servers -------------------------------------------------------------------

    /// Looks for a server of `service`: `Some` if one is connected now; otherwise a search
    /// floods the mesh (every server that hears it dials this node) and
    /// [`Delivery::ServiceFound`] tells when one is connected, or that none answered within
    /// `discovery_timeout`.
    pub fn seek_service(
        &mut self,
        service: &str,
        now: Instant,
    ) -> Result<Option<NodeId>, CommandError> {
        self.check_live()?;
        self.check_name("service", service)?;
        if let Some(p) = self.find_service(service) {
            return Ok(Some(p));
        }
        self.start_search(service, now)?;
        Ok(None)
    }

    /// Floods a search for `service` unless one is under way.
    fn start_search(&mut self, service: &str, now: Instant) -> Result<(), CommandError> {
        if self.searches.contains_key(service) {
            return Ok(());
        }
        if self.edges.is_empty() {
            return Err(CommandError::NoEdges);
        }
        let Some(origin_addr) = self.listen_addr() else {
            return Err(CommandError::Limit(
                "finding a service needs a listening address",
            ));
        };
        if self.searches.len() >= self.cfg.max_peer_services {
            return Err(CommandError::Limit("max_peer_services"));
        }
        self.next_discovery += 1;
        let id = self.next_discovery;
        self.seen_discoveries.insert((self.id, id));
        let deadline = now + self.cfg.discovery_timeout;
        self.searches.insert(service.to_string(), deadline);
        self.timers
            .set(TimerKey::ServiceSearch(service.to_string()), deadline);
        debug!(service = %Escaped(service), id, "looking for a server");
        let msg = Message::FindService(ServiceSearch {
            id,
            origin: self.id,
            origin_addr,
            service: service.to_string(),
            ttl: self.cfg.ttl,
        });
        for peer in self.edge_order.clone() {
            self.send_to_peer(peer, &msg, now);
        }
        Ok(())
    }

    pub(super) fn on_find_service(&mut self, from: NodeId, mut s: ServiceSearch, now: Instant) {
        if s.origin == self.id || self.shut_down || !self.seen_discoveries.insert((s.origin, s.id))
        {
            return;
        }
        if s.service.is_empty() || s.service.len() > self.cfg.max_name_len {
            return;
        }
        if s.origin == from {
            if let Some(e) = self.edges.get(&from) {
                s.origin_addr = super::handshake::reachable(s.origin_addr, e.addr);
            }
        }
        let dialing = self
            .conns
            .values()
            .any(|c| matches!(c.purpose, Some(Purpose::Offer(o)) if o == s.origin));
        if self.services.contains(&s.service)
            && !self.edges.contains_key(&s.origin)
            && !dialing
            && self.conns.len() < self.cfg.max_edges
            && self.may_dial(s.origin_addr, now)
        {
            debug!(service = %Escaped(&s.service), origin = %s.origin, "dialing a service seeker");
            self.dial(s.origin_addr, Purpose::Offer(s.origin), now);
        }
        // Passed on either way: the seeker spreads its calls over every server it finds.
        if s.ttl <= 1 {
            return;
        }
        s.ttl -= 1;
        let origin = s.origin;
        let msg = Message::FindService(s);
        for peer in self.edge_order.clone() {
            if peer != from && peer != origin {
                self.send_to_peer(peer, &msg, now);
            }
        }
    }

    /// `peer` connected or changed its services: searches it ends and calls waiting for it
    /// go on.
    pub(super) fn servers_changed(&mut self, peer: NodeId, now: Instant) {
        let Some(offered) = self.edges.get(&peer).map(|e| e.services.clone()) else {
            return;
        };
        let found: Vec<String> = self
            .searches
            .keys()
            .filter(|s| offered.contains(*s))
            .cloned()
            .collect();
        for service in found {
            self.searches.remove(&service);
            self.timers
                .cancel(&TimerKey::ServiceSearch(service.clone()));
            debug!(service = %Escaped(&service), %peer, "found a server");
            self.push_delivery(Delivery::ServiceFound {
                service,
                peer: Some(peer),
            });
        }
        let waiting: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.peer.is_none()
                    && c.route
                        .as_deref()
                        .is_some_and(|r| offered.contains(&r.service))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.dispatch(id, now);
        }
    }

    pub(super) fn search_timeout(&mut self, service: &str, now: Instant) {
        let Some(deadline) = self.searches.get(service) else {
            return;
        };
        if *deadline > now {
            let at = *deadline;
            return self
                .timers
                .set(TimerKey::ServiceSearch(service.to_string()), at);
        }
        self.searches.remove(service);
        debug!(service = %Escaped(service), "no server answered");
        self.push_delivery(Delivery::ServiceFound {
            service: service.to_string(),
            peer: None,
        });
        // A call whose server was lost says so; one that never found any, that none exists.
        let waiting: Vec<(u64, bool)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| match c.route.as_deref() {
                Some(r) if c.peer.is_none() && r.service == service => {
                    Some((*id, r.tried.is_empty()))
                }
                _ => None,
            })
            .collect();
        for (id, never_sent) in waiting {
            let error = if never_sent {
                RemoteError::NotFound(service.to_string())
            } else {
                RemoteError::Disconnected
            };
            self.finish_call(id, Err(error));
        }
    }

    /// The caller of one of our requests cancelled it.
    pub(super) fn on_cancel(&mut self, peer: NodeId, id: u64) {
        if !self.inbound.remove(&(peer, id)) {
            return;
        }
        if let Some(e) = self.edges.get_mut(&peer) {
            e.inbound_requests = e.inbound_requests.saturating_sub(1);
        }
        self.push_delivery(Delivery::Cancelled { peer, id });
    }
}
