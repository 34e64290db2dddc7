//! The binary's errors: one line, naming the input, exit code 1, never a panic.
mod common;

use std::process::Command;

const PUBLISHED: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";

fn enas(args: &[&str]) -> (i32, String, String) {
    enas_with(args, None)
}

/// `enas` with `ENAS_ISA` set to `isa`, or unset.
fn enas_with(args: &[&str], isa: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enas"));
    cmd.args(args).env_remove("RUST_BACKTRACE").env_remove("ENAS_ISA");
    if let Some(isa) = isa {
        cmd.env("ENAS_ISA", isa);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn assert_one_line_error(args: &[&str], needles: &[&str]) {
    assert_one_line_error_with(args, None, needles)
}

fn assert_one_line_error_with(args: &[&str], isa: Option<&str>, needles: &[&str]) {
    let (code, _, err) = enas_with(args, isa);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    let err = err.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "'{n}' not in: {err}");
    }
}

#[test]
fn bad_architecture_token() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let arch = PUBLISHED.replacen("4", "9", 1);
    assert_one_line_error(&["retrain", "--arch", &arch, "--out", out.to_str().unwrap()], &["token 6 ('9')", "op of node 1"]);
}

#[test]
fn missing_dataset() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let dir = t.path().join("empty");
    assert_one_line_error(
        &["retrain", "--arch", PUBLISHED, "--data-dir", dir.to_str().unwrap(), "--out", out.to_str().unwrap()],
        &["fashion-mnist not found", "apt-get install dataset-fashion-mnist"],
    );
}

#[test]
fn corrupt_dataset_file_is_named() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    common::write_fashion(&dir, 40, 10, false);
    let p = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..1000]).unwrap();
    let out = t.path().join("o");
    assert_one_line_error(
        &["retrain", "--arch", PUBLISHED, "--data-dir", dir.to_str().unwrap(), "--valid-size", "5", "--out", out.to_str().unwrap()],
        &["train-images-idx3-ubyte", "truncated"],
    );
}

#[test]
fn eval_of_a_directory_without_a_model() {
    let t = tempfile::tempdir().unwrap();
    assert_one_line_error(&["eval", "--model", t.path().to_str().unwrap()], &["no model.safetensors", "enas retrain"]);
}

#[test]
fn odd_channel_count() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    assert_one_line_error(&["retrain", "--arch", PUBLISHED, "--channels", "7", "--out", out.to_str().unwrap()], &["--channels 7 must be even"]);
}

#[test]
fn fetch_from_an_unreachable_mirror() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    let url = "http://127.0.0.1:9/cifar.tar.gz";
    assert_one_line_error(
        &["data", "fetch", "cifar10", "--data-dir", dir.to_str().unwrap(), "--url", url],
        &["download failed", "elsewhere", "extract it into"],
    );
    let (_, _, err) = enas(&["data", "fetch", "cifar10", "--dir", dir.to_str().unwrap(), "--url", url]);
    assert_eq!(err.matches(url).count(), 2, "the URL once for the failure, once for the download by hand: {err}");
    assert!(!dir.exists(), "a failed download leaves no empty directory");
}

/// The published cell retrained for one epoch at toy size on the data in `data`, into `out`.
fn retrain_tiny(data: &std::path::Path, out: &std::path::Path) -> (i32, String, String) {
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    enas(&[
        "retrain",
        "--arch",
        PUBLISHED,
        "--data-dir",
        d,
        "--out",
        o,
        "--epochs",
        "1",
        "--layers",
        "1",
        "--channels",
        "4",
        "--batch",
        "16",
        "--valid-size",
        "16",
        "--quiet",
    ])
}

