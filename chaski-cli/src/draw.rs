//! Drawing a [`Mesh`]: text, Graphviz DOT, SVG (the graph and the latency heatmap) and a
//! self-contained HTML page, all made here (no external tool, no script from elsewhere).
//!
//! Every name, topic and service comes from peers: each is escaped for where it goes (control
//! characters as `\n`/`\u{..}`, then XML or DOT quoting), so a peer's text can neither break
//! out of an attribute nor inject markup or script.

use std::f64::consts::PI;
use std::fmt::Write as _;

use chaski_proto::text::Escaped;

use crate::mesh::{Mesh, MeshLink, MeshNode};

/// Peer text for XML: escaped, then `&<>"'` as entities.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in Escaped(s).to_string().chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Peer text for a DOT quoted string.
fn dot_str(s: &str) -> String {
    Escaped(s)
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}

/// A short label of a node's topics (the first three, then how many more).
fn topics_label(n: &MeshNode) -> String {
    let mut t: Vec<String> = n
        .topics
        .iter()
        .take(3)
        .map(|t| Escaped(t).to_string())
        .collect();
    if n.topics.len() > 3 {
        t.push(format!("+{}", n.topics.len() - 3));
    }
    t.join(" ")
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// The mesh as text: nodes, links, statistics.
pub fn text(m: &Mesh) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} nodes, {} links{}",
        m.nodes.len(),
        m.links.len(),
        if m.complete {
            ""
        } else {
            " (incomplete: a bound or a node cut the walk)"
        }
    );
    let w = m
        .nodes
        .iter()
        .map(|n| Escaped(&n.name).to_string().chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<w$} {:<8} {:<22} {:<6}  TOPICS",
        "NODE", "ID", "ADDRESS", "ROLE"
    );
    for n in &m.nodes {
        let _ = writeln!(
            out,
            "{:<w$} {:<8} {:<22} {:<6}  {}{}",
            Escaped(&n.name).to_string(),
            short_id(&n.id),
            n.addr.as_deref().unwrap_or("-"),
            if n.root { "root" } else { "member" },
            n.topics
                .iter()
                .map(|t| Escaped(t).to_string())
                .collect::<Vec<_>>()
                .join(" "),
            match (&n.error, n.asked) {
                (Some(e), _) => format!("  (not asked: {})", Escaped(e)),
                (None, false) => "  (not asked)".to_string(),
                _ => String::new(),
            }
        );
    }
    let name = |id: &str| {
        m.node(id)
            .map_or(id.to_string(), |n| Escaped(&n.name).to_string())
    };
    let _ = writeln!(
        out,
        "{:<w$}    {:<w$} {:<10} {:>10} {:>10}",
        "LINK", "", "KIND", "LATENCY ms", "JITTER ms"
    );
    for l in &m.links {
        let _ = writeln!(
            out,
            "{:<w$} -- {:<w$} {:<10} {:>10} {:>10}",
            name(&l.a),
            name(&l.b),
            l.kind.as_str(),
            ms(l.latency_ms),
            ms(l.jitter_ms)
        );
    }
    match &m.stats {
        Some(s) => {
            let _ = writeln!(
                out,
                "latency over {} links: min {:.3} ms, max {:.3} ms, mean {:.3} ms, stddev {:.3} ms",
                s.links, s.min_ms, s.max_ms, s.mean_ms, s.stddev_ms
            );
        }
        None => out.push_str("latency: no link measured yet\n"),
    }
    out
}

/// The mesh in Graphviz's DOT language (`dot -Tsvg`).
pub fn dot(m: &Mesh) -> String {
    let mut out = String::from("graph chaski {\n  layout=neato; overlap=false; splines=true;\n  node [fontname=\"sans-serif\", fontsize=10];\n  edge [fontname=\"sans-serif\", fontsize=8];\n");
    for n in &m.nodes {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\", shape={}, style=filled, fillcolor=\"{}\"];",
            n.id,
            dot_str(&n.name),
            dot_str(&topics_label(n)),
            if n.root { "doublecircle" } else { "ellipse" },
            if n.root {
                "#f4c06b"
            } else if n.asked {
                "#9ecbf0"
            } else {
                "#dddddd"
            }
        );
    }
    for l in &m.links {
        let style = match l.kind {
            crate::mesh::LinkKind::Root => "bold",
            crate::mesh::LinkKind::Pairing => "solid",
            crate::mesh::LinkKind::Configured => "dashed",
            crate::mesh::LinkKind::Other => "dotted",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -- \"{}\" [label=\"{} {}\", style={}];",
            l.a,
            l.b,
            l.kind.as_str(),
            l.latency_ms.map_or(String::new(), |v| format!("{v:.2} ms")),
            style
        );
    }
    out.push_str("}\n");
    out
}

