//! Where tiles lie, and moving them between images and the transform domain.
//! Images are copied channels-last first, so a tile's patch is n x n loads of
//! contiguous channels and the transforms run across channels, L at a time.
use super::transform::{sandwich, Tile, Transform};
use super::{L, M, N, TILES_PER_TASK};

/// Images (C, H, W), tiles of M x M outputs, 'same' padding p, and the padded
/// channels-last input (hp, wp) covering every tile's n x n patch.
#[derive(Clone, Copy)]
pub(super) struct Tiles {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub p: usize,
    pub across: usize,
    pub per_image: usize,
    pub hp: usize,
    pub wp: usize,
}

impl Tiles {
    pub fn new(c: usize, h: usize, w: usize, r: usize) -> Tiles {
        let (down, across) = (h.div_ceil(M), w.div_ceil(M));
        Tiles { c, h, w, p: r / 2, across, per_image: down * across, hp: (down - 1) * M + N, wp: (across - 1) * M + N }
    }

    /// Images per task.
    pub fn task_images(&self, n: usize) -> usize {
        (TILES_PER_TASK / self.per_image).clamp(1, super::super::conv::min_images(n))
    }

    /// The output gradient's channels-last size: whole tiles.
    pub fn whole_tiles(&self) -> (usize, usize) {
        (self.per_image / self.across * M, self.across * M)
    }

    /// (image within the task, top row, left column) of tile `t`'s outputs; also
    /// the top left of its input patch in padded coordinates.
    fn origin(&self, t: usize) -> (usize, usize, usize) {
        let (b, i) = (t / self.per_image, t % self.per_image);
        (b, (i / self.across) * M, (i % self.across) * M)
    }
}

