mod common;

use enas::data::cifar::{self, Variant};
use enas::data::{idx, Augment, Dataset, DatasetKind, Loader, LoaderConfig};
use std::sync::Arc;

fn load_fashion(dir: &std::path::Path) -> Result<Dataset, enas::data::DataError> {
    Dataset::load(DatasetKind::FashionMnist, Some(dir), None, 20, 7)
}

#[test]
fn idx_raw_and_gzip_load_alike() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(&t.path().join("raw"), 120, 30, false);
    common::write_fashion(&t.path().join("gz"), 120, 30, true);
    let a = load_fashion(&t.path().join("raw")).unwrap();
    let b = load_fashion(&t.path().join("gz")).unwrap();
    assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (100, 20, 30));
    assert_eq!(a.train.images, b.train.images);
    assert_eq!(a.valid.labels, b.valid.labels);
    assert_eq!((a.train.channels, a.train.height, a.train.width), (1, 28, 28));
}

#[test]
fn validation_split_is_seeded() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 200, 10, false);
    let a = Dataset::load(DatasetKind::FashionMnist, Some(t.path()), None, 50, 1).unwrap();
    let b = Dataset::load(DatasetKind::FashionMnist, Some(t.path()), None, 50, 1).unwrap();
    let c = Dataset::load(DatasetKind::FashionMnist, Some(t.path()), None, 50, 2).unwrap();
    assert_eq!(a.valid.images, b.valid.images);
    assert_ne!(a.valid.images, c.valid.images);
    assert_eq!(a.train.len() + a.valid.len(), 200);
}

fn err_text(r: Result<Dataset, enas::data::DataError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn wrong_magic_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 50, 10, false);
    let p = t.path().join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[3] = 0x01;
    std::fs::write(&p, bytes).unwrap();
    let e = err_text(load_fashion(t.path()));
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("wrong magic number"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

#[test]
fn truncated_file_is_reported() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 50, 10, false);
    let p = t.path().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = err_text(load_fashion(t.path()));
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("truncated"), "{e}");
}

#[test]
fn label_out_of_range_is_reported() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 50, 10, false);
    let p = t.path().join("train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8 + 5] = 12;
    std::fs::write(&p, bytes).unwrap();
    let e = err_text(load_fashion(t.path()));
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("label 12 of record 5 is out of range"), "{e}");
}

#[test]
fn image_and_label_counts_must_agree() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 50, 10, false);
    idx::write(&t.path().join("train-labels-idx1-ubyte"), &[49], &[0u8; 49], false).unwrap();
    let e = err_text(load_fashion(t.path()));
    assert!(e.contains("50 images but") && e.contains("has 49 labels"), "{e}");
}

#[test]
fn missing_dataset_says_how_to_install_it() {
    let t = tempfile::tempdir().unwrap();
    let e = err_text(load_fashion(&t.path().join("nowhere")));
    assert!(e.contains("fashion-mnist not found") && e.contains("apt-get install dataset-fashion-mnist"), "{e}");
    let e = err_text(Dataset::load(DatasetKind::Cifar10, Some(t.path()), None, 10, 0));
    assert!(e.contains("enas data fetch cifar10"), "{e}");
}

#[test]
fn cifar_reads_any_number_of_records() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cifar-10-batches-bin");
    common::write_cifar10(&dir, 7);
    let d = Dataset::load(DatasetKind::Cifar10, Some(t.path()), None, 5, 0).unwrap();
    assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (30, 5, 7));
    assert_eq!((d.train.channels, d.train.height, d.train.width), (3, 32, 32));
    // The batch folder itself works as --data-dir too.
    assert!(Dataset::load(DatasetKind::Cifar10, Some(&dir), None, 5, 0).is_ok());
}

