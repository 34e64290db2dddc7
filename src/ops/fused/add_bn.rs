//! Batch norm of a sum of two tensors as one op (the macro space's skip
//! connections summed into the layer's output): the sum stays inside the op
//! instead of becoming a tensor of candle's graph (see `conv_bn`).
use super::conv_bn::{bn_backward, bn_forward, bn_forward_of, keep, kept};
use crate::ops::kernels::batch_norm::{stats_of, BatchNormTrain, BatchStats};
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::Mutex;

/// Training-mode batch norm of `a + b` (same shape (N, C, H, W)) with `gamma` and `beta` (C,).
pub fn add_bn_train(a: &Tensor, b: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    let c = a.dim(1)?;
    if a.dims() != b.dims() || gamma.dims() != [c] || beta.dims() != [c] {
        candle_core::bail!("add_bn_train: {:?} + {:?} with gamma {:?} and beta {:?}", a.dims(), b.dims(), gamma.dims(), beta.dims());
    }
    if !a.device().is_cpu() {
        return crate::ops::kernels::batch_norm_train(&(a + b)?, gamma, beta, eps);
    }
    let (bn, stats) = BatchNormTrain::new(eps, false);
    let op = AddBn { bn, sum: Mutex::new(None) };
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let y = crate::ops::profile::timed("add+bn fwd", || a.contiguous()?.apply_op3(&b.contiguous()?, &affine, op))?;
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
        let sum = crate::ops::kernels::accumulate::sum_slices(a, b);
        let (y, sum) = bn_forward(&self.bn, CpuStorage::F32(sum), l1.shape().clone(), f32_data(s3, l3, self.name())?)?;
        keep(&self.sum, sum);
        Ok(y)
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g_sum, g_gamma, g_beta) = bn_backward(&self.bn, &kept(&self.sum, self.name())?, affine, res, grad)?;
        Ok((Some(g_sum.clone()), Some(g_sum), Some(Tensor::cat(&[g_gamma, g_beta], 0)?)))
    }
}

/// The batch norm of a layer's output plus its summed skips, run outside
/// candle's graph (CPU only), for a block that does its own backward.
pub struct SumBnTape {
    bn: BatchNormTrain,
    /// The normalised sum, and (gamma; beta).
    sum: Tensor,
    affine: Tensor,
}

/// Training-mode batch norm of `y + (s_1 + ... + s_k)` (the skips summed
/// first, in order, as `add_bn_train` after candle's adds does), with gamma
/// and beta concatenated in `affine`: the output, the batch statistics and
/// the backward. With no skips, the batch norm of `y`.
pub fn sum_bn_taped(y: &Tensor, skips: &[&Tensor], affine: &Tensor, eps: f64) -> Result<(Tensor, BatchStats, SumBnTape)> {
    if !y.device().is_cpu() || skips.iter().any(|s| s.dims() != y.dims()) || affine.dims() != [2 * y.dim(1)?] {
        candle_core::bail!(
            "sum_bn_taped: skips {:?} and affine {:?} do not fit {:?} on the CPU",
            skips.iter().map(|s| s.dims()).collect::<Vec<_>>(),
            affine.dims(),
            y.dims()
        );
    }
    let (y, affine) = (y.detach().contiguous()?, affine.detach().contiguous()?);
    let sum = match skips {
        [] => y,
        [only] => crate::ops::kernels::sum_of(&only.detach(), &y)?,
        [first, second, rest @ ..] => {
            let acc = crate::ops::kernels::sum_of(&first.detach(), second)?;
            for s in rest {
                crate::ops::kernels::add_into(&acc, s)?;
            }
            crate::ops::kernels::add_into(&acc, &y)?;
            acc
        }
    };
    let (bn, stats) = BatchNormTrain::new(eps, false);
    let out = crate::ops::profile::timed("add+bn fwd", || -> Result<_> {
        let ((ss, ls), (sa, la)) = (sum.storage_and_layout(), affine.storage_and_layout());
        let (Storage::Cpu(ss), Storage::Cpu(sa)) = (&*ss, &*sa) else { candle_core::bail!("sum_bn_taped: CPU only") };
        bn_forward_of(&bn, ss, ls, f32_data(sa, la, "sum_bn_taped")?)
    })?;
    let out = crate::ops::storage::tensor(out.0, out.1)?;
    Ok((out, stats_of(&stats)?, SumBnTape { bn, sum, affine }))
}

impl SumBnTape {
    /// The gradient of the sum (that of `y` and of every skip), and of (gamma; beta), given the output `out` and its gradient.
    pub fn backward(&self, out: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let (g_sum, g_gamma, g_beta) = bn_backward(&self.bn, &self.sum, &self.affine, out, grad)?;
        Ok((g_sum, Tensor::cat(&[g_gamma, g_beta], 0)?))
    }
}
