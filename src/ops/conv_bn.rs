//! A convolution and the batch norm after it as one op, and the same with a
//! ReLU-depthwise convolution before a pointwise one (half of a separable
//! convolution). The intermediate outputs stay inside the op instead of
//! becoming tensors of candle's graph, whose backward would accumulate each
//! one's gradient into a zeroed tensor of its own: two passes over memory, on
//! the calling thread alone, per activation.
use super::batch_norm::{BatchNormTrain, BatchStats};
use super::depthwise::Depthwise;
use super::{conv, f32_data};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

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
        let y = super::conv2d_same(x, w, relu_in)?;
        return if relu_out { super::batch_norm_relu_train(&y, gamma, beta, eps) } else { super::batch_norm_train(&y, gamma, beta, eps) };
    }
    let (bn, stats) = BatchNormTrain::new(eps, relu_out);
    let op = ConvBn { k, relu_in, bn, conv_out: Mutex::new(None) };
    let affine = Tensor::cat(&[gamma, beta], 0)?;
    let y = super::profile::timed("conv+bn fwd", || x.contiguous()?.apply_op3(&w.contiguous()?, &affine, op))?;
    let stats = stats.lock().expect("stats lock").clone();
    Ok((y, stats))
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
    let c = affine.len() / 2;
    let (gamma, beta) = (CpuStorage::F32(affine[..c].to_vec()), CpuStorage::F32(affine[c..].to_vec()));
    let lc = Layout::contiguous(c);
    let y = bn.cpu_fwd(&conv, &Layout::contiguous(shape.clone()), &gamma, &lc, &beta, &lc)?;
    let CpuStorage::F32(v) = conv else { candle_core::bail!("conv-batch-norm: the convolution gave no f32 output") };
    Ok((y, Tensor::from_vec(v, shape, &Device::Cpu)?))
}

/// The batch norm's backward: gradients of the convolution's output, gamma and beta.
pub(super) fn bn_backward(bn: &BatchNormTrain, conv_out: &Mutex<Option<Tensor>>, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let Some(conv_out) = conv_out.lock().expect("conv output lock").clone() else {
        candle_core::bail!("conv-batch-norm: backward before forward")
    };
    let c = affine.elem_count() / 2;
    let (gamma, beta) = (affine.narrow(0, 0, c)?, affine.narrow(0, c, c)?);
    let (Some(g_conv), Some(g_gamma), Some(g_beta)) = bn.bwd(&conv_out, &gamma, &beta, res, grad)? else {
        candle_core::bail!("conv-batch-norm: the batch norm gave no gradient")
    };
    Ok((conv_out, g_conv, g_gamma, g_beta))
}

impl CustomOp3 for ConvBn {
    fn name(&self) -> &'static str {
        "conv2d-batch-norm"
    }

    /// (x, w, gamma and beta concatenated) -> output.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (conv_s, shape) = conv::cpu_forward(self.k, self.relu_in, s1, l1, s2, l2)?;
        let (y, conv_out) = bn_forward(&self.bn, conv_s, shape, f32_data(s3, l3, self.name())?)?;
        *self.conv_out.lock().expect("conv output lock") = Some(conv_out);
        Ok(y)
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, affine: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, g_conv, g_gamma, g_beta) = bn_backward(&self.bn, &self.conv_out, affine, res, grad)?;
        let (gx, gw) = super::profile::timed("conv bwd", || conv::backward(self.k, self.relu_in, x, w, &g_conv))?;
        Ok((Some(gx), Some(gw), Some(Tensor::cat(&[g_gamma, g_beta], 0)?)))
    }
}

