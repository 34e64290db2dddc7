//! The official CIFAR-10 / CIFAR-100 binary format: one label byte (CIFAR-100:
//! coarse then fine) and 3,072 bytes of 32x32 RGB planes per record.
use super::error::{read_file, DataError};
use std::path::{Path, PathBuf};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Cifar10,
    Cifar100,
}

impl Variant {
    pub fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }
    pub fn classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
    /// The folder the official tarball extracts to.
    pub fn folder(self) -> &'static str {
        match self {
            Variant::Cifar10 => "cifar-10-batches-bin",
            Variant::Cifar100 => "cifar-100-binary",
        }
    }
    pub fn train_files(self) -> Vec<String> {
        match self {
            Variant::Cifar10 => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            Variant::Cifar100 => vec!["train.bin".into()],
        }
    }
    pub fn test_file(self) -> &'static str {
        match self {
            Variant::Cifar10 => "test_batch.bin",
            Variant::Cifar100 => "test.bin",
        }
    }
}

/// Reads any number of records from one file; returns (images CHW bytes, labels).
pub fn read_records(path: &Path, variant: Variant) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bytes = read_file(path)?;
    let record = variant.label_bytes() + IMAGE_BYTES;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::RecordSize { path: path.to_path_buf(), found: bytes.len(), record });
    }
    let n = bytes.len() / record;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (index, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[variant.label_bytes() - 1];
        if label as usize >= variant.classes() {
            return Err(DataError::LabelOutOfRange { path: path.to_path_buf(), index, label, classes: variant.classes() });
        }
        labels.push(label);
        images.extend_from_slice(&rec[variant.label_bytes()..]);
    }
    Ok((images, labels))
}

/// The directory holding the batch files: `dir` itself or its official sub-folder.
pub fn batches_dir(dir: &Path, variant: Variant) -> Option<PathBuf> {
    [dir.join(variant.folder()), dir.to_path_buf()].into_iter().find(|d| d.join(variant.test_file()).is_file())
}

/// Writes records in the official format (tests and tools).
pub fn write_records(path: &Path, variant: Variant, images: &[u8], labels: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for (img, &l) in images.chunks_exact(IMAGE_BYTES).zip(labels) {
        if variant == Variant::Cifar100 {
            out.push(l / 5);
        }
        out.push(l);
        out.extend_from_slice(img);
    }
    std::fs::write(path, out)
}
