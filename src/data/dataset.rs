//! A dataset in memory: train / validation / test image sets and the
//! per-channel statistics used to normalise them.
use super::cifar::{self, Variant};
use super::error::DataError;
use super::folder::{self, Shape};
use super::idx;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    /// Your own images: `--data-dir DIR` holding `train/<class>/*.png|jpg|jpeg` (and optionally `test/<class>/...`).
    Folder,
}

/// What a network is built for: its input's channels and side, and the classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    pub in_channels: usize,
    pub image_size: usize,
    pub classes: usize,
}

/// The names of Fashion-MNIST's ten classes, by label.
const FASHION_CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
/// CIFAR-10's, as its batches.meta.txt lists them.
const CIFAR10_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Folder => "folder",
        }
    }
    /// The shape of a built-in dataset; a folder dataset's is read from its images (`shape_of`).
    pub fn builtin_shape(self) -> Option<DataShape> {
        let (in_channels, image_size, classes) = match self {
            DatasetKind::FashionMnist | DatasetKind::Mnist => (1, 28, 10),
            DatasetKind::Cifar10 => (3, 32, 10),
            DatasetKind::Cifar100 => (3, 32, 100),
            DatasetKind::Folder => return None,
        };
        Some(DataShape { in_channels, image_size, classes })
    }
    /// The class names, by label.
    pub fn builtin_class_names(self) -> Vec<String> {
        match self {
            DatasetKind::FashionMnist => FASHION_CLASSES.iter().map(|c| c.to_string()).collect(),
            DatasetKind::Cifar10 => CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect(),
            _ => (0..self.builtin_shape().map_or(0, |s| s.classes)).map(|c| c.to_string()).collect(),
        }
    }
    /// The padding of pad-and-random-crop: the authors' 4 on CIFAR's 32 pixels, 2 on the 28 of MNIST's, an eighth of a folder's side.
    pub fn crop_pad(self, image_size: usize) -> usize {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => 4,
            DatasetKind::Folder => (image_size / 8).max(1),
            DatasetKind::FashionMnist | DatasetKind::Mnist => 2,
        }
    }
    pub fn is_cifar(self) -> bool {
        matches!(self, DatasetKind::Cifar10 | DatasetKind::Cifar100)
    }
    /// Where the dataset is looked for when `--data-dir` is not given.
    pub fn default_dir(self) -> PathBuf {
        match self {
            DatasetKind::FashionMnist => PathBuf::from("/usr/share/datasets/fashion-mnist"),
            DatasetKind::Mnist => PathBuf::from("/usr/share/datasets/mnist"),
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => super::fetch::cache_dir(),
            // Never read: a folder dataset's directory must be given.
            DatasetKind::Folder => PathBuf::from("."),
        }
    }
    /// The command that installs the dataset where `default_dir` looks.
    pub fn install_hint(self) -> String {
        match self {
            DatasetKind::FashionMnist => "install it with `sudo apt-get install dataset-fashion-mnist` or pass --data-dir".into(),
            DatasetKind::Mnist => "put the four MNIST IDX files there or pass --data-dir".into(),
            DatasetKind::Cifar10 => "run `enas data fetch cifar10` or pass --data-dir".into(),
            DatasetKind::Cifar100 => "run `enas data fetch cifar100` or pass --data-dir".into(),
            DatasetKind::Folder => "pass --data-dir DIR holding train/<class>/ folders of PNG or JPEG images".into(),
        }
    }
}

/// Images stored as u8, `n x c x h x w`, with one label each.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet { images, labels: indices.iter().map(|&i| self.labels[i]).collect(), channels: self.channels, height: self.height, width: self.width }
    }
    /// Per-channel mean and standard deviation of pixel values scaled to [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for img in self.images.chunks_exact(self.image_len()) {
            for (c, p) in img.chunks_exact(plane).enumerate() {
                for &v in p {
                    let v = v as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let count = (self.len() * plane).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq.iter().zip(&mean).map(|(s, &m)| ((s / count - (m as f64).powi(2)).max(1e-12).sqrt()) as f32).collect();
        (mean, std)
    }
}

