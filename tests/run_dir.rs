//! A run directory's life as a user meets it: started, interrupted, resumed
//! with `--resume --out` alone, resumed when finished, derived again, reported.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

fn enas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Another valid micro architecture than `arch` (its first op changed).
fn other_micro(arch: &str) -> String {
    let mut t: Vec<String> = arch.split_whitespace().map(String::from).collect();
    t[1] = if t[1] == "0" { "1".into() } else { "0".into() };
    t.join(" ")
}

#[test]
fn resume_with_out_alone_then_finished_then_derived_again() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());

    // The command is on record as soon as the run starts, and the device in its config.
    let (code, out, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", r, "--seed", "3", "--stop-after", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("continue with --resume"), "{out}");
    assert!(err.contains("device: cpu"), "the device is named once: {err}");
    let recorded = std::fs::read_to_string(run.join("command.txt")).unwrap();
    assert!(recorded.starts_with("enas train --preset smoke") && recorded.contains("--seed 3") && !recorded.contains("--stop-after"), "{recorded}");
    assert_eq!(json(&run.join("config.json"))["device"], "cpu");
    assert_eq!(json(&run.join("search/config.json"))["device"], "cpu");

    // Other settings on resume: refused, naming the setting.
    let (code, _, err) = enas(&["train", "--resume", "--out", r, "--retrain-epochs", "3"]);
    assert_eq!(code, 1);
    assert!(err.contains("retrain.epochs: 1 then, 3 now") && !err.contains("search."), "{err}");

    // A run started before its preset's name was recorded (an older enas) resumes all the same.
    let mut config = json(&run.join("config.json"));
    config.as_object_mut().unwrap().remove("preset");
    std::fs::write(run.join("config.json"), config.to_string()).unwrap();
    // `--resume --out` alone continues with the stored settings.
    let (code, out, err) = enas(&["train", "--resume", "--out", r, "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("test accuracy "), "{out}");
    let result = json(&run.join("result.json"));
    assert_eq!(result["preset"], "smoke");

    // Finished: resuming says so and gives the stored result without testing again.
    let metrics = std::fs::read_to_string(run.join("retrain/metrics.jsonl")).unwrap();
    let (code, again, err) = enas(&["train", "--resume", "--out", r, "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("this run had finished"), "{err}");
    assert_eq!(again, out);
    assert_eq!(std::fs::read_to_string(run.join("retrain/metrics.jsonl")).unwrap(), metrics);

    // `enas derive` choosing another architecture than the one retrained: as
    // if the retrain had trained another, which `derive` then differs from.
    let trained = other_micro(result["arch"].as_str().unwrap());
    for file in ["retrain/config.json", "retrain/summary.json"] {
        let mut v = json(&run.join(file));
        v["arch"] = serde_json::json!(trained);
        std::fs::write(run.join(file), v.to_string()).unwrap();
    }
    let mut a = json(&run.join("retrain/arch.json"));
    a["arc"] = serde_json::json!(trained);
    std::fs::write(run.join("retrain/arch.json"), a.to_string()).unwrap();
    let (code, out, err) = enas(&["derive", "--run", r, "--samples", "2", "--uniform", "2", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note: ") && out.contains(&trained) && out.contains("keeps the model retrained"), "{out}");
    let derived = json(&run.join("derive/arch.json"))["arc"].as_str().unwrap().to_string();
    assert_ne!(derived, trained);
    assert!(std::fs::read_to_string(run.join("command.txt")).unwrap().contains("enas derive --run"));

    // The report pairs the test accuracy with the architecture retrained, and shows the new derive as not retrained.
    let (code, out, err) = enas(&["train", "--resume", "--out", r, "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("with {trained} ")), "{out}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let retrained_at = md.find(&trained).expect("the retrained architecture in report.md");
    assert!(md.find(&derived).is_some_and(|at| at > retrained_at) && md.contains("not retrained"), "{md}");
    let (code, _, err) = enas(&["report", r]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let retrained_at = html.find(&format!("Retrained (the test accuracy above is this one's): <code>{trained}</code>")).expect("retrained arch in the html");
    let derived_at = html.find(&format!("Derived again since, not retrained: <code>{derived}</code>")).expect("the new derive in the html");
    assert!(retrained_at < derived_at);
    for must in [
        "smoke: a plumbing check",
        " parameters, ",
        "multiply-adds per image)",
        "What the search bought",
        "standard errors",
        "The policy's entropy",
        "Started on device cpu",
        "enas derive --run",
        "nats",
        "auxiliary head",
    ] {
        assert!(html.contains(must), "{must} missing from the report");
    }
}

#[test]
fn resume_of_nothing_starts_fresh_and_ctrl_c_says_how_to_resume() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args(["search", "--preset", "smoke", "--search-epochs", "400", "--data-dir", d, "--out", r, "--resume", "--quiet"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = run.join("search/checkpoint.safetensors");
    let started = std::time::Instant::now();
    while !checkpoint.exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(checkpoint.exists(), "no checkpoint after 120 s");
    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains(&format!("note: nothing to resume in {r}; starting a new run")), "{err}");
    assert!(err.contains(&format!("interrupted: resume with enas search --resume --out {r}")), "{err}");
    // The interrupted run continues from its checkpoint with the stored settings.
    let epochs = |p: &Path| std::fs::read_to_string(p).map(|m| m.lines().count()).unwrap_or(0);
    let before = epochs(&run.join("search/metrics.jsonl"));
    let (code, _, err) = enas(&["search", "--resume", "--out", r, "--quiet", "--stop-after", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(epochs(&run.join("search/metrics.jsonl")), before + 1);
}

#[test]
fn train_resumes_a_search_and_derive_run_one_stage_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let (code, _, err) = enas(&["search", "--preset", "smoke", "--data-dir", d, "--out", r, "--seed", "4", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = enas(&["derive", "--run", r, "--samples", "2", "--uniform", "2", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let searched = std::fs::read_to_string(run.join("search/metrics.jsonl")).unwrap();
    let derived = json(&run.join("derive/arch.json"))["arc"].as_str().unwrap().to_string();
    // The finished stages are taken as they are, and the note does not say otherwise.
    let (code, out, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", r, "--seed", "4", "--resume", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("nothing to resume"), "{err}");
    assert!(out.contains(&format!("with {derived} ")), "{out}");
    assert_eq!(std::fs::read_to_string(run.join("search/metrics.jsonl")).unwrap(), searched);
    assert!(std::fs::read_to_string(run.join("command.txt")).unwrap().contains("enas train --preset smoke"));
}

#[test]
fn flags_a_command_does_not_use_are_refused_or_absent() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    let r = run.to_str().unwrap();
    for (args, needles) in [
        (vec!["search", "--budget", "5"], vec!["--budget", "multi-trial"]),
        (vec!["search", "--mode", "multi-trial", "--search-epochs", "2"], vec!["--search-epochs", "--child-epochs"]),
        (vec!["search", "--mode", "multi-trial", "--controller", "reinforce"], vec!["--controller", "--strategy"]),
        (vec!["train", "--macro-skips", "sum"], vec!["--macro-skips", "macro"]),
        (vec!["train", "--reward-bn", "moving"], vec!["--reward-bn moving", "micro"]),
        (vec!["search", "--mode", "multi-trial", "--reward-bn", "batch"], vec!["--reward-bn", "running averages"]),
        // Not an option of train at all: clap's own error, as one line.
        (vec!["train", "--budget", "5"], vec!["unexpected argument '--budget'", "`enas train --help`"]),
    ] {
        let (code, _, err) = enas(&[&args[..], &["--out", r]].concat());
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: '{n}' not in {err}");
        }
    }
    let (code, _, err) = enas(&["retrain", "--epochs", "2"]);
    assert_eq!((code, err.trim().lines().count()), (1, 1), "{err}");
    assert!(err.contains("--arch <ARCH>") && err.contains("--out <OUT>"), "the missing ones named: {err}");
    // Not offered where they mean nothing.
    let (_, help, _) = enas(&["train", "--help"]);
    for absent in ["--budget", "--mode", "--strategy", "--child-epochs"] {
        assert!(!help.contains(absent), "train --help offers {absent}");
    }
    for (command, absent) in [(&["draw"][..], "--device"), (&["report"], "--device"), (&["data", "fetch"], "--device")] {
        let (_, help, _) = enas(&[command, &["--help"]].concat());
        assert!(!help.contains(absent), "{command:?} offers {absent}");
    }
    assert!(!run.exists());
}

#[test]
fn valid_size_overrides_the_preset() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (code, _, err) = enas(&[
        "train",
        "--preset",
        "smoke",
        "--valid-size",
        "48",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--stop-after",
        "1",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let plan = json(&run.join("config.json"));
    assert_eq!(plan["search"]["valid_size"], 48);
    assert_eq!(plan["retrain"]["valid_size"], 48);
}

#[test]
fn architectures_of_another_space_are_named_and_arch_json_brings_its_space() {
    let t = tempfile::tempdir().unwrap();
    let svg = t.path().join("a.svg");
    let s = svg.to_str().unwrap();
    let (code, _, err) = enas(&["draw", "1 0 1 3 0 0", "--out", s]);
    assert_eq!(code, 1);
    assert!(err.contains("it reads as a macro architecture: add --space macro"), "{err}");
    // An arch.json says which space it is in.
    let arch = t.path().join("arch.json");
    std::fs::write(&arch, r#"{"space": "macro", "arc": "1 0 1 3 0 0"}"#).unwrap();
    let (code, out, err) = enas(&["draw", arch.to_str().unwrap(), "--out", s]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 0 1 3 0 0") && std::fs::read_to_string(&svg).unwrap().contains("macro network"), "{out}");
}

#[test]
fn runs_lists_each_run_with_how_far_it_got() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let runs = t.path().join("runs");
    let d = data.to_str().unwrap();
    let at = |name: &str| runs.join(name).to_str().unwrap().to_string();
    let (code, _, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", &at("done"), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        enas(&["search", "--preset", "smoke", "--controller", "reinforce", "--data-dir", d, "--out", &at("half"), "--stop-after", "1", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(runs.join("notes")).unwrap();
    let (code, table, err) = enas(&["runs", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two runs, no row for notes/: {table}");
    assert!(lines[0].starts_with("run ") && lines[0].contains("test acc"), "{table}");
    let accuracy = json(&runs.join("done/result.json"))["test_accuracy"].as_f64().unwrap();
    let done = lines[1];
    assert!(
        done.starts_with("done ") && done.contains("enas/ppo") && done.contains("finished") && done.contains(&format!("{:.2}%", 100.0 * accuracy)),
        "{done}"
    );
    assert!(done.contains("enas train --preset smoke"), "{done}");
    let half = lines[2];
    assert!(half.starts_with("half ") && half.contains("enas/reinforce") && half.contains("search 1/2") && half.contains(" - "), "{half}");
    let (code, out, _) = enas(&["runs", runs.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["test_accuracy"].as_f64(), Some(accuracy));
    assert_eq!(rows[1]["stage"], "search 1/2");
}

#[test]
fn a_run_says_how_long_it_has_left_and_the_estimate_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let (shown, quiet) = (t.path().join("shown"), t.path().join("quiet"));
    let d = data.to_str().unwrap();
    let (code, _, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", shown.to_str().unwrap(), "--seed", "5"]);
    assert_eq!(code, 0, "{err}");
    let search: Vec<&str> = err.lines().filter(|l| l.starts_with("search ")).collect();
    assert_eq!(search.len(), 2, "{err}");
    assert!(search.iter().all(|l| l.contains("| run ETA ")), "the search's lines count the stages ahead: {err}");
    assert!(err.lines().any(|l| l.starts_with("deriving: ") && l.contains("then the retrain, about ")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("epoch ") && l.contains("| run ETA ")), "{err}");
    // Timing the retrain's steps draws on no random stream of the run.
    let (code, _, err) = enas(&["train", "--preset", "smoke", "--data-dir", d, "--out", quiet.to_str().unwrap(), "--seed", "5", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (json(&shown.join("result.json")), json(&quiet.join("result.json")));
    assert_eq!((&a["arch"], &a["test_accuracy"], &a["shared_valid_accuracy"]), (&b["arch"], &b["test_accuracy"], &b["shared_valid_accuracy"]));
}
