//! `enas train --preset smoke` end to end for every space and controller, and
//! a search killed with SIGKILL that resumes to the same weights, bitwise.
mod common;

use enas::space::{Arch, SpaceKind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn enas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn smoke(space: &str, controller: &str) {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let out = t.path().join("run");
    let started = Instant::now();
    let (code, stdout, err) = enas(&[
        "train",
        "--preset",
        "smoke",
        "--space",
        space,
        "--controller",
        controller,
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "3",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(180), "smoke took {:?}", started.elapsed());
    assert!(stdout.contains("test accuracy"), "{stdout}");
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    let acc = result["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{result}");
    let kind = if space == "micro" { SpaceKind::Micro } else { SpaceKind::Macro };
    Arch::parse(kind, result["arch"].as_str().unwrap()).unwrap();
    for stage in ["search", "derive", "retrain", "total"] {
        assert!(result["seconds"][stage].as_f64().unwrap() > 0.0, "{result}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains(result["arch"].as_str().unwrap()), "{report}");
    assert!(report.contains("mean of 4 uniformly random architectures"), "{report}");
    assert!(report.contains("best of the 4 uniformly random architectures"), "{report}");
    assert_eq!(report.contains("mean of the 4 policy samples"), controller != "random", "{report}");
    let csv = std::fs::read_to_string(out.join("derive").join("derive.csv")).unwrap();
    let rows = csv.lines().count() - 1;
    // Random search scores only its own uniform draws; the policies add their samples and argmax.
    assert_eq!(rows, if controller == "random" { 4 } else { 9 }, "{csv}");
    // The chosen architecture can be retrained again by name.
    Arch::load(kind, out.join("derive").join("arch.json").to_str().unwrap()).unwrap();
}

#[test]
fn smoke_micro_ppo() {
    smoke("micro", "ppo");
}
#[test]
fn smoke_micro_reinforce() {
    smoke("micro", "reinforce");
}
#[test]
fn smoke_micro_random() {
    smoke("micro", "random");
}
#[test]
fn smoke_macro_ppo() {
    smoke("macro", "ppo");
}
#[test]
fn smoke_macro_reinforce() {
    smoke("macro", "reinforce");
}
#[test]
fn smoke_macro_random() {
    smoke("macro", "random");
}

/// The shared weights and the controller's, by name.
fn final_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (tensors, _) = enas::train::checkpoint::load(&dir.join("search").join("checkpoint.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with("model.") || k.starts_with("controller."))
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn search_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["search", "--preset", "smoke", "--search-epochs", "4", "--data-dir", data, "--out", out, "--seed", "5", "--quiet"]
}

#[test]
fn sigkill_mid_search_then_resume_matches_an_uninterrupted_run() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let (data_s, whole, killed) = (data.to_str().unwrap(), t.path().join("whole"), t.path().join("killed"));

    let (code, _, err) = enas(&search_args(data_s, whole.to_str().unwrap()));
    assert_eq!(code, 0, "{err}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args(search_args(data_s, killed.to_str().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = killed.join("search").join("checkpoint.safetensors");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the search finished before it could be killed");
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let (_, meta) = enas::train::checkpoint::load(&ckpt, &candle_core::Device::Cpu).unwrap();
    let done = meta["epoch"].as_u64().unwrap();
    assert!(done < 4, "killed after every epoch had finished");

    let mut resume = search_args(data_s, killed.to_str().unwrap());
    resume.push("--resume");
    let (code, _, err) = enas(&resume);
    assert_eq!(code, 0, "{err}");

    let (a, b) = (final_weights(&whole), final_weights(&killed));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|(k, _)| k.starts_with("controller.")) && a.iter().any(|(k, _)| k.starts_with("model.")));
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{ka} differs after resume");
    }
    let metrics = |d: &Path| std::fs::read_to_string(d.join("search").join("metrics.jsonl")).unwrap();
    let strip = |s: String| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["seconds", "images_per_s"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(metrics(&whole)), strip(metrics(&killed)));
}

#[test]
fn cifar10_missing_names_the_fetch_command() {
    let t = tempfile::tempdir().unwrap();
    let (code, _, err) =
        enas(&["train", "--dataset", "cifar10", "--data-dir", t.path().join("none").to_str().unwrap(), "--out", t.path().join("o").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let err = err.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("enas data fetch cifar10") && err.contains("--download"), "{err}");
}

#[test]
fn cifar10_present_runs_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("cifar");
    common::write_cifar10(&data, 60);
    let out = t.path().join("run");
    let (code, stdout, err) =
        enas(&["train", "--dataset", "cifar10", "--preset", "smoke", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("test accuracy"), "{stdout}");
}

#[test]
fn every_reward_batch_is_a_whole_batch() {
    use enas::data::{Dataset, DatasetKind, ImageSet};
    use enas::train::search::BatchCycle;
    use std::sync::Arc;
    let set = |n: usize| ImageSet {
        images: (0..n * 784).map(|i| (i % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        channels: 1,
        height: 28,
        width: 28,
    };
    let data = Dataset::from_sets(DatasetKind::FashionMnist, set(100), set(10), 40, 0, Path::new("toy")).unwrap();
    // 40 validation images in batches of 16: two whole batches a pass, never the 8 left over (issue 22, item 3).
    let mut cycle = BatchCycle::new(Arc::new(data.valid.clone()), &data, 16, 0, 0);
    for _ in 0..12 {
        let (x, y) = cycle.next_batch(&candle_core::Device::Cpu).unwrap();
        assert_eq!((x.dim(0).unwrap(), y.dim(0).unwrap()), (16, 16));
    }
    // A split smaller than one batch still gives its images.
    let mut small = BatchCycle::new(Arc::new(data.valid.clone()), &data, 64, 0, 0);
    assert_eq!(small.next_batch(&candle_core::Device::Cpu).unwrap().1.dim(0).unwrap(), 40);
}
