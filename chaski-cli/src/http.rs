//! A node's HTTP endpoint (`--http ADDR`, off unless asked): `/metrics` (Prometheus),
//! `/healthz` and `/readyz` (orchestrators), `/` (a live page of the mesh as this node sees
//! it), `/mesh.json`, `/mesh.svg` and `/mesh.fragment` (what the page fetches again).
//!
//! It serves only what the node's metrics and introspection already say: no key or
//! certificate material. A port alone binds loopback; binding another address is the
//! operator's choice (see SECURITY.md). Connections are bounded in number, in header size
//! and in time.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use chaski_tokio::Node;

use crate::mesh::Mesh;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// Time a client may take to send its request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the page's neighbours may take to report their edges.
const VIEW_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint serves, for one node.
pub struct Endpoint {
    node: Node,
    /// Whether the node is ready only once it has an edge (it has peers to keep).
    needs_edge: bool,
    /// Per-edge series in `/metrics` for this many edges at most.
    edge_labels: usize,
    /// Frames per link at the previous picture, for the rates on the page.
    last: Mutex<Option<(Instant, LinkFrames)>>,
}

/// Frames each way on each link (by its ends' ids).
type LinkFrames = BTreeMap<(String, String), (u64, u64)>;

/// The address `--http` means: a port alone (`9464`, `:9464`) is loopback's.
pub fn http_addr(given: &str) -> Result<SocketAddr, String> {
    let port_only = given.strip_prefix(':').unwrap_or(given);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    given
        .parse()
        .map_err(|e| format!("--http {given}: {e} (give host:port, or a port for loopback)"))
}

impl Endpoint {
    /// Binds `addr` and serves the node there until the task is aborted; the bound address.
    pub async fn start(
        node: Node,
        addr: &str,
        needs_edge: bool,
        edge_labels: usize,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
        let want = http_addr(addr)?;
        let listener = TcpListener::bind(want)
            .await
            .map_err(|e| format!("--http {want}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        if !bound.ip().is_loopback() {
            tracing::warn!(%bound, "the HTTP endpoint (metrics, mesh page) is reachable beyond this host");
        }
        let me = Arc::new(Endpoint {
            node,
            needs_edge,
            edge_labels,
            last: Mutex::new(None),
        });
        let task = tokio::spawn(me.accept(listener));
        Ok((bound, task))
    }

    async fn accept(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.answer(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                // A whole exchange is bounded in time too (a client that stops reading).
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                drop(permit);
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match req.uri().path() {
            "/metrics" => match self.node.metrics().await {
                Ok(m) => reply(
                    StatusCode::OK,
                    crate::metrics::CONTENT_TYPE,
                    crate::metrics::render(m, None, self.edge_labels),
                ),
                Err(e) => unavailable(e),
            },
            "/healthz" => match self.node.metrics().await {
                Ok(_) => reply(StatusCode::OK, "text/plain", "ok\n"),
                Err(e) => unavailable(e),
            },
            "/readyz" => match self.node.metrics().await {
                Ok(m) if !m.paired => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not paired yet\n",
                ),
                Ok(m) if self.needs_edge && m.edges.is_empty() => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no edge to a configured peer yet\n",
                ),
                Ok(_) => reply(StatusCode::OK, "text/plain", "ready\n"),
                Err(e) => unavailable(e),
            },
            "/" | "/index.html" => match self.view().await {
                Ok(m) => {
                    let title = format!("Chaski mesh seen from {}", self.node.name());
                    reply(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        crate::draw::html(&m, &title, true),
                    )
                }
                Err(e) => unavailable(e),
            },
            "/mesh.fragment" => match self.view().await {
                Ok(m) => reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    crate::draw::fragment(&m),
                ),
                Err(e) => unavailable(e),
            },
            "/mesh.svg" => match self.view().await {
                Ok(m) => reply(StatusCode::OK, "image/svg+xml", crate::draw::svg(&m)),
                Err(e) => unavailable(e),
            },
            "/mesh.json" => match self.view().await {
                Ok(m) => reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string(&m).unwrap_or_default(),
                ),
                Err(e) => unavailable(e),
            },
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }

    /// The mesh as this node sees it, with frames per second on each link since the previous
    /// picture.
    async fn view(&self) -> Result<Mesh, chaski_tokio::Error> {
        let mut m = crate::mesh::local_view(&self.node, VIEW_TIMEOUT).await?;
        let now = Instant::now();
        let frames: LinkFrames = m
            .links
            .iter()
            .map(|l| ((l.a.clone(), l.b.clone()), (l.frames_ab, l.frames_ba)))
            .collect();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, before)) = last.as_ref() {
            let dt = now.duration_since(*at).as_secs_f64();
            if dt > 0.05 {
                for l in &mut m.links {
                    if let Some((ab, ba)) = before.get(&(l.a.clone(), l.b.clone())) {
                        l.rate_ab = Some(l.frames_ab.saturating_sub(*ab) as f64 / dt);
                        l.rate_ba = Some(l.frames_ba.saturating_sub(*ba) as f64 / dt);
                    }
                }
            }
        }
        if last
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) > Duration::from_millis(500))
        {
            *last = Some((now, frames));
        }
        Ok(m)
    }
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn unavailable(e: chaski_tokio::Error) -> Response<Full<Bytes>> {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain",
        format!("node unavailable: {e}\n"),
    )
}
