//! Every second pixel on both axes, from an offset: the two grids of the
//! factorized reduction. As one op (and one scatter in the backward) rather
//! than candle's reshape and two narrows, whose backward pads each narrow
//! with zeros and concatenates, over the whole input, twice.
use super::f32_data;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Pixels (2y + offset, 2x + offset) of `x` (N, C, H, W), offset 0 or 1;
/// output (N, C, ceil(H/2), ceil(W/2)), zero where the grid leaves an odd-sized image.
pub fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    if offset > 1 {
        candle_core::bail!("subsample2: offset must be 0 or 1, got {offset}")
    }
    if !x.device().is_cpu() {
        return super::reference::subsample2(x, offset);
    }
    x.contiguous()?.apply_op1(Subsample { offset })
}

pub(crate) struct Subsample {
    pub offset: usize,
}

/// Output size of one axis.
fn half(n: usize) -> usize {
    n.div_ceil(2)
}

impl CustomOp1 for Subsample {
    fn name(&self) -> &'static str {
        "subsample2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l, self.name())?;
        let (n, c, h, w) = l.shape().dims4()?;
        let (oh, ow, o) = (half(h), half(w), self.offset);
        let mut out = super::zeros(n * c * oh * ow);
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(op, xp)| {
            for y in 0..oh {
                let iy = 2 * y + o;
                if iy >= h {
                    continue;
                }
                // Pixels o, o + 2, ... of the row; past its end the output stays zero.
                let row = &xp[iy * w + o.min(w)..(iy + 1) * w];
                op[y * ow..(y + 1) * ow].iter_mut().zip(row.iter().step_by(2)).for_each(|(v, &x)| *v = x);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Scatter { offset: self.offset, h, w })?))
    }
}

/// The backward: the gradient of each output back at its pixel, zero elsewhere.
struct Scatter {
    offset: usize,
    h: usize,
    w: usize,
}

impl CustomOp1 for Scatter {
    fn name(&self) -> &'static str {
        "subsample2-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_data(s, l, self.name())?;
        let (n, c, oh, ow) = l.shape().dims4()?;
        let (h, w, o) = (self.h, self.w, self.offset);
        let mut gx = super::zeros(n * c * h * w);
        gx.par_chunks_mut(h * w).zip(g.par_chunks(oh * ow)).for_each(|(gp, g)| {
            for y in 0..oh {
                let iy = 2 * y + o;
                if iy >= h {
                    continue;
                }
                let row = &mut gp[iy * w + o.min(w)..(iy + 1) * w];
                row.iter_mut().step_by(2).zip(&g[y * ow..(y + 1) * ow]).for_each(|(v, &d)| *v = d);
            }
        });
        Ok((CpuStorage::F32(gx), Shape::from((n, c, h, w))))
    }
}