#[test]
fn retrain_and_eval_from_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    common::write_fashion(&dir, 64, 20, true);
    let out = t.path().join("run");
    let (code, stdout, err) = retrain_tiny(&dir, &out);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("test accuracy") && stdout.contains(", 1 epoch, "), "{stdout}");
    #[cfg(unix)]
    for file in ["model.safetensors", "checkpoint.safetensors"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{file} is {mode:o}: others sharing the runs cannot read it");
    }
    let (code, stdout, err) = enas(&["eval", "--model", out.to_str().unwrap(), "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.starts_with("test accuracy 0."), "{stdout}");
}

#[test]
fn bench_supernet_prints_one_json_object_and_names_bad_arc_files() {
    let arcs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/micro_arcs.txt");
    let small = ["--batch", "4", "--channels", "4", "--layers", "3", "--image", "8", "--steps", "1", "--warmup", "1", "--json"];
    let mut args = vec!["bench", "supernet", "--space", "micro", "--arcs", arcs];
    args.extend(small);
    let (code, out, err) = enas(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0 && v["peak_rss_mb"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["losses"].as_array().unwrap().len(), 2);
    // A micro arc file given as macro: the file and the line are named.
    let mut args = vec!["bench", "supernet", "--space", "macro", "--arcs", arcs];
    args.extend(small);
    assert_one_line_error(&args, &["micro_arcs.txt", "line 1"]);
}

#[test]
fn bad_devices_are_one_line_errors() {
    assert_one_line_error(&["bench", "ops", "--device", "gpu"], &["--device gpu", "cpu, cuda, cuda:N or auto"]);
    assert_one_line_error(&["bench", "ops", "--device", "cuda:x"], &["--device cuda:x"]);
    if !cfg!(feature = "cuda") {
        assert_one_line_error(&["bench", "ops", "--device", "cuda:1"], &["built without CUDA", "--features cuda"]);
    }
    let (code, out, err) = enas(&["bench", "ops", "--device", "cpu", "--reps", "1", "--shape", "2", "4", "6", "6"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("depthwise3x3"), "{out}");
}

#[test]
fn kernel_sets_by_environment() {
    let t = tempfile::tempdir().unwrap();
    let svg = t.path().join("cell.svg");
    let draw = ["draw", PUBLISHED, "-o", svg.to_str().unwrap()];
    assert_one_line_error_with(&draw, Some("sse9"), &["ENAS_ISA=sse9", "not a kernel set", "avx2"]);
    let missing = if cfg!(target_arch = "aarch64") { "avx2" } else { "neon" };
    assert_one_line_error_with(&draw, Some(missing), &[&format!("ENAS_ISA={missing}"), "cannot run", "baseline"]);
    for isa in ["baseline", "native"] {
        let (code, _, err) = enas_with(&draw, Some(isa));
        assert_eq!(code, 0, "{isa}: {err}");
    }
    // The bench says which set ran.
    let arcs = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/micro_arcs.txt");
    let args = [
        "bench",
        "supernet",
        "--space",
        "micro",
        "--arcs",
        arcs,
        "--batch",
        "2",
        "--channels",
        "4",
        "--layers",
        "3",
        "--image",
        "8",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    ];
    let (code, out, err) = enas_with(&args, Some("baseline"));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["machine"]["kernels"], "baseline", "{v}");
}

#[test]
fn layers_means_the_same_in_every_help() {
    // One definition of --layers (issue 21): the total number of normal cells, not per stage.
    let definition = "normal cells in all, the authors' num_layers, with a reduction cell after each third";
    for command in [&["retrain", "--help"][..], &["bench", "supernet", "--help"][..]] {
        let (code, out, err) = enas(command);
        assert_eq!(code, 0, "{err}");
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(definition), "{command:?}: {flat}");
        assert!(!flat.contains("per stage"), "{command:?}");
    }
}

#[test]
fn numeric_flags_out_of_range_are_refused_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--lr=-1"], "--lr"),
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--lr", "-1"], "--lr"),
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--epochs", "0"], "--epochs"),
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--dropout", "1.5"], "--dropout"),
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--momentum", "1"], "--momentum"),
        (&["retrain", "--arch", PUBLISHED, "--out", o, "--weight-decay", "nan"], "--weight-decay"),
        (&["search", "--out", o, "--search-epochs", "0"], "--search-epochs"),
        (&["bench", "nb201", "--table", o, "--noise", "-0.5"], "--noise"),
    ];
    for (args, flag) in cases {
        let (code, stdout, err) = enas(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: invalid value") && err.contains(flag), "{args:?}: {err}");
        assert!(stdout.is_empty() && !err.contains("panicked"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
}

#[test]
fn report_on_a_directory_that_is_no_run() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_str().unwrap();
    assert_one_line_error(&["report", d], &[d, "not an enas run", "--out"]);
    assert!(!t.path().join("report.html").exists(), "wrote a report for nothing");
}

#[test]
fn a_missing_architecture_file_is_named_as_missing() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    for missing in ["runs/enas-quick/derive/arch.jsn", "arch.json"] {
        assert_one_line_error(&["retrain", "--arch", missing, "--out", out.to_str().unwrap()], &[missing, "no such file"]);
    }
    assert!(!out.exists());
}

#[test]
fn eval_of_a_train_run_reads_its_retrain_stage() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    common::write_fashion(&dir, 64, 20, true);
    // A train run's layout: the model in RUN/retrain, the run's own config at the top.
    let run = t.path().join("run");
    std::fs::create_dir_all(run.join("search")).unwrap();
    std::fs::write(run.join("config.json"), "{\"preset\": \"smoke\"}").unwrap();
    let (r, d) = (run.to_str().unwrap(), dir.to_str().unwrap());
    assert_one_line_error(&["eval", "--model", r, "--data-dir", d], &[r, "retrain stage has not finished"]);
    let (code, _, err) = retrain_tiny(&dir, &run.join("retrain"));
    assert_eq!(code, 0, "{err}");
    // A run directory is --run to eval as to derive and report (--model stays as an alias).
    for flag in ["--run", "--model"] {
        let (code, stdout, err) = enas(&["eval", flag, r, "--data-dir", d]);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.starts_with("test accuracy 0."), "{stdout}");
    }
    let (code, stdout, err) = enas(&["report", "--run", r]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("report.html"), "{stdout}");
}

