//! Gradient accumulation in place: `acc += g` over the worker threads, for
//! blocks that sum their own gradients (candle's `+` allocates a third tensor).
use super::simd::vectorize;
use crate::ops::storage::{f32_data, f32_data_mut};
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// `acc += g` in place (CPU, contiguous, same shape). `acc` must not share
/// its storage with a tensor that is still to be read as it was.
pub fn add_into(acc: &Tensor, g: &Tensor) -> Result<()> {
    if acc.shape() != g.shape() {
        candle_core::bail!("add_into: shapes {:?} and {:?} differ", acc.dims(), g.dims())
    }
    if acc.id() == g.id() {
        candle_core::bail!("add_into: a tensor added into itself")
    }
    acc.inplace_op2(&g.contiguous()?, &AddInto)
}

/// `a + b` elementwise (same lengths) over the worker threads, into memory
/// not zeroed first (`vec!` would be one serial memset on the calling thread).
pub(crate) fn sum_slices(a: &[f32], b: &[f32]) -> Vec<f32> {
    // SAFETY: every element is written.
    let (out, ()) = unsafe {
        crate::ops::storage::filled(a.len(), |out| {
            out.par_chunks_mut(1 << 14).zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14))).for_each(|(o, (a, b))| {
                vectorize(
                    #[inline(always)]
                    || {
                        for (o, (a, b)) in o.iter_mut().zip(a.iter().zip(b)) {
                            *o = a + b;
                        }
                    },
                );
            })
        })
    };
    out
}

/// `a + b` as a new tensor (CPU, contiguous, same shape), over the worker
/// threads: candle's `+` runs on the calling thread alone here (see cli's
/// thread settings).
pub fn sum_of(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() || !a.device().is_cpu() {
        candle_core::bail!("sum_of: shapes {:?} and {:?} differ, or not on the CPU", a.dims(), b.dims())
    }
    let out = crate::ops::storage::with_f32(&[&a.contiguous()?, &b.contiguous()?], "sum_of", |data| Ok(sum_slices(data[0], data[1])))?;
    Tensor::from_vec(out, a.shape(), &candle_core::Device::Cpu)
}

struct AddInto;

impl InplaceOp2 for AddInto {
    fn name(&self) -> &'static str {
        "add-into"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let g = f32_data(s2, l2, self.name())?;
        let acc = f32_data_mut(s1, l1, self.name())?;
        acc.par_chunks_mut(1 << 14).zip(g.par_chunks(1 << 14)).for_each(|(a, g)| {
            vectorize(
                #[inline(always)]
                || {
                    for (a, g) in a.iter_mut().zip(g) {
                        *a += g;
                    }
                },
            )
        });
        Ok(())
    }
}
