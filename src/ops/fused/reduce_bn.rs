//! The factorized reduction (two 1x1 convolutions on the even and the odd
//! pixel grid, concatenated, then batch norm) as one op: the two grids, the
//! two convolutions' outputs and their concatenation stay inside the op
//! instead of becoming four tensors of candle's graph (see `conv_bn`).
use super::conv_bn::{bn_backward, bn_forward, keep, kept};
use crate::ops::kernels::batch_norm::{stats_of, BatchNormTrain, BatchStats};
use crate::ops::kernels::conv;
use crate::ops::kernels::subsample::{scatter_both, Subsample};
use crate::ops::storage::{f32_data, tensor};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Training-mode batch norm of the concatenation of `w1` (C_out/2, C) applied
/// to pixels (2y, 2x) of `x` (of ReLU(x) when `relu_in`) and `w2` to pixels (2y + 1, 2x + 1).
pub fn reduce_bn_train(x: &Tensor, w1: &Tensor, w2: &Tensor, gamma: &Tensor, beta: &Tensor, relu_in: bool, eps: f64) -> Result<(Tensor, BatchStats)> {
    let (_, c, _, _) = x.dims4()?;
    let (h1, h2) = (w1.dim(0)?, w2.dim(0)?);
    if w1.dims() != [h1, c] || w2.dims() != [h2, c] || gamma.dims() != [h1 + h2] || beta.dims() != [h1 + h2] {
        candle_core::bail!(
            "reduce_bn_train: weights {:?} and {:?}, gamma {:?} and beta {:?} do not fit input {:?}",
            w1.dims(),
            w2.dims(),
            gamma.dims(),
            beta.dims(),
            x.dims()
        );
    }
    if !x.device().is_cpu() {
        let p1 = crate::ops::kernels::conv2d_same(&crate::ops::kernels::subsample2(x, 0)?, w1, relu_in)?;
        let p2 = crate::ops::kernels::conv2d_same(&crate::ops::kernels::subsample2(x, 1)?, w2, relu_in)?;
        return crate::ops::kernels::batch_norm_train(&Tensor::cat(&[p1, p2], 1)?, gamma, beta, eps);
    }
    let (bn, stats) = BatchNormTrain::new(eps, false);
    let op = ReduceBn { relu_in, half: h1, bn, grids: Mutex::new(None), cat: Mutex::new(None) };
    let w = Tensor::cat(&[w1, w2], 0)?;
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let y = crate::ops::profile::timed("reduce+bn fwd", || x.contiguous()?.apply_op3(&w, &affine, op))?;
    Ok((y, stats_of(&stats)?))
}

struct ReduceBn {
    relu_in: bool,
    /// Output channels of the first grid's convolution.
    half: usize,
    bn: BatchNormTrain,
    /// The two subsampled grids and the concatenation, kept for the backward.
    grids: Mutex<Option<[Tensor; 2]>>,
    cat: Mutex<Option<Tensor>>,
}

