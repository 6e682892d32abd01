//! Remote services (requests, responses, deadlines, typed errors) and the UDP side (status
//! queries and best-effort publishes).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::{Delivery, Node, Output, Received, TimerKey, TopicState};
use crate::codec::{decode_value, encode_value};
use crate::error::CommandError;
use crate::id::{ConnId, NodeId};
use crate::message::RemoteError;
use crate::message::{CallKind, Datagram, DisconnectReason, Message, Status};

/// The longest deadline a caller may give a request (a day).
const MAX_DEADLINE_MS: u64 = 24 * 3600 * 1000;

/// A request as a peer sent it (the fields of [`Message::Request`]).
pub(super) struct IncomingRequest {
    pub(super) id: u64,
    pub(super) service: String,
    pub(super) path: String,
    pub(super) kind: CallKind,
    pub(super) args: Bytes,
    pub(super) timeout_ms: Option<u64>,
}

impl Node {
    /// Offers a service by name to every neighbour (announced at once).
    pub fn serve(&mut self, name: &str, now: Instant) -> Result<(), CommandError> {
        self.check_live()?;
        self.check_name("service", name)?;
        if name.starts_with('@') {
            return Err(CommandError::Reserved("@"));
        }
        if self.services.len() >= self.cfg.max_peer_services && !self.services.contains(name) {
            return Err(CommandError::Limit("max_peer_services"));
        }
        if self.services.insert(name.to_string()) {
            self.announce_services(now);
        }
        Ok(())
    }

    /// Withdraws a service (announced at once).
    pub fn unserve(&mut self, name: &str, now: Instant) -> Result<(), CommandError> {
        self.check_live()?;
        if self.services.remove(name) {
            self.announce_services(now);
        }
        Ok(())
    }

    /// Answers a [`Delivery::Request`]. Answering a request twice, or one whose peer has gone, is an
    /// error.
    pub fn respond(
        &mut self,
        peer: NodeId,
        id: u64,
        result: Result<Bytes, RemoteError>,
        now: Instant,
    ) -> Result<(), CommandError> {
        if !self.inbound.remove(&(peer, id)) {
            return Err(CommandError::UnknownRequest);
        }
        let Some(e) = self.edges.get_mut(&peer) else {
            return Err(CommandError::NotConnected);
        };
        e.inbound_requests = e.inbound_requests.saturating_sub(1);
        let room = self.cfg.max_frame_len.saturating_sub(512);
        let result = match result {
            Ok(b) if b.len() > room => Err(RemoteError::Failed(format!(
                "result of {} bytes exceeds the frame limit",
                b.len()
            ))),
            // An error's text (the application's) is cut to fit the frame too.
            Err(e) => Err(cut_error(e, room)),
            r => r,
        };
        self.send_to_peer(peer, &Message::Response { id, result }, now);
        self.enforce_budget(now);
        Ok(())
    }

    pub(super) fn on_request(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        request: IncomingRequest,
        now: Instant,
    ) {
        let IncomingRequest {
            id,
            service,
            path,
            kind,
            args,
            timeout_ms,
        } = request;
        // Answer on the edge's current connection (this one may be a superseded duplicate).
        let reply =
            |me: &mut Self, result| me.send_to_peer(peer, &Message::Response { id, result }, now);
        if service == super::NODE_SERVICE && self.cfg.introspect {
            let result = self.introspect(&path, kind);
            return reply(self, result);
        }
        if !self.services.contains(&service) {
            return reply(self, Err(RemoteError::NotFound(service)));
        }
        let busy = self
            .edges
            .get(&peer)
            .is_some_and(|e| e.inbound_requests >= self.cfg.max_inbound_requests);
        if busy {
            return reply(self, Err(RemoteError::Busy));
        }
        if !self.inbound.insert((peer, id)) {
            return self.bad_peer(
                conn,
                DisconnectReason::ProtocolError(format!("request id {id} reused while pending")),
                now,
            );
        }
        if let Some(e) = self.edges.get_mut(&peer) {
            e.inbound_requests += 1;
        }
        self.counters.requests += 1;
        self.push_delivery(Delivery::Request {
            peer,
            id,
            service,
            path,
            kind,
            args,
            // A peer's timeout is capped at a day (an absurd one is no deadline at all).
            deadline: timeout_ms.map(|ms| now + Duration::from_millis(ms.min(MAX_DEADLINE_MS))),
        });
    }

