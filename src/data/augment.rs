//! Training-time augmentation on normalised CHW images.
use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Zero-pad by this many pixels, then crop back to the original size at a random offset.
    pub crop_pad: usize,
    pub flip: bool,
    /// Side of the square cutout mask (DeVries & Taylor 2017); 0 turns it off.
    pub cutout: usize,
}

impl Augment {
    pub const NONE: Augment = Augment { crop_pad: 0, flip: false, cutout: 0 };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Augments one image in place; `scratch` holds a copy of the input.
    pub fn apply<R: Rng>(&self, img: &mut [f32], scratch: &mut Vec<f32>, c: usize, h: usize, w: usize, rng: &mut R) {
        if self.crop_pad > 0 {
            scratch.clear();
            scratch.extend_from_slice(img);
            let p = self.crop_pad as isize;
            let dy = rng.gen_range(-p..=p);
            let dx = rng.gen_range(-p..=p);
            for ch in 0..c {
                for y in 0..h {
                    let sy = y as isize + dy;
                    let row = &mut img[(ch * h + y) * w..(ch * h + y + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        row.fill(0.0);
                        continue;
                    }
                    let src = &scratch[(ch * h + sy as usize) * w..(ch * h + sy as usize + 1) * w];
                    for (x, v) in row.iter_mut().enumerate() {
                        let sx = x as isize + dx;
                        *v = if sx < 0 || sx >= w as isize { 0.0 } else { src[sx as usize] };
                    }
                }
            }
        }
        if self.flip && rng.gen_bool(0.5) {
            for row in img.chunks_exact_mut(w) {
                row.reverse();
            }
        }
        if self.cutout > 0 {
            // Centre anywhere in the image; the mask may hang over the border.
            let cy = rng.gen_range(0..h) as isize;
            let cx = rng.gen_range(0..w) as isize;
            let half = (self.cutout / 2) as isize;
            let (y0, y1) = ((cy - half).max(0) as usize, ((cy - half + self.cutout as isize).min(h as isize)) as usize);
            let (x0, x1) = ((cx - half).max(0) as usize, ((cx - half + self.cutout as isize).min(w as isize)) as usize);
            for ch in 0..c {
                for y in y0..y1 {
                    img[(ch * h + y) * w + x0..(ch * h + y) * w + x1].fill(0.0);
                }
            }
        }
    }
}