/// Train, validation and test sets, and the training statistics for normalisation.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub kind: DatasetKind,
    /// The class names, by label.
    pub classes: Vec<String>,
    pub train: ImageSet,
    pub valid: ImageSet,
    pub test: ImageSet,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Dataset {
    /// Loads `kind` from `dir` (or its default place) and holds `valid_size`
    /// training images out, chosen by `seed`.
    /// A folder dataset is converted to `shape` (default: what its images' headers say).
    pub fn load(kind: DatasetKind, dir: Option<&Path>, shape: Option<Shape>, valid_size: usize, seed: u64) -> Result<Dataset, DataError> {
        if kind == DatasetKind::Folder && dir.is_none() {
            return Err(DataError::Invalid { path: PathBuf::from("--dataset folder"), what: "needs --data-dir DIR, the folder holding train/<class>/".into() });
        }
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| kind.default_dir());
        let (train, test) = match kind {
            DatasetKind::FashionMnist | DatasetKind::Mnist => load_idx(kind, &dir)?,
            DatasetKind::Cifar10 => load_cifar(kind, &dir, Variant::Cifar10)?,
            DatasetKind::Cifar100 => load_cifar(kind, &dir, Variant::Cifar100)?,
            DatasetKind::Folder => {
                let shape = match shape {
                    Some(s) => s,
                    None => folder::shape(&dir, &folder::list(&dir)?, None, None)?,
                };
                let loaded = folder::load(&dir, shape, false, &|_| Box::new(|| {}))?;
                let (train, test) = match loaded.test {
                    Some(test) => (loaded.train, test),
                    None => hold_out_test(loaded.train, &dir)?,
                };
                let mut data = Self::from_sets(kind, train, test, valid_size, seed, &dir)?;
                data.classes = loaded.classes;
                return Ok(data);
            }
        };
        Self::from_sets(kind, train, test, valid_size, seed, &dir)
    }

    /// No images: what a network is built with when only its input's shape matters.
    pub fn empty(kind: DatasetKind, channels: usize, size: usize) -> Dataset {
        let set = ImageSet { images: Vec::new(), labels: Vec::new(), channels, height: size, width: size };
        Dataset { kind, classes: Vec::new(), train: set.clone(), valid: set.clone(), test: set, mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    pub fn from_sets(kind: DatasetKind, full_train: ImageSet, test: ImageSet, valid_size: usize, seed: u64, dir: &Path) -> Result<Dataset, DataError> {
        if valid_size >= full_train.len() {
            return Err(DataError::Invalid {
                path: dir.to_path_buf(),
                what: format!("validation split of {valid_size} leaves no training images out of {}", full_train.len()),
            });
        }
        let mut order: Vec<usize> = (0..full_train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5b17));
        let (valid_idx, train_idx) = order.split_at(valid_size);
        let mut train_idx = train_idx.to_vec();
        let mut valid_idx = valid_idx.to_vec();
        train_idx.sort_unstable();
        valid_idx.sort_unstable();
        let train = full_train.subset(&train_idx);
        let valid = full_train.subset(&valid_idx);
        let (mean, std) = train.channel_stats();
        Ok(Dataset { kind, classes: kind.builtin_class_names(), train, valid, test, mean, std })
    }
}

/// A folder dataset without `test/`: a tenth of its images held out as the
/// test split, the same for every run whatever its seed, so runs compare.
fn hold_out_test(all: ImageSet, dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    if all.len() < 3 {
        return Err(DataError::Invalid {
            path: dir.join("train"),
            what: format!("{} images: too few to hold out a test split; add a test/ folder", all.len()),
        });
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(0x7e57_5b17));
    let (test_idx, train_idx) = order.split_at(all.len().div_ceil(10));
    let (mut test_idx, mut train_idx) = (test_idx.to_vec(), train_idx.to_vec());
    test_idx.sort_unstable();
    train_idx.sort_unstable();
    Ok((all.subset(&train_idx), all.subset(&test_idx)))
}

fn load_idx(kind: DatasetKind, dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    let part = |prefix: &str| -> Result<ImageSet, DataError> {
        let missing = || DataError::Missing { dataset: kind.name().into(), dir: dir.to_path_buf(), hint: kind.install_hint() };
        let img_path = idx::find(dir, &format!("{prefix}-images-idx3-ubyte")).ok_or_else(missing)?;
        let lbl_path = idx::find(dir, &format!("{prefix}-labels-idx1-ubyte")).ok_or_else(missing)?;
        let (n, h, w, images) = idx::read_images(&img_path)?;
        let labels = idx::read_labels(&lbl_path, 10)?;
        if labels.len() != n {
            return Err(DataError::CountMismatch { images: img_path, n_images: n, labels: lbl_path, n_labels: labels.len() });
        }
        Ok(ImageSet { images, labels, channels: 1, height: h, width: w })
    };
    Ok((part("train")?, part("t10k")?))
}

fn load_cifar(kind: DatasetKind, dir: &Path, variant: Variant) -> Result<(ImageSet, ImageSet), DataError> {
    let root = cifar::batches_dir(dir, variant).ok_or_else(|| DataError::Missing {
        dataset: kind.name().into(),
        dir: dir.to_path_buf(),
        hint: kind.install_hint(),
    })?;
    let read = |files: &[String]| -> Result<ImageSet, DataError> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for f in files {
            let path = root.join(f);
            if !path.is_file() {
                return Err(DataError::Missing { dataset: kind.name().into(), dir: root.clone(), hint: format!("{f} is missing; {}", kind.install_hint()) });
            }
            let (i, l) = cifar::read_records(&path, variant)?;
            images.extend(i);
            labels.extend(l);
        }
        Ok(ImageSet { images, labels, channels: 3, height: 32, width: 32 })
    };
    Ok((read(&variant.train_files())?, read(&[variant.test_file().to_string()])?))
}
