//! Training machinery: optimisers, schedules, loss, checkpoints, and the
//! retraining of a fixed architecture from scratch.
pub mod checkpoint;
pub mod child;
pub mod derive;
pub mod eta;
pub mod executor;
pub mod lock;
pub mod loss;
pub mod model_dir;
pub mod multi_trial;
pub mod optim;
pub mod pipeline;
pub mod preset;
pub mod progress;
pub mod rank_stats;
pub mod ranking;
pub mod retrain;
pub mod schedule;
pub mod search;
pub mod tensorboard;
pub mod trials;

pub use loss::cross_entropy;
pub use optim::{clip_grad_norm, Adam, Sgd, SgdConfig};
pub use schedule::Cosine;
