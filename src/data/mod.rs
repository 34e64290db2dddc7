//! Datasets (IDX, CIFAR binary), the seeded validation split, normalisation,
//! augmentation and a loader that prepares batches on a background thread.
pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod idx;
pub mod loader;

pub use augment::Augment;
pub use dataset::{Dataset, DatasetKind, ImageSet};
pub use error::DataError;
pub use loader::{Batch, Loader, LoaderConfig};
