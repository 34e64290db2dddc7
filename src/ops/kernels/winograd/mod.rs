//! 'Same' 5x5 convolution by Winograd's minimal filtering (Lavin & Gray
//! 2016), F(4x4, 5x5): each 4x4 output tile costs 8 x 8 products per channel
//! pair instead of 16 x 25, as 64 independent matrix products (tiles, C) x
//! (C, K). The backward runs the same transforms transposed, so the input and
//! weight gradients get the same saving. Used for 5x5 only: F(4x4, 3x3) saves
//! fewer products, and at 36 channels its transforms cost what it saved
//! (BENCHMARKS.md, issue 4).
//!
//! With U = G g G^T (kernel), V = B^T d B (input tile) and M = U V per
//! transform point (the product over channels), the output tile is A^T M A.
//! Then dM = A dY A^T, dV = U^T dM, dd = B dV B^T (added into the overlapping
//! input tiles) and dU = dM V^T, dg = G^T dU G.
mod tiles;
mod transform;

use super::gemm::{matmul, Mat};
use super::simd::vectorize;
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use tiles::{from_channels_last, to_channels_last, Tiles};
use transform::Transform;

/// Outputs per tile side.
const M: usize = 4;
/// Channels transformed together, one per SIMD lane.
const L: usize = 8;
/// Tiles per task: a task's transformed tiles (n n C of them) stay in L2.
const TILES_PER_TASK: usize = 128;

/// Kernel side, and transform points (n = M + R - 1).
const R: usize = 5;
const N: usize = M + R - 1;

/// Kernel sizes this op handles.
pub(crate) fn supports(k: usize) -> bool {
    k == R
}

/// `x` (N, C, H, W) convolved with `w` (K, C, 5, 5), 'same' padding;
/// `relu_input` convolves ReLU(x). CPU only.
pub(crate) fn conv2d(x: &Tensor, w: &Tensor, relu_input: bool) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Winograd { relu: relu_input })
}

struct Winograd {
    relu: bool,
}

/// The forward on storages, for ops that fuse the convolution with what follows.
pub(crate) fn cpu_forward(relu: bool, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
    Winograd { relu }.cpu_fwd(s1, l1, s2, l2)
}

/// The gradients with respect to `x` and `w`, given the output's.
pub(crate) fn backward(relu: bool, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = x.apply_op3_no_bwd(w, &grad.contiguous()?, &WinogradGrad { relu })?;
    crate::ops::storage::split_grads(&both, x, w)
}

/// The shapes of one call: (N, C, H, W) input, K outputs.
fn dims(lx: &Layout, lw: &Layout) -> Result<(usize, usize, Tiles, &'static Transform)> {
    let (n, c, h, w) = lx.shape().dims4()?;
    if lw.dims() != [lw.dims()[0], c, R, R] {
        candle_core::bail!("winograd: weight {:?} is not (K, {c}, {R}, {R})", lw.dims());
    }
    Ok((n, lw.dims()[0], Tiles::new(c, h, w, R), Transform::get()))
}

/// Per-thread buffers, kept between calls: allocated afresh they are mapped
/// and faulted in page by page on every call.
#[derive(Default)]
struct Scratch {
    xt: Vec<f32>,
    gyt: Vec<f32>,
    v: Vec<f32>,
    m: Vec<f32>,
    dv: Vec<f32>,
}

/// One task's output `y` (images, K, H, W) from its input `x`; inlined into
/// each kernel set's `vectorize` with the tile transforms it calls (the
/// matrix products are gemm's, which picks its own kernels).
#[inline(always)]
fn forward_task(tr: &Transform, geo: Tiles, u: &[f32], x: &[f32], relu: bool, y: &mut [f32], s: &mut Scratch) {
    let (c, tiles) = (geo.c, x.len() / (geo.c * geo.h * geo.w) * geo.per_image);
    let k = u.len() / (N * N * c);
    to_channels_last(x, (c, geo.h, geo.w), geo.p, (geo.hp, geo.wp), relu, &mut s.xt);
    s.v.resize(N * N * tiles * c, 0.0);
    s.m.resize(N * N * tiles * k, 0.0);
    tiles::input(tr, geo, &s.xt, tiles, &mut s.v);
    for xi in 0..N * N {
        let vi = Mat::new(&s.v[xi * tiles * c..][..tiles * c], tiles, c);
        let ui = Mat::new(&u[xi * k * c..][..k * c], k, c);
        matmul(&mut s.m[xi * tiles * k..][..tiles * k], vi, ui.t(), false);
    }
    tiles::output(tr, geo, k, &s.m, tiles, y);
}

