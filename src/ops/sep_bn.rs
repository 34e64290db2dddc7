//! A separable convolution as one op in training: per half, ReLU, depthwise,
//! pointwise and batch norm (the authors' `_enas_conv` stacks two halves; the
//! macro space's separable branch is one). The depthwise and pointwise
//! outputs, and the first half's output, stay inside the op (see `conv_bn`).
use super::batch_norm::{BatchNormTrain, BatchStats, HostStats};
use super::conv_bn::{bn_backward, bn_forward, keep, kept, stats_of, tensor};
use super::depthwise::Depthwise;
use super::{conv, f32_data};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// One half's weights: depthwise (C, 1, k, k), pointwise (C_out, C), BN's gamma and beta (C_out,).
pub struct SepHalf<'a> {
    pub dw: &'a Tensor,
    pub pw: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
}

/// Training mode: the halves in turn on `x`, the first at `stride`, ReLU after
/// the last batch norm when `relu_out`. Returns the output and each half's batch statistics.
pub fn sep_conv_bn_train(x: &Tensor, halves: &[SepHalf], stride: usize, relu_out: bool, eps: f64) -> Result<(Tensor, Vec<BatchStats>)> {
    check(x, halves)?;
    if !x.device().is_cpu() {
        let mut y = x.clone();
        let mut all = Vec::new();
        for (i, half) in halves.iter().enumerate() {
            let d = super::relu_depthwise_conv2d(&y, half.dw, if i == 0 { stride } else { 1 }, 1)?;
            let (out, stats) = super::conv_bn_train(&d, half.pw, half.gamma, half.beta, false, relu_out && i + 1 == halves.len(), eps)?;
            y = out;
            all.push(stats);
        }
        return Ok((y, all));
    }
    let (x, op, handles, params) = prepare(x, halves, stride, relu_out, eps)?;
    let packed = Tensor::cat(&params, 0)?;
    let y = super::profile::timed("sep+bn fwd", || x.apply_op2(&packed, op))?;
    let stats = handles.iter().map(|s| stats_of(s)).collect::<Result<_>>()?;
    Ok((y, stats))
}

/// The halves' weights fit `x` and each other, and there is at least one.
fn check(x: &Tensor, halves: &[SepHalf]) -> Result<()> {
    let (_, mut c, _, _) = x.dims4()?;
    for (i, half) in halves.iter().enumerate() {
        let c_out = half.pw.dim(0)?;
        let (dc, one, k, k2) = half.dw.dims4()?;
        if (dc, one, k2) != (c, 1, k) || half.pw.dims() != [c_out, c] || half.gamma.dims() != [c_out] || half.beta.dims() != [c_out] {
            candle_core::bail!(
                "sep_conv_bn_train: half {i}: depthwise {:?}, pointwise {:?}, gamma {:?} and beta {:?} do not fit {c} channels in",
                half.dw.dims(),
                half.pw.dims(),
                half.gamma.dims(),
                half.beta.dims()
            );
        }
        c = c_out;
    }
    if halves.is_empty() {
        candle_core::bail!("sep_conv_bn_train: no halves")
    }
    Ok(())
}

/// The flattened parameters of the halves, in the order the op packs them.
pub fn sep_params(halves: &[SepHalf]) -> Result<Vec<Tensor>> {
    let mut params = Vec::with_capacity(4 * halves.len());
    for half in halves {
        params.extend([half.dw.flatten_all()?, half.pw.flatten_all()?, half.gamma.clone(), half.beta.clone()]);
    }
    Ok(params)
}

/// The op for `halves` on `x` (made contiguous, and ReLU'd at a stride), its
/// batch statistics' slots, and the parameters to pack.
fn prepare(x: &Tensor, halves: &[SepHalf], stride: usize, relu_out: bool, eps: f64) -> Result<(Tensor, SepBn, Vec<Arc<Mutex<HostStats>>>, Vec<Tensor>)> {
    let (_, _, mut h, mut w) = x.dims4()?;
    // At stride 1 the depthwise op applies the ReLU itself.
    let x = if stride == 1 { x.contiguous()? } else { x.relu()?.contiguous()? };
    let (mut stages, mut handles) = (Vec::new(), Vec::new());
    for (i, half) in halves.iter().enumerate() {
        let s = if i == 0 { stride } else { 1 };
        let depthwise = Depthwise::for_input(h, w, half.dw.dims4()?.2, s, 1, s == 1)?;
        let (bn, stats) = BatchNormTrain::new(eps, relu_out && i + 1 == halves.len());
        stages.push(Stage { depthwise, dw: half.dw.shape().clone(), pw: half.pw.shape().clone(), bn, saved: Mutex::new(None) });
        handles.push(stats);
        (h, w) = (h.div_ceil(s), w.div_ceil(s));
    }
    Ok((x, SepBn { stages }, handles, sep_params(halves)?))
}

/// A separable convolution run outside candle's graph (CPU only), for a
/// block that does its own backward: the op with what its forward kept.
pub struct SepTape {
    op: SepBn,
    x: Tensor,
    packed: Tensor,
    y: Tensor,
}

