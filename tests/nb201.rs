//! The NB201 space and `enas bench nb201` on synthetic tables in the real format.
use enas::cli::bench_nb201::{load_table, run, Nb201Args};
use enas::controller::Strategy;
use enas::space::{Arch, Nb201Arch, SpaceKind, NB201_OPS};
use std::path::{Path, PathBuf};
use std::process::Command;

fn all_archs() -> Vec<Nb201Arch> {
    (0..5usize.pow(6))
        .map(|mut k| {
            let mut ops = [0; 6];
            for o in &mut ops {
                *o = k % 5;
                k /= 5;
            }
            Nb201Arch { ops }
        })
        .collect()
}

/// Accuracy rises with every 3x3 conv and falls with every `none` edge, plus
/// a fixed pseudo-random jitter; the best cell is all 3x3 convs.
fn toy_accuracy(a: &Nb201Arch) -> f64 {
    let convs = a.ops.iter().filter(|&&o| o == 3).count() as f64;
    let nones = a.ops.iter().filter(|&&o| o == 0).count() as f64;
    let code = a.ops.iter().fold(0u64, |h, &o| h.wrapping_mul(31).wrapping_add(o as u64 + 7));
    let jitter = (code.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f64 / (1u64 << 24) as f64;
    60.0 + 5.0 * convs - 4.0 * nones + jitter
}

fn write_table(path: &Path, rows: &[(String, f64)]) {
    let mut text = String::from("arch,test_accuracy\n");
    for (a, v) in rows {
        text.push_str(&format!("{a},{v:.4}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn toy_table(dir: &Path) -> PathBuf {
    let path = dir.join("toy.csv");
    write_table(&path, &all_archs().iter().map(|a| (a.to_string(), toy_accuracy(a))).collect::<Vec<_>>());
    path
}

fn args(table: PathBuf, strategies: &[Strategy], budget: usize, seeds: u64) -> Nb201Args {
    Nb201Args {
        table,
        strategy: strategies.to_vec(),
        budget,
        seeds,
        noise: 0.0,
        cap_factor: 50,
        curve: None,
        plot: None,
        lr: None,
        samples_per_update: None,
        entropy_weight: None,
        tanh_constant: None,
        baseline_advantages: false,
        population: None,
        tournament: None,
        json: false,
    }
}

#[test]
fn nb201_strings_round_trip_and_bad_ones_are_named() {
    let text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|";
    let a: Nb201Arch = text.parse().unwrap();
    assert_eq!(a.ops, [3, 3, 4, 1, 3, 0]);
    assert_eq!(a.to_string(), text);
    assert_eq!(Arch::from_choices(SpaceKind::Nb201, &a.ops).unwrap(), Arch::Nb201(a));
    for (bad, says) in [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "3 '+'-separated nodes"),
        ("|conv_7x7~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|", "unknown op 'conv_7x7'"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~1|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|", "must read from 0"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|none~2|", "node 2 must have 2 edges"),
    ] {
        let e = bad.parse::<Nb201Arch>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    assert_eq!(NB201_OPS.len(), 5);
}

#[test]
fn random_search_matches_the_order_statistics_of_the_table() {
    let t = tempfile::tempdir().unwrap();
    let table = toy_table(t.path());
    let results = run(&args(table.clone(), &[Strategy::Random], 1, 400)).unwrap();
    // Best of one uniform draw is a uniform draw: its mean over seeds is the table's mean.
    let values: Vec<f64> = load_table(&table).unwrap().acc.values().copied().collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    let r = &results[0];
    assert!((r.mean_best - mean).abs() < 4.0 * sd / 20.0, "mean best {} vs table mean {mean} (sd {sd})", r.mean_best);
    assert!((r.std_best - sd).abs() < 0.2 * sd, "{} vs {sd}", r.std_best);
}

#[test]
fn every_strategy_spends_its_budget_and_the_learners_beat_random() {
    let t = tempfile::tempdir().unwrap();
    let results = run(&args(toy_table(t.path()), &Strategy::ALL, 60, 6)).unwrap();
    let by = |s: &str| results.iter().find(|r| r.strategy == s).unwrap();
    for r in &results {
        assert_eq!(r.curve.len(), 60);
        assert!(r.curve.windows(2).all(|w| w[1] >= w[0]), "{}: best-so-far fell", r.strategy);
        assert_eq!(r.mean_distinct, 60.0, "{}", r.strategy);
        assert!(r.mean_samples >= 60.0, "{}", r.strategy);
    }
    let random = by("random").mean_best;
    for s in ["evolution", "ppo"] {
        assert!(by(s).mean_best > random, "{s} {} vs random {random}", by(s).mean_best);
    }
}

#[test]
fn searches_that_stop_finding_new_architectures_end_at_the_proposal_cap() {
    let t = tempfile::tempdir().unwrap();
    let table = toy_table(t.path());
    // More distinct architectures than the space holds.
    let mut a = args(table.clone(), &[Strategy::Random], 20_000, 1);
    a.cap_factor = 1;
    let r = &run(&a).unwrap()[0];
    assert!(r.mean_distinct < 15_626.0 && r.mean_samples == 20_000.0, "{} distinct, {} proposals", r.mean_distinct, r.mean_samples);
    // A policy driven to repeat itself.
    let mut a = args(table, &[Strategy::Ppo], 500, 1);
    a.cap_factor = 1;
    a.lr = Some(0.5);
    let r = &run(&a).unwrap()[0];
    assert!(r.mean_distinct < 500.0 && r.mean_samples == 500.0, "{} distinct, {} proposals", r.mean_distinct, r.mean_samples);
    assert_eq!(r.curve.len(), 500, "the curve is padded to the budget");
}

#[test]
fn bad_tables_are_named_with_their_line() {
    let t = tempfile::tempdir().unwrap();
    let good = Nb201Arch { ops: [3; 6] }.to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("arch,test_accuracy\n{good},93.1\n{good},92.0\n"), "line 3: architecture"),
        (format!("arch,test_accuracy\n{good},high\n"), "line 2: accuracy 'high' is not a number"),
        ("arch,test_accuracy\n|bad~0|,90\n".to_string(), "line 2: architecture"),
        ("arch,test_accuracy\n".to_string(), "no rows"),
    ];
    for (text, says) in cases {
        let path = t.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let e = format!("{:#}", load_table(&path).err().expect("a bad table"));
        assert!(e.contains("t.csv") && e.contains(says), "{e}");
    }
    // A table missing rows is refused when a search looks one up.
    let path = t.path().join("partial.csv");
    write_table(&path, &[(good, 93.0)]);
    let e = format!("{:#}", run(&args(path, &[Strategy::Random], 5, 1)).map(|_| ()).expect_err("a missing row"));
    assert!(e.contains("partial.csv") && e.contains("no row for"), "{e}");
}

#[test]
fn cli_prints_one_json_object_per_strategy() {
    let t = tempfile::tempdir().unwrap();
    let table = toy_table(t.path());
    let curve = t.path().join("curve.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args(["bench", "nb201", "--table", table.to_str().unwrap(), "--strategy", "random,evolution", "--budget", "30"])
        .args(["--seeds", "3", "--json", "--curve", curve.to_str().unwrap(), "--plot", t.path().join("curves.svg").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (v, name) in lines.iter().zip(["random", "evolution"]) {
        assert_eq!(v["strategy"], name);
        assert_eq!(v["budget"], 30);
        assert_eq!(v["seeds"], 3);
        let m = v["mean_best"].as_f64().unwrap();
        assert!((60.0..=91.0).contains(&m), "{v}");
        assert!(v["std_best"].as_f64().unwrap() >= 0.0);
    }
    let csv = std::fs::read_to_string(curve).unwrap();
    assert_eq!(csv.lines().count(), 31);
    assert!(csv.starts_with("queries,random,evolution"));
    let svg = std::fs::read_to_string(t.path().join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("random") && svg.contains("evolution"), "legend of the plot");
    assert!(svg.matches("<polygon").count() >= 2 && svg.matches("<polyline").count() >= 2, "a line and a band per strategy");
    // Every query from the first (the curve's x values start at 1), and the tail zoomed beside it.
    assert!(svg.contains("best accuracy found") && svg.contains("the same from query 4 on"), "both charts");
    let first_xs: Vec<f64> = svg.split("<polyline").skip(1).filter_map(|p| p.split("points=\"").nth(1)?.split(',').next()?.parse().ok()).collect();
    let leftmost = first_xs.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(first_xs.iter().any(|&x| x > leftmost + 50.0), "the zoomed chart's lines start further right: {first_xs:?}");
}

#[test]
fn plot_is_png_or_svg_by_its_extension() {
    let t = tempfile::tempdir().unwrap();
    let table = toy_table(t.path());
    let bench = |plot: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_enas"))
            .args(["bench", "nb201", "--table", table.to_str().unwrap(), "--strategy", "random", "--budget", "20", "--seeds", "2", "--json"])
            .args(["--plot", plot.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let png = t.path().join("nb.PNG");
    let out = bench(&png);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG, not {:?}", &bytes[..bytes.len().min(8)]);
    // Any other extension is refused in one line before the searches run, and nothing is written.
    let jpg = t.path().join("nb.jpg");
    let out = bench(&jpg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{err}");
    assert!(err.contains("nb.jpg") && err.contains(".svg or .png") && err.trim().lines().count() == 1, "{err}");
    assert!(!jpg.exists());
}

#[test]
fn a_budget_beyond_the_space_is_said() {
    let t = tempfile::tempdir().unwrap();
    let table = toy_table(t.path());
    let out = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args([
            "bench",
            "nb201",
            "--table",
            table.to_str().unwrap(),
            "--strategy",
            "random",
            "--budget",
            "16000",
            "--seeds",
            "1",
            "--cap-factor",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--budget 16000") && err.contains("15625 architectures") && err.trim().lines().count() == 1, "{err}");
}
