use enas::space::{Arch, MacroArch, MicroArch, SpaceKind};

const NORMAL: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1";
const REDUCE: &str = "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";

#[test]
fn published_micro_cell_round_trips() {
    let text = format!("{NORMAL} {REDUCE}");
    let a: MicroArch = text.parse().unwrap();
    assert_eq!(a.num_nodes(), 5);
    assert_eq!(a.to_string(), text);
    let n0 = a.normal.nodes[0];
    assert_eq!((n0.x_id, n0.x_op, n0.y_id, n0.y_op), (0, 2, 0, 0));
    // Every node of the published normal cell feeds the output.
    assert_eq!(a.normal.unused(), vec![false, false, true, true, true, true, true]);
    let json = Arch::Micro(a.clone()).to_json();
    assert_eq!(json["normal"][0]["x_op"], "avg_pool_3x3");
    assert_eq!(Arch::from_json(SpaceKind::Micro, &json).unwrap(), Arch::Micro(a));
}

#[test]
fn micro_errors_point_at_the_token() {
    let e = format!("{NORMAL} 1 0 1 x").parse::<MicroArch>().unwrap_err().to_string();
    assert!(e.contains("token 24 ('x')") && e.contains("not a non-negative integer"), "{e}");
    let bad_op = NORMAL.replacen("0 2", "0 7", 1);
    let e = format!("{bad_op} {REDUCE}").parse::<MicroArch>().unwrap_err().to_string();
    assert!(e.contains("token 2 ('7')") && e.contains("op of node 0 must be below 5"), "{e}");
    let e = format!("{} {REDUCE}", NORMAL.replacen("0 2 0 0", "3 2 0 0", 1)).parse::<MicroArch>().unwrap_err().to_string();
    assert!(e.contains("token 1 ('3')") && e.contains("input id of node 0 must be below 2"), "{e}");
    let e = NORMAL.parse::<MicroArch>().unwrap_err().to_string();
    assert!(e.contains("20 integers"), "{e}");
}

#[test]
fn macro_arch_round_trips_and_points_at_bad_bits() {
    // Four layers: 1 + 2 + 3 + 4 = 10 integers.
    let text = "0 3 1 5 0 1 2 1 0 1";
    let a: MacroArch = text.parse().unwrap();
    assert_eq!(a.layers.len(), 4);
    assert_eq!(a.layers[3].skips, vec![true, false, true]);
    assert_eq!(a.to_string(), text);
    let json = Arch::Macro(a.clone()).to_json();
    assert_eq!(Arch::from_json(SpaceKind::Macro, &json).unwrap(), Arch::Macro(a));
    let e = "0 3 2 5 0 1".parse::<MacroArch>().unwrap_err().to_string();
    assert!(e.contains("token 3 ('2')") && e.contains("skip bit 0 of layer 1"), "{e}");
    let e = "0 3 1 5 0".parse::<MacroArch>().unwrap_err().to_string();
    assert!(e.contains("5 integers"), "{e}");
    let e = Arch::from_json(SpaceKind::Micro, &json).unwrap_err().to_string();
    assert!(e.contains("macro architecture, expected micro"), "{e}");
}

#[test]
fn peer_workload_arc_files_parse() {
    for (space, file) in [(SpaceKind::Micro, "micro_arcs.txt"), (SpaceKind::Macro, "macro_arcs.txt")] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 50, "{file}");
        for l in lines {
            let a = Arch::parse(space, l).unwrap();
            assert_eq!(a.to_arc_string(), l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}

#[test]
fn arch_loads_from_string_file_and_json() {
    let t = tempfile::tempdir().unwrap();
    let text = format!("{NORMAL}\n{REDUCE}\n");
    let p = t.path().join("arc.txt");
    std::fs::write(&p, &text).unwrap();
    let a = Arch::load(SpaceKind::Micro, p.to_str().unwrap()).unwrap();
    let j = t.path().join("arch.json");
    std::fs::write(&j, a.to_json().to_string()).unwrap();
    assert_eq!(Arch::load(SpaceKind::Micro, j.to_str().unwrap()).unwrap(), a);
    std::fs::write(&p, format!("{NORMAL} {}", REDUCE.replacen('1', "z", 1))).unwrap();
    let e = format!("{:#}", Arch::load(SpaceKind::Micro, p.to_str().unwrap()).unwrap_err());
    assert!(e.contains("arc.txt") && e.contains("token 21 ('z')"), "{e}");
}
