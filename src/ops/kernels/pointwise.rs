//! The 1x1 convolution of one image as direct kernels: forward and input
//! gradient, out (M, HW) = A (M, K) B (K, HW) with K the few channels of the
//! search (20 to 100), and the weight gradient, a few hundred dot products
//! over the pixels. gemm packs B, the whole image, before every product;
//! here A's entries are broadcast from L1 and B is read where it lies, two
//! vectors of pixels at a time against a tile of output rows held in
//! registers, the tile sized to the kernel set's registers (`simd`).
//! Each output of `product` is `K` fused multiply-adds in order from zero,
//! whatever the set: the float operations of gemm's kernel at these depths,
//! so the results are the same to the bit (tests/ops.rs).
use super::gemm::Mat;
use super::simd::{dispatch, load, store};
use pulp::{Simd, WithSimd};

/// Vectors of pixels side by side in a tile: each broadcast A entry serves both.
const P: usize = 2;

/// `out (a.rows, hw) = a f(b)`, b (a.cols, hw) row-major, f = ReLU when `relu`.
pub(crate) fn product(out: &mut [f32], a: Mat, b: &[f32], hw: usize, relu: bool) {
    assert!(out.len() >= a.rows * hw && b.len() >= a.cols * hw, "pointwise: shapes do not fit");
    dispatch(Product { out, a, b, hw, relu })
}

struct Product<'a> {
    out: &'a mut [f32],
    a: Mat<'a>,
    b: &'a [f32],
    hw: usize,
    relu: bool,
}

impl WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Product { out, a, b, hw, relu } = self;
        if !aliasing(hw, a.cols) {
            return tiles(simd, out, a, (b, hw), hw, relu);
        }
        // B's rows copied apart (and ReLU'd on the way), `take` and `set`
        // rather than a closure, which would leave the kernel set's function.
        thread_local! {
            static APART: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut apart = APART.take();
        let bs = hw + APART_PAD;
        apart.resize(a.cols * bs, 0.0);
        for (src, dst) in b.chunks_exact(hw).zip(apart.chunks_exact_mut(bs)) {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = if relu { v.max(0.0) } else { v };
            }
        }
        tiles(simd, out, a, (&apart, bs), hw, false);
        APART.set(apart);
    }
}

/// Floats between B's rows when they are copied apart.
const APART_PAD: usize = 16;

/// Whether B's rows, `hw` floats apart, fall into the same few sets of the L1
/// cache: with a row a multiple of 2 KiB long (32 x 32 planes), the K rows a
/// tile reads for one block of pixels share one or two sets, more than their
/// ways, so the lines the prefetcher brings in are evicted before use (half
/// the speed with AVX2, a third less with AVX-512). Copied to rows 64 bytes
/// apart they spread over the sets, for a copy of B per product.
#[inline(always)]
fn aliasing(hw: usize, k: usize) -> bool {
    (hw * 4).is_multiple_of(2048) && k > 8
}

/// `out (a.rows, hw) = a f(b)` with B's rows `bs` floats apart.
#[inline(always)]
fn tiles<S: Simd>(simd: S, out: &mut [f32], a: Mat, b: (&[f32], usize), hw: usize, relu: bool) {
    let (m, mut row) = (a.rows, 0);
    // Tiles of rows whose accumulators (rows x P vectors), the P vectors of
    // B and a broadcast fit the registers: 12 rows of 32, 6 of 16.
    let wide = S::REGISTER_COUNT >= 32;
    while row < m {
        let left = m - row;
        let tile = if wide { [12, 8, 4, 2, 1] } else { [6, 4, 2, 1, 1] }.into_iter().find(|&t| t <= left).unwrap_or(1);
        match (tile, relu) {
            (12, false) => rows::<S, 12, false>(simd, out, a, row, b, hw),
            (12, true) => rows::<S, 12, true>(simd, out, a, row, b, hw),
            (8, false) => rows::<S, 8, false>(simd, out, a, row, b, hw),
            (8, true) => rows::<S, 8, true>(simd, out, a, row, b, hw),
            (6, false) => rows::<S, 6, false>(simd, out, a, row, b, hw),
            (6, true) => rows::<S, 6, true>(simd, out, a, row, b, hw),
            (4, false) => rows::<S, 4, false>(simd, out, a, row, b, hw),
            (4, true) => rows::<S, 4, true>(simd, out, a, row, b, hw),
            (2, false) => rows::<S, 2, false>(simd, out, a, row, b, hw),
            (2, true) => rows::<S, 2, true>(simd, out, a, row, b, hw),
            (_, false) => rows::<S, 1, false>(simd, out, a, row, b, hw),
            (_, true) => rows::<S, 1, true>(simd, out, a, row, b, hw),
        }
        row += tile;
    }
}

