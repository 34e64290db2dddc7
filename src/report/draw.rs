//! Drawings of architectures: micro cells (inputs c_{k-2}, c_{k-1}, nodes,
//! ops on the edges, the concatenated output), the macro chain with its skips,
//! NB201 cells and MetaQNN chains, as SVG (our own layered layout, no Graphviz)
//! or DOT.
use super::escape;
use crate::space::metaqnn::{end_token, layer_token};
use crate::space::{Arch, Cell, MACRO_OPS, MICRO_OPS, NB201_OPS};
use std::fmt::Write;

pub struct Node {
    pub label: String,
    /// Left-to-right position: the length of the longest path from an input.
    pub column: usize,
}

pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: String,
    /// Skips and absent (NB201 `none`) edges are drawn dashed.
    pub dashed: bool,
}

/// One titled graph; a micro architecture has two (normal and reduction cell).
pub struct Graph {
    pub title: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Graph {
    fn new(title: &str) -> Graph {
        Graph { title: title.to_string(), nodes: Vec::new(), edges: Vec::new() }
    }
    fn node(&mut self, label: impl Into<String>, column: usize) -> usize {
        self.nodes.push(Node { label: label.into(), column });
        self.nodes.len() - 1
    }
    fn edge(&mut self, from: usize, to: usize, label: impl Into<String>, dashed: bool) {
        self.edges.push(Edge { from, to, label: label.into(), dashed });
    }
}

fn cell_graph(title: &str, cell: &Cell) -> Graph {
    let mut g = Graph::new(title);
    let mut ids = vec![g.node("c_{k-2}", 0), g.node("c_{k-1}", 0)];
    let mut depth = vec![0usize, 0];
    for (i, n) in cell.nodes.iter().enumerate() {
        let d = 1 + depth[n.x_id].max(depth[n.y_id]);
        let id = g.node(format!("node {i}"), d);
        g.edge(ids[n.x_id], id, MICRO_OPS[n.x_op], false);
        g.edge(ids[n.y_id], id, MICRO_OPS[n.y_op], false);
        ids.push(id);
        depth.push(d);
    }
    let out_col = depth.iter().max().copied().unwrap_or(0) + 1;
    let out = g.node("c_{k} (concat)", out_col);
    for (s, unused) in cell.unused().iter().enumerate() {
        if *unused {
            g.edge(ids[s], out, "", false);
        }
    }
    g
}

/// The graphs that make up a drawing of `arch`.
pub fn graphs(arch: &Arch) -> Vec<Graph> {
    match arch {
        Arch::Micro(a) => vec![cell_graph("normal cell", &a.normal), cell_graph("reduction cell", &a.reduce)],
        Arch::Macro(a) => {
            let mut g = Graph::new("macro network");
            let mut outs = vec![g.node("stem", 0)];
            for (i, l) in a.layers.iter().enumerate() {
                let id = g.node(format!("layer {i}: {}", MACRO_OPS[l.op]), i + 1);
                g.edge(*outs.last().expect("the stem"), id, "", false);
                for (j, _) in l.skips.iter().enumerate().filter(|(_, s)| **s) {
                    g.edge(outs[j], id, "skip", true);
                }
                outs.push(id);
            }
            let head = g.node("global avg pool, fc", a.layers.len() + 1);
            g.edge(*outs.last().expect("the stem"), head, "", false);
            vec![g]
        }
        Arch::Nb201(a) => {
            let mut g = Graph::new("NB201 cell");
            let ids: Vec<usize> = (0..4).map(|i| g.node(format!("node {i}"), i)).collect();
            let mut at = 0;
            for to in 1..4 {
                for from in 0..to {
                    let op = a.ops[at];
                    g.edge(ids[from], ids[to], NB201_OPS[op], op == 0);
                    at += 1;
                }
            }
            vec![g]
        }
        Arch::Metaqnn(a) => {
            let mut g = Graph::new("MetaQNN network");
            let mut prev = g.node("input", 0);
            for (i, l) in a.layers.iter().enumerate() {
                let id = g.node(layer_token(l), i + 1);
                g.edge(prev, id, "", false);
                prev = id;
            }
            let end = g.node(end_token(a.end), a.layers.len() + 1);
            g.edge(prev, end, "", false);
            vec![g]
        }
    }
}

/// Graphviz DOT, one cluster per graph.
pub fn to_dot(graphs: &[Graph]) -> String {
    let mut s = String::from("digraph architecture {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for (k, g) in graphs.iter().enumerate() {
        let _ = writeln!(s, "  subgraph cluster_{k} {{\n    label=\"{}\";", g.title.replace('"', "'"));
        for (i, n) in g.nodes.iter().enumerate() {
            let _ = writeln!(s, "    g{k}n{i} [label=\"{}\"];", n.label.replace('"', "'"));
        }
        for e in &g.edges {
            let style = if e.dashed { ", style=dashed" } else { "" };
            let _ = writeln!(s, "    g{k}n{} -> g{k}n{} [label=\"{}\"{style}];", e.from, e.to, e.label.replace('"', "'"));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

const COL_W: f64 = 280.0;
const ROW_H: f64 = 70.0;
const BOX_W: f64 = 150.0;
const BOX_H: f64 = 34.0;
const TITLE_H: f64 = 36.0;

/// Positions (box centres) of a graph's nodes: columns left to right, rows in
/// order of creation; room above where edges that skip columns bow upwards.
fn layout(g: &Graph) -> (Vec<(f64, f64)>, f64, f64) {
    let cols = g.nodes.iter().map(|n| n.column).max().map_or(0, |m| m + 1);
    let mut rows = vec![0usize; cols];
    let mut pos = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        pos.push((n.column, rows[n.column]));
        rows[n.column] += 1;
    }
    let bows = g.edges.iter().any(|e| g.nodes[e.to].column > g.nodes[e.from].column + 1);
    let top_pad = if bows { 60.0 } else { 0.0 };
    let tallest = rows.iter().copied().max().unwrap_or(1) as f64;
    let height = tallest * ROW_H + 20.0 + top_pad;
    let centred = pos
        .iter()
        .map(|&(c, r)| {
            let in_col = rows[c] as f64;
            let top = top_pad + (height - top_pad - in_col * ROW_H) / 2.0;
            (30.0 + BOX_W / 2.0 + c as f64 * COL_W, top + (r as f64 + 0.5) * ROW_H)
        })
        .collect();
    (centred, cols as f64 * COL_W + 20.0, height)
}

/// A self-contained SVG with every graph stacked under its title.
pub fn to_svg(graphs: &[Graph]) -> String {
    let laid: Vec<_> = graphs.iter().map(layout).collect();
    let width = laid.iter().map(|l| l.1).fold(300.0, f64::max);
    let height: f64 = laid.iter().map(|l| l.2 + TITLE_H).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>"##);
    s.push_str("\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let mut y0 = 0.0;
    for (g, (pos, _, h)) in graphs.iter().zip(&laid) {
        let _ = writeln!(s, r#"<text x="12" y="{:.0}" font-size="15" font-weight="bold">{}</text>"#, y0 + 24.0, escape(&g.title));
        let top = y0 + TITLE_H;
        for (k, e) in g.edges.iter().enumerate() {
            let (a, b) = (pos[e.from], pos[e.to]);
            // A second edge between the same two nodes (both inputs of a micro node alike) bows the other way.
            let twin = g.edges[..k].iter().filter(|o| (o.from, o.to) == (e.from, e.to)).count() as f64;
            let (x1, y1, x2, y2) = (a.0 + BOX_W / 2.0, top + a.1, b.0 - BOX_W / 2.0, top + b.1);
            // Edges that skip columns bow upwards so they do not run through boxes.
            let bow = if g.nodes[e.to].column > g.nodes[e.from].column + 1 { -0.35 * (x2 - x1).min(220.0) } else { 0.0 } + 36.0 * twin;
            let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0 + bow);
            let dash = if e.dashed { r#" stroke-dasharray="5,4""# } else { "" };
            let _ =
                writeln!(s, r##"<path d="M {x1:.1} {y1:.1} Q {cx:.1} {cy:.1} {x2:.1} {y2:.1}" fill="none" stroke="#444"{dash} marker-end="url(#arrow)"/>"##);
            if !e.label.is_empty() {
                let (lx, ly) = ((x1 + 2.0 * cx + x2) / 4.0, (y1 + 2.0 * cy + y2) / 4.0 - 3.0);
                let _ = writeln!(s, r##"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" fill="#1a4d8f">{}</text>"##, escape(&e.label));
            }
        }
        for (n, &(x, y)) in g.nodes.iter().zip(pos.iter()) {
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="#eef3fb" stroke="#1a4d8f"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                x - BOX_W / 2.0,
                top + y - BOX_H / 2.0,
                top + y + 4.0,
                escape(&n.label)
            );
        }
        y0 += h + TITLE_H;
    }
    s.push_str("</svg>\n");
    s
}

/// The SVG rasterised to PNG (text in the system's fonts; none installed means no labels).
pub fn to_png(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // fontdb maps sans-serif to Arial; fall back to a sans face that is installed.
    let installed: Vec<String> = db.faces().flat_map(|f| f.families.iter().map(|(name, _)| name.clone())).collect();
    if let Some(family) = ["Arial", "Liberation Sans", "DejaVu Sans", "Noto Sans"].iter().find(|f| installed.iter().any(|i| i == *f)) {
        db.set_sans_serif_family(*family);
    } else if let Some(any) = installed.first() {
        db.set_sans_serif_family(any.clone());
    }
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| anyhow::anyhow!("drawing: empty image"))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| anyhow::anyhow!("drawing: cannot encode PNG: {e}"))
}
