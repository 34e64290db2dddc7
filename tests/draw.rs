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

/// Every node's label stands in the SVG as text, every edge as an arrow, and DOT has them all.
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
    assert_no_text_overlaps(&svg);
    (svg, dot)
}

/// The box a `<text>` element of the SVG covers, from its position, anchor,
/// font size and length (characters 0.65 em wide: the widest sans-serif we meet).
fn text_boxes(svg: &str) -> Vec<(String, [f64; 4])> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[at..].split('"').next()?.to_string())
    };
    svg.split("<text")
        .skip(1)
        .map(|part| {
            let (tag, rest) = part.split_once('>').unwrap();
            let text = rest.split("</text>").next().unwrap().replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            let x: f64 = attr(tag, "x").unwrap().parse().unwrap();
            let y: f64 = attr(tag, "y").unwrap().parse().unwrap();
            let size: f64 = attr(tag, "font-size").map_or(12.0, |s| s.parse().unwrap());
            let width = text.chars().count() as f64 * 0.65 * size;
            let left = match attr(tag, "text-anchor").as_deref() {
                Some("middle") => x - width / 2.0,
                Some("end") => x - width,
                _ => x,
            };
            (text, [left, y - 0.8 * size, left + width, y + 0.25 * size])
        })
        .collect()
}

fn assert_no_text_overlaps(svg: &str) {
    let boxes = text_boxes(svg);
    assert!(!boxes.is_empty());
    for (i, (a, p)) in boxes.iter().enumerate() {
        for (b, q) in &boxes[i + 1..] {
            let overlap = p[0] < q[2] && q[0] < p[2] && p[1] < q[3] && q[1] < p[3];
            assert!(!overlap, "'{a}' at {p:?} overlaps '{b}' at {q:?}");
        }
    }
}

#[test]
fn published_micro_cells_are_drawn_with_every_op() {
    let arch = Arch::parse(SpaceKind::Micro, MICRO).unwrap();
    let (svg, _) = check(&arch);
    let Arch::Micro(a) = &arch else { unreachable!() };
    // Two op boxes per node: five nodes in each cell, both cells, every op name as its label.
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
    assert_eq!(count(&svg, "stroke-dasharray=\"5,4\""), skips);
    assert_eq!(count(&dot, "style=dashed"), skips);
    for (i, l) in a.layers.iter().enumerate() {
        assert!(svg.contains(&format!(">layer {i}: {}</text>", MACRO_OPS[l.op])));
    }
    // Top to bottom, not one long row: narrower than it is tall, and narrow enough for a page.
    let size = |name: &str| svg.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse::<f64>().unwrap();
    assert!(size("width") < 600.0 && size("height") > size("width"), "{} x {}", size("width"), size("height"));
}

#[test]
fn nb201_cell_shows_all_six_edges() {
    let arch = Arch::parse(SpaceKind::Nb201, NB201).unwrap();
    let (svg, dot) = check(&arch);
    for op in ["nor_conv_3x3", "none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"] {
        assert!(svg.contains(&format!(">{op}</text>")), "{op}");
    }
    // An op box on each of the six edges: into it and out of it.
    assert_eq!(count(&svg, "marker-end="), 12);
    assert_eq!(count(&dot, "style=dashed"), 1, "the none op is dashed");
}

#[test]
fn no_label_overlaps_another_in_any_drawing() {
    use rand::SeedableRng;
    // The published cells and networks above, and random ones of every size.
    for (space, arch) in [(SpaceKind::Micro, MICRO), (SpaceKind::Macro, MACRO), (SpaceKind::Nb201, NB201)] {
        assert_no_text_overlaps(&to_svg(&graphs(&Arch::parse(space, arch).unwrap())));
    }
    for seed in 0..40 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for (space, size) in [(SpaceKind::Micro, 2 + seed as usize % 6), (SpaceKind::Macro, 1 + seed as usize % 14), (SpaceKind::Nb201, 0)] {
            let arch = enas::controller::uniform_arch(space, size, &mut rng);
            assert_no_text_overlaps(&to_svg(&graphs(&arch)));
        }
    }
    let chain = Arch::parse(SpaceKind::Metaqnn, "C(512,3) C(512,1) P(5,3) C(256,5) FC(512) FC(128) SM").unwrap();
    assert_no_text_overlaps(&to_svg(&graphs(&chain)));
    // The check itself finds two labels drawn at one place.
    let doubled = r#"<svg><text x="10" y="10">sep_conv_3x3</text><text x="40" y="12">identity</text></svg>"#;
    assert!(std::panic::catch_unwind(|| assert_no_text_overlaps(doubled)).is_err());
}

#[test]
fn cli_writes_svg_and_dot_and_names_a_bad_extension() {
    let t = tempfile::tempdir().unwrap();
    let png = t.path().join("cell.png");
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "--out", png.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "PNG of {} bytes", bytes.len());
    for ext in ["svg", "dot"] {
        let path = t.path().join(format!("cell.{ext}"));
        let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "--out", path.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read_to_string(&path).unwrap().contains("sep_conv_5x5"));
    }
    let bad = t.path().join("cell.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(["draw", MICRO, "--out", bad.to_str().unwrap()]).output().unwrap();
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
