//! `enas export`: a micro, a macro and a MetaQNN model trained on a folder of
//! PNGs and JPEGs, exported to ONNX, give in ONNX Runtime (the `onnxruntime`
//! wheel scripts/setup.sh installs into a virtual environment) the logits
//! enas gives, on 64 of the images, to 1e-4.
mod common;

use candle_core::{Device, Tensor};
use enas::data::{Dataset, DatasetKind};
use enas::model::Ctx;
use enas::train::model_dir;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn enas(args: &[&str], cache: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env("ENAS_DATA", cache).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("ENAS_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/enas-venv"));
    let python = venv.join("bin/python");
    assert!(python.exists(), "{}: no ONNX Runtime environment; run scripts/setup.sh", python.display());
    python
}

fn f32_file(path: &Path, values: &[f32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// Exports the model in `model`, then runs 64 training images of `data` through enas and ONNX Runtime.
fn check_export(model: &Path, data: &Path, cache: &Path) {
    let onnx = model.join("model.onnx");
    let (code, out, err) = enas(&["export", "--model", model.to_str().unwrap(), "-o", onnx.to_str().unwrap()], cache);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ONNX opset 17") && out.contains("cat, dog, emu"), "{out}");

    let trained = model_dir::open(model, &Device::Cpu).unwrap();
    let net = &trained.cfg.net;
    let (c, s) = (net.in_channels, net.image_size);
    std::env::set_var("ENAS_DATA", cache);
    let images = Dataset::load(DatasetKind::Folder, Some(data), Some(net.input_shape()), 0, 0).unwrap().train;
    let n = 64;
    let pixels: Vec<f32> = images.images[..n * c * s * s].iter().map(|&p| p as f32).collect();
    let plane = s * s;
    let normalised: Vec<f32> =
        pixels.iter().enumerate().map(|(i, p)| (p / 255.0 - trained.input.mean[(i / plane) % c]) / trained.input.std[(i / plane) % c]).collect();
    let x = Tensor::from_vec(normalised, (n, c, s, s), &Device::Cpu).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let ours = trained
        .setup
        .eval_net
        .forward(&x, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })
        .unwrap()
        .logits
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();

    let (input, output) = (model.join("pixels.f32"), model.join("logits.f32"));
    f32_file(&input, &pixels);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_run.py");
    let dims = [n, c, s, s].map(|d| d.to_string());
    let run = Command::new(venv_python()).arg(script).arg(&onnx).arg(&input).args(&dims).arg(&output).output().unwrap();
    assert!(run.status.success(), "ONNX Runtime: {}", String::from_utf8_lossy(&run.stderr));
    let theirs: Vec<f32> = std::fs::read(&output).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(theirs.len(), ours.len());
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{}: logits differ by up to {worst}", model.display());
    // Not a vacuous match: the logits vary across images.
    assert!(ours.iter().any(|v| (v - ours[0]).abs() > 1e-3));

    // enas runs the ONNX file itself too (predict --onnx), with the class names it carries, as it runs the model.
    let images = ["train/cat/001.png", "train/dog/002.png", "train/emu/003.jpg"].map(|f| data.join(f).to_str().unwrap().to_string());
    let predict = |source: [&str; 2]| {
        let mut args = vec!["predict", source[0], source[1], "--json", "--top", "3"];
        args.extend(images.iter().map(String::as_str));
        let (code, out, err) = enas(&args, cache);
        assert_eq!(code, 0, "{err}");
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let (direct, via_onnx) = (predict(["--model", model.to_str().unwrap()]), predict(["--onnx", onnx.to_str().unwrap()]));
    assert_eq!(direct.len(), 3);
    for (a, b) in direct.iter().zip(&via_onnx) {
        for (x, y) in a["top"].as_array().unwrap().iter().zip(b["top"].as_array().unwrap()) {
            assert_eq!(x["class"], y["class"], "{a} against {b}");
            assert!((x["probability"].as_f64().unwrap() - y["probability"].as_f64().unwrap()).abs() < 1e-4, "{a} against {b}");
        }
    }
}

#[test]
fn micro_macro_and_metaqnn_models_run_alike_in_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = tmp.path().join("pets");
    common::write_folder_dataset(&data, 40);
    let d = data.to_str().unwrap();
    // Micro at 22 pixels: its reductions meet an even side (TensorFlow's 'same' padding, one pixel after)
    // and an odd one (11: the factorized reduction's odd grid padded first).
    for (space, side) in [("micro", "22"), ("macro", "24")] {
        let run = tmp.path().join(space);
        let args = [
            "train",
            "--space",
            space,
            "--dataset",
            "folder",
            "--data-dir",
            d,
            "--image-size",
            side,
            "--preset",
            "smoke",
            "--out",
            run.to_str().unwrap(),
            "--quiet",
        ];
        let (code, _, err) = enas(&args, &cache);
        assert_eq!(code, 0, "{space}: {err}");
        check_export(&run, &data, &cache);
    }
    // Predict names the classes of three of the images; the micro model takes 22 pixels, so it says it resized them.
    let micro = tmp.path().join("micro");
    let images = ["train/cat/000.png", "train/dog/001.png", "train/emu/003.jpg"].map(|f| data.join(f).to_str().unwrap().to_string());
    let mut args = vec!["predict", "--model", micro.to_str().unwrap()];
    args.extend(images.iter().map(String::as_str));
    let (code, out, err) = enas(&args, &cache);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    for (line, image) in out.lines().zip(&images) {
        assert!(line.starts_with(&format!("{image}: ")) && ["cat ", "dog ", "emu "].iter().any(|c| line.contains(c)) && line.contains('%'), "{line}");
    }
    assert_eq!(err.matches("resized to the model's 22x22").count(), 3, "{err}");
    args.push("--json");
    let (code, out, err) = enas(&args, &cache);
    assert_eq!(code, 0, "{err}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p: Vec<f64> = v["top"].as_array().unwrap().iter().map(|t| t["probability"].as_f64().unwrap()).collect();
        assert!(p.len() == 3 && p.windows(2).all(|w| w[0] >= w[1]) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{line}");
    }
    let (code, _, err) = enas(&["predict", "--model", micro.to_str().unwrap(), data.join("train/emu/notes.txt").to_str().unwrap()], &cache);
    assert_eq!(code, 1);
    assert!(err.contains("notes.txt: not a readable image") && err.trim().lines().count() == 1, "{err}");
    let run = tmp.path().join("metaqnn");
    let arch = "C(64,3) P(2,2) C(128,3) P(5,3) FC(128) SM";
    let args = [
        "retrain",
        "--space",
        "metaqnn",
        "--arch",
        arch,
        "--width",
        "0.125",
        "--epochs",
        "1",
        "--valid-size",
        "10",
        "--batch",
        "32",
        "--dataset",
        "folder",
        "--data-dir",
        d,
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ];
    let (code, _, err) = enas(&args, &cache);
    assert_eq!(code, 0, "metaqnn: {err}");
    check_export(&run, &data, &cache);
}
