//! Image-folder datasets: PNGs and JPEGs of mixed sizes decoded, converted and
//! cached; a corrupt file left out and named (or refused with --strict); every
//! layout a classifier cannot train on refused in one line; a run trains on it.
mod common;

use enas::data::folder::{self, Shape};
use enas::data::{Dataset, DatasetKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// One cache directory for this test binary (tests run as threads of one process).
fn cache_dir() -> PathBuf {
    static SET: Once = Once::new();
    let dir = std::env::temp_dir().join(format!("enas-folder-cache-{}", std::process::id()));
    SET.call_once(|| std::env::set_var("ENAS_DATA", &dir));
    dir
}

fn enas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).env("ENAS_DATA", cache_dir()).env_remove("RUST_BACKTRACE").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn pixels_are_decoded_converted_and_cached_until_a_file_changes() {
    cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    common::write_folder_dataset(tmp.path(), 8);
    let listing = folder::list(tmp.path()).unwrap();
    assert_eq!(listing.classes, ["cat", "dog", "emu"]);
    // The most common side (24) and the images' own 3 channels.
    let shape = folder::shape(tmp.path(), &listing, None, None).unwrap();
    assert_eq!(shape, Shape { channels: 3, size: 24 });
    let quiet = |_| -> Box<dyn Fn() + Sync> { Box::new(|| {}) };
    let first = folder::load(tmp.path(), shape, false, &quiet).unwrap();
    assert_eq!(first.train.len(), 24, "the two truncated files are left out, the rest decoded");
    assert_eq!((first.train.channels, first.train.height, first.train.width), (3, 24, 24));
    // Channels first: the first pixel's red, green and blue are a plane apart.
    let direct = common::picture(0, 24, 0);
    let plane = 24 * 24;
    assert_eq!([first.train.images[0], first.train.images[plane], first.train.images[2 * plane]], direct.get_pixel(0, 0).0);
    // The cache answers the same; a changed file is decoded again, not trusted.
    let again = folder::load(tmp.path(), shape, false, &quiet).unwrap();
    assert_eq!(again.train.images, first.train.images);
    common::picture(2, 24, 99).save(tmp.path().join("train/cat/000.png")).unwrap();
    let changed = folder::load(tmp.path(), shape, false, &quiet).unwrap();
    assert_ne!(changed.train.images[..3 * plane], first.train.images[..3 * plane]);
    assert_eq!(changed.train.images[3 * plane..], first.train.images[3 * plane..]);
    // A truncated cache is rebuilt.
    for entry in std::fs::read_dir(cache_dir().join("folders")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    }
    let rebuilt = folder::load(tmp.path(), shape, false, &quiet).unwrap();
    assert_eq!(rebuilt.train.images, changed.train.images);
    // Grey, and another side, on request.
    let grey = folder::load(tmp.path(), Shape { channels: 1, size: 16 }, false, &quiet).unwrap();
    assert_eq!(grey.train.images.len(), 24 * 16 * 16);
    // Without test/, a tenth is held out, the same whatever the seed.
    let a = Dataset::load(DatasetKind::Folder, Some(tmp.path()), Some(shape), 4, 1).unwrap();
    let b = Dataset::load(DatasetKind::Folder, Some(tmp.path()), Some(shape), 4, 2).unwrap();
    assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (17, 4, 3));
    assert_eq!(a.test.images, b.test.images);
    assert_eq!(a.classes, ["cat", "dog", "emu"]);
}

