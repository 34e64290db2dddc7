//! `enas bench supernet`: the peer workload runs, reports what it measured,
//! rejects arc files that do not fit, and its numbers do not drift when the ops
//! are optimised.
use enas::cli::bench_supernet::{run_supernet, SupernetArgs};
use enas::model::MacroSkips;
use enas::space::SpaceKind;
use std::path::PathBuf;

fn args(space: SpaceKind, arcs: PathBuf, layers: usize) -> SupernetArgs {
    SupernetArgs {
        space,
        arcs,
        batch: 8,
        channels: Some(8),
        layers: Some(layers),
        nodes: 5,
        image: 16,
        in_channels: 3,
        steps: Some(2),
        warmup: Some(2),
        seed: 0,
        // The pinned losses below were recorded with concatenated skips.
        macro_skips: MacroSkips::Concat,
        device: enas::cli::DeviceArg { device: "cpu".into() },
        json: true,
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The losses of four steps (each on the next arc, SGD in between) from seed 0,
/// recorded with the unoptimised ops (candle's matmul, relu and add, our
/// first depthwise, pooling and batch-norm loops; commit cca6c0c + the bench).
/// Every later optimisation must reproduce them to 1e-4.
const MICRO_LOSSES: [f64; 4] = [2.365586042404175, 2.5626935958862305, 2.402251958847046, 2.563060998916626];
const MACRO_LOSSES: [f64; 4] = [2.3426012992858887, 2.451918363571167, 2.2946605682373047, 2.212174892425537];

#[test]
fn supernet_steps_match_the_pre_optimisation_losses() {
    for (space, file, layers, want) in [(SpaceKind::Micro, "micro_arcs.txt", 3, MICRO_LOSSES), (SpaceKind::Macro, "macro_arcs.txt", 12, MACRO_LOSSES)] {
        let b = run_supernet(&args(space, fixture(file), layers)).unwrap();
        assert_eq!(b.losses.len(), 4);
        for (step, (got, want)) in b.losses.iter().zip(want).enumerate() {
            assert!((got - want).abs() < 1e-4, "{space:?} step {step}: loss {got}, before optimising {want}");
        }
        assert!(b.images_per_s > 0.0 && b.peak_rss_mb > 0.0);
        let phases: f64 = b.phases.iter().map(|(_, s)| s).sum();
        assert!(phases > 0.5 && phases <= 1.01, "phases cover the step time: {phases}");
        // The depthwise convolutions' backward is timed: alone, or with the pointwise one in a separable half.
        assert!(b.ops.iter().any(|(k, _)| *k == "depthwise bwd" || *k == "sep bwd"), "op breakdown: {:?}", b.ops);
    }
}

#[test]
fn arc_files_that_do_not_fit_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("arcs.txt");
    std::fs::write(&bad, "0 0 1 4\n\n1 2 x\n").unwrap();
    let err = run_supernet(&args(SpaceKind::Micro, bad.clone(), 3)).unwrap_err().to_string();
    assert!(err.contains("arcs.txt") && err.contains("line 1"), "{err}");
    // A 12-layer macro arc on a 6-layer supernet.
    let err = run_supernet(&args(SpaceKind::Macro, fixture("macro_arcs.txt"), 6)).unwrap_err().to_string();
    assert!(err.contains("macro_arcs.txt") && err.contains("12 layers") && err.contains("6"), "{err}");
    let err = run_supernet(&args(SpaceKind::Micro, dir.path().join("missing.txt"), 3)).unwrap_err().to_string();
    assert!(err.contains("missing.txt"), "{err}");
}