/// Where each node goes: roots in the middle (on a small circle when several), the others on
/// a circle around them, large enough for their labels.
fn layout(m: &Mesh) -> (f64, Vec<(f64, f64)>) {
    let roots: Vec<usize> = (0..m.nodes.len()).filter(|&i| m.nodes[i].root).collect();
    let others: Vec<usize> = (0..m.nodes.len()).filter(|&i| !m.nodes[i].root).collect();
    let outer = (others.len() as f64 * 70.0 / (2.0 * PI)).max(180.0);
    let inner = if roots.len() > 1 {
        (roots.len() as f64 * 80.0 / (2.0 * PI))
            .max(60.0)
            .min(outer / 2.0)
    } else {
        0.0
    };
    let size = 2.0 * outer + 240.0;
    let c = size / 2.0;
    let mut pos = vec![(c, c); m.nodes.len()];
    let place = |list: &[usize], r: f64, turn: f64, pos: &mut Vec<(f64, f64)>| {
        for (k, &i) in list.iter().enumerate() {
            let a = 2.0 * PI * k as f64 / list.len().max(1) as f64 - PI / 2.0 + turn;
            pos[i] = (c + r * a.cos(), c + r * a.sin());
        }
    };
    place(&roots, inner, 0.3, &mut pos);
    place(&others, outer, 0.0, &mut pos);
    (size, pos)
}

fn link_title(l: &MeshLink, m: &Mesh) -> String {
    let name = |id: &str| m.node(id).map_or(id.to_string(), |n| n.name.clone());
    let mut t = format!(
        "{} -- {}: {} link, latency {} ms, jitter {} ms, frames {} / {}",
        name(&l.a),
        name(&l.b),
        l.kind.as_str(),
        ms(l.latency_ms),
        ms(l.jitter_ms),
        l.frames_ab,
        l.frames_ba
    );
    if let (Some(ab), Some(ba)) = (l.rate_ab, l.rate_ba) {
        let _ = write!(t, ", {ab:.1} / {ba:.1} frames/s");
    }
    xml(&t)
}

/// The graph as an SVG document: nodes with names, roles and topics, links with their kind,
/// latency (and rates, when known).
pub fn svg(m: &Mesh) -> String {
    graph_svg(m, "")
}

