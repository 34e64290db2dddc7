//! A separable convolution as one op in training: per half, ReLU, depthwise,
//! pointwise and batch norm (the authors' `_enas_conv` stacks two halves; the
//! macro space's separable branch is one). The depthwise and pointwise
//! outputs, and the first half's output, stay inside the op (see `conv_bn`).
use super::conv_bn::{bn_backward, bn_forward, keep, kept};
use crate::ops::kernels::batch_norm::{stats_of, BatchNormTrain, BatchStats, HostStats};
use crate::ops::kernels::depthwise::{self, Depthwise, Scratch};
use crate::ops::kernels::gemm::{matmul, Mat};
use crate::ops::kernels::{conv, pointwise, taps};
use crate::ops::storage::{f32_data, tensor};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
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
            let d = crate::ops::kernels::relu_depthwise_conv2d(&y, half.dw, if i == 0 { stride } else { 1 }, 1)?;
            let (out, stats) = super::conv_bn_train(&d, half.pw, half.gamma, half.beta, false, relu_out && i + 1 == halves.len(), eps)?;
            y = out;
            all.push(stats);
        }
        return Ok((y, all));
    }
    let Prepared { x, op, handles, params } = prepare(x, halves, stride, relu_out, eps)?;
    let packed = Tensor::cat(&params, 0)?;
    let y = crate::ops::profile::timed("sep+bn fwd", || x.apply_op2(&packed, op))?;
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

/// The op for some halves on an input, ready to run.
struct Prepared {
    /// The input, made contiguous (and ReLU'd at a stride).
    x: Tensor,
    op: SepBn,
    /// The batch statistics' slots, one per half.
    handles: Vec<Arc<Mutex<HostStats>>>,
    /// The parameters to pack.
    params: Vec<Tensor>,
}

