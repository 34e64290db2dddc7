//! Ops candle lacks, as custom ops with backward: depthwise convolution and
//! padded pooling. CPU loops live here; CUDA launches arrive with `kernels/`
//! (each op's `cuda_fwd` is the seam, left at candle's default for now).
pub mod batch_norm;
pub mod depthwise;
pub mod pool;
mod window;

pub use batch_norm::{batch_norm_train, BatchStats};
pub use depthwise::depthwise_conv2d;
pub use pool::{avg_pool2d, max_pool2d, pool2d, PoolKind};
pub use window::Window;

use candle_core::{CpuStorage, Layout, Result};

/// The contiguous f32 data behind a storage, or an error naming the op.
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: only f32 is supported, got another dtype")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}