/// Output rows `row..row + R`; B's rows `bs` floats apart.
#[inline(always)]
fn rows<S: Simd, const R: usize, const RELU: bool>(simd: S, out: &mut [f32], a: Mat, row: usize, (b, bs): (&[f32], usize), hw: usize) {
    let k = a.cols;
    // A's tile, row by row, so the inner loop reads it contiguously.
    let mut coef = vec![[0f32; R]; k];
    for (kk, c) in coef.iter_mut().enumerate() {
        for (r, v) in c.iter_mut().enumerate() {
            *v = a.data[(row + r) * a.rs + kk * a.cs];
        }
    }
    let lanes = S::F32_LANES;
    let mut p = 0;
    while p + P * lanes <= hw {
        block::<S, R, P, RELU>(simd, out, &coef, (b, bs), hw, row, p);
        p += P * lanes;
    }
    while p + lanes <= hw {
        block::<S, R, 1, RELU>(simd, out, &coef, (b, bs), hw, row, p);
        p += lanes;
    }
    for p in p..hw {
        for r in 0..R {
            let mut acc = 0f32;
            for (kk, c) in coef.iter().enumerate() {
                let x = b[kk * bs + p];
                acc = c[r].mul_add(if RELU { x.max(0.0) } else { x }, acc);
            }
            out[(row + r) * hw + p] = acc;
        }
    }
}

