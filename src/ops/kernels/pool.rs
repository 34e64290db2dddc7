//! Max and average pooling with 'same' or 'valid' windows and a backward for
//! any kernel and stride. Average pooling divides by the number of pixels
//! inside the image, excluding padding, as TensorFlow (and so ENAS) does.
use super::pool_s1::{Scratch, Separable};
use super::Window;
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// k x k max pool, 'same' padding.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    pool2d(x, PoolKind::Max, Window::same(h, w, k, stride, 1))
}

/// k x k average pool, 'same' padding, padding excluded from the count.
pub fn avg_pool2d(x: &Tensor, k: usize, stride: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    pool2d(x, PoolKind::Avg, Window::same(h, w, k, stride, 1))
}

pub fn pool2d(x: &Tensor, kind: PoolKind, win: Window) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) != (win.in_h, win.in_w) || win.out_h == 0 || win.out_w == 0 {
        candle_core::bail!("pool2d: window {win:?} does not fit input {:?}", x.dims())
    }
    crate::ops::profile::timed("pool fwd", || x.contiguous()?.apply_op1(Pool { kind, win }))
}

/// The gradient of `pool2d(x, kind, win)` with respect to `x`, given the output's.
pub fn pool2d_grad(x: &Tensor, kind: PoolKind, win: Window, grad: &Tensor) -> Result<Tensor> {
    crate::ops::profile::timed("pool bwd", || x.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &PoolGrad { kind, win }))
}

struct Pool {
    kind: PoolKind,
    win: Window,
}

/// The window's valid output ranges per tap and the in-image pixel counts per
/// output row and column, computed once per call rather than per pixel.
struct Taps {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    row_count: Vec<f32>,
    col_count: Vec<f32>,
}

impl Taps {
    fn new(win: &Window) -> Taps {
        let rows: Vec<_> = (0..win.k).map(|t| win.rows(t)).collect();
        let cols: Vec<_> = (0..win.k).map(|t| win.cols(t)).collect();
        let count =
            |ranges: &[(usize, usize)], n: usize| -> Vec<f32> { (0..n).map(|o| ranges.iter().filter(|(a, b)| (*a..*b).contains(&o)).count() as f32).collect() };
        let row_count = count(&rows, win.out_h);
        let col_count = count(&cols, win.out_w);
        Taps { rows, cols, row_count, col_count }
    }

    /// Pixels of the window at (oy, ox) inside the image.
    #[inline]
    fn count(&self, oy: usize, ox: usize) -> f32 {
        self.row_count[oy] * self.col_count[ox]
    }

    /// Calls `f(index in plane)` for each in-image pixel of the window at (oy, ox), in order.
    #[inline]
    fn for_each(&self, win: &Window, oy: usize, ox: usize, mut f: impl FnMut(usize)) {
        for (ky, &(y0, y1)) in self.rows.iter().enumerate() {
            if oy < y0 || oy >= y1 {
                continue;
            }
            let row = win.in_row(oy, ky) * win.in_w;
            for (kx, &(x0, x1)) in self.cols.iter().enumerate() {
                if ox >= x0 && ox < x1 {
                    f(row + win.in_col(ox, kx));
                }
            }
        }
    }
}

