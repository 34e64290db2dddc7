//! `enas bench ranking` on a smoke run: the derived architecture scored as
//! derive scored it, each architecture's accuracy from scratch that of its
//! own training, a rerun continuing without training again, other settings
//! refused, and the result in the run's reports.
mod common;

use std::process::Command;

fn enas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_smoke_run_is_ranked_resumed_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(tmp.path());
    let run = tmp.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let (code, _, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", r, "--quiet"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = enas(&["bench", "ranking", "--run", r, "--archs", "5", "--epochs", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let k: serde_json::Value = serde_json::from_str(&out).unwrap();
    let archs = k["archs"].as_array().unwrap();
    assert_eq!(archs.len(), 6);
    // The derived architecture first, scored with the shared weights exactly as derive scored it.
    let derived = json(&run.join("derive/derive.json"));
    assert_eq!(archs[0]["source"], "derived");
    assert_eq!(archs[0]["arch"], derived["arch"]);
    assert_eq!(archs[0]["shared_accuracy"], derived["valid_accuracy"]);
    let distinct: std::collections::HashSet<&str> = archs.iter().map(|a| a["arch"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 6, "the uniform draws repeat an architecture");
    // Each accuracy from scratch is its child's last epoch on the validation split.
    let ranking = run.join("ranking");
    for (i, a) in archs.iter().enumerate() {
        let child = json(&ranking.join(format!("children/{i:04}/summary.json")));
        assert_eq!(child["arch"], a["arch"]);
        assert_eq!(child["epochs"].as_array().unwrap().len(), 1);
        assert_eq!(child["epochs"][0]["valid_accuracy"], a["standalone_accuracy"]);
    }
    for stat in ["kendall_tau", "spearman_rho"] {
        let (v, lo, hi) = (k[stat]["value"].as_f64().unwrap(), k[stat]["low"].as_f64().unwrap(), k[stat]["high"].as_f64().unwrap());
        assert!((-1.0..=1.0).contains(&v) && lo <= hi && (-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi), "{stat}: {v} [{lo}, {hi}]");
    }
    assert_eq!(k["top_k"], 3);
    assert_eq!(std::fs::read_to_string(ranking.join("ranking.csv")).unwrap().lines().count(), 7);
    assert!(std::fs::read_to_string(ranking.join("ranking.svg")).unwrap().contains("Kendall"));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("## Does the supernet rank architectures?") && md.contains("Kendall's tau") && md.contains("The derived architecture is"), "{md}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("Does the supernet rank architectures?") && html.contains("supernet ranking: Kendall"));
    let commands = std::fs::read_to_string(run.join("command.txt")).unwrap();
    assert!(commands.contains("enas bench ranking --run") && commands.contains("enas train --preset smoke"), "{commands}");

    // The same measurement again continues it: nothing is trained twice, the numbers are the same.
    let summary = ranking.join("children/0003/summary.json");
    let written = std::fs::metadata(&summary).unwrap().modified().unwrap();
    let (code, out, err) = enas(&["bench", "ranking", "--run", r, "--archs", "5", "--epochs", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["archs"], k["archs"]);
    assert_eq!(again["kendall_tau"], k["kendall_tau"]);
    assert_eq!(std::fs::metadata(&summary).unwrap().modified().unwrap(), written);

    // Another measurement is refused, naming what differs; nothing is overwritten.
    let (code, _, err) = enas(&["bench", "ranking", "--run", r, "--archs", "5", "--epochs", "2", "--quiet"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("epochs: 1 then, 2 now"), "{err}");
    assert_eq!(json(&ranking.join("ranking.json"))["archs"], k["archs"]);
}

#[test]
fn bad_ranking_requests_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_str().unwrap();
    let (code, _, err) = enas(&["bench", "ranking", "--run", t, "--quiet"]);
    assert_eq!(code, 1);
    assert!(err.trim().lines().count() == 1 && err.contains("config.json"), "{err}");
    let (code, _, err) = enas(&["bench", "ranking", "--run", t, "--epochs", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("--epochs"), "{err}");
    let data = common::smoke_fashion(tmp.path());
    let run = tmp.path().join("s");
    let (code, _, err) = enas(&["search", "--preset", "smoke", "--data-dir", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = enas(&["bench", "ranking", "--run", run.to_str().unwrap(), "--archs", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("--archs 1") && err.trim().lines().count() == 1, "{err}");
}
