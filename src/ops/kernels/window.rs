/// The geometry of a sliding window over one H x W plane: kernel, stride,
/// dilation, the padding before each axis, and the output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub k: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window {
    /// TensorFlow's 'SAME' padding, as the ENAS code uses: output ceil(in / stride),
    /// the odd pixel of padding after the image rather than before.
    pub fn same(in_h: usize, in_w: usize, k: usize, stride: usize, dilation: usize) -> Window {
        let span = (k - 1) * dilation + 1;
        let axis = |n: usize| {
            let out = n.div_ceil(stride);
            let total = ((out - 1) * stride + span).saturating_sub(n);
            (out, total / 2)
        };
        let (out_h, pad_top) = axis(in_h);
        let (out_w, pad_left) = axis(in_w);
        Window { k, stride, dilation, pad_top, pad_left, in_h, in_w, out_h, out_w }
    }

    /// No padding: only windows that fit inside the image.
    pub fn valid(in_h: usize, in_w: usize, k: usize, stride: usize) -> Window {
        let out = |n: usize| if n >= k { (n - k) / stride + 1 } else { 0 };
        Window { k, stride, dilation: 1, pad_top: 0, pad_left: 0, in_h, in_w, out_h: out(in_h), out_w: out(in_w) }
    }

    /// Output positions `o` for which tap `t` reads inside the input (`o*s + t*d - pad` in `0..n_in`).
    #[inline]
    pub fn taps(&self, t: usize, pad: usize, n_in: usize, n_out: usize) -> (usize, usize) {
        let off = t * self.dilation;
        let s = self.stride;
        let start = if off >= pad { 0 } else { (pad - off).div_ceil(s) };
        if n_in + pad <= off {
            return (0, 0);
        }
        let end = ((n_in - 1 + pad - off) / s + 1).min(n_out);
        (start.min(end), end)
    }

    pub fn rows(&self, ky: usize) -> (usize, usize) {
        self.taps(ky, self.pad_top, self.in_h, self.out_h)
    }
    pub fn cols(&self, kx: usize) -> (usize, usize) {
        self.taps(kx, self.pad_left, self.in_w, self.out_w)
    }
    /// Input row read by output row `oy` at tap `ky` (only inside `rows(ky)`).
    #[inline]
    pub fn in_row(&self, oy: usize, ky: usize) -> usize {
        oy * self.stride + ky * self.dilation - self.pad_top
    }
    #[inline]
    pub fn in_col(&self, ox: usize, kx: usize) -> usize {
        ox * self.stride + kx * self.dilation - self.pad_left
    }
}
