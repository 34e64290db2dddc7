//! The 1x1 convolution of one image as direct kernels: forward and input
//! gradient, out (M, HW) = A (M, K) B (K, HW) with K the few channels of the
//! search (20 to 100), and the weight gradient, a few hundred dot products
//! over the pixels. gemm packs B, the whole image, before every product;
//! here A's entries are broadcast from L1 and B is read where it lies,
//! 32 pixels at a time against up to 12 output rows held in registers.
//! Each output of `product` is `K` fused multiply-adds in order from zero,
//! the float operations of gemm's kernel at these depths, so the results are
//! the same to the bit (tests/ops.rs).
use super::gemm::Mat;

/// Pixels per block: one AVX-512 register.
const V: usize = 16;

/// `out (a.rows, hw) = a f(b)`, b (a.cols, hw) row-major, f = ReLU when `relu`.
pub(crate) fn product(out: &mut [f32], a: Mat, b: &[f32], hw: usize, relu: bool) {
    let (m, k) = (a.rows, a.cols);
    assert!(out.len() >= m * hw && b.len() >= k * hw, "pointwise: shapes do not fit");
    let mut row = 0;
    while row < m {
        // Tiles of 12 rows, then 8, 4, 2, 1, two blocks of pixels at a time: each tile's
        // accumulators fit the registers, and each A entry broadcast serves two blocks.
        let left = m - row;
        let tile = [12, 8, 4, 2, 1].into_iter().find(|&t| t <= left).unwrap_or(1);
        match (tile, relu) {
            (12, false) => rows::<12, false>(out, a, row, b, hw),
            (12, true) => rows::<12, true>(out, a, row, b, hw),
            (8, false) => rows::<8, false>(out, a, row, b, hw),
            (8, true) => rows::<8, true>(out, a, row, b, hw),
            (4, false) => rows::<4, false>(out, a, row, b, hw),
            (4, true) => rows::<4, true>(out, a, row, b, hw),
            (2, false) => rows::<2, false>(out, a, row, b, hw),
            (2, true) => rows::<2, true>(out, a, row, b, hw),
            (_, false) => rows::<1, false>(out, a, row, b, hw),
            (_, true) => rows::<1, true>(out, a, row, b, hw),
        }
        row += tile;
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn load<const RELU: bool>(b: &[f32]) -> [f32; V] {
    let v: [f32; V] = b[..V].try_into().expect("a block of V");
    if RELU {
        v.map(|x| x.max(0.0))
    } else {
        v
    }
}

/// Output rows `row..row + R`.
fn rows<const R: usize, const RELU: bool>(out: &mut [f32], a: Mat, row: usize, b: &[f32], hw: usize) {
    let k = a.cols;
    // A's tile, row by row, so the inner loop reads it contiguously.
    let mut coef = vec![[0f32; R]; k];
    for (kk, c) in coef.iter_mut().enumerate() {
        for (r, v) in c.iter_mut().enumerate() {
            *v = a.data[(row + r) * a.rs + kk * a.cs];
        }
    }
    let blocks = hw / V;
    for pair in 0..blocks / 2 {
        block::<R, 2, RELU>(out, &coef, b, hw, row, pair * 2 * V);
    }
    if blocks % 2 == 1 {
        block::<R, 1, RELU>(out, &coef, b, hw, row, (blocks - 1) * V);
    }
    for p in blocks * V..hw {
        for r in 0..R {
            let mut acc = 0f32;
            for (kk, c) in coef.iter().enumerate() {
                let x = b[kk * hw + p];
                acc = c[r].mul_add(if RELU { x.max(0.0) } else { x }, acc);
            }
            out[(row + r) * hw + p] = acc;
        }
    }
}

/// Output rows `row..row + R` at pixels `p..p + P V`: R P accumulators in registers.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
fn block<const R: usize, const P: usize, const RELU: bool>(out: &mut [f32], coef: &[[f32; R]], b: &[f32], hw: usize, row: usize, p: usize) {
    use std::arch::x86_64::*;
    assert!(b.len() >= (coef.len() - 1) * hw + p + P * V && out.len() >= (row + R - 1) * hw + p + P * V);
    // SAFETY: avx512f is enabled at compile time (the cfg above); every load
    // and store is of V floats inside `b` or `out`, as asserted above.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); R]; P];
        for (kk, c) in coef.iter().enumerate() {
            let mut x = [_mm512_setzero_ps(); P];
            for (q, x) in x.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.as_ptr().add(kk * hw + p + q * V));
                if RELU {
                    *x = _mm512_max_ps(*x, _mm512_setzero_ps());
                }
            }
            for r in 0..R {
                let cr = _mm512_set1_ps(c[r]);
                for q in 0..P {
                    acc[q][r] = _mm512_fmadd_ps(cr, x[q], acc[q][r]);
                }
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add((row + r) * hw + p + q * V), *a);
            }
        }
    }
}

