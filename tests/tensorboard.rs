//! TensorBoard event files: the CRC against its published check value, a
//! round trip through our reader (length, masked CRC-32C, proto), corruption
//! caught, and `enas retrain --tensorboard` logging every epoch.
mod common;

use enas::train::tensorboard::{crc32c, read_scalars, EventWriter};
use std::process::Command;

#[test]
fn crc32c_has_the_published_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}

#[test]
fn scalars_round_trip_and_corruption_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(t.path()).unwrap();
    w.scalars(1, &[("a/x".into(), 0.5), ("a/y".into(), -2.25)]).unwrap();
    w.metrics("stage", 7, &serde_json::json!({"epoch": 7, "loss": 1.5, "arch": "0 1", "acc": 0.875})).unwrap();
    let path = w.path.clone();
    drop(w);
    let mut got = read_scalars(&path).unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, vec![("a/x".into(), 1, 0.5), ("a/y".into(), 1, -2.25), ("stage/acc".into(), 7, 0.875), ("stage/loss".into(), 7, 1.5)]);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let e = read_scalars(&path).unwrap_err().to_string();
    assert!(e.contains("CRC"), "{e}");
}

#[test]
fn retrain_writes_every_epoch_for_tensorboard() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::write_fashion(&data, 128, 20, false);
    let out = t.path().join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_enas"))
        .args(["retrain", "--space", "metaqnn", "--arch", "C(64,3) P(5,3) SM", "--width", "0.125", "--epochs", "2", "--batch", "32"])
        .args(["--valid-size", "32", "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet", "--tensorboard"])
        .status()
        .unwrap();
    assert!(status.success());
    let files: Vec<_> = std::fs::read_dir(out.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let scalars = read_scalars(&files[0]).unwrap();
    let metrics: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for m in metrics.iter().filter(|m| m.get("epoch").is_some()) {
        let epoch = m["epoch"].as_i64().unwrap();
        let logged: Vec<_> = scalars.iter().filter(|s| s.0 == "retrain/valid_accuracy" && s.1 == epoch).collect();
        assert_eq!(logged.len(), 1, "epoch {epoch}");
        assert_eq!(logged[0].2, m["valid_accuracy"].as_f64().unwrap() as f32);
    }
    assert_eq!(scalars.iter().filter(|s| s.0 == "retrain/train_loss").count(), 2);
}
