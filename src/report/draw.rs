//! Drawings of architectures: micro cells (inputs c_{k-2}, c_{k-1}, each
//! node's two ops as boxes, the concatenated output), NB201 cells alike, the
//! macro network and MetaQNN chains top to bottom with skips as arcs beside
//! them; as SVG (our own layered layout, no Graphviz) or DOT. Every label sits
//! in its own box on a grid, so no label can overlap another.
use super::escape;
use crate::space::metaqnn::{end_token, layer_token};
use crate::space::{Arch, Cell, MACRO_OPS, MICRO_OPS, NB201_OPS};
use std::fmt::Write;

/// What a box stands for, which sets how it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An input, a node's output, the cell's output, a layer.
    State,
    /// An operation applied on the way from one state to another.
    Op,
    /// NB201's `none`: an edge that is not there.
    Absent,
}

pub struct Node {
    pub label: String,
    /// Position along the flow: left to right, or top to bottom in a chain.
    pub column: usize,
    pub kind: Kind,
}

pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// Skips are drawn dashed.
    pub dashed: bool,
}

/// One titled graph; a micro architecture has two (normal and reduction cell).
pub struct Graph {
    pub title: String,
    /// A line under the title saying what the drawing's conventions mean.
    pub note: Option<String>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// A chain drawn top to bottom (the macro network, MetaQNN), its skips as arcs on the right.
    pub vertical: bool,
}

impl Graph {
    fn new(title: &str, vertical: bool) -> Graph {
        Graph { title: title.to_string(), note: None, nodes: Vec::new(), edges: Vec::new(), vertical }
    }
    fn node(&mut self, label: impl Into<String>, column: usize, kind: Kind) -> usize {
        self.nodes.push(Node { label: label.into(), column, kind });
        self.nodes.len() - 1
    }
    fn edge(&mut self, from: usize, to: usize, dashed: bool) {
        self.edges.push(Edge { from, to, dashed });
    }
    /// An op box in `column` between `from` and `to`.
    fn op(&mut self, from: usize, to: usize, label: &str, column: usize, kind: Kind) {
        let op = self.node(label, column, kind);
        self.edge(from, op, false);
        self.edge(op, to, false);
    }
}

fn cell_graph(title: &str, cell: &Cell) -> Graph {
    let mut g = Graph::new(title, false);
    g.note = Some("each node adds the results of its two ops; inputs and nodes no node reads are concatenated into the output".into());
    let mut ids = vec![g.node("c_{k-2}", 0, Kind::State), g.node("c_{k-1}", 0, Kind::State)];
    let mut depth = vec![0usize, 0];
    for (i, n) in cell.nodes.iter().enumerate() {
        let d = 1 + depth[n.x_id].max(depth[n.y_id]);
        let (x_op, y_op) = (g.node(MICRO_OPS[n.x_op], 2 * d - 1, Kind::Op), g.node(MICRO_OPS[n.y_op], 2 * d - 1, Kind::Op));
        let id = g.node(format!("node {i}"), 2 * d, Kind::State);
        for (from, op) in [(ids[n.x_id], x_op), (ids[n.y_id], y_op)] {
            g.edge(from, op, false);
            g.edge(op, id, false);
        }
        ids.push(id);
        depth.push(d);
    }
    let out = g.node("c_{k} (concat)", 2 * depth.iter().max().copied().unwrap_or(0) + 1, Kind::State);
    for (s, unused) in cell.unused().iter().enumerate() {
        if *unused {
            g.edge(ids[s], out, false);
        }
    }
    g
}

