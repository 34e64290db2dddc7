//! Stride-1 'same' pooling on one plane, separably: a pass along the rows,
//! then one across them, so a k x k window costs 2k passes instead of k^2 and
//! no padded copy of the plane is made. Each pass runs over the whole
//! flattened plane (rows of 8 to 32 pixels are too short for vector loops):
//! a shift of one row is a shift of `w` in the flat plane, and a shift along
//! the row is masked where it would cross into the next row. Only in-image
//! pixels take part (padding is neither a maximum nor counted in an average).
//! Max pooling sends each output's gradient to the first maximum of its
//! window in scan order (row by row), as the generic path does. The average's
//! forward alone keeps k^2 passes (`sum_in_scan_order`).
use super::pool::PoolKind;
use super::Window;

/// The outputs `o` in `0..n` whose tap at shift `s` reads inside `0..n`.
#[inline]
fn valid(s: isize, n: usize) -> std::ops::Range<usize> {
    let n = n as isize;
    (s.clamp(-n, 0).unsigned_abs())..((n - s).clamp(0, n) as usize)
}

/// `valid(s, n)`, and where in `0..n` the first of those outputs reads (0 when none does).
#[inline]
fn reads(s: isize, n: usize) -> (std::ops::Range<usize>, usize) {
    let r = valid(s, n);
    let from = if r.is_empty() { 0 } else { (r.start as isize + s) as usize };
    (r, from)
}

/// The window of a stride-1 'same' pool on an h x w plane.
pub(crate) struct Separable {
    h: usize,
    w: usize,
    /// Per tap, the shift of the rows it reads, in pixels of the flat plane (a multiple of w).
    rows: Vec<isize>,
    /// Per tap along the row: its shift, and for each pixel 1.0 where it reads inside the pixel's row, else 0.0.
    cols: Vec<(isize, Vec<f32>)>,
}

/// Scratch planes one worker reuses.
#[derive(Default)]
pub(crate) struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Scratch {
    #[inline(always)]
    fn planes(&mut self, n: usize) -> [&mut [f32]; 3] {
        let Scratch { a, b, c } = self;
        for v in [&mut *a, &mut *b, &mut *c] {
            v.resize(n, 0.0);
        }
        [&mut a[..n], &mut b[..n], &mut c[..n]]
    }
}

/// `dst[i] (op)= src[i + s]` over the flat plane for the `i` that read inside it.
#[inline(always)]
fn shifted<'a>(dst: &'a mut [f32], src: &'a [f32], s: isize) -> impl Iterator<Item = (&'a mut f32, &'a f32)> + 'a {
    let (r, from) = reads(s, dst.len());
    let len = r.len();
    dst[r].iter_mut().zip(&src[from..from + len])
}

/// The initial value of a fold: nothing has been seen.
fn empty(kind: PoolKind) -> f32 {
    if kind == PoolKind::Max {
        f32::NEG_INFINITY
    } else {
        0.0
    }
}

impl Separable {
    /// For windows that keep the size at stride 1; None for any other.
    pub(crate) fn new(win: &Window) -> Option<Separable> {
        let same = win.stride == 1 && win.out_h == win.in_h && win.out_w == win.in_w;
        if !same {
            return None;
        }
        let (h, w) = (win.in_h, win.in_w);
        let shift = |t: usize, pad: usize| (t * win.dilation) as isize - pad as isize;
        let rows = (0..win.k).map(|t| shift(t, win.pad_top) * w as isize).collect();
        let cols = (0..win.k)
            .map(|t| {
                let s = shift(t, win.pad_left);
                let inside = valid(s, w);
                let row: Vec<f32> = (0..w).map(|x| if inside.contains(&x) { 1.0 } else { 0.0 }).collect();
                (s, row.repeat(h))
            })
            .collect();
        Some(Separable { h, w, rows, cols })
    }

    /// In-image pixels of each output's window (h x w), for average pooling.
    pub(crate) fn counts(&self) -> Vec<f32> {
        let mut down = vec![0f32; self.h * self.w];
        for &s in &self.rows {
            let n = down.len();
            down[valid(s, n)].iter_mut().for_each(|v| *v += 1.0);
        }
        let along: Vec<f32> = (0..self.h * self.w).map(|i| self.cols.iter().map(|(_, m)| m[i]).sum()).collect();
        down.iter().zip(&along).map(|(r, c)| r * c).collect()
    }

    /// Fold along the rows into `along`, then across them into `out`; with
    /// `transpose`, the transposed (adjoint) sums, for the average's backward.
    #[inline(always)]
    fn fold(&self, kind: PoolKind, x: &[f32], out: &mut [f32], along: &mut [f32], transpose: bool) {
        along.fill(empty(kind));
        for (s, inside) in &self.cols {
            // The transpose reads pixel i - s, if that pixel's tap reads inside its row.
            let s = if transpose { -s } else { *s };
            let (r, from) = reads(s, along.len());
            let mask = &inside[if transpose { from } else { r.start }..];
            match kind {
                PoolKind::Max => {
                    for ((d, &v), &ok) in shifted(along, x, s).zip(mask) {
                        *d = d.max(if ok > 0.0 { v } else { f32::NEG_INFINITY });
                    }
                }
                PoolKind::Avg => {
                    for ((d, &v), &ok) in shifted(along, x, s).zip(mask) {
                        *d += v * ok;
                    }
                }
            }
        }
        out.fill(empty(kind));
        for &s in &self.rows {
            let s = if transpose { -s } else { s };
            match kind {
                PoolKind::Max => {
                    for (d, &v) in shifted(out, along, s) {
                        *d = d.max(v);
                    }
                }
                PoolKind::Avg => {
                    for (d, &v) in shifted(out, along, s) {
                        *d += v;
                    }
                }
            }
        }
    }

