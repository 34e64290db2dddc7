//! A convolution and the batch norm after it as one op. The convolution's
//! output stays inside the op instead of becoming a tensor of candle's graph,
//! whose backward would accumulate its gradient into a zeroed tensor of its
//! own: two passes over memory, on the calling thread alone, per activation.
use crate::ops::kernels::batch_norm::{stats_of, BatchNormTrain, BatchStats};
use crate::ops::kernels::conv;
use crate::ops::storage::{f32_data, tensor};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Mutex, PoisonError};

/// Training-mode batch norm (then ReLU when `relu_out`) of `conv2d_same(x, w,
/// relu_in)`, with `gamma` and `beta` (C_out,). Returns the output and the batch statistics.
pub fn conv_bn_train(x: &Tensor, w: &Tensor, gamma: &Tensor, beta: &Tensor, relu_in: bool, relu_out: bool, eps: f64) -> Result<(Tensor, BatchStats)> {
    let (_, c, _, _) = x.dims4()?;
    let Some(k) = conv::kernel_size(w, c) else {
        candle_core::bail!("conv_bn_train: weight {:?} does not fit input {:?} (odd square kernels only)", w.dims(), x.dims())
    };
    let conv_out = w.dim(0)?;
    if gamma.dims() != [conv_out] || beta.dims() != [conv_out] {
        candle_core::bail!("conv_bn_train: gamma {:?} and beta {:?} do not fit {conv_out} output channels", gamma.dims(), beta.dims());
    }
    if !x.device().is_cpu() {
        let y = crate::ops::kernels::conv2d_same(x, w, relu_in)?;
        return if relu_out {
            crate::ops::kernels::batch_norm_relu_train(&y, gamma, beta, eps)
        } else {
            crate::ops::kernels::batch_norm_train(&y, gamma, beta, eps)
        };
    }
    let (bn, stats) = BatchNormTrain::new(eps, relu_out);
    let op = ConvBn { k, relu_in, bn, conv_out: Mutex::new(None) };
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let y = crate::ops::profile::timed("conv+bn fwd", || x.contiguous()?.apply_op3(&w.contiguous()?, &affine, op))?;
    Ok((y, stats_of(&stats)?))
}

/// A convolution and batch norm run outside candle's graph (CPU only), for a
/// block that does its own backward: the op with what its forward kept.
pub struct ConvBnTape {
    op: ConvBn,
    x: Tensor,
    w: Tensor,
    affine: Tensor,
}

/// `conv_bn_train` on tensors outside candle's graph, with gamma and beta
/// concatenated in `affine`: the output as a storage, for an op that returns
/// it as its own; the batch statistics; the backward, `ConvBnTape::backward`.
pub fn conv_bn_taped(
    x: &Tensor,
    w: &Tensor,
    affine: &Tensor,
    relu_in: bool,
    relu_out: bool,
    eps: f64,
) -> Result<((CpuStorage, Shape), BatchStats, ConvBnTape)> {
    let (_, c, _, _) = x.dims4()?;
    let k = match conv::kernel_size(w, c) {
        Some(k) if x.device().is_cpu() && affine.dims() == [2 * w.dim(0)?] => k,
        _ => candle_core::bail!("conv_bn_taped: weight {:?} and affine {:?} do not fit input {:?} on the CPU", w.dims(), affine.dims(), x.dims()),
    };
    let (bn, stats) = BatchNormTrain::new(eps, relu_out);
    let op = ConvBn { k, relu_in, bn, conv_out: Mutex::new(None) };
    let (x, w, affine) = (x.detach().contiguous()?, w.detach().contiguous()?, affine.detach().contiguous()?);
    let y = crate::ops::profile::timed("conv+bn fwd", || -> Result<_> {
        let ((sx, lx), (sw, lw), (sa, la)) = (x.storage_and_layout(), w.storage_and_layout(), affine.storage_and_layout());
        let (Storage::Cpu(sx), Storage::Cpu(sw), Storage::Cpu(sa)) = (&*sx, &*sw, &*sa) else { candle_core::bail!("conv_bn_taped: CPU only") };
        op.cpu_fwd(sx, lx, sw, lw, sa, la)
    })?;
    Ok((y, stats_of(&stats)?, ConvBnTape { op, x, w, affine }))
}