/// The graphs that make up a drawing of `arch`.
pub fn graphs(arch: &Arch) -> Vec<Graph> {
    match arch {
        Arch::Micro(a) => vec![cell_graph("normal cell", &a.normal), cell_graph("reduction cell", &a.reduce)],
        Arch::Macro(a) => {
            let mut g = Graph::new("macro network", true);
            g.note = Some("dashed arcs: skip connections, concatenated into the layer's input".into());
            let mut outs = vec![g.node("stem", 0, Kind::State)];
            for (i, l) in a.layers.iter().enumerate() {
                let id = g.node(format!("layer {i}: {}", MACRO_OPS[l.op]), i + 1, Kind::State);
                g.edge(*outs.last().expect("the stem"), id, false);
                for (j, _) in l.skips.iter().enumerate().filter(|(_, s)| **s) {
                    g.edge(outs[j], id, true);
                }
                outs.push(id);
            }
            let head = g.node("global avg pool, fc", a.layers.len() + 1, Kind::State);
            g.edge(*outs.last().expect("the stem"), head, false);
            vec![g]
        }
        Arch::Nb201(a) => {
            let mut g = Graph::new("NB201 cell", false);
            g.note = Some("each node sums the ops on its incoming edges; a dashed op is none (no edge)".into());
            let ids: Vec<usize> = (0..4).map(|i| g.node(format!("node {i}"), 2 * i, Kind::State)).collect();
            let mut at = 0;
            for to in 1..4 {
                for from in 0..to {
                    let op = a.ops[at];
                    g.op(ids[from], ids[to], NB201_OPS[op], 2 * to - 1, if op == 0 { Kind::Absent } else { Kind::Op });
                    at += 1;
                }
            }
            vec![g]
        }
        Arch::Metaqnn(a) => {
            let mut g = Graph::new("MetaQNN network", true);
            let mut prev = g.node("input", 0, Kind::State);
            for (i, l) in a.layers.iter().enumerate() {
                let id = g.node(layer_token(l), i + 1, Kind::State);
                g.edge(prev, id, false);
                prev = id;
            }
            let end = g.node(end_token(a.end), a.layers.len() + 1, Kind::State);
            g.edge(prev, end, false);
            vec![g]
        }
    }
}