#[test]
fn bad_folders_are_one_line_errors() {
    cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("mixed");
    common::write_folder_dataset(&d, 4);
    image::GrayImage::from_pixel(24, 24, image::Luma([9])).save(d.join("train/cat/grey.png")).unwrap();
    let dir = d.to_str().unwrap();
    let out = tmp.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--dataset", "folder", "--data-dir", dir, "--preset", "smoke", "--out", out.to_str().unwrap(), "--quiet"];
        args.extend(extra);
        enas(&args)
    };
    let (code, _, err) = train(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("mixed channel counts") && err.contains("grey.png") && err.contains("--image-channels"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = train(&["--image-channels", "3", "--strict"]);
    assert_eq!(code, 1);
    assert!(err.contains("notes.txt: not a PNG or JPEG file (--strict)"), "{err}");
    std::fs::remove_file(d.join("train/emu/notes.txt")).unwrap();
    let (code, _, err) = train(&["--image-channels", "3", "--strict"]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.png: not a readable image") && err.trim().lines().count() == 1, "{err}");
    let (code, _, err) = enas(&["train", "--dataset", "folder", "--preset", "smoke", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--dataset folder needs --data-dir"), "{err}");
    let (code, _, err) = enas(&["train", "--image-size", "32", "--preset", "smoke", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--image-size: a setting of --dataset folder"), "{err}");
    let (code, _, err) = train(&["--image-channels", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("must be 1 (grey) or 3 (RGB)"), "{err}");
    assert!(!out.join("search").exists(), "a refused run left a directory");
}

#[test]
fn a_run_trains_on_a_folder_and_names_its_classes() {
    cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("pets");
    common::write_folder_dataset(&d, 80);
    for (c, name) in ["cat", "dog", "emu"].iter().enumerate() {
        std::fs::create_dir_all(d.join("test").join(name)).unwrap();
        for i in 0..5 {
            common::picture(c, 24, 1000 + i).save(d.join("test").join(name).join(format!("{i}.png"))).unwrap();
        }
    }
    let (code, out, err) = enas(&["data", "info", "--dataset", "folder", "--data-dir", d.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["classes"], serde_json::json!(["cat", "dog", "emu"]));
    assert_eq!((info["train"].as_u64(), info["test"].as_u64()), (Some(240), Some(15)));
    assert_eq!(info["train_per_class"], serde_json::json!([80, 80, 80]));
    let run = tmp.path().join("run");
    let (code, out, err) = enas(&["train", "--dataset", "folder", "--data-dir", d.to_str().unwrap(), "--preset", "smoke", "--out", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test accuracy"), "{out}");
    assert!(err.contains("left out 3 files") && err.contains("broken.png") && err.contains("cut.jpg") && err.contains("notes.txt"), "{err}");
    assert!(err.contains("3 classes, 240 training images, 15 test images, as 24x24 RGB"), "{err}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("retrain/config.json")).unwrap()).unwrap();
    assert_eq!((config["net"]["in_channels"].as_u64(), config["net"]["image_size"].as_u64(), config["net"]["classes"].as_u64()), (Some(3), Some(24), Some(3)));
    let input: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("retrain/input.json")).unwrap()).unwrap();
    assert_eq!(input["classes"], serde_json::json!(["cat", "dog", "emu"]));
    assert_eq!(input["mean"].as_array().unwrap().len(), 3);
    // The model tests again from its directory alone.
    let (code, out, err) = enas(&["eval", "--run", run.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("test accuracy"), "{out}");
}

#[test]
fn fashion_mnist_written_as_folders_reads_as_its_idx_files_do() {
    cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (idx, folders) = (tmp.path().join("idx"), tmp.path().join("folders"));
    common::write_fashion(&idx, 300, 60, true);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/idx-to-folder.py");
    let out = Command::new("python3").arg(script).arg(&idx).arg(&folders).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_idx = Dataset::load(DatasetKind::FashionMnist, Some(&idx), None, 0, 0).unwrap();
    let from_folders = Dataset::load(DatasetKind::Folder, Some(&folders), None, 0, 0).unwrap();
    // Folders list class by class, each in the IDX order: the IDX sets sorted stably by label.
    let by_label = |set: &enas::data::ImageSet| {
        let mut order: Vec<usize> = (0..set.len()).collect();
        order.sort_by_key(|&i| set.labels[i]);
        set.subset(&order)
    };
    for (a, b) in [(&from_idx.train, &from_folders.train), (&from_idx.test, &from_folders.test)] {
        let a = by_label(a);
        assert_eq!((b.channels, b.height, b.width), (1, 28, 28));
        assert_eq!(b.labels, a.labels);
        assert!(b.images == a.images, "decoded pixels differ from the IDX file's");
    }
    for (m, n) in from_idx.mean.iter().chain(&from_idx.std).zip(from_folders.mean.iter().chain(&from_folders.std)) {
        assert!((m - n).abs() < 1e-6, "normalisation {m} against {n}");
    }
    assert_eq!(from_folders.classes[0], "0_T-shirt_top");
    assert_eq!(from_folders.classes.len(), 10);
}

#[test]
fn an_unreadable_class_folder_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("pets");
    common::write_folder_dataset(&d, 4);
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.join("train/dog"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads every directory: run as nobody there, so the permission holds.
    let root = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap().trim() == "0";
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_enas"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_enas"))
    };
    let out = cmd
        .args(["data", "info", "--dataset", "folder", "--data-dir"])
        .arg(&d)
        .env("ENAS_DATA", tmp.path().join("cache"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    std::fs::set_permissions(d.join("train/dog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("train/dog: cannot read") && err.trim().lines().count() == 1, "{err}");
}