/// Planes (images, C, H, W) into channels-last (images, hp, wp, C), offset by
/// `p` and zero around, ReLU'd when asked.
#[inline(always)]
pub(super) fn to_channels_last(x: &[f32], (c, h, w): (usize, usize, usize), p: usize, (hp, wp): (usize, usize), relu: bool, out: &mut Vec<f32>) {
    let images = x.len() / (c * h * w);
    out.clear();
    out.resize(images * hp * wp * c, 0.0);
    // Row by row, so the channels-last row being written (w C values) stays in L1.
    for (b, img) in x.chunks_exact(c * h * w).enumerate() {
        for y in 0..h {
            let dst = &mut out[((b * hp + y + p) * wp + p) * c..][..w * c];
            for ch in 0..c {
                let row = &img[(ch * h + y) * w..][..w];
                for (d, &v) in dst[ch..].iter_mut().step_by(c).zip(row) {
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// The inverse of `to_channels_last` (padding dropped) into planes `out`.
#[inline(always)]
pub(super) fn from_channels_last(xt: &[f32], (c, h, w): (usize, usize, usize), p: usize, (hp, wp): (usize, usize), out: &mut [f32]) {
    for (b, img) in out.chunks_exact_mut(c * h * w).enumerate() {
        for y in 0..h {
            let src = &xt[((b * hp + y + p) * wp + p) * c..][..w * c];
            for ch in 0..c {
                let row = &mut img[(ch * h + y) * w..][..w];
                row.iter_mut().zip(src[ch..].iter().step_by(c)).for_each(|(d, &v)| *d = v);
            }
        }
    }
}

/// Channels `at..at + width` of a channels-last buffer, zero past `width`.
#[inline(always)]
fn load(src: &[f32], at: usize, width: usize) -> [f32; L] {
    if width == L {
        return src[at..at + L].try_into().expect("L channels");
    }
    let mut v = [0f32; L];
    v[..width].copy_from_slice(&src[at..at + width]);
    v
}

#[inline(always)]
fn store(dst: &mut [f32], at: usize, width: usize, v: &[f32; L]) {
    if width == L {
        dst[at..at + L].copy_from_slice(v);
    } else {
        dst[at..at + width].copy_from_slice(&v[..width]);
    }
}

/// V (n n, T, C) of every tile's patch in `xt` (channels last, padded).
#[inline(always)]
pub(super) fn input(tr: &Transform, geo: Tiles, xt: &[f32], tiles: usize, v: &mut [f32]) {
    let c_all = geo.c;
    let mut d: Tile<N, N> = [[[0.0; L]; N]; N];
    for t in 0..tiles {
        let (b, oy, ox) = geo.origin(t);
        for c0 in (0..c_all).step_by(L) {
            let width = L.min(c_all - c0);
            for (i, row) in d.iter_mut().enumerate() {
                let at = ((b * geo.hp + oy + i) * geo.wp + ox) * c_all + c0;
                row.iter_mut().enumerate().for_each(|(j, e)| *e = load(xt, at + j * c_all, width));
            }
            let out: Tile<N, N> = sandwich(&tr.bt, &d, &tr.bt);
            for (xi, lanes) in out.iter().flatten().enumerate() {
                store(v, (xi * tiles + t) * c_all + c0, width, lanes);
            }
        }
    }
}

/// The output tiles A^T M A of `mm` (n n, T, K), written into `y` (images, K, H, W).
#[inline(always)]
pub(super) fn output(tr: &Transform, geo: Tiles, k_all: usize, mm: &[f32], tiles: usize, y: &mut [f32]) {
    let hw = geo.h * geo.w;
    let mut gathered: Tile<N, N> = [[[0.0; L]; N]; N];
    for t in 0..tiles {
        let (b, oy, ox) = geo.origin(t);
        for k0 in (0..k_all).step_by(L) {
            let width = L.min(k_all - k0);
            for (xi, e) in gathered.iter_mut().flatten().enumerate() {
                *e = load(mm, (xi * tiles + t) * k_all + k0, width);
            }
            let out: Tile<M, M> = sandwich(&tr.at, &gathered, &tr.at);
            for lane in 0..width {
                let plane = &mut y[(b * k_all + k0 + lane) * hw..][..hw];
                for (i, row) in out.iter().enumerate().take(geo.h - oy) {
                    for (j, v) in row.iter().enumerate().take(geo.w - ox) {
                        plane[(oy + i) * geo.w + ox + j] = v[lane];
                    }
                }
            }
        }
    }
}

/// dM = A dY A^T (n n, T, K) from the output gradient `gyt` (channels last,
/// zero past the image to whole tiles).
#[inline(always)]
pub(super) fn grad_output(tr: &Transform, geo: Tiles, k_all: usize, gyt: &[f32], tiles: usize, dm: &mut [f32]) {
    let (h4, w4) = geo.whole_tiles();
    let mut tile: Tile<M, M> = [[[0.0; L]; M]; M];
    for t in 0..tiles {
        let (b, oy, ox) = geo.origin(t);
        for k0 in (0..k_all).step_by(L) {
            let width = L.min(k_all - k0);
            for (i, row) in tile.iter_mut().enumerate() {
                let at = ((b * h4 + oy + i) * w4 + ox) * k_all + k0;
                row.iter_mut().enumerate().for_each(|(j, e)| *e = load(gyt, at + j * k_all, width));
            }
            let out: Tile<N, N> = sandwich(&tr.a, &tile, &tr.a);
            for (xi, lanes) in out.iter().flatten().enumerate() {
                store(dm, (xi * tiles + t) * k_all + k0, width, lanes);
            }
        }
    }
}

/// dd = B dV B^T for every tile of `dv` (n n, T, C), added into the padded
/// channels-last gradient `gxt` where the patches overlap.
#[inline(always)]
pub(super) fn grad_input(tr: &Transform, geo: Tiles, dv: &[f32], tiles: usize, gxt: &mut [f32]) {
    let c_all = geo.c;
    let mut gathered: Tile<N, N> = [[[0.0; L]; N]; N];
    for t in 0..tiles {
        let (b, oy, ox) = geo.origin(t);
        for c0 in (0..c_all).step_by(L) {
            let width = L.min(c_all - c0);
            for (xi, e) in gathered.iter_mut().flatten().enumerate() {
                *e = load(dv, (xi * tiles + t) * c_all + c0, width);
            }
            let out: Tile<N, N> = sandwich(&tr.b, &gathered, &tr.b);
            for (i, row) in out.iter().enumerate() {
                let at = ((b * geo.hp + oy + i) * geo.wp + ox) * c_all + c0;
                for (j, v) in row.iter().enumerate() {
                    gxt[at + j * c_all..][..width].iter_mut().zip(v).for_each(|(d, v)| *d += v);
                }
            }
        }
    }
}
