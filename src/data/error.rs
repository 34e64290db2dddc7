use std::path::PathBuf;

/// Everything that can be wrong with a dataset on disk. Each message names the
/// file and what is wrong with it, on one line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: wrong magic number {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic { path: PathBuf, found: u32, expected: u32, what: &'static str },
    #[error("{path}: truncated: header says {expected} bytes of data, file has {found}")]
    Truncated { path: PathBuf, expected: usize, found: usize },
    #[error("{path}: {found} bytes is not a whole number of {record}-byte records")]
    RecordSize { path: PathBuf, found: usize, record: usize },
    #[error("{path}: label {label} of record {index} is out of range (0..{classes})")]
    LabelOutOfRange { path: PathBuf, index: usize, label: u8, classes: usize },
    #[error("{images}: {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch { images: PathBuf, n_images: usize, labels: PathBuf, n_labels: usize },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("{dataset} not found in {dir}: {hint}")]
    Missing { dataset: String, dir: PathBuf, hint: String },
}

pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}
