//! The inner loops of the stride-1 window ops on a padded, flattened plane
//! (see `plane.rs`): each output is a sum over the window's taps, a tap being
//! the plane read at a fixed offset. Groups of 64 outputs are accumulated over
//! every tap in registers and stored once, instead of one pass over memory
//! per tap: four AVX-512 vectors, eight AVX2 ones or sixteen NEON ones,
//! written once over pulp's `Simd` (plain loops over arrays of lanes were
//! vectorised for AVX2 as shuffled halves of 16-lane vectors, at a sixth of
//! the speed). Every output's sum has the same float operations in every
//! set, so the results are the same bits.
use super::simd::{dispatch, load, store};
use pulp::{Simd, WithSimd};

/// Lanes of the weight gradient's partial sums (`tap_dots`), whatever the
/// set's vector width, so the sums are the same bits in every set.
pub(crate) const V: usize = 16;

/// Floats a padded plane carries past its end, so the last block may read a
/// whole `V` wide (those outputs are dropped).
pub(crate) const SLACK: usize = V;

/// Outputs, or partial sums, in flight: each is one dependent chain of adds,
/// so fewer would wait on the adder's latency.
const GROUP: usize = 64;

/// Runs `kernel::<S, N>` with N the vectors of `S` in a group.
macro_rules! by_width {
    ($kernel:ident, $simd:expr, $($arg:expr),*) => {
        match S::F32_LANES {
            16 => $kernel::<S, { GROUP / 16 }>($simd, $($arg),*),
            8 => $kernel::<S, { GROUP / 8 }>($simd, $($arg),*),
            4 => $kernel::<S, { GROUP / 4 }>($simd, $($arg),*),
            _ => $kernel::<S, GROUP>($simd, $($arg),*),
        }
    };
}

/// `out[i] = sum_t w[t] * src[i + offs[t]]` for `i < len` (and up to the next
/// multiple of `V`, read from the slack and not meaningful). Taps are added in
/// order, from zero.
pub(crate) fn weighted_taps(src: &[f32], w: &[f32], offs: &[usize], len: usize, out: &mut Vec<f32>) {
    assert_eq!(w.len(), offs.len(), "one weight per tap");
    let blocks = len.div_ceil(V);
    out.clear();
    out.resize(blocks * V, 0.0);
    assert!(offs.iter().all(|&o| o + blocks * V <= src.len()), "taps read past the padded plane");
    dispatch(WeightedTaps { src, w, offs, out })
}

struct WeightedTaps<'a> {
    src: &'a [f32],
    w: &'a [f32],
    offs: &'a [usize],
    out: &'a mut [f32],
}

impl WithSimd for WeightedTaps<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        by_width!(weighted_taps_in, simd, self.src, self.w, self.offs, self.out)
    }
}

/// `weighted_taps` by groups of `N` vectors, then a vector at a time; `out`'s
/// length is a multiple of the vector width, every read checked by the caller.
#[inline(always)]
fn weighted_taps_in<S: Simd, const N: usize>(simd: S, src: &[f32], w: &[f32], offs: &[usize], out: &mut [f32]) {
    let lanes = S::F32_LANES;
    let mut base = 0;
    while base + N * lanes <= out.len() {
        let mut acc = [simd.splat_f32s(0.0); N];
        for (&wt, &off) in w.iter().zip(offs) {
            let wv = simd.splat_f32s(wt);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: off + out.len() <= src.len() (the caller's check).
                *a = simd.add_f32s(*a, simd.mul_f32s(wv, unsafe { load::<S>(src, off + base + j * lanes) }));
            }
        }
        for (j, &a) in acc.iter().enumerate() {
            // SAFETY: base + N lanes <= out.len().
            unsafe { store::<S>(out, base + j * lanes, a) };
        }
        base += N * lanes;
    }
    while base < out.len() {
        let mut a = simd.splat_f32s(0.0);
        for (&wt, &off) in w.iter().zip(offs) {
            // SAFETY: as above, out.len() being a multiple of the lanes.
            a = simd.add_f32s(a, simd.mul_f32s(simd.splat_f32s(wt), unsafe { load::<S>(src, off + base) }));
        }
        // SAFETY: base + lanes <= out.len().
        unsafe { store::<S>(out, base, a) };
        base += lanes;
    }
}

/// Lane by lane, `acc[t][l] += sum_b g[b V + l] * src[b V + l + offs[t]]` over
/// the blocks covering `len`: `g` must be zero from `len` to the block's end (a
/// plane widened by `pad_into` is). Summing the lanes is left to the caller,
/// once for every plane of a channel.
pub(crate) fn tap_dots(g: &[f32], src: &[f32], offs: &[usize], len: usize, acc: &mut [[f32; V]]) {
    assert_eq!(acc.len(), offs.len(), "one accumulator per tap");
    let blocks = len.div_ceil(V);
    assert!(g.len() >= blocks * V && offs.iter().all(|&o| o + blocks * V <= src.len()), "taps read past the padded plane");
    dispatch(TapDots { g: &g[..blocks * V], src, offs, acc })
}

struct TapDots<'a> {
    g: &'a [f32],
    src: &'a [f32],
    offs: &'a [usize],
    acc: &'a mut [[f32; V]],
}

impl WithSimd for TapDots<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        by_width!(tap_dots_in, simd, self.g, self.src, self.offs, self.acc)
    }
}

/// Tap by tap: the tap's sum stays in registers as four chains of `V` lanes
/// (the `N` vectors of a group), added into the tap's lanes at the end, the
/// chains in order. Blocks past the last whole group go to the first chain.
#[inline(always)]
fn tap_dots_in<S: Simd, const N: usize>(simd: S, g: &[f32], src: &[f32], offs: &[usize], acc: &mut [[f32; V]]) {
    let lanes = S::F32_LANES;
    let per_block = V / lanes;
    for (a, &off) in acc.iter_mut().zip(offs) {
        let mut chains = [simd.splat_f32s(0.0); N];
        let mut base = 0;
        while base + GROUP <= g.len() {
            for (j, c) in chains.iter_mut().enumerate() {
                let at = base + j * lanes;
                // SAFETY: at + lanes <= g.len() and off + g.len() <= src.len() (the caller's checks).
                let (gv, sv) = unsafe { (load::<S>(g, at), load::<S>(src, off + at)) };
                *c = simd.add_f32s(*c, simd.mul_f32s(gv, sv));
            }
            base += GROUP;
        }
        while base < g.len() {
            for (q, c) in chains.iter_mut().take(per_block).enumerate() {
                let at = base + q * lanes;
                // SAFETY: g.len() is a multiple of V, so a block lies inside g, and inside src as above.
                let (gv, sv) = unsafe { (load::<S>(g, at), load::<S>(src, off + at)) };
                *c = simd.add_f32s(*c, simd.mul_f32s(gv, sv));
            }
            base += V;
        }
        for chain in chains.chunks_exact(per_block) {
            for (q, &c) in chain.iter().enumerate() {
                // SAFETY: (q + 1) lanes of vectors fit a V-lane array.
                let sum = simd.add_f32s(unsafe { load::<S>(a, q * lanes) }, c);
                unsafe { store::<S>(a, q * lanes, sum) };
            }
        }
    }
}

/// Offsets of a k x k window's taps (dilation `d`) in a plane of row width `wp`, row by row.
pub(crate) fn offsets(k: usize, d: usize, wp: usize) -> Vec<usize> {
    (0..k * k).map(|t| (t / k) * d * wp + (t % k) * d).collect()
}
