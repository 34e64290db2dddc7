//! Max and average pooling with 'same' or 'valid' windows and a backward for
//! any kernel and stride. Average pooling divides by the number of pixels
//! inside the image, excluding padding, as TensorFlow (and so ENAS) does.
use super::plane::{pad_into, unflatten};
use super::taps;
use super::{f32_data, Window};
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
    super::profile::timed("pool fwd", || x.contiguous()?.apply_op1(Pool { kind, win }))
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
        let count = |ranges: &[(usize, usize)], n: usize| -> Vec<f32> {
            (0..n).map(|o| ranges.iter().filter(|(a, b)| (*a..*b).contains(&o)).count() as f32).collect()
        };
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

/// Stride-1 windows that keep the size ('same'): these take the padded-plane path.
fn is_same_stride1(win: &Window) -> bool {
    win.stride == 1 && win.out_h == win.in_h && win.out_w == win.in_w
}

/// Scratch buffers one worker reuses across planes.
type Scratch = (Vec<f32>, Vec<f32>, Vec<u32>);

/// Stride-1 'same' pooling on a padded, flattened plane.
fn plane_s1(kind: PoolKind, x: &[f32], out: &mut [f32], win: &Window, taps: &Taps, buf: &mut Scratch) {
    let (hp, wp) = (win.out_h + win.k - 1, win.out_w + win.k - 1);
    let fill = if kind == PoolKind::Max { f32::NEG_INFINITY } else { 0.0 };
    pad_into(x, win.in_h, win.in_w, win.pad_top, win.pad_left, hp, wp, fill, &mut buf.0);
    let len = (win.out_h - 1) * wp + win.out_w;
    buf.1.clear();
    buf.1.resize(len, fill);
    for off in taps::offsets(win.k, win.dilation, wp) {
        let src = &buf.0[off..off + len];
        match kind {
            PoolKind::Max => buf.1.iter_mut().zip(src).for_each(|(a, &s)| *a = a.max(s)),
            PoolKind::Avg => buf.1.iter_mut().zip(src).for_each(|(a, &s)| *a += s),
        }
    }
    unflatten(&buf.1, out, win.out_h, win.out_w, wp, 0, 0);
    if kind == PoolKind::Avg {
        for oy in 0..win.out_h {
            for ox in 0..win.out_w {
                out[oy * win.out_w + ox] /= taps.count(oy, ox);
            }
        }
    }
}

/// Stride-1 backward: the gradient of each output goes to its first maximum
/// (max) or is spread over its in-image pixels (avg), on the padded plane.
fn grad_plane_s1(kind: PoolKind, x: &[f32], g: &[f32], gin: &mut [f32], win: &Window, taps: &Taps, buf: &mut Scratch) {
    let (hp, wp) = (win.out_h + win.k - 1, win.out_w + win.k - 1);
    let len = (win.out_h - 1) * wp + win.out_w;
    let offsets = taps::offsets(win.k, win.dilation, wp);
    let (padded, acc, best) = buf;
    acc.clear();
    acc.resize(hp * wp, 0.0);
    match kind {
        PoolKind::Max => {
            pad_into(x, win.in_h, win.in_w, win.pad_top, win.pad_left, hp, wp, f32::NEG_INFINITY, padded);
            best.clear();
            best.resize(len, 0);
            let mut best_v = vec![f32::NEG_INFINITY; len];
            let (best, best_v) = (&mut best[..len], &mut best_v[..len]);
            for &off in &offsets {
                // On real data the comparison is unpredictable: keep it out of branches.
                let src = &padded[off..off + len];
                let o = off as u32;
                for i in 0..len {
                    // All ones where this tap is a new strict maximum: a mask, not a branch.
                    let mask = 0u32.wrapping_sub((src[i] > best_v[i]) as u32);
                    best[i] ^= (best[i] ^ o) & mask;
                    best_v[i] = best_v[i].max(src[i]);
                }
            }
            for oy in 0..win.out_h {
                for ox in 0..win.out_w {
                    let i = oy * wp + ox;
                    acc[i + best[i] as usize] += g[oy * win.out_w + ox];
                }
            }
        }
        PoolKind::Avg => {
            padded.clear();
            padded.resize(len, 0.0);
            for oy in 0..win.out_h {
                for ox in 0..win.out_w {
                    padded[oy * wp + ox] = g[oy * win.out_w + ox] / taps.count(oy, ox);
                }
            }
            for &off in &offsets {
                acc[off..off + len].iter_mut().zip(&padded[..len]).for_each(|(a, &s)| *a += s);
            }
        }
    }
    unflatten(acc, gin, win.in_h, win.in_w, wp, win.pad_top, win.pad_left);
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
        super::cuda::pool((s, l), None, n, c, &self.win, self.kind == PoolKind::Max)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let (n, c, _, _) = l.shape().dims4()?;
        let win = self.win;
        let (ip, op) = (win.in_h * win.in_w, win.out_h * win.out_w);
        let taps = Taps::new(&win);
        let mut out = super::zeros(n * c * op);
        let same_s1 = is_same_stride1(&win);
        out.par_chunks_mut(op).enumerate().for_each_init(Scratch::default, |buf, (p, o)| {
            let xp = &x[p * ip..(p + 1) * ip];
            if same_s1 {
                plane_s1(self.kind, xp, o, &win, &taps, buf)
            } else {
                plane_generic(self.kind, xp, o, &win, &taps)
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, win.out_h, win.out_w))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        super::profile::timed("pool bwd", || Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &PoolGrad { kind: self.kind, win: self.win })?)))
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
        super::cuda::pool((s1, l1), Some((s2, l2)), n, c, &self.win, self.kind == PoolKind::Max)
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let g = f32_data(s2, l2, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let win = self.win;
        let (ip, op) = (win.in_h * win.in_w, win.out_h * win.out_w);
        let taps = Taps::new(&win);
        let mut gin = super::zeros(n * c * ip);
        let same_s1 = is_same_stride1(&win);
        gin.par_chunks_mut(ip).enumerate().for_each_init(Scratch::default, |buf, (p, gi)| {
            let xp = &x[p * ip..(p + 1) * ip];
            let gp = &g[p * op..(p + 1) * op];
            if same_s1 {
                return grad_plane_s1(self.kind, xp, gp, gi, &win, &taps, buf);
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
        });
        Ok((CpuStorage::F32(gin), Shape::from((n, c, h, w))))
    }
}
