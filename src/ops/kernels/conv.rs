//! Convolution with 'same' padding and stride 1 (k odd; k = 1 is the pointwise
//! 1x1 of separable convolutions and projections), optionally of ReLU(x):
//! im2col and one matrix product per image, images in parallel. candle's
//! conv2d backward is a naive transposed-convolution loop, and a 1x1 as a
//! broadcast matmul leaves the ReLU, its mask and the batch sum of the weight
//! gradient to separate passes over memory.
use super::gemm::{matmul, Mat};
use super::pointwise;
use super::simd::vectorize;
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x` (N, C, H, W) convolved with `w` (C_out, C, k, k), or (C_out, C) for a
/// 1x1; `relu_input` convolves ReLU(x) instead, without materialising it.
pub fn conv2d_same(x: &Tensor, w: &Tensor, relu_input: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let Some(k) = kernel_size(w, c) else {
        candle_core::bail!("conv2d_same: weight {:?} does not fit input {:?} (odd square kernels only)", w.dims(), x.dims())
    };
    if !x.device().is_cpu() {
        return crate::ops::device::reference::conv2d_same(x, w, relu_input);
    }
    if super::winograd::supports(k) {
        return crate::ops::profile::timed("conv fwd", || super::winograd::conv2d(x, w, relu_input));
    }
    crate::ops::profile::timed("conv fwd", || x.contiguous()?.apply_op2(&w.contiguous()?, ConvSame { k, relu: relu_input }))
}

struct ConvSame {
    k: usize,
    relu: bool,
}

/// The CPU forward of `conv2d_same` on storages (k x k weights, or (C_out, C)
/// for k = 1), for ops that fuse the convolution with what follows.
pub(crate) fn cpu_forward(k: usize, relu: bool, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
    if super::winograd::supports(k) {
        return super::winograd::cpu_forward(relu, s1, l1, s2, l2);
    }
    ConvSame { k, relu }.cpu_fwd(s1, l1, s2, l2)
}

/// The gradients of `cpu_forward` with respect to `x` and `w`, given the output's.
pub(crate) fn backward(k: usize, relu: bool, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    if super::winograd::supports(k) {
        return super::winograd::backward(relu, x, w, grad);
    }
    let both = x.apply_op3_no_bwd(w, &grad.contiguous()?, &ConvSameGrad { k, relu })?;
    crate::ops::storage::split_grads(&both, x, w)
}

/// The kernel size of weight `w` for input channels `c`: k for (C_out, C, k, k) with k odd, 1 for (C_out, C).
pub(crate) fn kernel_size(w: &Tensor, c: usize) -> Option<usize> {
    match w.dims() {
        [_, wc] if *wc == c => Some(1),
        [_, wc, k, k2] if *wc == c && k == k2 && k % 2 == 1 => Some(*k),
        _ => None,
    }
}

/// Output columns `ox` whose tap `kx` reads inside a row of width `w`.
fn valid_cols(w: usize, k: usize, kx: usize) -> (usize, usize) {
    let p = k / 2;
    (p.saturating_sub(kx), (w + p).saturating_sub(kx).min(w))
}

/// One image (C, H, W) into columns (C k k, H W): row (ch, ky, kx) holds the
/// input shifted by that tap, zero outside the image.
#[inline(always)]
fn im2col(x: &[f32], c: usize, h: usize, w: usize, k: usize, relu: bool, col: &mut Vec<f32>) {
    let (hw, p) = (h * w, k / 2);
    // Every element is written once below (no zero fill first: the buffer is 3.7 MB at 36 channels, 5x5).
    col.resize(c * k * k * hw, 0.0);
    for ch in 0..c {
        let plane = &x[ch * hw..(ch + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut col[((ch * k + ky) * k + kx) * hw..][..hw];
                // Images smaller than the kernel leave a tap no valid rows or columns.
                let (x0, x1) = valid_cols(w, k, kx);
                let (x0, x1) = (x0.min(w), x1.max(x0.min(w)));
                let y0 = p.saturating_sub(ky).min(h);
                let y1 = (h + p).saturating_sub(ky).min(h).max(y0);
                row[..y0 * w].fill(0.0);
                row[y1 * w..].fill(0.0);
                for oy in y0..y1 {
                    let src = &plane[(oy + ky - p) * w..][..w];
                    let dst = &mut row[oy * w..(oy + 1) * w];
                    dst[..x0].fill(0.0);
                    dst[x1..].fill(0.0);
                    if x1 == x0 {
                        continue;
                    }
                    let shifted = &src[x0 + kx - p..x1 + kx - p];
                    if relu {
                        for (d, &v) in dst[x0..x1].iter_mut().zip(shifted) {
                            *d = v.max(0.0);
                        }
                    } else {
                        dst[x0..x1].copy_from_slice(shifted);
                    }
                }
            }
        }
    }
}

/// The transpose of `im2col`: adds every column row back at its tap's shift.
#[inline(always)]
fn col2im(col: &[f32], c: usize, h: usize, w: usize, k: usize, gx: &mut [f32]) {
    let (hw, p) = (h * w, k / 2);
    gx.fill(0.0);
    for ch in 0..c {
        let plane = &mut gx[ch * hw..(ch + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &col[((ch * k + ky) * k + kx) * hw..][..hw];
                let (x0, x1) = valid_cols(w, k, kx);
                for oy in (p.saturating_sub(ky))..(h + p).saturating_sub(ky).min(h) {
                    let dst = &mut plane[(oy + ky - p) * w..][..w];
                    let src = &row[oy * w..(oy + 1) * w];
                    for ox in x0..x1 {
                        dst[ox + kx - p] += src[ox];
                    }
                }
            }
        }
    }
}

/// Images per rayon task: enough that per-task buffers are reused, few enough for every thread to get work.
pub(crate) fn min_images(n: usize) -> usize {
    (n / (2 * rayon::current_num_threads())).max(1)
}

impl CustomOp2 for ConvSame {
    fn name(&self) -> &'static str {
        "conv2d-same"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let wt = f32_data(s2, l2, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let (hw, k, cout) = (h * w, self.k, l2.dims()[0]);
        let ckk = c * k * k;
        // SAFETY: each image's output is one matrix product that overwrites it.
        let (out, ()) = unsafe {
            crate::ops::storage::filled(n * cout * hw, |out| {
                out.par_chunks_mut(cout * hw).with_min_len(min_images(n)).enumerate().for_each_init(Vec::new, |col, (b, o)| {
                    let xb = &x[b * c * hw..(b + 1) * c * hw];
                    if k == 1 {
                        return pointwise::product(o, Mat::new(wt, cout, c), xb, hw, self.relu);
                    }
                    vectorize(
                        #[inline(always)]
                        || im2col(xb, c, h, w, k, self.relu, col),
                    );
                    matmul(o, Mat::new(wt, cout, ckk), Mat::new(col, ckk, hw), false);
                });
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        crate::ops::profile::timed("conv bwd", || {
            let (gx, gw) = backward(self.k, self.relu, x, w, grad)?;
            Ok((Some(gx), Some(gw)))
        })
    }
}

/// (x, w, grad_out) -> grad_x and grad_w, flattened one after the other, so the
/// columns are rebuilt once per image for both.
struct ConvSameGrad {
    k: usize,
    relu: bool,
}

impl CustomOp3 for ConvSameGrad {
    fn name(&self) -> &'static str {
        "conv2d-same-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let wt = f32_data(s2, l2, self.name())?;
        let g = f32_data(s3, l3, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let (hw, k, cout) = (h * w, self.k, l2.dims()[0]);
        let (ckk, nx) = (c * k * k, x.len());
        let nw = cout * ckk;
        let (wm, relu) = (Mat::new(wt, cout, ckk), self.relu);
        // SAFETY: each image's input gradient is overwritten (matrix product, or col2im, which clears first);
        // the weight gradient is copied in below.
        let (gx, ()) = unsafe {
            crate::ops::storage::filled(nx + nw, |gx| {
                let (gx_part, _) = gx.split_at_mut(nx);
                let gw_t = gx_part
                    .par_chunks_mut(c * hw)
                    .with_min_len(min_images(n))
                    .enumerate()
                    .fold(
                        || (vec![0f32; nw], Vec::new(), Vec::new()),
                        |(mut gw_t, mut col, mut gcol), (b, gxb)| {
                            let xb = &x[b * c * hw..(b + 1) * c * hw];
                            let gm = Mat::new(&g[b * cout * hw..(b + 1) * cout * hw], cout, hw);
                            // The weight gradient's transpose (C k k, C_out) = cols G^T.
                            let dots = pointwise::dots_beat_gemm(ckk, hw);
                            let (cols, relu_cols) = if k == 1 && (dots || !relu) {
                                (xb, relu)
                            } else {
                                vectorize(
                                    #[inline(always)]
                                    || im2col(xb, c, h, w, k, relu, &mut col),
                                );
                                (&col[..], false)
                            };
                            if dots {
                                pointwise::weight_grad(&mut gw_t, cols, ckk, gm.data, cout, hw, relu_cols);
                            } else {
                                // gemm packs only the small G, not the column matrix (a transposing copy).
                                matmul(&mut gw_t, Mat::new(cols, ckk, hw), gm.t(), true);
                            }
                            if k == 1 {
                                pointwise::product(gxb, wm.t(), gm.data, hw, false);
                            } else {
                                gcol.resize(ckk * hw, 0.0);
                                pointwise::product(&mut gcol, wm.t(), gm.data, hw, false);
                                vectorize(
                                    #[inline(always)]
                                    || col2im(&gcol, c, h, w, k, gxb),
                                );
                            }
                            if relu {
                                vectorize(
                                    #[inline(always)]
                                    || super::lanes::relu_mask(gxb, xb),
                                );
                            }
                            (gw_t, col, gcol)
                        },
                    )
                    .map(|(gw_t, _, _)| gw_t)
                    .reduce(
                        || vec![0f32; nw],
                        |mut a, b| {
                            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                            a
                        },
                    );
                for (o, row) in gx[nx..].chunks_exact_mut(ckk).enumerate() {
                    row.iter_mut().enumerate().for_each(|(j, v)| *v = gw_t[j * cout + o]);
                }
            })
        };
        Ok((CpuStorage::F32(gx), Shape::from(nx + nw)))
    }
}
