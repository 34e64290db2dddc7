//! Retraining end to end on tiny data in the real formats: outputs, eval, and
//! a resumed run that reproduces an uninterrupted one bit for bit.
mod common;

use candle_core::Device;
use enas::data::{Augment, DatasetKind};
use enas::model::NetConfig;
use enas::space::SpaceKind;
use enas::train::retrain::{self, RetrainConfig, RunOptions};
use enas::train::SgdConfig;
use std::path::Path;

const PUBLISHED: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";

fn config(space: SpaceKind, arch: &str, data_dir: &Path, epochs: usize) -> RetrainConfig {
    RetrainConfig {
        space,
        arch: arch.into(),
        dataset: DatasetKind::FashionMnist,
        data_dir: Some(data_dir.to_path_buf()),
        net: NetConfig {
            layers: 1,
            channels: 4,
            in_channels: 1,
            image_size: 28,
            classes: 10,
            aux_head: space == SpaceKind::Micro,
            dropout: 0.1,
            drop_path: 0.2,
            width: 1.0,
            macro_skips: Default::default(),
        },
        epochs,
        batch: 16,
        eval_batch: 32,
        sgd: SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 1e-4, decoupled: false },
        lr_min: 0.0,
        lr_t0: 1.0,
        lr_t_mul: 2.0,
        grad_clip: 5.0,
        label_smoothing: 0.1,
        aux_weight: 0.4,
        augment: Augment { crop_pad: 2, flip: true, cutout: 4 },
        valid_size: 32,
        train_limit: None,
        seed: 5,
        data_seed: None,
    }
}

fn run(cfg: &RetrainConfig, out: &Path, opts: RunOptions) -> Option<retrain::Summary> {
    retrain::run(cfg, out, &opts, &Device::Cpu).unwrap()
}

#[test]
fn micro_retrain_writes_outputs_and_evaluates() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(&t.path().join("data"), 96, 40, true);
    let out = t.path().join("run");
    let cfg = config(SpaceKind::Micro, PUBLISHED, &t.path().join("data"), 2);
    let s = run(&cfg, &out, RunOptions::default()).expect("finished");
    assert_eq!(s.epochs.len(), 2);
    assert!(s.params > 1000);
    for f in ["model.safetensors", "arch.json", "config.json", "metrics.jsonl", "checkpoint.safetensors"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    assert!(metrics.lines().last().unwrap().contains("test_accuracy"));
    let arch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("arch.json")).unwrap()).unwrap();
    assert_eq!(arch["arc"], PUBLISHED);
    // config.json records the settings and the CPU and kernel set the run started on.
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["machine"]["kernels"], enas::ops::simd::active().name(), "{config}");
    assert!(config["machine"]["cores"].as_u64().unwrap() >= 1, "{config}");
    // eval rebuilds the model from the directory and gets the same test accuracy.
    let e = enas::train::model_dir::eval_dir(&out, None, None, false, &Device::Cpu).unwrap();
    assert_eq!(e.accuracy, s.test_accuracy);
    assert_eq!(e.params, s.params);
    assert!(e.multiply_adds > 0 && e.multiply_adds == s.multiply_adds);
}

#[test]
fn macro_retrain_runs() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(&t.path().join("data"), 64, 20, false);
    // Six layers, every op once, some skips: 6 + 15 integers.
    let arch = "0 1 1 2 0 1 3 1 0 1 4 0 0 1 1 5 1 1 1 1 0";
    let cfg = config(SpaceKind::Macro, arch, &t.path().join("data"), 1);
    let s = run(&cfg, &t.path().join("run"), RunOptions::default()).expect("finished");
    assert!(s.test_accuracy >= 0.0 && s.test_accuracy <= 1.0);
    assert!(s.epochs[0].train_loss.is_finite());
}

#[test]
fn resumed_run_matches_uninterrupted_run_bitwise() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 96, 20, false);
    let cfg = config(SpaceKind::Micro, PUBLISHED, &data, 3);
    let straight = run(&cfg, &t.path().join("a"), RunOptions::default()).unwrap();
    let b = t.path().join("b");
    assert!(run(&cfg, &b, RunOptions { stop_after: Some(1), ..Default::default() }).is_none());
    assert!(run(&cfg, &b, RunOptions { resume: true, stop_after: Some(1), ..Default::default() }).is_none());
    let resumed = run(&cfg, &b, RunOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.test_accuracy, straight.test_accuracy);
    for (x, y) in resumed.epochs.iter().zip(&straight.epochs) {
        assert_eq!(x.train_loss.to_bits(), y.train_loss.to_bits(), "epoch {}", x.epoch);
        assert_eq!(x.valid_loss.to_bits(), y.valid_loss.to_bits(), "epoch {}", x.epoch);
    }
    let wa = candle_core::safetensors::load(t.path().join("a/model.safetensors"), &Device::Cpu).unwrap();
    let wb = candle_core::safetensors::load(b.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(wa.len(), wb.len());
    for (name, ta) in &wa {
        let va = ta.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let vb = wb[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(va.iter().zip(&vb).all(|(p, q)| p.to_bits() == q.to_bits()), "{name} differs");
    }
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 64, 20, false);
    let cfg = config(SpaceKind::Micro, PUBLISHED, &data, 1);
    let a = run(&cfg, &t.path().join("a"), RunOptions::default()).unwrap();
    let b = run(&cfg, &t.path().join("b"), RunOptions::default()).unwrap();
    assert_eq!(a.epochs[0].train_loss.to_bits(), b.epochs[0].train_loss.to_bits());
    let mut other = cfg.clone();
    other.seed = 6;
    let c = run(&other, &t.path().join("c"), RunOptions::default()).unwrap();
    assert_ne!(a.epochs[0].train_loss, c.epochs[0].train_loss);
}

#[test]
fn existing_run_needs_resume_and_same_settings() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 64, 20, false);
    let cfg = config(SpaceKind::Micro, PUBLISHED, &data, 2);
    let out = t.path().join("run");
    run(&cfg, &out, RunOptions { stop_after: Some(1), ..Default::default() });
    let e = retrain::run(&cfg, &out, &RunOptions::default(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("pass --resume"), "{e}");
    let mut other = cfg.clone();
    other.sgd.lr = 0.1;
    let e = retrain::run(&other, &out, &RunOptions { resume: true, ..Default::default() }, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("other settings"), "{e}");
}