/// Any window (the strided and 'valid' ones): each output folds the in-image
/// pixels of its window.
fn plane_generic(kind: PoolKind, x: &[f32], out: &mut [f32], win: &Window, taps: &Taps) {
    for oy in 0..win.out_h {
        for ox in 0..win.out_w {
            let v = match kind {
                PoolKind::Max => {
                    let mut m = f32::NEG_INFINITY;
                    taps.for_each(win, oy, ox, |i| m = m.max(x[i]));
                    m
                }
                PoolKind::Avg => {
                    let mut sum = 0f32;
                    taps.for_each(win, oy, ox, |i| sum += x[i]);
                    sum / taps.count(oy, ox)
                }
            };
            out[oy * win.out_w + ox] = v;
        }
    }
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max-pool2d",
            PoolKind::Avg => "avg-pool2d",
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, _, _) = l.shape().dims4()?;
        crate::ops::device::cuda::pool((s, l), None, n, c, &self.win, self.kind == PoolKind::Max)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let (n, c, _, _) = l.shape().dims4()?;
        let win = self.win;
        let (ip, op) = (win.in_h * win.in_w, win.out_h * win.out_w);
        let taps = Taps::new(&win);
        let s1 = Separable::new(&win);
        let counts = s1.as_ref().map(|s| s.counts()).unwrap_or_default();
        // SAFETY: every plane's output is written in full, by either path.
        let (out, ()) = unsafe {
            crate::ops::storage::filled(n * c * op, |out| {
                out.par_chunks_mut(op).enumerate().for_each_init(Scratch::default, |buf, (p, o)| {
                    let xp = &x[p * ip..(p + 1) * ip];
                    match &s1 {
                        Some(s1) => s1.forward(self.kind, xp, o, &counts, buf),
                        None => plane_generic(self.kind, xp, o, &win, &taps),
                    }
                });
            })
        };
        Ok((CpuStorage::F32(out), Shape::from((n, c, win.out_h, win.out_w))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        pool2d_grad(x, self.kind, self.win, grad).map(Some)
    }
}

/// (input, grad_out) -> grad_input.
struct PoolGrad {
    kind: PoolKind,
    win: Window,
}

impl CustomOp2 for PoolGrad {
    fn name(&self) -> &'static str {
        "pool2d-grad"
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &candle_core::CudaStorage, l1: &Layout, s2: &candle_core::CudaStorage, l2: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let (n, c, _, _) = l1.shape().dims4()?;
        crate::ops::device::cuda::pool((s1, l1), Some((s2, l2)), n, c, &self.win, self.kind == PoolKind::Max)
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let g = f32_data(s2, l2, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let win = self.win;
        let (ip, op) = (win.in_h * win.in_w, win.out_h * win.out_w);
        let taps = Taps::new(&win);
        let s1 = Separable::new(&win);
        let counts = s1.as_ref().map(|s| s.counts()).unwrap_or_default();
        let fill = |gin: &mut [f32]| {
            gin.par_chunks_mut(ip).enumerate().for_each_init(Scratch::default, |buf, (p, gi)| {
                let xp = &x[p * ip..(p + 1) * ip];
                let gp = &g[p * op..(p + 1) * op];
                if let Some(s1) = &s1 {
                    return s1.backward(self.kind, xp, gp, gi, &counts, buf);
                }
                for oy in 0..win.out_h {
                    for ox in 0..win.out_w {
                        let gv = gp[oy * win.out_w + ox];
                        match self.kind {
                            PoolKind::Max => {
                                // The first maximum takes the gradient, as in the forward scan order.
                                let mut best = (usize::MAX, f32::NEG_INFINITY);
                                taps.for_each(&win, oy, ox, |i| {
                                    if best.0 == usize::MAX || xp[i] > best.1 {
                                        best = (i, xp[i]);
                                    }
                                });
                                gi[best.0] += gv;
                            }
                            PoolKind::Avg => {
                                let share = gv / taps.count(oy, ox);
                                taps.for_each(&win, oy, ox, |i| gi[i] += share);
                            }
                        }
                    }
                }
            })
        };
        let gin = match s1 {
            // SAFETY: the separable backward writes every element of each plane.
            Some(_) => unsafe { crate::ops::storage::filled(n * c * ip, fill).0 },
            // The generic path adds into the gradient.
            None => {
                let mut gin = crate::ops::storage::zeros(n * c * ip);
                fill(&mut gin);
                gin
            }
        };
        Ok((CpuStorage::F32(gin), Shape::from((n, c, h, w))))
    }
}