/// Training-mode batch norm (then ReLU when `relu_out`) of the pointwise (1x1)
/// convolution `pw` (C_out, C) of the depthwise convolution `dw` (C, 1, k, k)
/// of ReLU(x), at `stride`.
#[allow(clippy::too_many_arguments)]
pub fn sep_conv_bn_train(x: &Tensor, dw: &Tensor, pw: &Tensor, gamma: &Tensor, beta: &Tensor, stride: usize, relu_out: bool, eps: f64) -> Result<(Tensor, BatchStats)> {
    let c_out = pw.dim(0)?;
    if pw.dims() != [c_out, dw.dim(0)?] || gamma.dims() != [c_out] || beta.dims() != [c_out] {
        candle_core::bail!("sep_conv_bn_train: pointwise {:?}, gamma {:?} and beta {:?} do not fit depthwise {:?}", pw.dims(), gamma.dims(), beta.dims(), dw.dims());
    }
    if !x.device().is_cpu() {
        return conv_bn_train(&super::relu_depthwise_conv2d(x, dw, stride, 1)?, pw, gamma, beta, false, relu_out, eps);
    }
    // At stride 1 the depthwise op applies the ReLU itself.
    let x = if stride == 1 { x.clone() } else { x.relu()? };
    let depthwise = Depthwise::new(&x, dw, stride, 1, stride == 1)?;
    let (bn, stats) = BatchNormTrain::new(eps, relu_out);
    let op = SepConvBn { depthwise, dw_shape: dw.shape().clone(), bn, outs: Mutex::new(None), conv_out: Mutex::new(None) };
    let packed = Tensor::cat(&[&dw.flatten_all()?, gamma, beta], 0)?;
    let y = super::profile::timed("sep+bn fwd", || x.contiguous()?.apply_op3(&pw.contiguous()?, &packed, op))?;
    let stats = stats.lock().expect("stats lock").clone();
    Ok((y, stats))
}

struct SepConvBn {
    depthwise: Depthwise,
    dw_shape: Shape,
    bn: BatchNormTrain,
    /// The depthwise convolution's output, kept for the backward.
    outs: Mutex<Option<Tensor>>,
    conv_out: Mutex<Option<Tensor>>,
}

impl CustomOp3 for SepConvBn {
    fn name(&self) -> &'static str {
        "sep-conv-batch-norm"
    }

    /// (x, pointwise weight, depthwise weight then gamma then beta, flattened) -> output.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let packed = f32_data(s3, l3, self.name())?;
        let nd = self.dw_shape.elem_count();
        let dw = CpuStorage::F32(packed[..nd].to_vec());
        let (d_s, d_shape) = self.depthwise.cpu_fwd(s1, l1, &dw, &Layout::contiguous(self.dw_shape.clone()))?;
        let (conv_s, shape) = conv::cpu_forward(1, false, &d_s, &Layout::contiguous(d_shape.clone()), s2, l2)?;
        let (y, conv_out) = bn_forward(&self.bn, conv_s, shape, &packed[nd..])?;
        let CpuStorage::F32(d) = d_s else { candle_core::bail!("{}: the depthwise convolution gave no f32 output", self.name()) };
        *self.outs.lock().expect("depthwise output lock") = Some(Tensor::from_vec(d, d_shape, &Device::Cpu)?);
        *self.conv_out.lock().expect("conv output lock") = Some(conv_out);
        Ok(y)
    }

    fn bwd(&self, x: &Tensor, pw: &Tensor, packed: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let nd = self.dw_shape.elem_count();
        let (_, g_conv, g_gamma, g_beta) = bn_backward(&self.bn, &self.conv_out, &packed.narrow(0, nd, packed.elem_count() - nd)?, res, grad)?;
        let Some(d) = self.outs.lock().expect("depthwise output lock").clone() else { candle_core::bail!("{}: backward before forward", self.name()) };
        let (g_d, g_pw) = super::profile::timed("conv bwd", || conv::backward(1, false, &d, pw, &g_conv))?;
        let dw = packed.narrow(0, 0, nd)?.reshape(self.dw_shape.clone())?;
        let (Some(gx), Some(g_dw)) = self.depthwise.bwd(x, &dw, &d, &g_d)? else { candle_core::bail!("{}: the depthwise convolution gave no gradient", self.name()) };
        Ok((Some(gx), Some(g_pw), Some(Tensor::cat(&[&g_dw.flatten_all()?, &g_gamma, &g_beta], 0)?)))
    }
}