    pub(super) fn status_timeout(&mut self, token: u64, now: Instant) {
        let Some((addr, deadline, _)) = self.status_queries.get(&token) else {
            return;
        };
        if *deadline > now {
            let at = *deadline;
            return self.timers.set(TimerKey::Status(token), at);
        }
        let addr = *addr;
        self.status_queries.remove(&token);
        self.push_delivery(Delivery::Status {
            token,
            addr,
            status: None,
        });
    }

    /// Answers a request to [`super::NODE_SERVICE`] (its result is bounded like any other).
    fn introspect(&self, path: &str, kind: CallKind) -> Result<Bytes, RemoteError> {
        let encoded = match (path, kind) {
            ("edges", CallKind::Call) => encode_value(&self.edge_reports()),
            ("status", CallKind::Call) => encode_value(&self.status()),
            _ => return Err(RemoteError::NoSuchMethod(path.to_string())),
        };
        let out = encoded.map_err(|e| RemoteError::Failed(e.to_string()))?;
        if out.len() + 512 > self.cfg.max_frame_len {
            return Err(RemoteError::Failed(format!(
                "{path} of {} bytes exceeds the frame limit",
                out.len()
            )));
        }
        Ok(out.into())
    }

    /// Every edge, as [`super::NODE_SERVICE`] reports them.
    pub fn edge_reports(&self) -> Vec<crate::message::EdgeReport> {
        self.edges()
            .into_iter()
            .map(super::EdgeInfo::into_report)
            .collect()
    }

    // ----- UDP -------------------------------------------------------------------------------

    /// This node's status, as a status query answers it.
    pub fn status(&self) -> Status {
        Status {
            name: self.name.clone(),
            id: self.id,
            paired: self
                .topics
                .iter()
                .map(|(t, s)| (t.clone(), matches!(s, TopicState::Paired(_))))
                .collect(),
            services: self.services.iter().cloned().collect(),
            edges: self.edges.len(),
            root: self.cfg.root,
            reconnecting: !self.redials.is_empty(),
            truncated: false,
        }
    }

    /// A status query of `len` bytes, `len` at least the unpadded query's size.
    fn status_query(token: u64, len: usize) -> Result<Vec<u8>, CommandError> {
        let encode = |pad: usize| {
            encode_value(&Datagram::StatusRequest {
                token,
                padding: Bytes::from(vec![0u8; pad]),
            })
            .map_err(|_| CommandError::Limit("status request"))
        };
        // The padding's own length prefix grows with it: correct once for that.
        let base = encode(0)?.len();
        let data = encode(len.saturating_sub(base))?;
        let over = data.len().saturating_sub(len);
        if over == 0 {
            return Ok(data);
        }
        encode(len.saturating_sub(base + over))
    }

    /// The reply to a status query of `limit` bytes: whole if it fits, else without topics and
    /// services (`truncated`), else nothing.
    fn status_reply(&self, token: u64, limit: usize) -> Option<Vec<u8>> {
        let mut status = self.status();
        let data = encode_value(&Datagram::StatusReply {
            token,
            status: status.clone(),
        })
        .ok()?;
        if data.len() <= limit {
            return Some(data);
        }
        status.paired.clear();
        status.services.clear();
        status.truncated = true;
        encode_value(&Datagram::StatusReply { token, status })
            .ok()
            .filter(|d| d.len() <= limit)
    }

