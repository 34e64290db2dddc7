//! The inner loops of the stride-1 window ops on a padded, flattened plane
//! (see `plane.rs`): each output is a sum over the window's taps, a tap being
//! the plane read at a fixed offset. Blocks of `V` outputs are accumulated
//! over every tap in registers and stored once, instead of one pass over
//! memory per tap; the 3x3 and 5x5 windows get loops unrolled at compile time.
//! Plain loops over arrays of `V` lanes: compiled for each kernel set
//! (`simd::vectorize`), they become one AVX-512 register, two AVX2 or four
//! NEON ones, and the sums are the same bits in every set.
use super::simd::vectorize;

/// Outputs per block: one AVX-512 register, two AVX2 ones, four NEON ones.
pub(crate) const V: usize = 16;

/// Floats a padded plane carries past its end, so the last block may read a
/// whole `V` wide (those outputs are dropped).
pub(crate) const SLACK: usize = V;

/// `out[i] = sum_t w[t] * src[i + offs[t]]` for `i < len` (and up to the next
/// multiple of `V`, read from the slack and not meaningful). Taps are added in
/// order, from zero.
pub(crate) fn weighted_taps(src: &[f32], w: &[f32], offs: &[usize], len: usize, out: &mut Vec<f32>) {
    assert_eq!(w.len(), offs.len(), "one weight per tap");
    let blocks = len.div_ceil(V);
    out.clear();
    out.resize(blocks * V, 0.0);
    assert!(offs.iter().all(|&o| o + blocks * V <= src.len()), "taps read past the padded plane");
    vectorize(#[inline(always)] || weighted_taps_in(src, w, offs, out))
}

#[inline(always)]
fn weighted_taps_in(src: &[f32], w: &[f32], offs: &[usize], out: &mut [f32]) {
    if let (Ok(w), Ok(offs)) = (<&[f32; 9]>::try_from(w), <&[usize; 9]>::try_from(offs)) {
        return weighted_taps_n(src, w, offs, out);
    }
    if let (Ok(w), Ok(offs)) = (<&[f32; 25]>::try_from(w), <&[usize; 25]>::try_from(offs)) {
        return weighted_taps_n(src, w, offs, out);
    }
    for (b, o) in out.chunks_exact_mut(V).enumerate() {
        for (&wt, &off) in w.iter().zip(offs) {
            let s = &src[off + b * V..][..V];
            o.iter_mut().zip(s).for_each(|(a, v)| *a += wt * v);
        }
    }
}

/// Blocks computed side by side: each output's sum is one dependent chain of
/// adds, so one block at a time would wait on the adder's latency.
const BLOCKS: usize = 4;

/// The `N` floats of `s` from `start`, as an array: loops over it unroll and
/// vectorise. Callers have checked the bounds.
#[inline(always)]
fn view<const N: usize>(s: &[f32], start: usize) -> &[f32; N] {
    s[start..start + N].first_chunk().expect("a slice of N has a first chunk of N")
}

#[inline(always)]
fn weighted_taps_n<const T: usize>(src: &[f32], w: &[f32; T], offs: &[usize; T], out: &mut [f32]) {
    let done = out.len() / (BLOCKS * V) * BLOCKS * V;
    let mut groups = out.chunks_exact_mut(BLOCKS * V);
    for (i, o) in (&mut groups).enumerate() {
        let base = i * BLOCKS * V;
        let mut acc = [0f32; BLOCKS * V];
        for t in 0..T {
            let s = view::<{ BLOCKS * V }>(src, offs[t] + base);
            for l in 0..BLOCKS * V {
                acc[l] += w[t] * s[l];
            }
        }
        o.copy_from_slice(&acc);
    }
    for (b, o) in groups.into_remainder().chunks_exact_mut(V).enumerate() {
        let mut acc = [0f32; V];
        for t in 0..T {
            let s = view::<V>(src, offs[t] + done + b * V);
            for l in 0..V {
                acc[l] += w[t] * s[l];
            }
        }
        o.copy_from_slice(&acc);
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
    vectorize(#[inline(always)] || tap_dots_in(g, src, offs, blocks, acc))
}

#[inline(always)]
fn tap_dots_in(g: &[f32], src: &[f32], offs: &[usize], blocks: usize, acc: &mut [[f32; V]]) {
    if let (Ok(offs), Ok(acc)) = (<&[usize; 9]>::try_from(offs), <&mut [[f32; V]; 9]>::try_from(&mut *acc)) {
        return tap_dots_n(g, src, offs, blocks, acc);
    }
    if let (Ok(offs), Ok(acc)) = (<&[usize; 25]>::try_from(offs), <&mut [[f32; V]; 25]>::try_from(&mut *acc)) {
        return tap_dots_n(g, src, offs, blocks, acc);
    }
    for (a, &off) in acc.iter_mut().zip(offs) {
        for b in 0..blocks {
            let (gv, s) = (&g[b * V..][..V], &src[off + b * V..][..V]);
            (0..V).for_each(|l| a[l] += gv[l] * s[l]);
        }
    }
}

/// Tap by tap: the tap's sum stays in registers (`BLOCKS` chains of lanes, so
/// the adds do not wait on each other), where a loop over blocks with every
/// tap inside kept the 25 accumulators of a 5x5 window on the stack.
#[inline(always)]
fn tap_dots_n<const T: usize>(g: &[f32], src: &[f32], offs: &[usize; T], blocks: usize, acc: &mut [[f32; V]; T]) {
    let g = &g[..blocks * V];
    for (a, &off) in acc.iter_mut().zip(offs) {
        let s = &src[off..off + blocks * V];
        let mut chains = [[0f32; V]; BLOCKS];
        let (mut gs, mut ss) = (g.chunks_exact(BLOCKS * V), s.chunks_exact(BLOCKS * V));
        for (gb, sb) in (&mut gs).zip(&mut ss) {
            let (gb, sb) = (view::<{ BLOCKS * V }>(gb, 0), view::<{ BLOCKS * V }>(sb, 0));
            for (j, chain) in chains.iter_mut().enumerate() {
                for l in 0..V {
                    chain[l] += gb[j * V + l] * sb[j * V + l];
                }
            }
        }
        for (gb, sb) in gs.remainder().chunks_exact(V).zip(ss.remainder().chunks_exact(V)) {
            let (gb, sb) = (view::<V>(gb, 0), view::<V>(sb, 0));
            for l in 0..V {
                chains[0][l] += gb[l] * sb[l];
            }
        }
        for chain in &chains {
            (0..V).for_each(|l| a[l] += chain[l]);
        }
    }
}

/// Offsets of a k x k window's taps (dilation `d`) in a plane of row width `wp`, row by row.
pub(crate) fn offsets(k: usize, d: usize, wp: usize) -> Vec<usize> {
    (0..k * k).map(|t| (t / k) * d * wp + (t % k) * d).collect()
}
