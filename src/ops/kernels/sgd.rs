//! One SGD step with momentum and weight decay as two in-place ops per
//! variable (velocity, then weight) instead of about nine tensor ops: on a GPU
//! each of those was a kernel launch, several thousand a search step. The
//! arithmetic is the composition's, operation for operation, so a step is
//! bitwise the same as `g' = g + wd w; v = mu v + g'; w -= lr (g' + mu v)`
//! written with tensors (tests/ops.rs), and the CUDA kernels (kernels/sgd.cu)
//! round the same way.
use super::simd::vectorize;
use crate::ops::storage::{f32_data, f32_data_mut};
use candle_core::{CpuStorage, InplaceOp3, Layout, Result, Tensor};

/// The step's constants; the ops round each to f32, as candle rounds a scalar operand.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Decoupled decay (SGDW): `w -= lr wd w` after the step instead of `wd w` in the gradient.
    pub decoupled: bool,
}

impl SgdStep {
    #[inline(always)]
    fn decayed(&self, g: f32, w: f32) -> f32 {
        if self.weight_decay > 0.0 && !self.decoupled {
            g + w * self.weight_decay as f32
        } else {
            g
        }
    }
}

/// `v = mu v + g'` in place.
pub fn sgd_velocity(v: &Tensor, g: &Tensor, w: &Tensor, step: SgdStep) -> Result<()> {
    same_shapes("sgd_velocity", v, g, w)?;
    v.inplace_op3(g, w, &Velocity(step))
}

/// `w -= lr u` in place (and the decoupled decay), `u` from `g` and the velocity
/// already updated by [`sgd_velocity`] (`v` is not read without momentum).
pub fn sgd_weight(w: &Tensor, g: &Tensor, v: &Tensor, step: SgdStep) -> Result<()> {
    same_shapes("sgd_weight", w, g, v)?;
    w.inplace_op3(g, v, &Weight(step))
}

fn same_shapes(op: &str, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<()> {
    if a.dims() != b.dims() || a.dims() != c.dims() {
        candle_core::bail!("{op}: shapes {:?}, {:?} and {:?} differ", a.dims(), b.dims(), c.dims())
    }
    Ok(())
}

struct Velocity(SgdStep);

impl InplaceOp3 for Velocity {
    fn name(&self) -> &'static str {
        "sgd-velocity"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<()> {
        let (g, w) = (f32_data(s2, l2, self.name())?, f32_data(s3, l3, self.name())?);
        let mu = self.0.momentum as f32;
        let v = f32_data_mut(s1, l1, self.name())?;
        vectorize(
            #[inline(always)]
            || {
                for ((v, &g), &w) in v.iter_mut().zip(g).zip(w) {
                    *v = *v * mu + self.0.decayed(g, w);
                }
            },
        );
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        crate::ops::device::cuda::sgd(crate::ops::device::cuda::SgdKernel::Velocity, (s1, l1), (s2, l2), (s3, l3), &self.0)
    }
}

struct Weight(SgdStep);

impl InplaceOp3 for Weight {
    fn name(&self) -> &'static str {
        "sgd-weight"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<()> {
        let (g, v) = (f32_data(s2, l2, self.name())?, f32_data(s3, l3, self.name())?);
        let s = &self.0;
        let (lr, mu, lr_wd) = (s.lr as f32, s.momentum as f32, (s.lr * s.weight_decay) as f32);
        let w = f32_data_mut(s1, l1, self.name())?;
        vectorize(
            #[inline(always)]
            || {
                for ((w, &g), &v) in w.iter_mut().zip(g).zip(v) {
                    let w0 = *w;
                    let gd = s.decayed(g, w0);
                    let u = if s.momentum <= 0.0 {
                        gd
                    } else if s.nesterov {
                        gd + v * mu
                    } else {
                        v
                    };
                    let mut next = w0 - u * lr;
                    if s.weight_decay > 0.0 && s.decoupled {
                        next -= w0 * lr_wd;
                    }
                    *w = next;
                }
            },
        );
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        crate::ops::device::cuda::sgd(crate::ops::device::cuda::SgdKernel::Weight, (s1, l1), (s2, l2), (s3, l3), &self.0)
    }
}
