//! Datasets (IDX, CIFAR binary, folders of images), the seeded validation split, normalisation,
//! augmentation and a loader that prepares batches on a background thread.
pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod loader;

pub use augment::Augment;
pub use dataset::{DataShape, Dataset, DatasetKind, ImageSet};
pub use error::DataError;
pub use loader::{Batch, Loader, LoaderConfig};
