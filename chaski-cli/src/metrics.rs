//! A node's [`Metrics`] in Prometheus' text exposition format (the `prometheus` crate's model
//! and text encoder, which escapes label values), for `/metrics` of `--http`.
//!
//! Names follow Prometheus' conventions (`chaski_` prefix, base units: seconds and bytes,
//! `_total` on counters, `_info` for the node's identity). Labels are bounded: message kinds
//! and goodbye reasons are fixed lists; per-edge series exist for the first `edge_labels`
//! edges only (the rest are counted in `chaski_edges_unlabelled`).

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use chaski_tokio::{Metrics, QueueStats, GOODBYE_REASONS, MESSAGE_KINDS, RTT_BUCKETS_US};

/// What one scrape shows.
#[derive(Debug, Clone)]
struct Snapshot {
    m: Metrics,
    queue: Option<QueueStats>,
    edge_labels: usize,
}

/// A label value from a peer: invisible and control characters other than a line break
/// replaced (the encoder escapes backslashes, quotes and line breaks), at most 128 characters.
fn label(s: &str) -> String {
    s.chars()
        .take(128)
        .map(|c| {
            if c != '\n' && chaski_proto::text::needs_escape(c) && c != '\\' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

type Labels = Vec<(&'static str, String)>;

/// The families of one scrape, in order.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

fn sample(labels: &Labels) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut p = LabelPair::default();
                p.set_name(k.to_string());
                p.set_value(v.clone());
                p
            })
            .collect(),
    );
    m
}