/// [`svg`] with `attrs` in its opening tag (where a page puts it).
fn graph_svg(m: &Mesh, attrs: &str) -> String {
    let (size, pos) = layout(m);
    let index: std::collections::BTreeMap<&str, usize> = m
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\"{attrs} class=\"mesh-graph\" width=\"{size:.0}\" height=\"{size:.0}\" viewBox=\"0 0 {size:.0} {size:.0}\" font-family=\"sans-serif\">\n\
         <style>.link line{{stroke:#777;stroke-width:1.5}}.kind-root line{{stroke:#c98a12;stroke-width:2.5}}\
         .kind-pairing line{{stroke:#2b7bd0}}.kind-configured line{{stroke-dasharray:6 3}}.kind-other line{{stroke-dasharray:2 3}}\
         .link text{{font-size:9px;fill:#444}}.node circle{{fill:#9ecbf0;stroke:#245;stroke-width:1.2}}\
         .node.root circle{{fill:#f4c06b}}.node.unasked circle{{fill:#ddd}}.node text{{font-size:11px;text-anchor:middle}}\
         .node .topics{{font-size:9px;fill:#555}}</style>\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
    );
    for l in &m.links {
        let (Some(&i), Some(&j)) = (index.get(l.a.as_str()), index.get(l.b.as_str())) else {
            continue;
        };
        let ((x1, y1), (x2, y2)) = (pos[i], pos[j]);
        let mut label = l.latency_ms.map_or(String::new(), |v| format!("{v:.2} ms"));
        if let (Some(ab), Some(ba)) = (l.rate_ab, l.rate_ba) {
            let _ = write!(label, " {:.0}/s", ab + ba);
        }
        let _ = writeln!(
            out,
            "<g class=\"link kind-{}\" data-a=\"{}\" data-b=\"{}\"><title>{}</title><line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            l.kind.as_str(),
            l.a,
            l.b,
            link_title(l, m),
            (x1 + x2) / 2.0 + 3.0,
            (y1 + y2) / 2.0 - 3.0,
            xml(&label)
        );
    }
    for (n, (x, y)) in m.nodes.iter().zip(&pos) {
        let class = match (n.root, n.asked) {
            (true, _) => "node root",
            (false, true) => "node",
            (false, false) => "node unasked",
        };
        let mut title = format!(
            "{} ({}) {}{}",
            n.name,
            n.id,
            n.addr.as_deref().unwrap_or("-"),
            if n.root { " root" } else { " member" }
        );
        if !n.services.is_empty() {
            let _ = write!(title, ", services: {}", n.services.join(" "));
        }
        if let Some(e) = &n.error {
            let _ = write!(title, ", not asked: {e}");
        }
        let _ = writeln!(
            out,
            "<g class=\"{class}\" data-id=\"{}\" data-name=\"{}\"><title>{}</title><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{}\"/><text x=\"{x:.1}\" y=\"{:.1}\">{}</text><text class=\"topics\" x=\"{x:.1}\" y=\"{:.1}\">{}</text></g>",
            n.id,
            xml(&n.name),
            xml(&title),
            if n.root { 16 } else { 11 },
            y + 28.0,
            xml(&n.name),
            y + 40.0,
            xml(&topics_label(n))
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The latency between every two linked nodes as an SVG grid (green fast, red slow).
pub fn heatmap_svg(m: &Mesh) -> String {
    heatmap_at(m, "")
}

/// The heatmap's cell size, whether it has names, its margin and its side.
fn heatmap_size(n: usize) -> (f64, bool, f64, f64) {
    let cell = if n <= 40 {
        18.0
    } else {
        (720.0 / n as f64).max(3.0)
    };
    let labels = n <= 40;
    let margin = if labels { 130.0 } else { 10.0 };
    (cell, labels, margin, margin + cell * n as f64 + 10.0)
}

/// [`heatmap_svg`] with `attrs` in its opening tag.
fn heatmap_at(m: &Mesh, attrs: &str) -> String {
    let grid = m.heatmap();
    let n = m.nodes.len();
    let (cell, labels, margin, side) = heatmap_size(n);
    let max = grid
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\"{attrs} class=\"mesh-heatmap\" width=\"{:.0}\" height=\"{side:.0}\" font-family=\"sans-serif\" font-size=\"10\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
        side + 60.0
    );
    if labels {
        for (i, node) in m.nodes.iter().enumerate() {
            let at = margin + cell * i as f64 + cell * 0.7;
            let name = xml(&node.name);
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{at:.1}\" text-anchor=\"end\">{name}</text><text transform=\"translate({at:.1},{:.1}) rotate(-60)\">{name}</text>",
                margin - 4.0,
                margin - 4.0
            );
        }
    }
    for (i, row) in grid.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let (x, y) = (margin + cell * j as f64, margin + cell * i as f64);
            let (fill, title) = match v {
                Some(v) => {
                    let hue = 120.0 * (1.0 - (v / max).clamp(0.0, 1.0));
                    (format!("hsl({hue:.0},70%,50%)"), format!("{v:.3} ms"))
                }
                None => ("#eee".to_string(), "no link".to_string()),
            };
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{} / {}: {title}</title></rect>",
                cell - 1.0,
                cell - 1.0,
                xml(&m.nodes[i].name),
                xml(&m.nodes[j].name)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// One SVG document with everything: a line of statistics, the graph, and the heatmap beside
/// it (`chaski graph --svg`).
pub fn page_svg(m: &Mesh) -> String {
    let (graph, _) = layout(m);
    let (_, _, _, heat) = heatmap_size(m.nodes.len());
    let (w, h) = (graph + heat + 80.0, graph.max(heat) + 40.0);
    let stats = match &m.stats {
        Some(s) => format!(
            "{} nodes, {} links; latency min {:.3} ms, max {:.3} ms, mean {:.3} ms, stddev {:.3} ms",
            m.nodes.len(),
            m.links.len(),
            s.min_ms,
            s.max_ms,
            s.mean_ms,
            s.stddev_ms
        ),
        None => format!("{} nodes, {} links; no latency measured yet", m.nodes.len(), m.links.len()),
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><text x=\"12\" y=\"24\" font-size=\"14\">{}</text>\n{}{}</svg>\n",
        xml(&stats),
        graph_svg(m, " x=\"0\" y=\"40\""),
        heatmap_at(m, &format!(" x=\"{:.0}\" y=\"40\"", graph + 20.0)),
    )
}

/// The statistics, the graph and the heatmap: the body of the page (and what the live page
/// fetches again).
pub fn fragment(m: &Mesh) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"summary\"><span id=\"node-count\">{}</span> nodes, <span id=\"link-count\">{}</span> links{}</p>",
        m.nodes.len(),
        m.links.len(),
        if m.complete { "" } else { " (incomplete)" }
    );
    match &m.stats {
        Some(s) => {
            let _ = write!(
                out,
                "<table class=\"stats\"><tr><th>links measured</th><th>min ms</th><th>max ms</th><th>mean ms</th><th>stddev ms</th></tr><tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr></table>",
                s.links, s.min_ms, s.max_ms, s.mean_ms, s.stddev_ms
            );
        }
        None => out.push_str("<p class=\"stats\">No latency measured yet.</p>"),
    }
    out.push_str("<h2>Nodes and links</h2>");
    out.push_str(&svg(m));
    out.push_str("<h2>Latency heatmap</h2>");
    out.push_str(&heatmap_svg(m));
    out
}

