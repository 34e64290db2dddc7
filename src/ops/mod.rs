//! Ops candle lacks or does slowly, as custom ops with backward: depthwise
//! convolution, padded pooling, training-mode batch norm and convolution with
//! a fused input ReLU (5x5 by Winograd), and training ops that fuse a chain of
//! these so its intermediates stay out of candle's graph (`conv_bn`,
//! `sep_bn`, `reduce_bn`, `add_bn`). CPU loops live here; with the `cuda` feature the
//! depthwise and pooling ops and the in-place SGD step (`sgd`) launch our
//! kernels (kernels/, `cuda.rs`).
pub mod accumulate;
pub mod add_bn;
pub mod batch_norm;
pub mod conv;
pub mod conv_bn;
#[cfg(feature = "cuda")]
mod cuda;
pub mod depthwise;
mod gemm;
mod plane;
mod pointwise;
pub mod pool;
mod pool_s1;
pub mod profile;
pub mod reduce_bn;
pub mod reference;
pub mod sep_bn;
pub mod sgd;
pub mod subsample;
mod taps;
mod window;
mod winograd;

pub use accumulate::{add_into, sum_of};
pub use add_bn::{add_bn_train, sum_bn_taped, SumBnTape};
pub use batch_norm::{batch_norm_relu_train, batch_norm_train, BatchStats};
pub use conv::conv2d_same;
pub use conv_bn::{conv_bn_taped, conv_bn_train, ConvBnTape};
pub(crate) use conv_bn::tensor as storage_tensor;
pub use sep_bn::{sep_conv_bn_taped, sep_conv_bn_train, sep_params, SepHalf, SepTape};
pub use sgd::{sgd_velocity, sgd_weight, SgdStep};
pub use depthwise::{depthwise_conv2d, relu_depthwise_conv2d};
pub use reduce_bn::{reduce_bn_taped, reduce_bn_train, ReduceBnTape};
pub use pool::{avg_pool2d, max_pool2d, pool2d, pool2d_grad, PoolKind};
pub use subsample::subsample2;
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

/// The contiguous f32 data behind a storage an in-place op writes, or an error naming the op.
pub(crate) fn f32_data_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: only f32 is supported, got another dtype")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{op}: the updated tensor must be contiguous"),
    }
}

/// A zeroed buffer for an op's output, zeroed by the worker threads: as
/// `vec![0.0; n]` it is one serial memset on the calling thread, while the
/// workers wait for the op (a few percent of a search step).
pub(crate) fn zeros(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut().par_chunks_mut(1 << 15).for_each(|c| c.iter_mut().for_each(|x| {
        x.write(0.0);
    }));
    // SAFETY: every one of the n elements was written just above.
    unsafe { v.set_len(n) };
    v
}

/// An op's output of `n` floats, not zeroed: for ops that write every element
/// (zeroing first is one more pass over memory, a few percent of a search step).
///
/// # Safety
/// The caller writes every element before the buffer is read or returned.
pub(crate) unsafe fn unfilled(n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    // SAFETY: capacity n; the contents are written by the caller before any read (see above).
    unsafe { v.set_len(n) };
    v
}

/// `f` on the contiguous f32 data of the CPU tensors `ts`, or an error naming `op`.
pub(crate) fn with_f32<R>(ts: &[&candle_core::Tensor], op: &str, f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut data = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(s) = &**storage else { candle_core::bail!("{op}: CPU only") };
        data.push(f32_data(s, layout, op)?);
    }
    f(&data)
}

/// `x` (N, k C, H, W) as k contiguous tensors (N, C, H, W), channel block by
/// block, copied over the worker threads (a narrowed tensor's copy runs on
/// the calling thread alone).
pub fn channel_blocks(x: &candle_core::Tensor, k: usize) -> Result<Vec<candle_core::Tensor>> {
    use rayon::prelude::*;
    let (n, kc, h, w) = x.dims4()?;
    if k == 0 || kc % k != 0 || !x.device().is_cpu() {
        candle_core::bail!("channel_blocks: {kc} channels on {:?} do not split into {k} blocks on the CPU", x.device())
    }
    let block = kc / k * h * w;
    with_f32(&[&x.contiguous()?], "channel_blocks", |data| {
        (0..k)
            .map(|j| {
                // SAFETY: every image's block is copied in below.
                let mut out = unsafe { unfilled(n * block) };
                out.par_chunks_mut(block).enumerate().for_each(|(b, o)| o.copy_from_slice(&data[0][(b * k + j) * block..][..block]));
                candle_core::Tensor::from_vec(out, (n, kc / k, h, w), &candle_core::Device::Cpu)
            })
            .collect()
    })
}

/// Splits the output of a backward op that returns both gradients flattened,
/// the input's then the weight's, into the two.
pub(crate) fn split_grads(both: &candle_core::Tensor, x: &candle_core::Tensor, w: &candle_core::Tensor) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let nx = x.elem_count();
    Ok((both.narrow(0, 0, nx)?.reshape(x.shape())?, both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?))
}

const LANES: usize = 8;

/// Dot product with eight independent accumulators, so the compiler can
/// vectorise it (a plain `.sum()` of floats must keep its order).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum with eight independent accumulators (see `dot`).
#[inline]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let c = a.chunks_exact(LANES);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of squared deviations from `mean`, with eight accumulators (see `dot`).
#[inline]
pub(crate) fn sum_sq_dev(a: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let c = a.chunks_exact(LANES);
    let tail: f32 = c.remainder().iter().map(|&v| (v - mean) * (v - mean)).sum();
    for x in c {
        for l in 0..LANES {
            acc[l] += (x[l] - mean) * (x[l] - mean);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The backward of ReLU in place: zeroes `grad` where `x < 0` (candle's
/// convention: the gradient passes at 0). A select rather than a branch, as
/// the signs are random and a branch would mispredict half the time.
#[inline]
pub(crate) fn relu_mask(grad: &mut [f32], x: &[f32]) {
    for (d, &v) in grad.iter_mut().zip(x) {
        *d = if v < 0.0 { 0.0 } else { *d };
    }
}
