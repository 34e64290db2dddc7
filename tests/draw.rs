//! `enas draw`: the published ENAS micro and macro architectures and an NB201
//! cell drawn as SVG and DOT, every node and edge label present.
use enas::report::draw::{graphs, to_dot, to_svg};
use enas::space::{Arch, SpaceKind, MACRO_OPS, MICRO_OPS};
use std::process::Command;

/// The authors' final CIFAR-10 micro cells (scripts/cifar10_micro_final.sh).
const MICRO: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";
/// The authors' final CIFAR-10 macro network, 24 layers (scripts/cifar10_macro_final.sh).
const MACRO: &str = concat!(
    "0 ",
    "3 0 ",
    "0 1 0 ",
    "2 0 0 1 ",
    "2 0 0 0 0 ",
    "3 1 1 0 1 0 ",
    "2 0 0 0 0 0 1 ",
    "2 0 1 1 0 1 1 1 ",
    "1 0 1 1 1 0 1 0 1 ",
    "0 0 0 0 0 0 0 0 0 0 ",
    "2 0 0 0 0 0 1 0 0 0 0 ",
    "0 1 0 0 1 1 0 0 0 0 1 1 ",
    "2 0 1 0 0 0 0 0 1 0 1 1 0 ",
    "1 0 0 1 0 0 0 1 1 1 0 1 0 1 ",
    "0 1 1 0 1 0 1 0 0 0 0 0 1 0 0 ",
    "2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 ",
    "2 0 1 0 0 0 1 0 0 1 1 1 1 0 0 1 0 ",
    "2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1 ",
    "3 0 1 1 0 1 0 0 0 0 0 1 0 1 0 1 0 0 0 ",
    "3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 ",
    "0 1 0 0 1 0 1 1 0 0 0 1 0 0 0 0 0 1 1 0 0 ",
    "3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 0 ",
    "0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0 ",
    "0 1 1 0 0 0 1 1 1 0 1 0 0 0 1 0 1 0 0 1 1 0 0 0 ",
);
const NB201: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|";

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Every node's label and every labelled edge's label stands in the SVG as text, and DOT has every edge.
fn check(arch: &Arch) -> (String, String) {
    let g = graphs(arch);
    let (svg, dot) = (to_svg(&g), to_dot(&g));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for graph in &g {
        assert!(svg.contains(&format!(">{}</text>", graph.title)), "title {}", graph.title);
        for n in &graph.nodes {
            let label = n.label.replace('<', "&lt;").replace('>', "&gt;");
            assert!(svg.contains(&format!(">{label}</text>")), "node {label} missing");
        }
    }
    let edges: Vec<_> = g.iter().flat_map(|gr| gr.edges.iter()).collect();
    assert_eq!(count(&svg, "marker-end="), edges.len());
    assert_eq!(count(&dot, " -> "), edges.len());
    let mut labels: Vec<&str> = edges.iter().map(|e| e.label.as_str()).filter(|l| !l.is_empty()).collect();
    labels.sort();
    labels.dedup();
    for l in labels {
        let want = edges.iter().filter(|e| e.label == l).count();
        assert_eq!(count(&svg, &format!(">{l}</text>")), want, "edge label {l}");
    }
    (svg, dot)
}

#[test]
fn published_micro_cells_are_drawn_with_every_op() {
    let arch = Arch::parse(SpaceKind::Micro, MICRO).unwrap();
    let (svg, _) = check(&arch);
    let Arch::Micro(a) = &arch else { unreachable!() };
    // Four edges per node: five nodes in each cell, both cells, every op name as its label.
    let ops: usize = MICRO_OPS.iter().map(|op| count(&svg, &format!(">{op}</text>"))).sum();
    assert_eq!(ops, 4 * a.normal.nodes.len());
    for t in ["normal cell", "reduction cell", "c_{k-2}", "c_{k-1}", "c_{k} (concat)"] {
        assert!(svg.contains(t), "{t}");
    }
}

#[test]
fn published_macro_network_is_a_chain_with_its_skips() {
    let arch = Arch::parse(SpaceKind::Macro, MACRO).unwrap();
    let Arch::Macro(a) = &arch else { unreachable!() };
    assert_eq!(a.layers.len(), 24);
    let (svg, dot) = check(&arch);
    let skips: usize = a.layers.iter().map(|l| l.skips.iter().filter(|s| **s).count()).sum();
    assert_eq!(count(&svg, ">skip</text>"), skips);
    assert_eq!(count(&dot, "style=dashed"), skips);
    for (i, l) in a.layers.iter().enumerate() {
        assert!(svg.contains(&format!(">layer {i}: {}</text>", MACRO_OPS[l.op])));
    }
}

#[test]
fn nb201_cell_shows_all_six_edges() {
    let arch = Arch::parse(SpaceKind::Nb201, NB201).unwrap();
    let (svg, dot) = check(&arch);
    assert_eq!(count(&svg, "marker-end="), 6);
    for op in ["nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"] {
        assert!(svg.contains(&format!(">{op}</text>")), "{op}");
    }
    assert_eq!(count(&dot, "style=dashed"), 1, "the none edge is dashed");
}

#[test]
fn cli_writes_svg_and_dot_and_names_a_bad_extension() {
    let t = tempfile::tempdir().unwrap();
    let png = t.path().join("cell.png");
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "-o", png.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "PNG of {} bytes", bytes.len());
    for ext in ["svg", "dot"] {
        let path = t.path().join(format!("cell.{ext}"));
        let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "-o", path.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read_to_string(&path).unwrap().contains("sep_conv_5x5"));
    }
    let bad = t.path().join("cell.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "-o", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cell.jpg") && err.contains(".svg, .png or .dot"), "{err}");
}

#[test]
fn an_input_no_node_reads_is_drawn_into_the_output() {
    // Every node reads c_{k-1} only: c_{k-2} is concatenated into the output as it is (FixedCell), so it is drawn joined to it.
    let cell = ["1 0 1 0"; 5].join(" ");
    let arch = Arch::parse(SpaceKind::Micro, &format!("{cell} {cell}")).unwrap();
    for g in graphs(&arch) {
        let id = |label: &str| g.nodes.iter().position(|n| n.label == label).unwrap();
        let (input, out) = (id("c_{k-2}"), id("c_{k} (concat)"));
        assert!(g.edges.iter().any(|e| e.from == input && e.to == out), "c_{{k-2}} is not joined to the output");
        // The other input feeds nodes and is not concatenated; the five nodes are.
        assert!(!g.edges.iter().any(|e| e.from == id("c_{k-1}") && e.to == out));
        assert_eq!(g.edges.iter().filter(|e| e.to == out).count(), 6);
    }
}
