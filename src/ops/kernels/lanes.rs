//! Reductions and masks over slices, written so the compiler vectorises them
//! at the width of the kernel set they are inlined into: callers run them
//! inside `simd::vectorize`. Eight accumulators whatever the width, so the
//! sums are the same bits in every set.
const LANES: usize = 8;

/// Dot product with eight independent accumulators, so the compiler can
/// vectorise it (a plain `.sum()` of floats must keep its order).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum with eight independent accumulators (see `dot`).
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let c = a.chunks_exact(LANES);
    let tail: f32 = c.remainder().iter().sum();
    for x in c {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of squared deviations from `mean`, with eight accumulators (see `dot`).
#[inline(always)]
pub(crate) fn sum_sq_dev(a: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let c = a.chunks_exact(LANES);
    let tail: f32 = c.remainder().iter().map(|&v| (v - mean) * (v - mean)).sum();
    for x in c {
        for l in 0..LANES {
            acc[l] += (x[l] - mean) * (x[l] - mean);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The backward of ReLU in place: zeroes `grad` where `x < 0` (candle's
/// convention: the gradient passes at 0). A select rather than a branch, as
/// the signs are random. The compiler turns an in-place select into a masked
/// store, fast with AVX-512's mask registers but microcoded on AMD's CPUs with
/// AVX2 (11x slower here), so with AVX2 the select reads a copy of the gradient.
#[inline(always)]
pub(crate) fn relu_mask(grad: &mut [f32], x: &[f32]) {
    thread_local! {
        static COPY: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if super::simd::active() != super::simd::KernelSet::Avx2 {
        for (d, &v) in grad.iter_mut().zip(x) {
            *d = if v < 0.0 { 0.0 } else { *d };
        }
        return;
    }
    COPY.with_borrow_mut(|copy| {
        copy.clear();
        copy.extend_from_slice(grad);
        for ((d, &g), &v) in grad.iter_mut().zip(copy.iter()).zip(x) {
            *d = if v < 0.0 { 0.0 } else { g };
        }
    })
}
