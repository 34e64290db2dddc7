//! Helpers for the stride-1 kernels that work on one padded plane, flattened,
//! so each tap is a single long contiguous loop.

/// Copies plane `x` (h x w) into `buf` (hp x wp, then `SLACK` more) at (`top`, `left`), the border set to `fill`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pad_into(x: &[f32], h: usize, w: usize, top: usize, left: usize, hp: usize, wp: usize, fill: f32, buf: &mut Vec<f32>) {
    buf.clear();
    buf.resize(hp * wp + super::taps::SLACK, fill);
    for y in 0..h {
        buf[(y + top) * wp + left..(y + top) * wp + left + w].copy_from_slice(&x[y * w..(y + 1) * w]);
    }
}

/// Copies the first `w` columns of each of `rows` rows of width `wp` out of `flat`.
pub(crate) fn unflatten(flat: &[f32], out: &mut [f32], rows: usize, w: usize, wp: usize, top: usize, left: usize) {
    for y in 0..rows {
        let s = (y + top) * wp + left;
        out[y * w..(y + 1) * w].copy_from_slice(&flat[s..s + w]);
    }
}
