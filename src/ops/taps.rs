//! The inner loops of the stride-1 window ops on a padded, flattened plane
//! (see `plane.rs`): each output is a sum over the window's taps, a tap being
//! the plane read at a fixed offset. Blocks of `V` outputs are accumulated
//! over every tap in registers and stored once, instead of one pass over
//! memory per tap; the 3x3 and 5x5 windows get loops unrolled at compile time.

/// Outputs per block: one AVX-512 register, two AVX2 ones.
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
    match w.len() {
        9 => weighted_taps_n::<9>(src, w, offs, out),
        25 => weighted_taps_n::<25>(src, w, offs, out),
        _ => {
            for (b, o) in out.chunks_exact_mut(V).enumerate() {
                for (&wt, &off) in w.iter().zip(offs) {
                    let s = &src[off + b * V..][..V];
                    o.iter_mut().zip(s).for_each(|(a, v)| *a += wt * v);
                }
            }
        }
    }
}

/// Blocks computed side by side: each output's sum is one dependent chain of
/// adds, so one block at a time would wait on the adder's latency.
const BLOCKS: usize = 4;

#[inline(always)]
fn add_scaled(acc: &mut [f32; V], w: f32, s: &[f32; V]) {
    for l in 0..V {
        acc[l] += w * s[l];
    }
}

fn weighted_taps_n<const T: usize>(src: &[f32], w: &[f32], offs: &[usize], out: &mut [f32]) {
    let (w, offs): (&[f32; T], &[usize; T]) = (w.try_into().expect("T weights"), offs.try_into().expect("T taps"));
    let done = out.len() / (BLOCKS * V) * BLOCKS * V;
    let mut groups = out.chunks_exact_mut(BLOCKS * V);
    for (i, o) in (&mut groups).enumerate() {
        let base = i * BLOCKS * V;
        let mut acc = [0f32; BLOCKS * V];
        for t in 0..T {
            let s: &[f32; BLOCKS * V] = src[offs[t] + base..][..BLOCKS * V].try_into().expect("group wide");
            for l in 0..BLOCKS * V {
                acc[l] += w[t] * s[l];
            }
        }
        o.copy_from_slice(&acc);
    }
    for (b, o) in groups.into_remainder().chunks_exact_mut(V).enumerate() {
        let mut acc = [0f32; V];
        for t in 0..T {
            add_scaled(&mut acc, w[t], src[offs[t] + done + b * V..][..V].try_into().expect("V wide"));
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
    match offs.len() {
        9 => tap_dots_n::<9>(g, src, offs, blocks, acc),
        25 => tap_dots_n::<25>(g, src, offs, blocks, acc),
        _ => {
            for (a, &off) in acc.iter_mut().zip(offs) {
                for b in 0..blocks {
                    let (gv, s) = (&g[b * V..][..V], &src[off + b * V..][..V]);
                    (0..V).for_each(|l| a[l] += gv[l] * s[l]);
                }
            }
        }
    }
}

fn tap_dots_n<const T: usize>(g: &[f32], src: &[f32], offs: &[usize], blocks: usize, acc: &mut [[f32; V]]) {
    let offs: &[usize; T] = offs.try_into().expect("T taps");
    let mut regs: [[f32; V]; T] = acc.try_into().expect("T accumulators");
    for b in 0..blocks {
        let gv: &[f32; V] = g[b * V..][..V].try_into().expect("V wide");
        for t in 0..T {
            let s: &[f32; V] = src[offs[t] + b * V..][..V].try_into().expect("V wide");
            for l in 0..V {
                regs[t][l] += gv[l] * s[l];
            }
        }
    }
    acc.copy_from_slice(&regs);
}

/// Offsets of a k x k window's taps (dilation `d`) in a plane of row width `wp`, row by row.
pub(crate) fn offsets(k: usize, d: usize, wp: usize) -> Vec<usize> {
    (0..k * k).map(|t| (t / k) * d * wp + (t % k) * d).collect()
}