/// The op for `halves` on `x`.
fn prepare(x: &Tensor, halves: &[SepHalf], stride: usize, relu_out: bool, eps: f64) -> Result<Prepared> {
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
    Ok(Prepared { x, op: SepBn { stages }, handles, params: sep_params(halves)? })
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
    let Prepared { x, op, handles, params } = prepare(&x.detach(), halves, stride, relu_out, eps)?;
    let packed = Tensor::cat(&params, 0)?.detach();
    let y = crate::ops::profile::timed("sep+bn fwd", || x.apply_op2_no_bwd(&packed, &op))?;
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

/// At stride 1 a half's depthwise and pointwise convolutions run image by
/// image, forward and backward, so each image's depthwise output (or
/// gradient) is still in cache when the pointwise kernel reads it; the
/// depthwise output's gradient is never a tensor of the whole batch.
impl Stage {
    /// The depthwise output and the pointwise output of input `x` (N, C, H, W).
    fn forward_by_image(&self, x: &[f32], shape: &Shape, dw: &[f32], pw: &[f32]) -> Result<((CpuStorage, Shape), (CpuStorage, Shape))> {
        let (n, c, h, w) = shape.dims4()?;
        let (hw, c_out) = (h * w, self.pw.dims()[0]);
        let offs = self.depthwise.offsets();
        // SAFETY: every image's planes of both are written.
        let (d, p) = unsafe {
            crate::ops::storage::filled(n * c * hw, |d| {
                crate::ops::storage::filled(n * c_out * hw, |p| {
                    d.par_chunks_mut(c * hw).zip(p.par_chunks_mut(c_out * hw)).enumerate().with_min_len(conv::min_images(n)).for_each_init(
                        Scratch::default,
                        |buf, (b, (db, pb))| {
                            self.depthwise.forward_image(&x[b * c * hw..(b + 1) * c * hw], dw, db, &offs, buf);
                            pointwise::product(pb, Mat::new(pw, c_out, c), db, hw, false);
                        },
                    )
                })
                .0
            })
        };
        Ok(((CpuStorage::F32(d), Shape::from((n, c, h, w))), (CpuStorage::F32(p), Shape::from((n, c_out, h, w)))))
    }

    /// The gradients of the half's input, depthwise weight and pointwise
    /// weight, given the pointwise output's `g` (contiguous), from the input
    /// `x` and depthwise output `d` of the forward.
    fn backward_by_image(&self, x: &Tensor, dw: &Tensor, d: &Tensor, pw: &Tensor, g: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let dims = x.dims4()?;
        crate::ops::storage::with_f32(&[x, dw, d, pw, g], "sep-conv-batch-norm", |data| {
            let [x, dw, d, pw, g] = data[..] else { unreachable!("five tensors") };
            self.backward_of(x, dw, d, pw, g, dims)
        })
    }

    /// `backward_by_image` on the tensors' data, the input (N, C, H, W) `dims`.
    fn backward_of(
        &self,
        x: &[f32],
        dw: &[f32],
        d: &[f32],
        pw: &[f32],
        g: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (hw, c_out, kk) = (h * w, self.pw.dims()[0], self.dw.dims()[2] * self.dw.dims()[3]);
        let offs = self.depthwise.offsets();
        let dots = pointwise::dots_beat_gemm(c, hw);
        // SAFETY: each image's input gradient is overwritten by `grad_image`.
        let (g_in, (lanes, gw_t)) = unsafe {
            crate::ops::storage::filled(n * c * hw, |g_in| {
                g_in.par_chunks_mut(c * hw)
                    .with_min_len(conv::min_images(n))
                    .enumerate()
                    .fold(
                        || (vec![[0f32; taps::V]; c * kk], vec![0f32; c * c_out], Vec::new(), Scratch::default()),
                        |(mut lanes, mut gw_t, mut g_d, mut buf), (b, gib)| {
                            let img = b * c * hw..(b + 1) * c * hw;
                            let gb = &g[b * c_out * hw..(b + 1) * c_out * hw];
                            if dots {
                                pointwise::weight_grad(&mut gw_t, &d[img.clone()], c, gb, c_out, hw, false);
                            } else {
                                matmul(&mut gw_t, Mat::new(&d[img.clone()], c, hw), Mat::new(gb, c_out, hw).t(), true);
                            }
                            g_d.resize(c * hw, 0.0);
                            pointwise::product(&mut g_d, Mat::new(pw, c_out, c).t(), gb, hw, false);
                            self.depthwise.grad_image(&x[img], dw, &g_d, gib, &mut lanes, &offs, &mut buf);
                            (lanes, gw_t, g_d, buf)
                        },
                    )
                    .map(|(lanes, gw_t, _, _)| (lanes, gw_t))
                    .reduce(
                        || (vec![[0f32; taps::V]; c * kk], vec![0f32; c * c_out]),
                        |(la, mut wa), (lb, wb)| {
                            wa.iter_mut().zip(&wb).for_each(|(u, v)| *u += v);
                            (depthwise::add_lanes(la, lb), wa)
                        },
                    )
            })
        };
        let g_dw: Vec<f32> = lanes.iter().map(|l| crate::ops::kernels::lanes::sum(l)).collect();
        let g_pw: Vec<f32> = (0..c_out * c).map(|i| gw_t[(i % c) * c_out + i / c]).collect();
        let cpu = &candle_core::Device::Cpu;
        Ok((Tensor::from_vec(g_in, (n, c, h, w), cpu)?, Tensor::from_vec(g_dw, self.dw.clone(), cpu)?, Tensor::from_vec(g_pw, self.pw.clone(), cpu)?))
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
            let (s_in, l_in) = match &prev {
                None => (s1, l1.clone()),
                Some((s, shape)) => (s, Layout::contiguous(shape.clone())),
            };
            let ((d_s, d_shape), (c_s, c_shape)) = if st.depthwise.is_stride1() {
                st.forward_by_image(f32_data(s_in, &l_in, self.name())?, l_in.shape(), &packed[dr], &packed[pr])?
            } else {
                let (dw, pw) = (CpuStorage::F32(packed[dr].to_vec()), CpuStorage::F32(packed[pr].to_vec()));
                let (d_s, d_shape) = st.depthwise.cpu_fwd(s_in, &l_in, &dw, &Layout::contiguous(st.dw.clone()))?;
                let c = conv::cpu_forward(1, false, &d_s, &Layout::contiguous(d_shape.clone()), &pw, &Layout::contiguous(st.pw.clone()))?;
                ((d_s, d_shape), c)
            };
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
            let dw = packed.narrow(0, dr.start, dr.len())?.reshape(st.dw.clone())?;
            let input = sv.input.as_ref().unwrap_or(x);
            let (g_in, g_dw, g_pw) = if st.depthwise.is_stride1() {
                crate::ops::profile::timed("sep bwd", || st.backward_by_image(input, &dw, &sv.dw_out, &pw, &g_pw_out.contiguous()?))?
            } else {
                let (g_d, g_pw) = crate::ops::profile::timed("conv bwd", || conv::backward(1, false, &sv.dw_out, &pw, &g_pw_out))?;
                let (Some(g_in), Some(g_dw)) = st.depthwise.bwd(input, &dw, &sv.dw_out, &g_d)? else {
                    candle_core::bail!("{}: the depthwise convolution gave no gradient", self.name())
                };
                (g_in, g_dw, g_pw)
            };
            grads[i] = vec![g_dw.flatten_all()?, g_pw.flatten_all()?, g_gamma, g_beta];
            g = g_in;
        }
        Ok((Some(g), Some(Tensor::cat(&grads.concat(), 0)?)))
    }
}
