//! Training-mode batch norm on CUDA (kernels/batch_norm.cu): two kernels
//! forward, two backward, the batch statistics kept on the device, where
//! candle's composition of the same computation costs about 11 kernels
//! forward and 36 kernels and 18 memsets backward.
use super::batch_norm::BatchStats;
use crate::ops::device::cuda::{self, BatchNormSaved};
use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Arc, Mutex, PoisonError};

/// Normalises `x` (N, C, H, W) on its CUDA device with its batch statistics,
/// scales by `gamma`, shifts by `beta`, ReLU when `relu`.
pub(crate) fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> Result<(Tensor, BatchStats)> {
    let op = BatchNormCuda { eps: eps as f32, relu, slots: Arc::default() };
    let slots = op.slots.clone();
    let c = x.dim(1)?;
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let mut slot = slots.lock().unwrap_or_else(PoisonError::into_inner);
    let fresh = slot.fresh.take().ok_or_else(|| candle_core::Error::Msg("batch-norm-train: the forward left no statistics".into()))?;
    let stats = Tensor::from_storage(Storage::Cuda(fresh), (2, c), BackpropOp::none(), false);
    slot.stats = Some(stats.clone());
    Ok((y, BatchStats { mean: stats.get(0)?, var: stats.get(1)? }))
}

/// Where the forward leaves its statistics: `fresh` from the kernel, taken
/// into a tensor that the backward reads as `stats`.
#[derive(Default)]
struct Slots {
    fresh: Option<CudaStorage>,
    stats: Option<Tensor>,
}

struct BatchNormCuda {
    eps: f32,
    relu: bool,
    slots: Arc<Mutex<Slots>>,
}

fn cuda_only(name: &str) -> Result<(CpuStorage, Shape)> {
    candle_core::bail!("{name}: the CUDA op was given CPU tensors")
}

/// The CUDA storage of a tensor on the device, or an error naming the op.
fn cuda_storage<'a>(s: &'a Storage, op: &str) -> Result<&'a CudaStorage> {
    match s {
        Storage::Cuda(s) => Ok(s),
        _ => candle_core::bail!("{op}: expected a CUDA tensor"),
    }
}

impl CustomOp3 for BatchNormCuda {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }

    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout, s3: &CudaStorage, l3: &Layout) -> Result<(CudaStorage, Shape)> {
        let (y, stats) = cuda::batch_norm_forward((s1, l1), (s2, l2), (s3, l3), self.eps, self.relu)?;
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).fresh = Some(stats);
        Ok((y, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self.slots.lock().unwrap_or_else(PoisonError::into_inner).stats.clone();
        let stats = stats.ok_or_else(|| candle_core::Error::Msg("batch-norm-train: backward before the forward's statistics".into()))?;
        let backward = |kind| Backward { kind, stats: stats.clone(), eps: self.eps, relu: self.relu };
        let (grad, res) = (grad.contiguous()?, res.contiguous()?);
        let sums = x.apply_op3_no_bwd(&grad, &res, &backward(Kind::Sums { c: x.dim(1)? }))?;
        let gx = x.apply_op3_no_bwd(&grad, &res, &backward(Kind::Input { gamma: gamma.contiguous()?, sums: sums.clone() }))?;
        Ok((Some(gx), Some(sums.get(1)?), Some(sums.get(0)?)))
    }
}

enum Kind {
    /// -> (2, C): beta's gradient, then gamma's.
    Sums { c: usize },
    /// -> the input's gradient.
    Input { gamma: Tensor, sums: Tensor },
}

/// One of the backward kernels over (x, dy, y), the statistics and, for the
/// input gradient, gamma and the sums read from the tensors it holds.
struct Backward {
    kind: Kind,
    stats: Tensor,
    eps: f32,
    relu: bool,
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sums { .. } => "batch-norm-grad-sums",
            Kind::Input { .. } => "batch-norm-grad-input",
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }

    /// (x, dy, y) -> the sums or the input's gradient.
    fn cuda_fwd(&self, s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout, s3: &CudaStorage, l3: &Layout) -> Result<(CudaStorage, Shape)> {
        let (stats, stats_layout) = self.stats.storage_and_layout();
        let saved = BatchNormSaved { x: (s1, l1), grad: (s2, l2), y: (s3, l3), stats: (cuda_storage(&stats, self.name())?, stats_layout) };
        match &self.kind {
            Kind::Sums { c } => Ok((cuda::batch_norm_grad_sums(&saved, self.eps, self.relu)?, Shape::from((2, *c)))),
            Kind::Input { gamma, sums } => {
                let (gamma_storage, gamma_layout) = gamma.storage_and_layout();
                let (sums_storage, sums_layout) = sums.storage_and_layout();
                let gamma = (cuda_storage(&gamma_storage, self.name())?, gamma_layout);
                let sums = (cuda_storage(&sums_storage, self.name())?, sums_layout);
                Ok((cuda::batch_norm_grad_input(&saved, gamma, sums, self.eps, self.relu)?, l1.shape().clone()))
            }
        }
    }
}
