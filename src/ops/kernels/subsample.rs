//! Every second pixel on both axes, from an offset: the two grids of the
//! factorized reduction. As one op (and one scatter in the backward) rather
//! than candle's reshape and two narrows, whose backward pads each narrow
//! with zeros and concatenates, over the whole input, twice.
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Pixels (2y + offset, 2x + offset) of `x` (N, C, H, W), offset 0 or 1;
/// output (N, C, ceil(H/2), ceil(W/2)), zero where the grid leaves an odd-sized image.
pub fn subsample2(x: &Tensor, offset: usize) -> Result<Tensor> {
    if offset > 1 {
        candle_core::bail!("subsample2: offset must be 0 or 1, got {offset}")
    }
    if !x.device().is_cpu() {
        return crate::ops::device::reference::subsample2(x, offset);
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
        let mut out = crate::ops::storage::zeros(n * c * oh * ow);
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
        let mut gx = crate::ops::storage::zeros(n * c * self.h * self.w);
        scatter_into(&mut gx, g, (oh, ow), (self.h, self.w), self.offset);
        Ok((CpuStorage::F32(gx), Shape::from((n, c, self.h, self.w))))
    }
}

/// Writes each plane of `g` (planes of oh x ow) at pixels (2y + o, 2x + o) of the planes of `gx` (h x w).
fn scatter_into(gx: &mut [f32], g: &[f32], (oh, ow): (usize, usize), (h, w): (usize, usize), o: usize) {
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
}

/// The input gradient of both grids at once, `g0` of offset 0 and `g1` of
/// offset 1, for an input of `h` x `w`: the grids are disjoint, so this is
/// their scatters' sum without the sum.
pub(crate) fn scatter_both(g0: &Tensor, g1: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    g0.contiguous()?.apply_op2_no_bwd(&g1.contiguous()?, &ScatterBoth { h, w })
}

struct ScatterBoth {
    h: usize,
    w: usize,
}

impl CustomOp2 for ScatterBoth {
    fn name(&self) -> &'static str {
        "subsample2-grad-both"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g0, g1) = (f32_data(s1, l1, self.name())?, f32_data(s2, l2, self.name())?);
        let (n, c, oh, ow) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() {
            candle_core::bail!("{}: grids {:?} and {:?} differ", self.name(), l1.dims(), l2.dims())
        }
        let mut gx = crate::ops::storage::zeros(n * c * self.h * self.w);
        scatter_into(&mut gx, g0, (oh, ow), (self.h, self.w), 0);
        scatter_into(&mut gx, g1, (oh, ow), (self.h, self.w), 1);
        Ok((CpuStorage::F32(gx), Shape::from((n, c, self.h, self.w))))
    }
}