    /// Whether one more status reply fits in this second's `status_replies_per_sec`.
    fn may_answer_status(&mut self, now: Instant) -> bool {
        let (sent, since) = &mut self.status_replies;
        if since.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *since = Some(now);
            *sent = 0;
        }
        if *sent >= self.cfg.status_replies_per_sec {
            return false;
        }
        *sent += 1;
        true
    }

    /// Asks the node at `addr` for its status over UDP. The answer (or `None` after
    /// `status_timeout`) arrives as [`Delivery::Status`] with the returned token.
    pub fn query_status(&mut self, addr: SocketAddr, now: Instant) -> Result<u64, CommandError> {
        self.check_live()?;
        if self.status_queries.len() >= self.cfg.max_pending_status {
            return Err(CommandError::Limit("max_pending_status"));
        }
        self.next_status += 1;
        let token = self.next_status;
        let len = crate::message::STATUS_QUERY_LEN.min(self.cfg.max_datagram_len);
        let data = Self::status_query(token, len)?;
        let deadline = now + self.cfg.status_timeout;
        self.status_queries.insert(token, (addr, deadline, false));
        self.timers.set(TimerKey::Status(token), deadline);
        self.queue.push_back(Output::Datagram {
            to: addr,
            data: data.into(),
        });
        Ok(token)
    }

    /// Sends a best-effort publish in one datagram to `addr` (delivered there only if it
    /// subscribes; never relayed).
    pub fn publish_datagram(
        &mut self,
        addr: SocketAddr,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), CommandError> {
        self.check_live()?;
        self.check_name("topic", topic)?;
        crate::topic::check_topic(topic)?;
        if topic == super::ROOT_TOPIC {
            return Err(CommandError::Reserved(super::ROOT_TOPIC));
        }
        if self.cfg.tls.is_some() {
            return Err(CommandError::Limit(
                "UDP publishes are unauthenticated: off on a secure node",
            ));
        }
        let len = payload.len();
        let data = encode_value(&Datagram::Publish {
            topic: topic.to_string(),
            payload,
        })
        .map_err(|_| CommandError::Limit("datagram"))?;
        if data.len() > self.cfg.max_datagram_len {
            return Err(CommandError::PayloadTooLarge {
                len,
                max: self.cfg.max_datagram_len,
            });
        }
        self.queue.push_back(Output::Datagram {
            to: addr,
            data: data.into(),
        });
        Ok(())
    }

    /// A UDP datagram arrived. Undecodable or oversized datagrams are dropped.
    pub fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        if data.len() > self.cfg.max_datagram_len || self.shut_down {
            return;
        }
        let Ok(dg) = decode_value::<Datagram>(data) else {
            debug!(%from, "dropping an undecodable datagram");
            return;
        };
        let secure = self.cfg.tls.is_some();
        match dg {
            // A secure node says nothing, and takes nothing, unauthenticated: only its own host
            // (a loopback source, which no other host can forge) may ask for its status, for
            // health checks.
            Datagram::StatusRequest { .. } if secure && !from.ip().is_loopback() => {
                debug!(%from, "secure node: ignoring a status query from another host");
            }
            Datagram::Publish { .. } if secure => {
                debug!(%from, "secure node: ignoring an unauthenticated publish");
            }
            Datagram::StatusRequest { .. } if !self.may_answer_status(now) => {
                self.counters.status_dropped += 1;
            }
            Datagram::StatusRequest { token, .. } => {
                // Never more bytes back than came in: a forged source cannot amplify.
                let limit = data.len().min(self.cfg.max_datagram_len);
                match self.status_reply(token, limit) {
                    Some(data) => self.queue.push_back(Output::Datagram {
                        to: from,
                        data: data.into(),
                    }),
                    None => debug!(%from, "status query too short for any reply"),
                }
            }
            Datagram::StatusReply { token, status } => {
                // Only the address we asked may answer.
                let Some((_, _, retried)) = self
                    .status_queries
                    .get_mut(&token)
                    .filter(|(a, _, _)| *a == from)
                else {
                    return;
                };
                // Truncated to fit our query: ask once more, as large as a datagram may be.
                if status.truncated && !*retried {
                    *retried = true;
                    if let Ok(data) = Self::status_query(token, self.cfg.max_datagram_len) {
                        self.queue.push_back(Output::Datagram {
                            to: from,
                            data: data.into(),
                        });
                        return;
                    }
                }
                self.status_queries.remove(&token);
                self.timers.cancel(&TimerKey::Status(token));
                self.push_delivery(Delivery::Status {
                    token,
                    addr: from,
                    status: Some(status),
                });
            }
            Datagram::Publish { topic, payload } => {
                if let Err(why) = self.check_published_topic(&topic) {
                    debug!(%from, %why, "dropping a UDP publish");
                } else if topic == super::ROOT_TOPIC {
                    self.counters.reserved_dropped += 1;
                } else if self.is_subscribed(&topic) {
                    self.counters.delivered += 1;
                    self.push_delivery(Delivery::Message(Received {
                        topic,
                        payload,
                        origin: None,
                        seq: 0,
                        hops: 0,
                        from: None,
                    }));
                }
            }
        }
    }
}

/// `e` with its text cut to at most `max` bytes (at a character boundary).
fn cut_error(e: RemoteError, max: usize) -> RemoteError {
    let cut = |mut s: String| {
        if s.len() > max {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    };
    match e {
        RemoteError::NotFound(s) => RemoteError::NotFound(cut(s)),
        RemoteError::NoSuchMethod(s) => RemoteError::NoSuchMethod(cut(s)),
        RemoteError::BadArguments(s) => RemoteError::BadArguments(cut(s)),
        RemoteError::Failed(s) => RemoteError::Failed(cut(s)),
        other => other,
    }
}