#[test]
fn cifar100_uses_the_fine_label() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let (images, _) = common::synthetic_images(4, 3, 32, 32, 10, 3);
    let labels = [99u8, 0, 42, 7];
    cifar::write_records(&dir.join("train.bin"), Variant::Cifar100, &images, &labels).unwrap();
    cifar::write_records(&dir.join("test.bin"), Variant::Cifar100, &images, &labels).unwrap();
    let (_, read) = cifar::read_records(&dir.join("test.bin"), Variant::Cifar100).unwrap();
    assert_eq!(read, labels);
}

#[test]
fn cifar_record_size_mismatch_and_bad_label() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cifar-10-batches-bin");
    common::write_cifar10(&dir, 3);
    let p = dir.join("data_batch_2.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    let e = err_text(Dataset::load(DatasetKind::Cifar10, Some(t.path()), None, 1, 0));
    assert!(e.contains("data_batch_2.bin") && e.contains("3073-byte records"), "{e}");
    let mut bytes = bytes.clone();
    bytes[3073] = 10;
    std::fs::write(&p, &bytes).unwrap();
    let e = err_text(Dataset::load(DatasetKind::Cifar10, Some(t.path()), None, 1, 0));
    assert!(e.contains("data_batch_2.bin") && e.contains("label 10 of record 1"), "{e}");
}

fn loader_cfg(d: &Dataset, augment: Augment) -> LoaderConfig {
    LoaderConfig { batch_size: 16, shuffle: true, drop_last: true, augment, mean: d.mean.clone(), std: d.std.clone() }
}

#[test]
fn loader_is_deterministic_per_seed_and_epoch() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 100, 10, false);
    let d = load_fashion(t.path()).unwrap();
    let set = Arc::new(d.train.clone());
    let aug = Augment { crop_pad: 2, flip: true, cutout: 8 };
    let run = |seed, epoch| -> Vec<Vec<f32>> { Loader::new(set.clone(), loader_cfg(&d, aug), seed, epoch).map(|b| b.images).collect() };
    let a = run(3, 0);
    assert_eq!(a.len(), 5, "80 images, batches of 16, last dropped");
    assert_eq!(a, run(3, 0));
    assert_ne!(a, run(3, 1));
    assert_ne!(a, run(4, 0));
}

#[test]
fn normalisation_centres_the_training_data() {
    let t = tempfile::tempdir().unwrap();
    common::write_fashion(t.path(), 100, 10, false);
    let d = load_fashion(t.path()).unwrap();
    let mut cfg = loader_cfg(&d, Augment::NONE);
    cfg.shuffle = false;
    cfg.drop_last = false;
    let all: Vec<f32> = Loader::new(Arc::new(d.train.clone()), cfg, 0, 0).flat_map(|b| b.images).collect();
    let mean = all.iter().map(|&v| v as f64).sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / all.len() as f64;
    assert!(mean.abs() < 1e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 1e-2, "variance {var}");
}

#[test]
fn augmentation_flips_crops_and_cuts() {
    use rand::SeedableRng;
    let (c, h, w) = (1, 4, 4);
    let img: Vec<f32> = (0..16).map(|v| v as f32 + 1.0).collect();
    let mut scratch = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut flipped_seen = false;
    for _ in 0..20 {
        let mut x = img.clone();
        Augment { crop_pad: 0, flip: true, cutout: 0 }.apply(&mut x, &mut scratch, c, h, w, &mut rng);
        assert!(x == img || x[..4] == [4.0, 3.0, 2.0, 1.0]);
        flipped_seen |= x != img;
    }
    assert!(flipped_seen);
    let mut x = img.clone();
    Augment { crop_pad: 0, flip: false, cutout: 2 }.apply(&mut x, &mut scratch, c, h, w, &mut rng);
    let zeros = x.iter().filter(|v| **v == 0.0).count();
    assert!((1..=4).contains(&zeros), "cutout zeroed {zeros} pixels");
    let mut x = img.clone();
    Augment { crop_pad: 1, flip: false, cutout: 0 }.apply(&mut x, &mut scratch, c, h, w, &mut rng);
    let kept = x.iter().filter(|v| **v != 0.0).count();
    assert!(kept >= 9, "a 1-pixel shift keeps at least 9 of 16 pixels");
}
