//! The same computations composed from candle's own ops: the references our
//! custom ops are tested and timed against, and what the convolution (on
//! CUDA) and batch norm (on devices with no kernels of ours) run where our
//! CPU loops do not.
use crate::ops::kernels::BatchStats;
use candle_core::{Result, Tensor};

/// The nine shifted copies of `x` padded by one pixel with `fill`.
fn shifted(x: &Tensor, fill: f32) -> Result<Vec<Tensor>> {
    let (n, c, h, w) = x.dims4()?;
    let row = Tensor::full(fill, (n, c, 1, w), x.device())?;
    let xp = Tensor::cat(&[&row, x, &row], 2)?;
    let col = Tensor::full(fill, (n, c, h + 2, 1), x.device())?;
    let xp = Tensor::cat(&[&col, &xp, &col], 3)?;
    let mut out = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            out.push(xp.narrow(2, dy, h)?.narrow(3, dx, w)?);
        }
    }
    Ok(out)
}

/// 3x3 stride-1 max pool with -inf padding.
pub fn max_pool3x3(x: &Tensor) -> Result<Tensor> {
    let s = shifted(x, f32::NEG_INFINITY)?;
    s[1..].iter().try_fold(s[0].clone(), |m, t| m.maximum(t))
}

/// 3x3 stride-1 average pool that divides by the in-image pixel count.
pub fn avg_pool3x3(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let s = shifted(x, 0.0)?;
    let sum = s[1..].iter().try_fold(s[0].clone(), |a, t| a + t)?;
    let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
    let counts = shifted(&ones, 0.0)?;
    let count = counts[1..].iter().try_fold(counts[0].clone(), |a, t| a + t)?;
    sum.broadcast_div(&count)
}

/// Training-mode batch norm from candle's ops, with the batch statistics.
/// Written for few kernel launches on a GPU, where each op is one: the
/// reductions run over (N, H, W) at once, and the per-channel scale is formed
/// on (C,) before it touches the activations.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    let (n, c, h, w) = x.dims4()?;
    let count = (n * h * w) as f64;
    let mean = (x.sum_keepdim((0, 2, 3))? / count)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim((0, 2, 3))? / count)?;
    let scale = gamma.reshape((1, c, 1, 1))?.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let y = centred.broadcast_mul(&scale)?.broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
    let stats = BatchStats { mean: mean.flatten_all()?, var: var.flatten_all()? };
    Ok((y, stats))
}

/// Stride-1 'same' convolution (odd k; a (C_out, C) weight is a 1x1) of x or ReLU(x), by candle's conv2d.
pub fn conv2d_same(x: &Tensor, w: &Tensor, relu_input: bool) -> Result<Tensor> {
    let x = if relu_input { x.relu()? } else { x.clone() };
    let w = if w.rank() == 2 { w.reshape((w.dim(0)?, w.dim(1)?, 1, 1))? } else { w.clone() };
    let k = w.dim(2)?;
    x.conv2d(&w, k / 2, 1, 1, 1)
}

/// Every second pixel starting at `offset` (0 or 1) on both axes; odd sizes are zero-padded first.
pub fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let x = if h % 2 == 1 { x.pad_with_zeros(2, 0, 1)? } else { x.clone() };
    let x = if w % 2 == 1 { x.pad_with_zeros(3, 0, 1)? } else { x };
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h / 2, 2, w / 2, 2))?.narrow(3, offset, 1)?.narrow(5, offset, 1)?.reshape((n, c, h / 2, w / 2))
}