#[test]
fn every_option_has_a_help_line() {
    let commands: [&[&str]; 11] = [
        &["retrain"],
        &["train"],
        &["search"],
        &["derive"],
        &["eval"],
        &["report"],
        &["draw"],
        &["bench", "supernet"],
        &["bench", "nb201"],
        &["bench", "ops"],
        &["data", "fetch"],
    ];
    for command in commands {
        let (code, out, err) = enas(&[command, &["--help"][..]].concat());
        assert_eq!(code, 0, "{command:?}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some(flag) = trimmed.strip_prefix("--").or_else(|| trimmed.get(4..).and_then(|t| t.strip_prefix("--")).filter(|_| trimmed.starts_with('-')))
            else {
                continue;
            };
            if !line.starts_with("  ") || flag.starts_with("help") {
                continue;
            }
            // Short help: the text follows the flag on its line; long help: on the next line.
            let after = flag.split_once(char::is_whitespace).map(|(_, rest)| rest.trim()).unwrap_or("");
            let after = if after.starts_with('<') { after.split_once('>').map(|(_, r)| r.trim()).unwrap_or("") } else { after };
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            let described = (!after.is_empty() && !after.starts_with('['))
                || (after.is_empty() && !next.is_empty() && !next.starts_with('[') && !next.starts_with('-') && !next.starts_with("Possible values"));
            assert!(described, "{command:?}: --{} has no help", flag.split_whitespace().next().unwrap_or(flag));
        }
    }
}

#[test]
fn retrain_of_an_nb201_cell_is_refused_before_the_run_directory_exists() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("run");
    let cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|";
    assert_one_line_error(&["retrain", "--space", "nb201", "--arch", cell, "--out", out.to_str().unwrap()], &["--space nb201", "enas bench nb201"]);
    assert!(!out.exists(), "wrote {}", out.display());
}
