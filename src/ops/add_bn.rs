//! Batch norm of a sum of two tensors as one op (the macro space's skip
//! connections summed into the layer's output): the sum stays inside the op
//! instead of becoming a tensor of candle's graph (see `conv_bn`).
use super::batch_norm::{BatchNormTrain, BatchStats};
use super::conv_bn::{bn_backward, bn_forward, keep, kept, stats_of};
use super::f32_data;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Training-mode batch norm of `a + b` (same shape (N, C, H, W)) with `gamma` and `beta` (C,).
pub fn add_bn_train(a: &Tensor, b: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    let c = a.dim(1)?;
    if a.dims() != b.dims() || gamma.dims() != [c] || beta.dims() != [c] {
        candle_core::bail!("add_bn_train: {:?} + {:?} with gamma {:?} and beta {:?}", a.dims(), b.dims(), gamma.dims(), beta.dims());
    }
    if !a.device().is_cpu() {
        return super::batch_norm_train(&(a + b)?, gamma, beta, eps);
    }
    let (bn, stats) = BatchNormTrain::new(eps, false);
    let op = AddBn { bn, sum: Mutex::new(None) };
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let y = super::profile::timed("add+bn fwd", || a.contiguous()?.apply_op3(&b.contiguous()?, &affine, op))?;
    Ok((y, stats_of(&stats)?))
}

struct AddBn {
    bn: BatchNormTrain,
    /// The sum, kept for the batch norm's backward.
    sum: Mutex<Option<Tensor>>,
}

impl CustomOp3 for AddBn {
    fn name(&self) -> &'static str {
        "add-batch-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (f32_data(s1, l1, self.name())?, f32_data(s2, l2, self.name())?);
        // SAFETY: every element is written just below (`vec!` would be one serial memset on the calling thread).
        let mut sum = unsafe { super::unfilled(a.len()) };
        sum.par_chunks_mut(1 << 14).zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14))).for_each(|(s, (a, b))| {
            s.iter_mut().zip(a.iter().zip(b)).for_each(|(s, (a, b))| *s = a + b);
        });
        let (y, sum) = bn_forward(&self.bn, CpuStorage::F32(sum), l1.shape().clone(), f32_data(s3, l3, self.name())?)?;
        keep(&self.sum, sum);
        Ok(y)
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g_sum, g_gamma, g_beta) = bn_backward(&self.bn, &kept(&self.sum, self.name())?, affine, res, grad)?;
        Ok((Some(g_sum.clone()), Some(g_sum), Some(Tensor::cat(&[g_gamma, g_beta], 0)?)))
    }
}
