//! Small datasets written in the real file formats, and random tensors, for tests.
#![allow(dead_code)]
use enas::data::{cifar, idx};
use std::path::Path;

/// Images whose class is visible in them: class k brightens row block k.
pub fn synthetic_images(n: usize, c: usize, h: usize, w: usize, classes: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * c * h * w);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = (next() as usize % classes) as u8;
        labels.push(label);
        let band = h * (label as usize % 7) / 7;
        for _ in 0..c {
            for y in 0..h {
                for _ in 0..w {
                    let base = if y >= band && y < band + h / 7 + 1 { 200 } else { 30 };
                    images.push((base + (next() % 40) as i32 - 20).clamp(0, 255) as u8);
                }
            }
        }
    }
    (images, labels)
}

/// Writes the four Fashion-MNIST IDX files into `dir`.
pub fn write_fashion(dir: &Path, n_train: usize, n_test: usize, gzip: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, seed) in [("train", n_train, 1), ("t10k", n_test, 2)] {
        let (images, labels) = synthetic_images(n, 1, 28, 28, 10, seed);
        let ext = if gzip { ".gz" } else { "" };
        idx::write(&dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), &[n, 28, 28], &images, gzip).unwrap();
        idx::write(&dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), &[n], &labels, gzip).unwrap();
    }
}

/// `dir/data` holding the Fashion-MNIST files at the smoke preset's size (256 training, 40 test images).
pub fn smoke_fashion(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    write_fashion(&data, 256, 40, true);
    data
}

/// Writes CIFAR-10 batch files (`per_batch` records each) into `dir`.
pub fn write_cifar10(dir: &Path, per_batch: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"].iter().enumerate() {
        let (images, labels) = synthetic_images(per_batch, 3, 32, 32, 10, 10 + i as u64);
        cifar::write_records(&dir.join(name), cifar::Variant::Cifar10, &images, &labels).unwrap();
    }
}

/// A CPU tensor of `shape` with values uniform in [-1, 1) from `seed`.
pub fn rand_tensor(shape: &[usize], seed: u64) -> candle_core::Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// An RGB image whose class shows as a bright horizontal band, with some noise.
pub fn picture(class: usize, side: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(side, side, |x, y| {
        let band = (y * 3 / side) as usize == class;
        let noise = ((x * 31 + y * 17 + seed * 7) % 40) as u8;
        let v = if band { 200 + noise / 2 } else { 20 + noise };
        image::Rgb([v, v / 2, 255 - v])
    })
}

/// Three classes of `per_class` images each: PNGs of 24 pixels, a few JPEGs
/// of 20, a truncated PNG, a truncated JPEG and a text file.
pub fn write_folder_dataset(dir: &Path, per_class: usize) {
    for (c, name) in ["cat", "dog", "emu"].iter().enumerate() {
        let class_dir = dir.join("train").join(name);
        std::fs::create_dir_all(&class_dir).unwrap();
        for i in 0..per_class {
            let (side, ext) = if i % 4 == 3 { (20, "jpg") } else { (24, "png") };
            picture(c, side, i as u32).save(class_dir.join(format!("{i:03}.{ext}"))).unwrap();
        }
    }
    let png = std::fs::read(dir.join("train/cat/000.png")).unwrap();
    std::fs::write(dir.join("train/dog/broken.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(dir.join("train/emu/notes.txt"), "not an image").unwrap();
    // A JPEG cut short decodes without an error (its missing rows filled in): it must still be left out.
    let jpg = std::fs::read(dir.join("train/emu/003.jpg")).unwrap();
    std::fs::write(dir.join("train/emu/cut.jpg"), &jpg[..jpg.len() * 9 / 10]).unwrap();
}
