//! Depthwise 2-D convolution (one k x k filter per channel), 'same' padding,
//! stride 1 or 2, dilation 1 or 2. Weight shape (C, 1, k, k), as candle's
//! grouped conv2d takes it. Planes are processed in parallel. Stride 1 works on
//! a padded, flattened plane so each tap is one long loop (`taps.rs`), and its
//! backward is one pass per plane for both gradients; stride 2 (reduction
//! cells only) walks the strided rows.
use super::plane::{unflatten, Padded};
use super::simd::vectorize;
use super::taps;
use super::Window;
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x` (N, C, H, W) convolved channel by channel with `w` (C, 1, k, k).
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, dilation: usize) -> Result<Tensor> {
    depthwise(x, w, stride, dilation, false)
}

/// `depthwise_conv2d` of ReLU(x); at stride 1 the ReLU is applied while each
/// plane is padded and its mask in the backward, with no tensor of its own.
pub fn relu_depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, dilation: usize) -> Result<Tensor> {
    if stride == 1 {
        depthwise(x, w, stride, dilation, true)
    } else {
        depthwise(&x.relu()?, w, stride, dilation, false)
    }
}

fn depthwise(x: &Tensor, w: &Tensor, stride: usize, dilation: usize, relu: bool) -> Result<Tensor> {
    let op = Depthwise::new(x, w, stride, dilation, relu)?;
    crate::ops::profile::timed("depthwise fwd", || x.contiguous()?.apply_op2(&w.contiguous()?, op))
}

pub(crate) struct Depthwise {
    win: Window,
    /// Convolve ReLU(x) (stride 1 only).
    relu: bool,
}

impl Depthwise {
    /// The op for input `x` and weight `w` (C, 1, k, k), 'same' windows; also for ops that fuse it.
    pub(crate) fn new(x: &Tensor, w: &Tensor, stride: usize, dilation: usize, relu: bool) -> Result<Depthwise> {
        let (_, c, h, wd) = x.dims4()?;
        let (wc, one, k, k2) = w.dims4()?;
        if wc != c || one != 1 || k != k2 {
            candle_core::bail!("depthwise_conv2d: weight {:?} does not fit input {:?}", w.dims(), x.dims())
        }
        Depthwise::for_input(h, wd, k, stride, dilation, relu)
    }

    /// The op for (N, C, h, w) inputs and a k x k kernel (the weight checked by the caller).
    pub(crate) fn for_input(h: usize, w: usize, k: usize, stride: usize, dilation: usize, relu: bool) -> Result<Depthwise> {
        if relu && stride != 1 {
            candle_core::bail!("depthwise_conv2d: the fused ReLU is for stride 1 only")
        }
        Ok(Depthwise { win: Window::same(h, w, k, stride, dilation), relu })
    }
}

/// The stride-1 kernels one image at a time, for ops that run another
/// kernel on each image while its planes are still in cache (`sep_bn`).
impl Depthwise {
    pub(crate) fn is_stride1(&self) -> bool {
        self.win.stride == 1
    }

    /// The taps' offsets in a padded plane, shared by every plane of the op.
    pub(crate) fn offsets(&self) -> Vec<usize> {
        taps::offsets(self.win.k, self.win.dilation, padded_width(&self.win))
    }

    /// Stride 1: the planes of one image `x` (C, H, W) into `out` (C, H, W), weight `w` (C, 1, k, k).
    pub(crate) fn forward_image(&self, x: &[f32], w: &[f32], out: &mut [f32], offs: &[usize], buf: &mut Scratch) {
        let (ip, op, kk) = (self.win.in_h * self.win.in_w, self.win.out_h * self.win.out_w, self.win.k * self.win.k);
        for (ch, o) in out.chunks_exact_mut(op).enumerate() {
            forward_plane_s1(&x[ch * ip..(ch + 1) * ip], &w[ch * kk..(ch + 1) * kk], o, &self.win, self.relu, offs, buf);
        }
    }

    /// Stride 1, one image: the input gradient `gx` (C, H, W) of output
    /// gradient `g`, and the weight gradient added lane by lane into `lanes`
    /// (C k k). Each plane's gradient is padded once and serves both: the
    /// grad-input taps read it padded, the weight dot products read the same
    /// buffer from its first gradient pixel, where the padding supplies the
    /// zero columns between rows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grad_image(&self, x: &[f32], w: &[f32], g: &[f32], gx: &mut [f32], lanes: &mut [[f32; taps::V]], offs: &[usize], buf: &mut Scratch) {
        let win = self.win;
        let (h, wd, kk, sp) = (win.in_h, win.in_w, win.k * win.k, span(&win));
        let ip = h * wd;
        let (hp, wp) = (h + sp - 1, wd + sp - 1);
        let (top, left) = (sp - 1 - win.pad_top, sp - 1 - win.pad_left);
        let len = (h - 1) * wp + wd;
        for (ch, gi) in gx.chunks_exact_mut(ip).enumerate() {
            let (xp, gp) = (&x[ch * ip..(ch + 1) * ip], &g[ch * ip..(ch + 1) * ip]);
            buf.rotated.clear();
            buf.rotated.extend(w[ch * kk..(ch + 1) * kk].iter().rev());
            let gpad = buf.padded.copy(gp, h, wd, top, left, hp, wp, 0.0, false);
            taps::weighted_taps(gpad, &buf.rotated, offs, len, &mut buf.flat);
            unflatten(&buf.flat, gi, h, wd, wp, 0, 0);
            if self.relu {
                vectorize(
                    #[inline(always)]
                    || super::lanes::relu_mask(gi, xp),
                );
            }
            let xpad = buf.xpad.copy(xp, h, wd, win.pad_top, win.pad_left, hp, wp, 0.0, self.relu);
            taps::tap_dots(&buf.padded.data()[top * wp + left..], xpad, offs, len, &mut lanes[ch * kk..(ch + 1) * kk]);
        }
    }
}

/// Strided path: adds `wv * src[...]` into one output row for tap (ky, kx); `src` is an input row.
#[inline(always)]
fn accumulate_row(out: &mut [f32], src: &[f32], wv: f32, win: &Window, kx: usize) {
    let (x0, x1) = win.cols(kx);
    for ox in x0..x1 {
        out[ox] += wv * src[win.in_col(ox, kx)];
    }
}

/// Adds `wv * grad_row[...]` back into one input row (the transpose of `accumulate_row`).
#[inline(always)]
fn scatter_row(gin: &mut [f32], grad: &[f32], wv: f32, win: &Window, kx: usize) {
    let (x0, x1) = win.cols(kx);
    for ox in x0..x1 {
        gin[win.in_col(ox, kx)] += wv * grad[ox];
    }
}

fn span(win: &Window) -> usize {
    (win.k - 1) * win.dilation + 1
}

/// Buffers one worker reuses across planes: the padded plane, the flat
/// result and the rotated kernel.
#[derive(Default)]
pub(crate) struct Scratch {
    padded: Padded,
    flat: Vec<f32>,
    rotated: Vec<f32>,
    /// The input plane padded, for the weight gradient (backward only).
    xpad: Padded,
}

/// Row width of the padded plane of a stride-1 window.
fn padded_width(win: &Window) -> usize {
    win.out_w + span(win) - 1
}

/// `offs`: the window's tap offsets at `padded_width(win)`, the same for every plane.
fn forward_plane_s1(x: &[f32], w: &[f32], out: &mut [f32], win: &Window, relu: bool, offs: &[usize], buf: &mut Scratch) {
    let (hp, wp) = (win.out_h + span(win) - 1, padded_width(win));
    let padded = buf.padded.copy(x, win.in_h, win.in_w, win.pad_top, win.pad_left, hp, wp, 0.0, relu);
    // Flattened, the rows run on into each other: the columns past `out_w` are computed and dropped.
    let len = (win.out_h - 1) * wp + win.out_w;
    taps::weighted_taps(padded, w, offs, len, &mut buf.flat);
    unflatten(&buf.flat, out, win.out_h, win.out_w, wp, 0, 0);
}

#[inline(always)]
fn forward_plane(x: &[f32], w: &[f32], out: &mut [f32], win: &Window) {
    let (k, iw, ow) = (win.k, win.in_w, win.out_w);
    out.fill(0.0);
    for ky in 0..k {
        let (y0, y1) = win.rows(ky);
        for oy in y0..y1 {
            let iy = win.in_row(oy, ky);
            let src = &x[iy * iw..(iy + 1) * iw];
            let dst = &mut out[oy * ow..(oy + 1) * ow];
            for kx in 0..k {
                accumulate_row(dst, src, w[ky * k + kx], win, kx);
            }
        }
    }
}

#[inline(always)]
fn grad_input_plane(grad: &[f32], w: &[f32], gin: &mut [f32], win: &Window) {
    let (k, iw, ow) = (win.k, win.in_w, win.out_w);
    gin.fill(0.0);
    for ky in 0..k {
        let (y0, y1) = win.rows(ky);
        for oy in y0..y1 {
            let iy = win.in_row(oy, ky);
            let g = &grad[oy * ow..(oy + 1) * ow];
            let dst = &mut gin[iy * iw..(iy + 1) * iw];
            for kx in 0..k {
                scatter_row(dst, g, w[ky * k + kx], win, kx);
            }
        }
    }
}

/// Adds this plane's contribution to the k x k weight gradient of its channel.
#[inline(always)]
fn grad_weight_plane(x: &[f32], grad: &[f32], gw: &mut [f32], win: &Window) {
    let (k, iw, ow) = (win.k, win.in_w, win.out_w);
    for ky in 0..k {
        let (y0, y1) = win.rows(ky);
        for kx in 0..k {
            let (x0, x1) = win.cols(kx);
            if x0 >= x1 {
                continue;
            }
            let mut acc = 0f32;
            for oy in y0..y1 {
                let iy = win.in_row(oy, ky);
                let g = &grad[oy * ow + x0..oy * ow + x1];
                for (j, gv) in g.iter().enumerate() {
                    acc += gv * x[iy * iw + win.in_col(x0 + j, kx)];
                }
            }
            gw[ky * k + kx] += acc;
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, _, _) = l1.shape().dims4()?;
        crate::ops::device::cuda::depthwise(crate::ops::device::cuda::DepthwiseKernel::Forward, &[(s1, l1), (s2, l2)], n, c, &self.win, self.relu)
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let w = f32_data(s2, l2, self.name())?;
        let (n, c, _, _) = l1.shape().dims4()?;
        let win = self.win;
        let (ip, op, kk) = (win.in_h * win.in_w, win.out_h * win.out_w, win.k * win.k);
        // SAFETY: each plane is overwritten in full (unflatten at stride 1; forward_plane clears it first).
        let (out, ()) = unsafe {
            crate::ops::storage::filled(n * c * op, |out| {
                let offs = if win.stride == 1 { taps::offsets(win.k, win.dilation, padded_width(&win)) } else { Vec::new() };
                out.par_chunks_mut(op).enumerate().for_each_init(Default::default, |buf, (p, o)| {
                    let ch = p % c;
                    let (xp, wc) = (&x[p * ip..(p + 1) * ip], &w[ch * kk..(ch + 1) * kk]);
                    if win.stride == 1 {
                        forward_plane_s1(xp, wc, o, &win, self.relu, &offs, buf);
                    } else {
                        vectorize(
                            #[inline(always)]
                            || forward_plane(xp, wc, o, &win),
                        );
                    }
                });
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((n, c, win.out_h, win.out_w))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        crate::ops::profile::timed("depthwise bwd", || {
            let grad = grad.contiguous()?;
            if x.device().is_cpu() && self.win.stride == 1 {
                let both = x.apply_op3_no_bwd(w, &grad, &DepthwiseGradS1 { win: self.win, relu: self.relu })?;
                let (gx, gw) = crate::ops::storage::split_grads(&both, x, w)?;
                return Ok((Some(gx), Some(gw)));
            }
            let gx = grad.apply_op3_no_bwd(w, x, &DepthwiseGradInput { win: self.win, relu: self.relu })?;
            let gw = x.apply_op2_no_bwd(&grad, &DepthwiseGradWeight { win: self.win, relu: self.relu })?;
            Ok((Some(gx), Some(gw)))
        })
    }
}

/// Stride 1 on the CPU: (input, weight, grad_out) -> grad_input and
/// grad_weight, flattened one after the other; images in parallel
/// (`Depthwise::grad_image`).
struct DepthwiseGradS1 {
    win: Window,
    relu: bool,
}

impl CustomOp3 for DepthwiseGradS1 {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-s1"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let w = f32_data(s2, l2, self.name())?;
        let g = f32_data(s3, l3, self.name())?;
        let (n, c, h, wd) = l1.shape().dims4()?;
        let win = self.win;
        if win.stride != 1 || (win.out_h, win.out_w) != (h, wd) {
            candle_core::bail!("{}: stride-1 'same' windows only", self.name())
        }
        let (ip, kk) = (h * wd, win.k * win.k);
        let op = Depthwise { win, relu: self.relu };
        let offs = op.offsets();
        // SAFETY: each plane of gx is overwritten by unflatten, and gw in full at the end.
        let (out, ()) = unsafe {
            crate::ops::storage::filled(x.len() + c * kk, |out| {
                let (gx, gw) = out.split_at_mut(x.len());
                // Images in parallel, each task summing its images' weight gradients per channel and lane.
                let lanes = gx
                    .par_chunks_mut(c * ip)
                    .with_min_len((n / (2 * rayon::current_num_threads())).max(1))
                    .enumerate()
                    .fold(
                        || (vec![[0f32; taps::V]; c * kk], Scratch::default()),
                        |(mut lanes, mut buf), (b, gxb)| {
                            let img = b * c * ip..(b + 1) * c * ip;
                            op.grad_image(&x[img.clone()], w, &g[img], gxb, &mut lanes, &offs, &mut buf);
                            (lanes, buf)
                        },
                    )
                    .map(|(lanes, _)| lanes)
                    .reduce(|| vec![[0f32; taps::V]; c * kk], add_lanes);
                gw.iter_mut().zip(&lanes).for_each(|(o, l)| *o = super::lanes::sum(l));
            })
        };
        Ok((CpuStorage::F32(out), Shape::from(x.len() + c * kk)))
    }
}

/// (grad_out, weight, input) -> grad_input; the input only for the ReLU mask.
struct DepthwiseGradInput {
    win: Window,
    relu: bool,
}

impl CustomOp3 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-input"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, _, _) = l3.shape().dims4()?;
        crate::ops::device::cuda::depthwise(crate::ops::device::cuda::DepthwiseKernel::GradInput, &[(s1, l1), (s2, l2), (s3, l3)], n, c, &self.win, self.relu)
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_data(s1, l1, self.name())?;
        let w = f32_data(s2, l2, self.name())?;
        let x = f32_data(s3, l3, self.name())?;
        let (n, c, _, _) = l1.shape().dims4()?;
        let win = self.win;
        let (ip, op, kk) = (win.in_h * win.in_w, win.out_h * win.out_w, win.k * win.k);
        let mut gin = crate::ops::storage::zeros(n * c * ip);
        gin.par_chunks_mut(ip).enumerate().for_each(|(p, gi)| {
            let ch = p % c;
            let (gp, wc) = (&g[p * op..(p + 1) * op], &w[ch * kk..(ch + 1) * kk]);
            vectorize(
                #[inline(always)]
                || {
                    grad_input_plane(gp, wc, gi, &win);
                    if self.relu {
                        super::lanes::relu_mask(gi, &x[p * ip..(p + 1) * ip]);
                    }
                },
            );
        });
        Ok((CpuStorage::F32(gin), Shape::from((n, c, win.in_h, win.in_w))))
    }
}

/// Two tasks' weight gradients, lane by lane, summed into the first.
pub(crate) fn add_lanes(mut a: Vec<[f32; taps::V]>, b: Vec<[f32; taps::V]>) -> Vec<[f32; taps::V]> {
    a.iter_mut().zip(&b).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(u, v)| *u += v));
    a
}

/// (input, grad_out) -> grad_weight, summed over the batch.
struct DepthwiseGradWeight {
    win: Window,
    relu: bool,
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-grad-weight"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, _, _) = l1.shape().dims4()?;
        crate::ops::device::cuda::depthwise(crate::ops::device::cuda::DepthwiseKernel::GradWeight, &[(s1, l1), (s2, l2)], n, c, &self.win, self.relu)
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let g = f32_data(s2, l2, self.name())?;
        let (n, c, _, _) = l1.shape().dims4()?;
        let win = self.win;
        let (ip, op, kk) = (win.in_h * win.in_w, win.out_h * win.out_w, win.k * win.k);
        let mut gw = vec![0f32; c * kk];
        gw.par_chunks_mut(kk).enumerate().for_each_init(Vec::new, |relu_x, (ch, gwc)| {
            for b in 0..n {
                let p = b * c + ch;
                let (xp, gp) = (&x[p * ip..(p + 1) * ip], &g[p * op..(p + 1) * op]);
                vectorize(
                    #[inline(always)]
                    || {
                        if self.relu {
                            relu_x.resize(xp.len(), 0.0);
                            for (r, &v) in relu_x.iter_mut().zip(xp) {
                                *r = v.max(0.0);
                            }
                            grad_weight_plane(relu_x, gp, gwc, &win)
                        } else {
                            grad_weight_plane(xp, gp, gwc, &win)
                        }
                    },
                );
            }
        });
        Ok((CpuStorage::F32(gw), Shape::from((c, 1, win.k, win.k))))
    }
}
