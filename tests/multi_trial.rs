//! Multi-trial search (NAS-RL's REINFORCE over the macro space) end to end on
//! smoke-sized Fashion-MNIST data, and a run killed with SIGKILL that resumes
//! without training a finished child again.
mod common;

use enas::space::{Arch, SpaceKind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn args(data: &str, out: &str, strategy: &str, space: &str) -> Vec<String> {
    [
        "search",
        "--mode",
        "multi-trial",
        "--space",
        space,
        "--strategy",
        strategy,
        "--preset",
        "smoke",
        "--budget",
        "6",
        "--child-epochs",
        "1",
        "--data-dir",
        data,
        "--out",
        out,
        "--seed",
        "4",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn enas(args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn trials(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("search").join("trials.jsonl")).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (index, arch, reward) of every child, in index order.
fn outcome(run: &Path) -> Vec<(u64, String, f64)> {
    let mut v: Vec<_> =
        trials(run).iter().map(|t| (t["index"].as_u64().unwrap(), t["arch"].as_str().unwrap().to_string(), t["reward"].as_f64().unwrap())).collect();
    v.sort_by_key(|t| t.0);
    v
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn reinforce_over_the_macro_space_resumes_after_sigkill_without_retraining() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let (data_s, whole, killed) = (data.to_str().unwrap(), t.path().join("whole"), t.path().join("killed"));

    let started = Instant::now();
    let (code, stdout, err) = enas(&args(data_s, whole.to_str().unwrap(), "reinforce", "macro"));
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(180), "smoke multi-trial took {:?}", started.elapsed());
    let whole_outcome = outcome(&whole);
    assert_eq!(whole_outcome.len(), 6, "{stdout}");
    for (i, (index, arch, reward)) in whole_outcome.iter().enumerate() {
        assert_eq!(*index, i as u64);
        Arch::parse(SpaceKind::Macro, arch).unwrap();
        assert!((0.0..=1.0).contains(reward));
        assert!(whole.join("search").join("children").join(format!("{i:04}")).join("metrics.jsonl").exists());
    }
    let summary = std::fs::read_to_string(whole.join("search").join("summary.md")).unwrap();
    assert!(summary.contains("6 children trained") && summary.contains(&whole_outcome[0].1[..3]), "{summary}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args(args(data_s, killed.to_str().unwrap(), "reinforce", "macro"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while trials(&killed).len() < 2 {
        assert!(Instant::now() < deadline, "no two children after two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the search finished before it could be killed");
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = trials(&killed).len();
    assert!(before < 6, "killed after every child had finished");
    let finished: Vec<_> =
        (0..before).map(|i| killed.join("search").join("children").join(format!("{i:04}")).join("checkpoint.safetensors")).map(|p| (modified(&p), p)).collect();

    let (code, _, err) = enas(&[args(data_s, killed.to_str().unwrap(), "reinforce", "macro"), vec!["--resume".into()]].concat());
    assert_eq!(code, 0, "{err}");
    for (when, path) in finished {
        assert_eq!(modified(&path), when, "{} was trained again", path.display());
    }
    assert_eq!(outcome(&killed), whole_outcome, "the resumed search differs from the uninterrupted one");

    // Without --resume the finished run is not overwritten.
    let (code, _, err) = enas(&args(data_s, killed.to_str().unwrap(), "reinforce", "macro"));
    assert_eq!(code, 1);
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn metaqnn_q_learning_runs_and_records_epsilons() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let out = t.path().join("run");
    let mut a = args(data.to_str().unwrap(), out.to_str().unwrap(), "qlearning", "metaqnn");
    a.extend(["--width".into(), "0.0625".into()]);
    let (code, stdout, err) = enas(&a);
    assert_eq!(code, 0, "{err}");
    for says in ["mean validation accuracy by epsilon", "epsilon schedule (epsilon x models): 1.0 x 4, 0.9 x 0", "Q-values", "first layer, best by Q"] {
        assert!(stdout.contains(says), "{says}: {stdout}");
    }
    let records = trials(&out);
    assert_eq!(records.len(), 6);
    assert_eq!(records[0]["note"]["epsilon"].as_f64(), Some(1.0));
    let strategy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("search").join("strategy.json")).unwrap()).unwrap();
    assert!(strategy["q"]["start"].as_object().is_some_and(|m| !m.is_empty()), "{strategy}");
}

#[test]
fn bad_multi_trial_requests_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let d = data.to_str().unwrap();
    let out = t.path().join("o");
    let o = out.to_str().unwrap();
    for (extra, says) in [
        (args(d, o, "ppo", "metaqnn"), "--space metaqnn takes --strategy qlearning or random"),
        (args(d, o, "random", "nb201"), "enas bench nb201"),
        (args(d, o, "random", "macro").into_iter().map(|a| if a == "6" { "0".to_string() } else { a }).collect(), "--budget"),
    ] {
        let (code, _, err) = enas(&extra);
        assert_eq!(code, 1, "{extra:?}");
        assert!(err.contains(says) && err.lines().count() == 1 && !err.contains("panicked"), "{err}");
    }
    let (code, _, err) = enas(&["search".into(), "--space".into(), "metaqnn".into(), "--data-dir".into(), d.into(), "--out".into(), o.into()]);
    assert_eq!(code, 1);
    assert!(err.contains("--mode multi-trial"), "{err}");
}

#[test]
fn json_prints_one_object_with_the_best_child() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let out = t.path().join("run");
    let mut a = args(data.to_str().unwrap(), out.to_str().unwrap(), "random", "macro");
    a.retain(|x| x != "--quiet");
    a.push("--json".into());
    let (code, stdout, err) = enas(&a);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["children"], 6);
    let best = v["best"]["reward"].as_f64().unwrap();
    assert!(outcome(&out).iter().all(|t| t.2 <= best));
}

