//! Helpers for the stride-1 kernels that work on one padded plane, flattened,
//! so each tap is a single long contiguous loop.

/// One plane at a time copied into a wider, taller buffer. Its border is
/// filled only when the geometry changes: the planes of one op share it, and
/// a copy overwrites the interior alone.
#[derive(Default)]
pub(crate) struct Padded {
    buf: Vec<f32>,
    /// (h, w, top, left, hp, wp) and the fill's bits of the border now in `buf`.
    geometry: Option<([usize; 6], u32)>,
}

impl Padded {
    /// Copies plane `x` (h x w), or ReLU(x) when `relu`, into an hp x wp plane
    /// (then `SLACK` more) at (`top`, `left`), the border `fill`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy(&mut self, x: &[f32], h: usize, w: usize, top: usize, left: usize, hp: usize, wp: usize, fill: f32, relu: bool) -> &[f32] {
        let key = ([h, w, top, left, hp, wp], fill.to_bits());
        if self.geometry != Some(key) {
            self.buf.clear();
            self.buf.resize(hp * wp + super::taps::SLACK, fill);
            self.geometry = Some(key);
        }
        let buf = &mut self.buf;
        super::simd::vectorize(
            #[inline(always)]
            || {
                for (y, src) in x[..h * w].chunks_exact(w).enumerate() {
                    let dst = &mut buf[(y + top) * wp + left..][..w];
                    if relu {
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d = v.max(0.0);
                        }
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
            },
        );
        &self.buf
    }

    /// The plane last copied.
    pub(crate) fn data(&self) -> &[f32] {
        &self.buf
    }
}

/// Copies the first `w` columns of each of `rows` rows of width `wp` out of `flat`.
pub(crate) fn unflatten(flat: &[f32], out: &mut [f32], rows: usize, w: usize, wp: usize, top: usize, left: usize) {
    for y in 0..rows {
        let s = (y + top) * wp + left;
        out[y * w..(y + 1) * w].copy_from_slice(&flat[s..s + w]);
    }
}