/// Graphviz DOT, one cluster per graph; ops are ellipses.
pub fn to_dot(graphs: &[Graph]) -> String {
    let rankdir = if graphs.iter().all(|g| g.vertical) { "TB" } else { "LR" };
    let mut s = format!("digraph architecture {{\n  rankdir={rankdir};\n  node [shape=box, style=rounded];\n");
    for (k, g) in graphs.iter().enumerate() {
        let _ = writeln!(s, "  subgraph cluster_{k} {{\n    label=\"{}\";", g.title.replace('"', "'"));
        for (i, n) in g.nodes.iter().enumerate() {
            let shape = match n.kind {
                Kind::State => "",
                Kind::Op => ", shape=ellipse",
                Kind::Absent => ", shape=ellipse, style=dashed",
            };
            let _ = writeln!(s, "    g{k}n{i} [label=\"{}\"{shape}];", n.label.replace('"', "'"));
        }
        for e in &g.edges {
            let style = if e.dashed { " [style=dashed]" } else { "" };
            let _ = writeln!(s, "    g{k}n{} -> g{k}n{}{style};", e.from, e.to);
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

const FONT: f64 = 12.0;
/// Width of a character of the drawings' sans-serif at `FONT`, generously (DejaVu Sans is the widest we meet).
pub const CHAR_W: f64 = 0.65 * FONT;
const ROW_H: f64 = 52.0;
const BOX_H: f64 = 30.0;
/// Room between columns for the edges.
const GAP: f64 = 70.0;
const MARGIN: f64 = 20.0;
/// Per column of span, how far a chain's skip arc swings out.
const ARC_STEP: f64 = 10.0;

fn title_height(g: &Graph) -> f64 {
    if g.note.is_some() {
        52.0
    } else {
        34.0
    }
}

/// The width of the boxes of `g`: its longest label, padded.
fn box_width(g: &Graph) -> f64 {
    g.nodes.iter().map(|n| n.label.chars().count() as f64 * CHAR_W + 20.0).fold(90.0, f64::max)
}

/// Where a graph's boxes and edges go.
struct Laid {
    /// Box centres.
    pos: Vec<(f64, f64)>,
    width: f64,
    height: f64,
    /// Per edge that skips columns: the height of the lane it runs along,
    /// above or below every box, and its slot in the gaps it climbs through.
    lanes: Vec<Option<(f64, f64)>>,
}

/// The layout of `g`.
fn layout(g: &Graph) -> Laid {
    let bw = box_width(g);
    if g.vertical {
        let pos: Vec<(f64, f64)> = g.nodes.iter().map(|n| (MARGIN + bw / 2.0, MARGIN + BOX_H / 2.0 + n.column as f64 * ROW_H)).collect();
        let span = g.edges.iter().filter(|e| e.dashed).map(|e| g.nodes[e.to].column.abs_diff(g.nodes[e.from].column)).max().unwrap_or(0);
        let rows = g.nodes.iter().map(|n| n.column).max().unwrap_or(0) + 1;
        let width = MARGIN * 2.0 + bw + if span > 0 { 20.0 + ARC_STEP * span as f64 } else { 0.0 };
        return Laid { pos, width: width.max(300.0), height: rows as f64 * ROW_H + MARGIN, lanes: vec![None; g.edges.len()] };
    }
    // Columns left to right; in each, nodes in order, each as near the mean
    // height of what feeds it as the ones above it allow.
    let cols = g.nodes.iter().map(|n| n.column).max().map_or(0, |m| m + 1);
    let mut y: Vec<Option<f64>> = vec![None; g.nodes.len()];
    let mut sources: Vec<usize> = Vec::new();
    for c in 0..cols {
        let members: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].column == c).collect();
        let desired = |i: usize| {
            let fed: Vec<f64> = g.edges.iter().filter(|e| e.to == i).filter_map(|e| y[e.from]).collect();
            (!fed.is_empty()).then(|| fed.iter().sum::<f64>() / fed.len() as f64)
        };
        let wants: Vec<Option<f64>> = members.iter().map(|&i| desired(i)).collect();
        let mut prev = f64::NEG_INFINITY;
        for (&i, want) in members.iter().zip(&wants) {
            let at = want.unwrap_or(prev + ROW_H).max(prev + ROW_H);
            let at = if at.is_finite() { at } else { 0.0 };
            y[i] = Some(at);
            prev = at;
        }
        if wants.iter().all(Option::is_none) {
            sources.push(c);
        }
    }
    let mut y: Vec<f64> = y.into_iter().map(|v| v.unwrap_or(0.0)).collect();
    let (lo, hi) = y.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    // Columns nothing feeds (the inputs) sit in the middle of the drawing.
    for c in sources {
        let members: Vec<usize> = (0..g.nodes.len()).filter(|&i| g.nodes[i].column == c).collect();
        let top = (lo + hi) / 2.0 - (members.len() as f64 - 1.0) * ROW_H / 2.0;
        for (k, &i) in members.iter().enumerate() {
            y[i] = top + k as f64 * ROW_H;
        }
    }
    let lo = y.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Edges that skip columns would run through boxes: they climb (or drop)
    // through the gaps between columns to a lane of their own above (below)
    // every box, and run along it.
    let long: Vec<usize> = (0..g.edges.len()).filter(|&k| g.nodes[g.edges[k].to].column > g.nodes[g.edges[k].from].column + 1).collect();
    let above = |k: usize| (y[g.edges[k].from] + y[g.edges[k].to]) / 2.0 <= (lo + hi) / 2.0;
    let (n_above, n_below) = (long.iter().filter(|&&k| above(k)).count(), long.iter().filter(|&&k| !above(k)).count());
    let top = MARGIN + BOX_H / 2.0 + n_above as f64 * LANE;
    let bottom = top + hi - lo + BOX_H / 2.0;
    let mut lanes = vec![None; g.edges.len()];
    let (mut a, mut b) = (0, 0);
    for (slot, &k) in long.iter().enumerate() {
        let lane = if above(k) {
            a += 1;
            top - BOX_H / 2.0 - a as f64 * LANE
        } else {
            b += 1;
            bottom + b as f64 * LANE
        };
        lanes[k] = Some((lane, (slot % 5) as f64 * 8.0));
    }
    let pos = g.nodes.iter().zip(&y).map(|(n, &v)| (MARGIN + bw / 2.0 + n.column as f64 * (bw + GAP), top + v - lo)).collect();
    Laid { pos, width: MARGIN * 2.0 + cols as f64 * (bw + GAP) - GAP, height: bottom + n_below as f64 * LANE + MARGIN, lanes }
}

/// Between two lanes of edges that skip columns.
const LANE: f64 = 12.0;

/// A self-contained SVG with every graph stacked under its title; it scales
/// down to the width of the page it is put in.
pub fn to_svg(graphs: &[Graph]) -> String {
    let laid: Vec<Laid> = graphs.iter().map(layout).collect();
    let width = laid.iter().map(|l| l.width).fold(300.0, f64::max);
    let height: f64 = graphs.iter().zip(&laid).map(|(g, l)| l.height + title_height(g)).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" style="max-width:100%;height:auto" font-family="sans-serif" font-size="{FONT}">"#
    );
    s.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>"##);
    s.push_str("\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let mut y0 = 0.0;
    for (g, l) in graphs.iter().zip(&laid) {
        let _ = writeln!(s, r#"<text x="12" y="{:.0}" font-size="15" font-weight="bold">{}</text>"#, y0 + 24.0, escape(&g.title));
        if let Some(note) = &g.note {
            let _ = writeln!(s, r##"<text x="12" y="{:.0}" font-size="11" fill="#555">{}</text>"##, y0 + 42.0, escape(note));
        }
        let top = y0 + title_height(g);
        let bw = box_width(g);
        for (e, lane) in g.edges.iter().zip(&l.lanes) {
            let (a, b) = (l.pos[e.from], l.pos[e.to]);
            let dash = if e.dashed { r#" stroke-dasharray="5,4""# } else { "" };
            let d = if g.vertical && e.dashed {
                // A skip swings out to the right, the further the longer it is.
                let span = g.nodes[e.to].column.abs_diff(g.nodes[e.from].column) as f64;
                let (x, out) = (a.0 + bw / 2.0, a.0 + bw / 2.0 + 20.0 + ARC_STEP * span);
                format!("M {x:.1} {:.1} C {out:.1} {:.1} {out:.1} {:.1} {x:.1} {:.1}", top + a.1, top + a.1, top + b.1, top + b.1)
            } else if g.vertical {
                format!("M {:.1} {:.1} L {:.1} {:.1}", a.0, top + a.1 + BOX_H / 2.0, b.0, top + b.1 - BOX_H / 2.0)
            } else {
                let (x1, y1, x2, y2) = (a.0 + bw / 2.0, top + a.1, b.0 - bw / 2.0, top + b.1);
                match lane {
                    Some((lane, slot)) => {
                        let (up, down, lane) = (x1 + GAP / 2.0 - 16.0 + slot, x2 - GAP / 2.0 + 16.0 - slot, y0 + title_height(g) + lane);
                        format!("M {x1:.1} {y1:.1} L {up:.1} {y1:.1} L {up:.1} {lane:.1} L {down:.1} {lane:.1} L {down:.1} {y2:.1} L {x2:.1} {y2:.1}")
                    }
                    None => format!("M {x1:.1} {y1:.1} C {:.1} {y1:.1} {:.1} {y2:.1} {x2:.1} {y2:.1}", x1 + GAP / 2.0, x2 - GAP / 2.0),
                }
            };
            let _ = writeln!(s, r##"<path d="{d}" fill="none" stroke="#444"{dash} marker-end="url(#arrow)"/>"##);
        }
        for (n, &(x, y)) in g.nodes.iter().zip(l.pos.iter()) {
            let (fill, stroke, rx, dash, ink) = match n.kind {
                Kind::State => ("#eef3fb", "#1a4d8f", 8, "", "#222"),
                Kind::Op => ("#fff4e0", "#a05a00", 14, "", "#222"),
                Kind::Absent => ("#ffffff", "#999999", 14, r#" stroke-dasharray="4,3""#, "#888"),
            };
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{BOX_H}" rx="{rx}" fill="{fill}" stroke="{stroke}"{dash}/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{ink}">{}</text>"##,
                x - bw / 2.0,
                top + y - BOX_H / 2.0,
                top + y + 4.0,
                escape(&n.label)
            );
        }
        y0 += l.height + title_height(g);
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