#[test]
fn smoke_is_small_in_multi_trial_too_and_children_are_reported_when_redirected() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let out = t.path().join("mq");
    // stderr is a pipe here, as when redirected to a file: every child still has its line as it finishes.
    let args: Vec<String> =
        ["search", "--mode", "multi-trial", "--space", "metaqnn", "--preset", "smoke", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let (code, _, err) = enas(&args);
    assert_eq!(code, 0, "{err}");
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("search/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["budget"], 4);
    assert_eq!(cfg["child"]["epochs"], 1);
    assert_eq!(cfg["child"]["net"]["width"], 0.0625, "MetaQNN's 512 filters are 32 under smoke");
    for i in 0..4 {
        assert!(err.contains(&format!("child {i:>3}: ")), "child {i} not reported: {err}");
    }
}

/// Start and end of each child, from trials.jsonl.
fn spans(run: &Path) -> Vec<(f64, f64, String)> {
    trials(run).iter().map(|t| (t["started"].as_f64().unwrap(), t["finished"].as_f64().unwrap(), t["slot"].as_str().unwrap().to_string())).collect()
}

#[test]
fn local_parallel_children_overlap_each_with_its_slot_and_the_batches_repeat() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 1200, 40, true);
    let run = |name: &str| {
        let out = t.path().join(name);
        let mut a = args(data.to_str().unwrap(), out.to_str().unwrap(), "qlearning", "metaqnn");
        a.extend(["--width", "0.0625", "--train-limit", "1000", "--parallel", "2"].map(String::from));
        let (code, _, err) = enas(&a);
        assert_eq!(code, 0, "{err}");
        out
    };
    let first = run("first");
    let records = trials(&first);
    assert_eq!(records.len(), 6);
    // Q-learning's batches: two walks at one epsilon, then the replay.
    for pair in records.chunks(2) {
        assert_eq!(pair[0]["note"], pair[1]["note"], "{pair:?}");
    }
    let spans = spans(&first);
    let overlapping = spans.iter().enumerate().any(|(i, a)| spans[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1 && a.2 != b.2));
    assert!(overlapping, "no two children ran at once: {spans:?}");
    let cores = std::thread::available_parallelism().unwrap().get();
    let share = format!("{} threads", (cores / 2).max(1));
    assert!(spans.iter().all(|s| s.2.contains("cpu") && s.2.contains(&share)), "{spans:?}");
    let slots: std::collections::HashSet<&str> = spans.iter().map(|s| &s.2[..1]).collect();
    assert_eq!(slots.len(), 2, "{spans:?}");
    assert!(!first.join("search/driver.lock").exists(), "the lock outlived the driver");
    // report.html draws the children on their slots against wall time, and the best so far.
    let (code, _, err) = enas(&["report".into(), first.display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(first.join("report.html")).unwrap();
    for says in ["children on the executor", "best child so far against wall time", "0 (cpu, "] {
        assert!(html.contains(says), "{says} missing from report.html");
    }
    // The batches depend only on the seed and --parallel: the same trials again.
    assert_eq!(outcome(&run("second")), outcome(&first));
}

#[test]
fn a_second_driver_on_one_run_is_refused_and_bad_executor_settings_are_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 1200, 40, true);
    let (d, out) = (data.to_str().unwrap(), t.path().join("run"));
    let mut a = args(d, out.to_str().unwrap(), "random", "macro");
    a.extend(["--train-limit", "1000", "--child-epochs", "3"].map(String::from));
    let mut first = Command::new(env!("CARGO_BIN_EXE_enas")).args(&a).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let lock = out.join("search").join("driver.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the first driver never took the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, _, err) = enas(&[a.clone(), vec!["--resume".into()]].concat());
    let _ = first.kill();
    first.wait().unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another enas (pid") && err.contains("driving this run") && err.lines().count() == 1, "{err}");
    // A lock left by a driver killed on this host is taken over.
    assert!(lock.exists());
    let (code, _, err) = enas(&[a.clone(), vec!["--resume".into()]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(trials(&out).len(), 6);

    let o = t.path().join("o");
    for (extra, says) in [
        (vec!["--devices", "gpu0"], "--devices: \"gpu0\" is not a device"),
        (vec!["--slurm-args", "--partition=x"], "--slurm-args: a setting of --executor slurm"),
        (vec!["--executor", "slurm", "--devices", "cpu"], "--devices: a setting of --executor local"),
        (vec!["--executor", "slurm", "--slurm-args", "--time='1"], "--slurm-args"),
        (vec!["--parallel", "0"], "--parallel"),
    ] {
        let mut b = args(d, o.to_str().unwrap(), "random", "macro");
        b.extend(extra.iter().map(|s| s.to_string()));
        let (code, _, err) = enas(&b);
        assert_eq!(code, 1, "{extra:?}");
        assert!(err.contains(says) && err.lines().count() == 1 && !err.contains("panicked"), "{extra:?}: {err}");
    }
    // --parallel is only for multi-trial search.
    let (code, _, err) = enas(&["search".into(), "--parallel".into(), "2".into(), "--data-dir".into(), d.into(), "--out".into(), o.to_str().unwrap().into()]);
    assert_eq!(code, 1);
    assert!(err.contains("--parallel"), "{err}");
}

#[test]
fn a_killed_local_driver_reattaches_to_its_running_children() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 1200, 40, true);
    let run = |out: &Path| {
        let mut a = args(data.to_str().unwrap(), out.to_str().unwrap(), "random", "macro");
        a.extend(["--train-limit", "1000", "--child-epochs", "3", "--parallel", "2"].map(String::from));
        a
    };
    let (whole, killed) = (t.path().join("whole"), t.path().join("killed"));
    let (code, _, err) = enas(&run(&whole));
    assert_eq!(code, 0, "{err}");

    let mut driver = Command::new(env!("CARGO_BIN_EXE_enas")).args(run(&killed)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let log = |i: usize| killed.join(format!("search/children/{i:04}/child.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(trials(&killed).len() >= 2 && log(2).exists()) {
        assert!(Instant::now() < deadline, "the second batch never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    driver.kill().unwrap(); // SIGKILL: its children live on
    driver.wait().unwrap();
    let (code, _, err) = enas(&[run(&killed), vec!["--resume".into()]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(outcome(&killed), outcome(&whole), "the resumed search differs from the uninterrupted one");
    for i in 0..6 {
        // Each `enas child` prints its result once as it ends: one line per child, none started twice.
        let text = std::fs::read_to_string(log(i)).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("{\"reward\"")).count(), 1, "child {i}: {text}");
    }
    assert!(trials(&killed).iter().all(|r| r["attempts"] == 1));
}