impl CustomOp3 for ReduceBn {
    fn name(&self) -> &'static str {
        "reduce-batch-norm"
    }

    /// (x, both weights stacked (C_out, C), gamma and beta concatenated) -> output.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = f32_data(s2, l2, self.name())?;
        let (c_out, c) = (l2.dims()[0], l2.dims()[1]);
        let mut grids = Vec::with_capacity(2);
        let mut parts = Vec::with_capacity(2);
        for (offset, rows) in [(0, 0..self.half), (1, self.half..c_out)] {
            let (g_s, g_shape) = Subsample { offset }.cpu_fwd(s1, l1)?;
            let wi = CpuStorage::F32(w[rows.start * c..rows.end * c].to_vec());
            let (p, p_shape) = conv::cpu_forward(1, self.relu_in, &g_s, &Layout::contiguous(g_shape.clone()), &wi, &Layout::contiguous((rows.len(), c)))?;
            grids.push(tensor(g_s, g_shape)?);
            let CpuStorage::F32(p) = p else { candle_core::bail!("{}: the convolution gave no f32 output", self.name()) };
            parts.push((p, p_shape.dims()[1]));
        }
        // Concatenated along channels: per image, the first part's planes, then the second's.
        let (n, _, oh, ow) = grids[0].dims4()?;
        let plane = oh * ow;
        // SAFETY: each image's planes are copied in, the parts' channels adding up to c_out.
        let (cat, ()) = unsafe {
            crate::ops::storage::filled(n * c_out * plane, |cat| {
                cat.par_chunks_mut(c_out * plane).enumerate().for_each(|(b, img)| {
                    let mut at = 0;
                    for (p, ch) in &parts {
                        img[at..at + ch * plane].copy_from_slice(&p[b * ch * plane..(b + 1) * ch * plane]);
                        at += ch * plane;
                    }
                })
            })
        };
        let (y, cat) = bn_forward(&self.bn, CpuStorage::F32(cat), Shape::from((n, c_out, oh, ow)), f32_data(s3, l3, self.name())?)?;
        let [g0, g1]: [Tensor; 2] = grids.try_into().map_err(|_| candle_core::Error::Msg("two grids".into()))?;
        keep(&self.grids, [g0, g1]);
        keep(&self.cat, cat);
        Ok(y)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g_cat, g_gamma, g_beta) = bn_backward(&self.bn, &kept(&self.cat, self.name())?, affine, res, grad)?;
        let grids = kept(&self.grids, self.name())?;
        let c_out = w.dim(0)?;
        let (mut g_grids, mut gw) = (Vec::with_capacity(2), Vec::with_capacity(2));
        for (offset, (start, len)) in [(0, (0, self.half)), (1, (self.half, c_out - self.half))] {
            let g = g_cat.narrow(1, start, len)?.contiguous()?;
            let wi = w.narrow(0, start, len)?;
            let (g_grid, g_w) = crate::ops::profile::timed("conv bwd", || conv::backward(1, self.relu_in, &grids[offset], &wi, &g))?;
            g_grids.push(g_grid);
            gw.push(g_w);
        }
        let (_, _, h, wd) = x.dims4()?;
        let gx = scatter_both(&g_grids[0], &g_grids[1], h, wd)?;
        Ok((Some(gx), Some(Tensor::cat(&gw, 0)?), Some(Tensor::cat(&[g_gamma, g_beta], 0)?)))
    }
}

/// A factorized reduction run outside candle's graph (CPU only), for a block
/// that does its own backward: the op with what its forward kept.
pub struct ReduceBnTape {
    op: ReduceBn,
    x: Tensor,
    w: Tensor,
    affine: Tensor,
}

/// `reduce_bn_train` on tensors outside candle's graph, the two weights
/// stacked in `w` (C_out, C) and gamma and beta concatenated in `affine`:
/// the output, the batch statistics and the backward.
pub fn reduce_bn_taped(x: &Tensor, w: &Tensor, affine: &Tensor, relu_in: bool, eps: f64) -> Result<(Tensor, BatchStats, ReduceBnTape)> {
    let (c_out, c) = w.dims2()?;
    if !x.device().is_cpu() || x.dim(1)? != c || c_out % 2 != 0 || affine.dims() != [2 * c_out] {
        candle_core::bail!("reduce_bn_taped: weight {:?} and affine {:?} do not fit input {:?} on the CPU", w.dims(), affine.dims(), x.dims());
    }
    let (bn, stats) = BatchNormTrain::new(eps, false);
    let op = ReduceBn { relu_in, half: c_out / 2, bn, grids: Mutex::new(None), cat: Mutex::new(None) };
    let (x, w, affine) = (x.detach().contiguous()?, w.detach().contiguous()?, affine.detach().contiguous()?);
    let y = crate::ops::profile::timed("reduce+bn fwd", || x.apply_op3_no_bwd(&w, &affine, &op))?;
    Ok((y, stats_of(&stats)?, ReduceBnTape { op, x, w, affine }))
}

impl ReduceBnTape {
    /// The gradients of the input, the stacked weights, and (gamma; beta), given the output `y` and its gradient.
    pub fn backward(&self, y: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        match self.op.bwd(&self.x, &self.w, &self.affine, y, grad)? {
            (Some(gx), Some(gw), Some(ga)) => Ok((gx, gw, ga)),
            _ => candle_core::bail!("{}: no gradient", self.op.name()),
        }
    }
}