/// The same without AVX-512, for the compiler to vectorise as it can.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn block<const R: usize, const P: usize, const RELU: bool>(out: &mut [f32], coef: &[[f32; R]], b: &[f32], hw: usize, row: usize, p: usize) {
    for q in 0..P {
        let p = p + q * V;
        let mut acc = [[0f32; V]; R];
        for (kk, c) in coef.iter().enumerate() {
            let x = load::<RELU>(&b[kk * hw + p..]);
            for r in 0..R {
                for l in 0..V {
                    acc[r][l] = c[r].mul_add(x[l], acc[r][l]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[(row + r) * hw + p..][..V].copy_from_slice(acc);
        }
    }
}

/// Whether `weight_grad` beats gemm for `rows` rows of x at `hw` pixels
/// (measured at 20 to 900 rows): below 128 pixels its horizontal sums cost
/// as much as the products, and for long column matrices at 256 pixels gemm's
/// packing pays for itself.
pub(crate) fn dots_beat_gemm(rows: usize, hw: usize) -> bool {
    hw >= 512 || (hw >= 128 && rows <= 128)
}

/// `gw_t (k, m) += f(x) g^T`: the 1x1 convolution's weight gradient (transposed)
/// from one image, x (k, hw) and g (m, hw) row-major, f = ReLU when `relu`.
/// gemm would pack x, a transposing copy of the whole image, for an output of
/// a few hundred entries; here each entry is a dot product over the pixels,
/// 16 lanes wide, on a tile of rows of x and g held in registers.
pub(crate) fn weight_grad(gw_t: &mut [f32], x: &[f32], k: usize, g: &[f32], m: usize, hw: usize, relu: bool) {
    assert!(gw_t.len() >= k * m && x.len() >= k * hw && g.len() >= m * hw, "pointwise weight gradient: shapes do not fit");
    let mut xr = 0;
    while xr < k {
        let xt = [6, 4, 2, 1].into_iter().find(|&t| t <= k - xr).unwrap_or(1);
        let mut gr = 0;
        while gr < m {
            let gt = [4, 2, 1].into_iter().find(|&t| t <= m - gr).unwrap_or(1);
            let at = Dots { gw_t, x, g, m, hw, xr, gr };
            match (xt, gt, relu) {
                (6, 4, false) => at.tile::<6, 4, false>(),
                (6, 4, true) => at.tile::<6, 4, true>(),
                (6, 2, false) => at.tile::<6, 2, false>(),
                (6, 2, true) => at.tile::<6, 2, true>(),
                (6, _, false) => at.tile::<6, 1, false>(),
                (6, _, true) => at.tile::<6, 1, true>(),
                (4, 4, false) => at.tile::<4, 4, false>(),
                (4, 4, true) => at.tile::<4, 4, true>(),
                (4, 2, false) => at.tile::<4, 2, false>(),
                (4, 2, true) => at.tile::<4, 2, true>(),
                (4, _, false) => at.tile::<4, 1, false>(),
                (4, _, true) => at.tile::<4, 1, true>(),
                (2, 4, false) => at.tile::<2, 4, false>(),
                (2, 4, true) => at.tile::<2, 4, true>(),
                (2, 2, false) => at.tile::<2, 2, false>(),
                (2, 2, true) => at.tile::<2, 2, true>(),
                (2, _, false) => at.tile::<2, 1, false>(),
                (2, _, true) => at.tile::<2, 1, true>(),
                (_, 4, false) => at.tile::<1, 4, false>(),
                (_, 4, true) => at.tile::<1, 4, true>(),
                (_, 2, false) => at.tile::<1, 2, false>(),
                (_, 2, true) => at.tile::<1, 2, true>(),
                (_, _, false) => at.tile::<1, 1, false>(),
                (_, _, true) => at.tile::<1, 1, true>(),
            }
            gr += gt;
        }
        xr += xt;
    }
}

/// One tile of `weight_grad`: rows `xr..` of x against rows `gr..` of g.
struct Dots<'a> {
    gw_t: &'a mut [f32],
    x: &'a [f32],
    g: &'a [f32],
    m: usize,
    hw: usize,
    xr: usize,
    gr: usize,
}

impl Dots<'_> {
    fn tile<const XR: usize, const GR: usize, const RELU: bool>(self) {
        let Dots { gw_t, x, g, m, hw, xr, gr } = self;
        let f = |v: f32| if RELU { v.max(0.0) } else { v };
        let blocks = hw / V;
        let mut sums = dots::<XR, GR, RELU>(x, g, hw, xr, gr, blocks);
        for p in blocks * V..hw {
            for (i, row) in sums.iter_mut().enumerate() {
                for (j, s) in row.iter_mut().enumerate() {
                    *s += f(x[(xr + i) * hw + p]) * g[(gr + j) * hw + p];
                }
            }
        }
        for (i, row) in sums.iter().enumerate() {
            for (j, s) in row.iter().enumerate() {
                gw_t[(xr + i) * m + gr + j] += s;
            }
        }
    }
}