    pub(crate) fn forward(&self, kind: PoolKind, x: &[f32], out: &mut [f32], counts: &[f32], buf: &mut Scratch) {
        super::simd::vectorize(
            #[inline(always)]
            || self.forward_in(kind, x, out, counts, buf),
        )
    }

    #[inline(always)]
    fn forward_in(&self, kind: PoolKind, x: &[f32], out: &mut [f32], counts: &[f32], buf: &mut Scratch) {
        match kind {
            PoolKind::Max => {
                let [along, _, _] = buf.planes(x.len());
                self.fold(kind, x, out, along, false);
            }
            PoolKind::Avg => {
                self.sum_in_scan_order(x, out);
                for (v, c) in out.iter_mut().zip(counts) {
                    *v /= c;
                }
            }
        }
    }

    /// Each window's sum with its taps added one by one in scan order (k^2
    /// passes): the float sum of the padded-plane loop before, to the bit. The
    /// separable sum rounds differently, and a last-bit change in the forward
    /// flips near-tied maxima downstream, so the search's losses drift.
    #[inline(always)]
    fn sum_in_scan_order(&self, x: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        for &rs in &self.rows {
            for (cs, inside) in &self.cols {
                let s = rs + cs;
                let (rows, cols) = (valid(rs, n), valid(s, n));
                let r = rows.start.max(cols.start)..rows.end.min(cols.end);
                if r.is_empty() {
                    continue;
                }
                let from = (r.start as isize + s) as usize;
                let it = out[r.clone()].iter_mut().zip(&x[from..from + r.len()]).zip(&inside[r]);
                for ((d, &v), &ok) in it {
                    *d += v * ok;
                }
            }
        }
    }

    /// The input's gradient `gin` from the output's `g` (both h x w).
    pub(crate) fn backward(&self, kind: PoolKind, x: &[f32], g: &[f32], gin: &mut [f32], counts: &[f32], buf: &mut Scratch) {
        super::simd::vectorize(
            #[inline(always)]
            || self.backward_in(kind, x, g, gin, counts, buf),
        )
    }

    #[inline(always)]
    fn backward_in(&self, kind: PoolKind, x: &[f32], g: &[f32], gin: &mut [f32], counts: &[f32], buf: &mut Scratch) {
        let [a, b, c] = buf.planes(x.len());
        match kind {
            PoolKind::Avg => {
                for ((r, &v), n) in c.iter_mut().zip(g).zip(counts) {
                    *r = v / n;
                }
                self.fold(PoolKind::Avg, c, gin, a, true);
            }
            PoolKind::Max => self.max_backward(x, g, gin, [a, b, c]),
        }
    }

    /// Max pooling's backward: the maximum of each row window and its first
    /// tap; per output, the first row window holding the maximum; the
    /// gradient then goes back across the rows and along them by masks, not
    /// by a scatter (a tap's index matches only where the tap read inside).
    #[inline(always)]
    fn max_backward(&self, x: &[f32], g: &[f32], gin: &mut [f32], [row_max, row_arg, down]: [&mut [f32]; 3]) {
        row_max.fill(f32::NEG_INFINITY);
        row_arg.fill(-1.0);
        for (t, (s, inside)) in self.cols.iter().enumerate() {
            let (t, (r, from)) = (t as f32, reads(*s, x.len()));
            let len = r.len();
            let it = row_max[r.clone()].iter_mut().zip(&mut row_arg[r.clone()]).zip(&x[from..from + len]).zip(&inside[r]);
            for (((m, a), &v), &ok) in it {
                // Strictly greater: the earlier tap keeps a tie. Selects, not branches.
                // The tap's index where it beats the best so far, as a max:
                // taps come in increasing order, so it is the select `if v >
                // best { t } else { arg }` without the conditional store the
                // compiler makes of that (microcoded on AMD's CPUs).
                let (v, best) = (if ok > 0.0 { v } else { f32::NEG_INFINITY }, *m);
                *a = a.max(if v > best { t } else { -1.0 });
                *m = best.max(v);
            }
        }
        // Across the rows, `gin` holds the best value so far and `down` its tap.
        gin.fill(f32::NEG_INFINITY);
        down.fill(-1.0);
        for (t, &s) in self.rows.iter().enumerate() {
            let t = t as f32;
            for ((b, &v), bt) in shifted(gin, row_max, s).zip(&mut down[valid(s, x.len())]) {
                let best = *b;
                *bt = bt.max(if v > best { t } else { -1.0 });
                *b = best.max(v);
            }
        }
        // The gradient down the column taps: row_max is free to hold it.
        let (best_t, col_grad) = (&*down, row_max);
        col_grad.fill(0.0);
        for (t, &s) in self.rows.iter().enumerate() {
            let t = t as f32;
            // Output i's tap t reads row pixel i + s; the transpose adds at i + s.
            let (r, to) = reads(s, g.len());
            let dst = &mut col_grad[to..to + r.len()];
            for ((d, &bt), &v) in dst.iter_mut().zip(&best_t[r.clone()]).zip(&g[r]) {
                *d += if bt == t { v } else { 0.0 };
            }
        }
        // Along the rows: pixel i takes the row gradient of pixel i - s where that window's first maximum was tap t.
        gin.fill(0.0);
        for (t, (s, _)) in self.cols.iter().enumerate() {
            let t = t as f32;
            let (r, from) = reads(-s, x.len());
            let (src, arg) = (&col_grad[from..from + r.len()], &row_arg[from..from + r.len()]);
            for ((d, &v), &at) in gin[r].iter_mut().zip(src).zip(arg) {
                *d += if at == t { v } else { 0.0 };
            }
        }
    }
}
