//! One op each, forward and backward: the CPU loops, written once and
//! compiled for every kernel set (`simd`), and the CUDA launches
//! (`device::cuda`) where an op has them.
pub mod accumulate;
pub mod batch_norm;
#[cfg(feature = "cuda")]
mod batch_norm_cuda;
pub mod conv;
pub mod depthwise;
pub(crate) mod gemm;
pub(crate) mod lanes;
pub(crate) mod plane;
pub(crate) mod pointwise;
pub mod pool;
pub(crate) mod pool_s1;
pub mod sgd;
pub mod simd;
pub mod subsample;
pub(crate) mod taps;
mod window;
pub(crate) mod winograd;

pub use accumulate::{add_into, sum_of};
pub use batch_norm::{batch_norm_relu_train, batch_norm_train, BatchStats};
pub use conv::conv2d_same;
pub use depthwise::{depthwise_conv2d, relu_depthwise_conv2d};
pub use pool::{avg_pool2d, max_pool2d, pool2d, pool2d_grad, PoolKind};
pub use sgd::{sgd_velocity, sgd_weight, SgdStep};
pub use subsample::subsample2;
pub use window::Window;