/// One task's input gradient `gx` (images, C, H, W), its weight gradient in
/// the transform domain added into `du`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_task(tr: &Transform, geo: Tiles, u: &[f32], x: &[f32], gy: &[f32], relu: bool, gx: &mut [f32], du: &mut [f32], s: &mut Scratch) {
    let (c, tiles) = (geo.c, x.len() / (geo.c * geo.h * geo.w) * geo.per_image);
    let k = u.len() / (N * N * c);
    to_channels_last(x, (c, geo.h, geo.w), geo.p, (geo.hp, geo.wp), relu, &mut s.xt);
    to_channels_last(gy, (k, geo.h, geo.w), 0, geo.whole_tiles(), false, &mut s.gyt);
    s.v.resize(N * N * tiles * c, 0.0);
    s.m.resize(N * N * tiles * k, 0.0);
    s.dv.resize(N * N * tiles * c, 0.0);
    tiles::input(tr, geo, &s.xt, tiles, &mut s.v);
    tiles::grad_output(tr, geo, k, &s.gyt, tiles, &mut s.m);
    for xi in 0..N * N {
        let vi = Mat::new(&s.v[xi * tiles * c..][..tiles * c], tiles, c);
        let ui = Mat::new(&u[xi * k * c..][..k * c], k, c);
        let dmi = Mat::new(&s.m[xi * tiles * k..][..tiles * k], tiles, k);
        matmul(&mut du[xi * k * c..][..k * c], dmi.t(), vi, true);
        matmul(&mut s.dv[xi * tiles * c..][..tiles * c], dmi, ui, false);
    }
    // The input's gradient gathers in the padded channels-last buffer, reused from x.
    s.xt.fill(0.0);
    tiles::grad_input(tr, geo, &s.dv, tiles, &mut s.xt);
    from_channels_last(&s.xt, (c, geo.h, geo.w), geo.p, (geo.hp, geo.wp), gx);
    if relu {
        super::lanes::relu_mask(gx, x);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}

impl CustomOp2 for Winograd {
    fn name(&self) -> &'static str {
        "conv2d-winograd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let w = f32_data(s2, l2, self.name())?;
        let (n, k, geo, tr) = dims(l1, l2)?;
        let (c, hw) = (geo.c, geo.h * geo.w);
        let u = tr.kernel(w, k * c);
        let images = geo.task_images(n);
        // SAFETY: the tiles cover every output, each written once by `tiles::output`.
        let (y, ()) = unsafe {
            crate::ops::storage::filled(n * k * hw, |y| {
                y.par_chunks_mut(images * k * hw).enumerate().for_each(|(task, yb)| {
                    let xb = &x[task * images * c * hw..][..yb.len() / k * c];
                    with_scratch(|s| {
                        vectorize(
                            #[inline(always)]
                            || forward_task(tr, geo, &u, xb, self.relu, yb, s),
                        )
                    })
                });
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((n, k, geo.h, geo.w))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        crate::ops::profile::timed("conv bwd", || {
            let (gx, gw) = backward(self.relu, x, w, grad)?;
            Ok((Some(gx), Some(gw)))
        })
    }
}

/// (x, w, grad_out) -> grad_x and grad_w, flattened one after the other.
struct WinogradGrad {
    relu: bool,
}

impl CustomOp3 for WinogradGrad {
    fn name(&self) -> &'static str {
        "conv2d-winograd-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let w = f32_data(s2, l2, self.name())?;
        let gy = f32_data(s3, l3, self.name())?;
        let (n, k, geo, tr) = dims(l1, l2)?;
        let (c, hw, nn) = (geo.c, geo.h * geo.w, N * N);
        let u = tr.kernel(w, k * c);
        let images = geo.task_images(n);
        let nx = x.len();
        // SAFETY: `from_channels_last` writes every input gradient; the weight gradient is copied in below.
        let (out, ()) = unsafe {
            crate::ops::storage::filled(nx + k * c * R * R, |out| {
                let du = out[..nx]
                    .par_chunks_mut(images * c * hw)
                    .enumerate()
                    .fold(
                        || vec![0f32; nn * k * c],
                        |mut du, (task, gxb)| {
                            let xb = &x[task * images * c * hw..][..gxb.len()];
                            let gyb = &gy[task * images * k * hw..][..gxb.len() / c * k];
                            with_scratch(|s| {
                                vectorize(
                                    #[inline(always)]
                                    || backward_task(tr, geo, &u, xb, gyb, self.relu, gxb, &mut du, s),
                                )
                            });
                            du
                        },
                    )
                    .reduce(
                        || vec![0f32; nn * k * c],
                        |mut acc, part| {
                            acc.iter_mut().zip(&part).for_each(|(s, v)| *s += v);
                            acc
                        },
                    );
                out[nx..].copy_from_slice(&tr.kernel_grad(&du, k * c));
            })
        };
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}