/// Output rows `row..row + R` at pixels `p..p + Q` vectors: R Q accumulators in registers.
#[inline(always)]
fn block<S: Simd, const R: usize, const Q: usize, const RELU: bool>(
    simd: S,
    out: &mut [f32],
    coef: &[[f32; R]],
    (b, bs): (&[f32], usize),
    hw: usize,
    row: usize,
    p: usize,
) {
    let lanes = S::F32_LANES;
    assert!(b.len() >= (coef.len() - 1) * bs + p + Q * lanes && out.len() >= (row + R - 1) * hw + p + Q * lanes);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; Q]; R];
    for (kk, c) in coef.iter().enumerate() {
        let mut x = [zero; Q];
        for (q, x) in x.iter_mut().enumerate() {
            // SAFETY: inside `b`, as asserted above.
            *x = unsafe { load::<S>(b, kk * bs + p + q * lanes) };
            if RELU {
                *x = simd.max_f32s(*x, zero);
            }
        }
        for r in 0..R {
            let cr = simd.splat_f32s(c[r]);
            for q in 0..Q {
                acc[r][q] = simd.mul_add_f32s(cr, x[q], acc[r][q]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (q, &v) in acc.iter().enumerate() {
            // SAFETY: inside `out`, as asserted above.
            unsafe { store::<S>(out, (row + r) * hw + p + q * lanes, v) };
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
/// a vector wide, on a tile of rows of x and g held in registers.
pub(crate) fn weight_grad(gw_t: &mut [f32], x: &[f32], k: usize, g: &[f32], m: usize, hw: usize, relu: bool) {
    assert!(gw_t.len() >= k * m && x.len() >= k * hw && g.len() >= m * hw, "pointwise weight gradient: shapes do not fit");
    dispatch(WeightGrad { gw_t, x, k, g, m, hw, relu })
}

struct WeightGrad<'a> {
    gw_t: &'a mut [f32],
    x: &'a [f32],
    k: usize,
    g: &'a [f32],
    m: usize,
    hw: usize,
    relu: bool,
}

impl WithSimd for WeightGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let WeightGrad { gw_t, x, k, g, m, hw, relu } = self;
        // Tiles of x rows by g rows whose accumulators, the g vectors and one
        // x vector fit the registers: 6 x 4 of 32, 3 x 3 of 16.
        let (x_tiles, g_tiles) = if S::REGISTER_COUNT >= 32 { ([6, 4, 2, 1], [4, 2, 1]) } else { ([3, 2, 1, 1], [3, 2, 1]) };
        let mut xr = 0;
        while xr < k {
            let xt = x_tiles.into_iter().find(|&t| t <= k - xr).unwrap_or(1);
            let mut gr = 0;
            while gr < m {
                let gt = g_tiles.into_iter().find(|&t| t <= m - gr).unwrap_or(1);
                let at = Dots { gw_t: &mut *gw_t, x, g, m, hw, xr, gr };
                match (xt, gt, relu) {
                    (6, 4, false) => at.tile::<S, 6, 4, false>(simd),
                    (6, 4, true) => at.tile::<S, 6, 4, true>(simd),
                    (6, 2, false) => at.tile::<S, 6, 2, false>(simd),
                    (6, 2, true) => at.tile::<S, 6, 2, true>(simd),
                    (6, _, false) => at.tile::<S, 6, 1, false>(simd),
                    (6, _, true) => at.tile::<S, 6, 1, true>(simd),
                    (4, 4, false) => at.tile::<S, 4, 4, false>(simd),
                    (4, 4, true) => at.tile::<S, 4, 4, true>(simd),
                    (4, 2, false) => at.tile::<S, 4, 2, false>(simd),
                    (4, 2, true) => at.tile::<S, 4, 2, true>(simd),
                    (4, _, false) => at.tile::<S, 4, 1, false>(simd),
                    (4, _, true) => at.tile::<S, 4, 1, true>(simd),
                    (3, 3, false) => at.tile::<S, 3, 3, false>(simd),
                    (3, 3, true) => at.tile::<S, 3, 3, true>(simd),
                    (3, 2, false) => at.tile::<S, 3, 2, false>(simd),
                    (3, 2, true) => at.tile::<S, 3, 2, true>(simd),
                    (3, _, false) => at.tile::<S, 3, 1, false>(simd),
                    (3, _, true) => at.tile::<S, 3, 1, true>(simd),
                    (2, 4, false) => at.tile::<S, 2, 4, false>(simd),
                    (2, 4, true) => at.tile::<S, 2, 4, true>(simd),
                    (2, 3, false) => at.tile::<S, 2, 3, false>(simd),
                    (2, 3, true) => at.tile::<S, 2, 3, true>(simd),
                    (2, 2, false) => at.tile::<S, 2, 2, false>(simd),
                    (2, 2, true) => at.tile::<S, 2, 2, true>(simd),
                    (2, _, false) => at.tile::<S, 2, 1, false>(simd),
                    (2, _, true) => at.tile::<S, 2, 1, true>(simd),
                    (_, 4, false) => at.tile::<S, 1, 4, false>(simd),
                    (_, 4, true) => at.tile::<S, 1, 4, true>(simd),
                    (_, 3, false) => at.tile::<S, 1, 3, false>(simd),
                    (_, 3, true) => at.tile::<S, 1, 3, true>(simd),
                    (_, 2, false) => at.tile::<S, 1, 2, false>(simd),
                    (_, 2, true) => at.tile::<S, 1, 2, true>(simd),
                    (_, _, false) => at.tile::<S, 1, 1, false>(simd),
                    (_, _, true) => at.tile::<S, 1, 1, true>(simd),
                }
                gr += gt;
            }
            xr += xt;
        }
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
    #[inline(always)]
    fn tile<S: Simd, const XR: usize, const GR: usize, const RELU: bool>(self, simd: S) {
        let Dots { gw_t, x, g, m, hw, xr, gr } = self;
        let f = |v: f32| if RELU { v.max(0.0) } else { v };
        let blocks = hw / S::F32_LANES;
        let mut sums = dots::<S, XR, GR, RELU>(simd, x, g, hw, xr, gr, blocks);
        for p in blocks * S::F32_LANES..hw {
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

/// The dot products of rows `xr..xr + XR` of x with rows `gr..gr + GR` of g
/// over the first `blocks` vectors of pixels, each summed across its lanes at the end.
#[inline(always)]
fn dots<S: Simd, const XR: usize, const GR: usize, const RELU: bool>(
    simd: S,
    x: &[f32],
    g: &[f32],
    hw: usize,
    xr: usize,
    gr: usize,
    blocks: usize,
) -> [[f32; GR]; XR] {
    let lanes = S::F32_LANES;
    assert!(x.len() >= (xr + XR) * hw && g.len() >= (gr + GR) * hw && blocks * lanes <= hw);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [[zero; GR]; XR];
    for blk in 0..blocks {
        let p = blk * lanes;
        let mut gv = [zero; GR];
        for (j, v) in gv.iter_mut().enumerate() {
            // SAFETY: row gr + j of g, inside it as asserted above.
            *v = unsafe { load::<S>(g, (gr + j) * hw + p) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: row xr + i of x, inside it as asserted above.
            let mut xv = unsafe { load::<S>(x, (xr + i) * hw + p) };
            if RELU {
                xv = simd.max_f32s(xv, zero);
            }
            for (a, gv) in row.iter_mut().zip(&gv) {
                *a = simd.mul_add_f32s(xv, *gv, *a);
            }
        }
    }
    // Loops, not `map`: a closure there is not inlined into the kernel set's
    // function, and the lane sums' intrinsics became calls.
    let mut sums = [[0f32; GR]; XR];
    for (s, a) in sums.iter_mut().zip(&acc) {
        for (s, &a) in s.iter_mut().zip(a) {
            *s = simd.reduce_sum_f32s(a);
        }
    }
    sums
}
