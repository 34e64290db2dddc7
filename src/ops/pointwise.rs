//! The 1x1 convolution of one image, forward and input gradient, as a direct
//! kernel: out (M, HW) = A (M, K) B (K, HW) with K the few channels of the
//! search (20 to 80). gemm packs B, the whole image, before every product;
//! here A's entries are broadcast from L1 and B is read where it lies,
//! 16 pixels at a time against up to 16 output rows held in registers.
//! Each output is `K` fused multiply-adds in order from zero, the float
//! operations of gemm's kernel at these depths, so the results are the same
//! to the bit (tests/ops.rs).
use super::gemm::Mat;

/// Pixels per block: one AVX-512 register.
const V: usize = 16;

/// `out (a.rows, hw) = a f(b)`, b (a.cols, hw) row-major, f = ReLU when `relu`.
pub(crate) fn product(out: &mut [f32], a: Mat, b: &[f32], hw: usize, relu: bool) {
    let (m, k) = (a.rows, a.cols);
    assert!(out.len() >= m * hw && b.len() >= k * hw, "pointwise: shapes do not fit");
    let mut row = 0;
    while row < m {
        // Tiles of 16 rows, then 8, 4, 2, 1: each tile's accumulators fit the registers.
        let left = m - row;
        let tile = [16, 8, 4, 2, 1].into_iter().find(|&t| t <= left).unwrap_or(1);
        match (tile, relu) {
            (16, false) => rows::<16, false>(out, a, row, b, hw),
            (16, true) => rows::<16, true>(out, a, row, b, hw),
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
    for blk in 0..blocks {
        block::<R, RELU>(out, &coef, b, hw, row, blk * V);
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

/// Output rows `row..row + R` at pixels `p..p + V`: R accumulators in registers.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
fn block<const R: usize, const RELU: bool>(out: &mut [f32], coef: &[[f32; R]], b: &[f32], hw: usize, row: usize, p: usize) {
    use std::arch::x86_64::*;
    assert!(b.len() >= (coef.len() - 1) * hw + p + V && out.len() >= (row + R - 1) * hw + p + V);
    // SAFETY: avx512f is enabled at compile time (the cfg above); every load
    // and store is of V floats inside `b` or `out`, as asserted above.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); R];
        for (kk, c) in coef.iter().enumerate() {
            let mut x = _mm512_loadu_ps(b.as_ptr().add(kk * hw + p));
            if RELU {
                x = _mm512_max_ps(x, _mm512_setzero_ps());
            }
            for r in 0..R {
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(c[r]), x, acc[r]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add((row + r) * hw + p), *a);
        }
    }
}

/// The same without AVX-512, for the compiler to vectorise as it can.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn block<const R: usize, const RELU: bool>(out: &mut [f32], coef: &[[f32; R]], b: &[f32], hw: usize, row: usize, p: usize) {
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