/// A self-contained HTML page of the mesh; `live`: it fetches its body again from
/// `/mesh.fragment` every two seconds (the node's own endpoint).
pub fn html(m: &Mesh, title: &str, live: bool) -> String {
    let script = if live {
        "<script>\n\
         'use strict';\n\
         async function refresh() {\n\
           const stamp = document.getElementById('updated');\n\
           try {\n\
             const r = await fetch('mesh.fragment', {cache: 'no-store'});\n\
             if (!r.ok) { stamp.textContent = 'error ' + r.status; return; }\n\
             document.getElementById('mesh').innerHTML = await r.text();\n\
             stamp.textContent = 'updated ' + new Date().toLocaleTimeString();\n\
             document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);\n\
           } catch (e) {\n\
             stamp.textContent = 'node unreachable';\n\
           }\n\
         }\n\
         setInterval(refresh, 2000);\n\
         </script>\n"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;margin:1.5em;color:#222}}table.stats{{border-collapse:collapse}}\
         table.stats td,table.stats th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}\
         svg{{display:block;margin:.5em 0;max-width:100%;height:auto}}#updated{{color:#777;font-size:.9em}}</style>\n\
         </head><body><h1>{t}</h1><p id=\"updated\">{stamp}</p><main id=\"mesh\">{body}</main>\n{script}</body></html>\n",
        t = xml(title),
        stamp = if live { "live: refreshed every 2 s" } else { "" },
        body = fragment(m),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{LinkKind, MeshLink, MeshNode};

    fn mesh() -> Mesh {
        let node = |id: &str, name: &str, root: bool| MeshNode {
            id: id.into(),
            name: name.into(),
            addr: Some("127.0.0.1:1".into()),
            root,
            topics: vec!["a/b".into()],
            services: vec![],
            asked: true,
            error: None,
        };
        Mesh {
            nodes: vec![
                node("1", "root", true),
                node("2", "evil\"><script>alert(1)</script>\n", false),
            ],
            links: vec![MeshLink {
                a: "1".into(),
                b: "2".into(),
                kind: LinkKind::Root,
                latency_ms: Some(0.25),
                jitter_ms: None,
                frames_ab: 3,
                frames_ba: 4,
                rate_ab: None,
                rate_ba: None,
            }],
            stats: None,
            complete: true,
        }
    }

    #[test]
    fn peer_text_cannot_break_out_of_the_markup() {
        let page = html(&mesh(), "t", true);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("evil&quot;&gt;&lt;script&gt;"), "{page}");
        assert_eq!(
            page.matches("<script>").count(),
            1,
            "only the page's own script"
        );
        let d = dot(&mesh());
        assert!(d.contains("evil\\\"><script>alert(1)</script>\\\\n"), "{d}");
        assert!(
            !text(&mesh()).contains("</script>\n"),
            "a name stays on one line"
        );
    }

    #[test]
    fn every_node_and_link_is_drawn() {
        let s = svg(&mesh());
        assert_eq!(s.matches("class=\"node").count(), 2);
        assert_eq!(s.matches("class=\"link kind-root\"").count(), 1);
        assert!(s.contains("0.25 ms"));
        let h = heatmap_svg(&mesh());
        assert_eq!(h.matches("<rect x=").count(), 4, "a cell per pair");
        assert_eq!(h.matches("0.250 ms").count(), 2, "the link both ways");
    }
}