/// The dot products of rows `xr..xr + XR` of x with rows `gr..gr + GR` of g over the first `blocks` blocks of pixels.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
fn dots<const XR: usize, const GR: usize, const RELU: bool>(x: &[f32], g: &[f32], hw: usize, xr: usize, gr: usize, blocks: usize) -> [[f32; GR]; XR] {
    use std::arch::x86_64::*;
    assert!(x.len() >= (xr + XR) * hw && g.len() >= (gr + GR) * hw && blocks * V <= hw);
    // SAFETY: avx512f is enabled at compile time (the cfg above); every load is
    // of V floats inside row xr + i of x or row gr + j of g, as asserted above.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); GR]; XR];
        for blk in 0..blocks {
            let p = blk * V;
            let mut gv = [_mm512_setzero_ps(); GR];
            for (j, v) in gv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(g.as_ptr().add((gr + j) * hw + p));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let mut xv = _mm512_loadu_ps(x.as_ptr().add((xr + i) * hw + p));
                if RELU {
                    xv = _mm512_max_ps(xv, _mm512_setzero_ps());
                }
                for (a, gv) in row.iter_mut().zip(&gv) {
                    *a = _mm512_fmadd_ps(xv, *gv, *a);
                }
            }
        }
        acc.map(|row| row.map(|a| _mm512_reduce_add_ps(a)))
    }
}

/// The same without AVX-512, for the compiler to vectorise as it can.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn dots<const XR: usize, const GR: usize, const RELU: bool>(x: &[f32], g: &[f32], hw: usize, xr: usize, gr: usize, blocks: usize) -> [[f32; GR]; XR] {
    let mut acc = [[[0f32; V]; GR]; XR];
    for blk in 0..blocks {
        let p = blk * V;
        for (i, row) in acc.iter_mut().enumerate() {
            let xv = load::<RELU>(&x[(xr + i) * hw + p..]);
            for (j, a) in row.iter_mut().enumerate() {
                let gv: &[f32] = &g[(gr + j) * hw + p..][..V];
                for l in 0..V {
                    a[l] = xv[l].mul_add(gv[l], a[l]);
                }
            }
        }
    }
    acc.map(|row| row.map(|a| a.iter().sum()))
}