impl Families {
    /// A family; left out when it has no sample (the format has no empty family).
    fn push(&mut self, name: &str, help: &str, kind: MetricType, samples: Vec<Metric>) {
        if samples.is_empty() {
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(samples);
        self.0.push(f);
    }

    fn counter(&mut self, name: &str, help: &str, series: &[(Labels, u64)]) {
        let samples = series
            .iter()
            .map(|(l, v)| {
                let mut m = sample(l);
                let mut c = Counter::default();
                c.set_value(*v as f64);
                m.set_counter(c);
                m
            })
            .collect();
        self.push(name, help, MetricType::COUNTER, samples);
    }

    fn gauge(&mut self, name: &str, help: &str, series: &[(Labels, f64)]) {
        let samples = series
            .iter()
            .map(|(l, v)| {
                let mut m = sample(l);
                let mut g = Gauge::default();
                g.set_value(*v);
                m.set_gauge(g);
                m
            })
            .collect();
        self.push(name, help, MetricType::GAUGE, samples);
    }
}

fn one<T>(v: T) -> [(Labels, T); 1] {
    [(Vec::new(), v)]
}

fn by<T: Copy>(label: &'static str, names: &[&str], values: &[T]) -> Vec<(Labels, T)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (vec![(label, n.to_string())], *v))
        .collect()
}

impl Snapshot {
    fn families(&self) -> Families {
        let mut e = Families::default();
        let (m, c, g) = (&self.m, &self.m.counters, &self.m.gauges);
        // An info metric as a gauge of 1 (what Prometheus' classic text format knows).
        let info: Labels = vec![
            ("name", label(&m.name)),
            ("id", m.id.to_string()),
            ("role", if m.root { "root" } else { "member" }.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        e.gauge(
            "chaski_node_info",
            "This node: name, id, role, version",
            &[(info, 1.0)],
        );
        e.counter(
            "chaski_frames_sent_total",
            "Frames sent, by message kind",
            &by("kind", &MESSAGE_KINDS, &c.sent),
        );
        e.counter(
            "chaski_frames_received_total",
            "Frames received, by message kind",
            &by("kind", &MESSAGE_KINDS, &c.received),
        );
        e.counter(
            "chaski_sent_bytes_total",
            "Bytes the sockets took",
            &one(c.bytes_sent),
        );
        e.counter(
            "chaski_received_bytes_total",
            "Bytes the sockets gave",
            &one(c.bytes_received),
        );
        e.counter(
            "chaski_publishes_relayed_total",
            "Publishes passed on to other peers",
            &one(c.relayed),
        );
        e.counter(
            "chaski_publishes_delivered_total",
            "Publishes handed to the application",
            &one(c.delivered),
        );
        let dropped = [
            ("duplicate", c.duplicates),
            ("congestion", c.congestion_skipped),
            ("memory_budget", c.memory_shed),
            ("reserved_topic", c.reserved_dropped),
            ("unknown_kind", c.unknown_skipped),
            ("status_rate", c.status_dropped),
            ("event_queue_full", c.events_dropped),
            ("file_refused", c.files_refused),
            ("message_queue_full", self.queue.map_or(0, |q| q.dropped)),
        ];
        let dropped: Vec<(Labels, u64)> = dropped
            .iter()
            .map(|(r, v)| (vec![("reason", r.to_string())], *v))
            .collect();
        e.counter(
            "chaski_dropped_total",
            "Messages, frames or connections dropped, by reason",
            &dropped,
        );
        e.counter(
            "chaski_bad_peers_total",
            "Connections closed for bad input",
            &one(c.bad_peers),
        );
        e.counter(
            "chaski_handshakes_total",
            "Connections that became edges",
            &one(c.handshakes),
        );
        e.counter(
            "chaski_handshakes_failed_total",
            "Connections that ended before they became edges",
            &one(c.handshakes_failed),
        );
        e.counter(
            "chaski_goodbyes_sent_total",
            "Goodbyes sent, by reason",
            &by("reason", &GOODBYE_REASONS, &c.goodbyes_sent),
        );
        e.counter(
            "chaski_goodbyes_received_total",
            "Goodbyes received, by reason",
            &by("reason", &GOODBYE_REASONS, &c.goodbyes_received),
        );
        e.counter("chaski_calls_total", "Calls made (each try)", &one(c.calls));
        e.counter(
            "chaski_call_errors_total",
            "Calls that ended in an error",
            &one(c.call_errors),
        );
        e.counter(
            "chaski_requests_total",
            "Requests from peers handed to the application",
            &one(c.requests),
        );
        // Round trips of keep-alive pings, as a histogram (cumulative buckets).
        let mut cumulative = 0;
        let buckets: Vec<Bucket> = RTT_BUCKETS_US
            .iter()
            .zip(c.rtt_buckets)
            .map(|(bound, n)| {
                cumulative += n;
                let mut b = Bucket::default();
                b.set_upper_bound(*bound as f64 / 1e6);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_bucket(buckets);
        h.set_sample_count(c.rtt_buckets.iter().sum());
        h.set_sample_sum(c.rtt_sum_us as f64 / 1e6);
        let mut rtt = Metric::default();
        rtt.set_histogram(h);
        e.push(
            "chaski_rtt_seconds",
            "Round trips measured by keep-alive pings",
            MetricType::HISTOGRAM,
            vec![rtt],
        );
        let edges = [
            ("all", g.edges),
            ("root", g.root_edges),
            ("pairing", g.pairing_edges),
            ("configured", g.configured_edges),
        ];
        let edges: Vec<(Labels, f64)> = edges
            .iter()
            .map(|(k, v)| (vec![("kind", k.to_string())], *v as f64))
            .collect();
        e.gauge(
            "chaski_edges",
            "Edges, by kind (an edge may be of several)",
            &edges,
        );
        e.gauge(
            "chaski_connections",
            "Connections open or being opened",
            &one(g.connections as f64),
        );
        e.gauge(
            "chaski_handshakes_in_progress",
            "Connections still in their handshake",
            &one(g.handshaking as f64),
        );
        e.gauge(
            "chaski_reconnecting",
            "Peers being redialed",
            &one(g.reconnecting as f64),
        );
        e.gauge(
            "chaski_congested_connections",
            "Connections over the congestion limit",
            &one(g.congested as f64),
        );
        e.gauge(
            "chaski_paired",
            "1 when every topic is paired",
            &one(if m.paired { 1.0 } else { 0.0 }),
        );
        e.gauge(
            "chaski_topics",
            "Topics and patterns subscribed to",
            &one(g.topics as f64),
        );
        e.gauge(
            "chaski_services",
            "Services served",
            &one(g.services as f64),
        );
        e.gauge(
            "chaski_calls_pending",
            "Calls waiting for an answer",
            &one(g.calls_pending as f64),
        );
        e.gauge(
            "chaski_requests_pending",
            "Requests the application has not answered",
            &one(g.requests_pending as f64),
        );
        let files = [
            (
                vec![("direction", "outgoing".to_string())],
                g.files_outgoing as f64,
            ),
            (
                vec![("direction", "incoming".to_string())],
                g.files_incoming as f64,
            ),
        ];
        e.gauge("chaski_file_transfers", "File transfers under way", &files);
        let memory = [
            (
                vec![("direction", "inbound".to_string())],
                m.memory.inbound as f64,
            ),
            (
                vec![("direction", "outbound".to_string())],
                m.memory.outbound as f64,
            ),
        ];
        e.gauge("chaski_memory_bytes", "Bytes held for connections", &memory);
        e.gauge(
            "chaski_memory_budget_bytes",
            "The bound on bytes held for connections",
            &one(m.memory.budget as f64),
        );
        let mut queues = vec![
            (vec![("queue", "output".to_string())], g.output_queue as f64),
            (vec![("queue", "timers".to_string())], g.timers as f64),
        ];
        if let Some(q) = self.queue {
            queues.push((vec![("queue", "messages".to_string())], q.len as f64));
        }
        e.gauge("chaski_queue_depth", "Items waiting, by queue", &queues);
        // Per edge, bounded.
        let shown = &m.edges[..m.edges.len().min(self.edge_labels)];
        let peer = |e: &chaski_tokio::EdgeInfo| -> Labels {
            vec![("peer", label(&e.name)), ("peer_id", e.id.to_string())]
        };
        let lat: Vec<(Labels, f64)> = shown
            .iter()
            .filter_map(|e| e.latency.map(|l| (peer(e), l.as_secs_f64())))
            .collect();
        e.gauge(
            "chaski_edge_latency_seconds",
            "Half the smoothed round trip, per edge",
            &lat,
        );
        let jit: Vec<(Labels, f64)> = shown
            .iter()
            .filter_map(|e| e.jitter.map(|l| (peer(e), l.as_secs_f64())))
            .collect();
        e.gauge(
            "chaski_edge_jitter_seconds",
            "Round-trip variance, per edge",
            &jit,
        );
        let fo: Vec<(Labels, u64)> = shown.iter().map(|e| (peer(e), e.frames_out)).collect();
        e.counter(
            "chaski_edge_frames_sent_total",
            "Frames sent, per edge",
            &fo,
        );
        let fi: Vec<(Labels, u64)> = shown.iter().map(|e| (peer(e), e.frames_in)).collect();
        e.counter(
            "chaski_edge_frames_received_total",
            "Frames received, per edge",
            &fi,
        );
        e.gauge(
            "chaski_edges_unlabelled",
            "Edges past the per-edge label bound (--metrics-edges)",
            &one((m.edges.len() - shown.len()) as f64),
        );
        e
    }
}

/// The metrics in Prometheus' text format; per-edge series for the first `edge_labels` edges.
pub fn render(m: Metrics, queue: Option<QueueStats>, edge_labels: usize) -> String {
    let families = Snapshot {
        m,
        queue,
        edge_labels,
    }
    .families();
    let mut out = Vec::with_capacity(16 * 1024);
    // Every family has a name and a sample: encoding into memory cannot fail.
    let _ = TextEncoder::new().encode(&families.0, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