impl ConvBnTape {
    /// The gradients of the input, the weight, and gamma and beta concatenated, given the output `y` and its gradient.
    pub fn backward(&self, y: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        match self.op.bwd(&self.x, &self.w, &self.affine, y, grad)? {
            (Some(gx), Some(gw), Some(ga)) => Ok((gx, gw, ga)),
            _ => candle_core::bail!("{}: no gradient", self.op.name()),
        }
    }
}

struct ConvBn {
    k: usize,
    relu_in: bool,
    bn: BatchNormTrain,
    /// The convolution's output, kept for the batch norm's backward.
    conv_out: Mutex<Option<Tensor>>,
}

/// The batch norm of a convolution's output `conv` with (gamma; beta) in
/// `affine`: the op's output, and the convolution's output as a tensor for the backward.
pub(super) fn bn_forward(bn: &BatchNormTrain, conv: CpuStorage, shape: Shape, affine: &[f32]) -> Result<((CpuStorage, Shape), Tensor)> {
    let y = bn_forward_of(bn, &conv, &Layout::contiguous(shape.clone()), affine)?;
    Ok((y, tensor(conv, shape)?))
}

/// The batch norm of `x` with (gamma; beta) in `affine`: the op's output.
pub(super) fn bn_forward_of(bn: &BatchNormTrain, x: &CpuStorage, layout: &Layout, affine: &[f32]) -> Result<(CpuStorage, Shape)> {
    let c = affine.len() / 2;
    let (gamma, beta) = (CpuStorage::F32(affine[..c].to_vec()), CpuStorage::F32(affine[c..].to_vec()));
    let lc = Layout::contiguous(c);
    bn.cpu_fwd(x, layout, &gamma, &lc, &beta, &lc)
}

/// The batch norm's backward: gradients of the convolution's output, gamma and beta.
pub(super) fn bn_backward(bn: &BatchNormTrain, conv_out: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let c = affine.elem_count() / 2;
    let (gamma, beta) = (affine.narrow(0, 0, c)?, affine.narrow(0, c, c)?);
    let (Some(g_conv), Some(g_gamma), Some(g_beta)) = bn.bwd(conv_out, &gamma, &beta, res, grad)? else {
        candle_core::bail!("conv-batch-norm: the batch norm gave no gradient")
    };
    Ok((g_conv, g_gamma, g_beta))
}

/// Keeps `value` from an op's forward for its backward. The slots hold plain
/// data, so a lock poisoned by a panic elsewhere is still usable.
pub(super) fn keep<T>(slot: &Mutex<Option<T>>, value: T) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
}

/// What an op kept from its forward for its backward, or an error naming the op.
pub(super) fn kept<T: Clone>(slot: &Mutex<Option<T>>, op: &str) -> Result<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone().ok_or_else(|| candle_core::Error::Msg(format!("{op}: backward before forward")))
}

impl CustomOp3 for ConvBn {
    fn name(&self) -> &'static str {
        "conv2d-batch-norm"
    }

    /// (x, w, gamma and beta concatenated) -> output.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (conv_s, shape) = conv::cpu_forward(self.k, self.relu_in, s1, l1, s2, l2)?;
        let (y, conv_out) = bn_forward(&self.bn, conv_s, shape, f32_data(s3, l3, self.name())?)?;
        keep(&self.conv_out, conv_out);
        Ok(y)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g_conv, g_gamma, g_beta) = bn_backward(&self.bn, &kept(&self.conv_out, self.name())?, affine, res, grad)?;
        let (gx, gw) = crate::ops::profile::timed("conv bwd", || conv::backward(self.k, self.relu_in, x, w, &g_conv))?;
        Ok((Some(gx), Some(gw), Some(Tensor::cat(&[g_gamma, g_beta], 0)?)))
    }
}