/// `sep_conv_bn_train` on detached copies of `x` and the weights: no graph,
/// the backward left to `SepTape::backward`.
pub fn sep_conv_bn_taped(x: &Tensor, halves: &[SepHalf], stride: usize, relu_out: bool, eps: f64) -> Result<(Tensor, Vec<BatchStats>, SepTape)> {
    check(x, halves)?;
    if !x.device().is_cpu() {
        candle_core::bail!("sep_conv_bn_taped: CPU only")
    }
    let (x, op, handles, params) = prepare(&x.detach(), halves, stride, relu_out, eps)?;
    let packed = Tensor::cat(&params, 0)?.detach();
    let y = super::profile::timed("sep+bn fwd", || x.apply_op2_no_bwd(&packed, &op))?;
    let stats = handles.iter().map(|s| stats_of(s)).collect::<Result<_>>()?;
    Ok((y.clone(), stats, SepTape { op, x, packed, y }))
}

impl SepTape {
    /// The gradients of the input and of the packed parameters (`sep_params`, concatenated), given the output's.
    pub fn backward(&self, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        match self.op.bwd(&self.x, &self.packed, &self.y, grad)? {
            (Some(gx), Some(gp)) => Ok((gx, gp)),
            _ => candle_core::bail!("{}: no gradient", self.op.name()),
        }
    }
}

struct Stage {
    depthwise: Depthwise,
    dw: Shape,
    pw: Shape,
    bn: BatchNormTrain,
    saved: Mutex<Option<Saved>>,
}

/// What a half's backward needs: its input (after the first half), the
/// depthwise output and the pointwise output.
#[derive(Clone)]
struct Saved {
    input: Option<Tensor>,
    dw_out: Tensor,
    pw_out: Tensor,
}

struct SepBn {
    stages: Vec<Stage>,
}

impl Stage {
    /// Where this half's depthwise weight, pointwise weight and (gamma; beta) lie in the packed parameters, from `at`.
    fn ranges(&self, at: usize) -> [std::ops::Range<usize>; 3] {
        let (nd, np, c_out) = (self.dw.elem_count(), self.pw.elem_count(), self.pw.dims()[0]);
        [at..at + nd, at + nd..at + nd + np, at + nd + np..at + nd + np + 2 * c_out]
    }
}

impl CustomOp2 for SepBn {
    fn name(&self) -> &'static str {
        "sep-conv-batch-norm"
    }

    /// (x, every half's depthwise weight, pointwise weight, gamma and beta, flattened and concatenated) -> output.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let packed = f32_data(s2, l2, self.name())?;
        let mut at = 0;
        let mut prev: Option<(CpuStorage, Shape)> = None;
        for st in &self.stages {
            let [dr, pr, ar] = st.ranges(at);
            at = ar.end;
            let (dw, pw) = (CpuStorage::F32(packed[dr].to_vec()), CpuStorage::F32(packed[pr].to_vec()));
            let (d_s, d_shape) = match &prev {
                None => st.depthwise.cpu_fwd(s1, l1, &dw, &Layout::contiguous(st.dw.clone()))?,
                Some((s, shape)) => st.depthwise.cpu_fwd(s, &Layout::contiguous(shape.clone()), &dw, &Layout::contiguous(st.dw.clone()))?,
            };
            let (c_s, c_shape) = conv::cpu_forward(1, false, &d_s, &Layout::contiguous(d_shape.clone()), &pw, &Layout::contiguous(st.pw.clone()))?;
            let (y, pw_out) = bn_forward(&st.bn, c_s, c_shape, &packed[ar])?;
            let input = prev.take().map(|(s, shape)| tensor(s, shape)).transpose()?;
            keep(&st.saved, Saved { input, dw_out: tensor(d_s, d_shape)?, pw_out });
            prev = Some(y);
        }
        prev.ok_or_else(|| candle_core::Error::Msg(format!("{}: no halves", self.name())))
    }

    fn bwd(&self, x: &Tensor, packed: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut starts = Vec::with_capacity(self.stages.len());
        let mut at = 0;
        for st in &self.stages {
            starts.push(at);
            at = st.ranges(at)[2].end;
        }
        let saved: Vec<Saved> = self.stages.iter().map(|st| kept(&st.saved, self.name())).collect::<Result<_>>()?;
        let (mut g, mut grads) = (grad.clone(), vec![Vec::new(); self.stages.len()]);
        for i in (0..self.stages.len()).rev() {
            let (st, sv) = (&self.stages[i], &saved[i]);
            let [dr, pr, ar] = st.ranges(starts[i]);
            let out = match saved.get(i + 1) {
                None => res.clone(),
                Some(next) => next.input.clone().ok_or_else(|| candle_core::Error::Msg(format!("{}: a later half lost its input", self.name())))?,
            };
            let (g_pw_out, g_gamma, g_beta) = bn_backward(&st.bn, &sv.pw_out, &packed.narrow(0, ar.start, ar.len())?, &out, &g)?;
            let pw = packed.narrow(0, pr.start, pr.len())?.reshape(st.pw.clone())?;
            let (g_d, g_pw) = super::profile::timed("conv bwd", || conv::backward(1, false, &sv.dw_out, &pw, &g_pw_out))?;
            let dw = packed.narrow(0, dr.start, dr.len())?.reshape(st.dw.clone())?;
            let input = sv.input.as_ref().unwrap_or(x);
            let (Some(g_in), Some(g_dw)) = st.depthwise.bwd(input, &dw, &sv.dw_out, &g_d)? else {
                candle_core::bail!("{}: the depthwise convolution gave no gradient", self.name())
            };
            grads[i] = vec![g_dw.flatten_all()?, g_pw.flatten_all()?, g_gamma, g_beta];
            g = g_in;
        }
        Ok((Some(g), Some(Tensor::cat(&grads.concat(), 0)?)))
    }
}
