//! Training-mode batch normalisation as one op: statistics, normalisation and
//! the backward pass in our own loops. Composed from candle ops, the backward
//! of the per-channel broadcasts becomes strided single-threaded reductions
//! that cost more than the whole forward.
use super::simd::vectorize;
use crate::ops::storage::f32_data;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Batch statistics of one call: per-channel mean and biased variance, (C,)
/// each, on the device of the op's input (on a GPU, reading them back would
/// stall the stream at every batch norm).
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub mean: Tensor,
    pub var: Tensor,
}

/// The statistics as our CPU loops compute and use them.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// The batch statistics an op's batch norm left in `handle`. The slot holds
/// plain data, so a lock poisoned by a panic elsewhere is still usable.
pub(crate) fn stats_of(handle: &Mutex<HostStats>) -> Result<BatchStats> {
    handle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).to_tensors()
}

impl HostStats {
    pub(crate) fn to_tensors(&self) -> Result<BatchStats> {
        let t = |v: &[f32]| Tensor::from_slice(v, v.len(), &candle_core::Device::Cpu);
        Ok(BatchStats { mean: t(&self.mean)?, var: t(&self.var)? })
    }
}

/// Normalises `x` (N, C, H, W) with its own batch statistics, then scales by
/// `gamma` and shifts by `beta` (both (C,)). Returns the output and the statistics.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    batch_norm(x, gamma, beta, eps, false)
}

/// `batch_norm_train` followed by ReLU, in the same pass (and its mask in the backward).
pub fn batch_norm_relu_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BatchStats)> {
    batch_norm(x, gamma, beta, eps, true)
}

fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> Result<(Tensor, BatchStats)> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return super::batch_norm_cuda::batch_norm(x, gamma, beta, eps, relu);
    }
    if !x.device().is_cpu() {
        let (y, stats) = crate::ops::device::reference::batch_norm_train(x, gamma, beta, eps)?;
        return Ok((if relu { y.relu()? } else { y }, stats));
    }
    let (op, stats) = BatchNormTrain::new(eps, relu);
    let y = crate::ops::profile::timed("batchnorm fwd", || x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op))?;
    let s = stats_of(&stats)?;
    Ok((y, s))
}

pub(crate) struct BatchNormTrain {
    eps: f32,
    /// ReLU of the output.
    relu: bool,
    stats: Arc<Mutex<HostStats>>,
}

impl BatchNormTrain {
    /// The op, and where it leaves the batch statistics of its forward.
    pub(crate) fn new(eps: f64, relu: bool) -> (BatchNormTrain, Arc<Mutex<HostStats>>) {
        let stats = Arc::new(Mutex::new(HostStats::default()));
        (BatchNormTrain { eps: eps as f32, relu, stats: stats.clone() }, stats)
    }
}

/// Per-channel mean and biased variance, two passes for accuracy.
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (n * hw) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            // Loops, not iterator adapters: their closures are not inlined
            // into the kernel set's function (`simd::vectorize`).
            vectorize(
                #[inline(always)]
                || {
                    let plane = |b: usize| &x[(b * c + ch) * hw..(b * c + ch + 1) * hw];
                    let mut sum = 0f64;
                    for b in 0..n {
                        sum += super::lanes::sum(plane(b)) as f64;
                    }
                    let mean = sum / m;
                    let mf = mean as f32;
                    let mut sq = 0f64;
                    for b in 0..n {
                        sq += super::lanes::sum_sq_dev(plane(b), mf) as f64;
                    }
                    (mean as f32, (sq / m) as f32)
                },
            )
        })
        .unzip()
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let gamma = f32_data(s2, l2, self.name())?;
        let beta = f32_data(s3, l3, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let (mean, var) = channel_stats(x, n, c, hw);
        let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] / (var[ch] + self.eps).sqrt()).collect();
        let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
        // SAFETY: every element is written below, one plane per task.
        let (y, ()) = unsafe {
            crate::ops::storage::filled(x.len(), |y| {
                y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(p, (yp, xp))| {
                    let (a, b) = (scale[p % c], shift[p % c]);
                    vectorize(
                        #[inline(always)]
                        || {
                            for (o, &v) in yp.iter_mut().zip(xp) {
                                *o = v * a + b;
                            }
                            if self.relu {
                                for o in yp.iter_mut() {
                                    *o = o.max(0.0);
                                }
                            }
                        },
                    )
                });
            })
        };
        *self.stats.lock().expect("stats lock") = HostStats { mean, var };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        crate::ops::profile::timed("batchnorm bwd", || {
            let stats = self.stats.lock().expect("stats lock").clone();
            let invstd: Vec<f32> = stats.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
            // With the fused ReLU, the gradient is masked where the output is not positive, plane by plane inside both ops.
            let (grad, out) = (grad.contiguous()?, res.contiguous()?);
            let relu = self.relu;
            let sums = x.apply_op3_no_bwd(&grad, &out, &GradSums { mean: stats.mean.clone(), invstd: invstd.clone(), relu })?;
            let sums_v = sums.to_vec2::<f32>()?;
            let gx = x.apply_op3_no_bwd(
                &grad,
                &out,
                &GradInput { mean: stats.mean, invstd, gamma: gamma.to_vec1::<f32>()?, dbeta: sums_v[0].clone(), dgamma: sums_v[1].clone(), relu },
            )?;
            Ok((Some(gx), Some(sums.get(1)?), Some(sums.get(0)?)))
        })
    }
}

/// (x, dy, y) -> (2, C): per channel sum(dy) and sum(dy * x_hat), dy masked by y > 0 with the fused ReLU.
struct GradSums {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    /// Mask dy where y <= 0 (the fused ReLU's backward).
    relu: bool,
}

/// `g` where `y > 0`, else 0, into `out`: the backward of the fused ReLU (y is its output).
#[inline(always)]
fn masked_into(g: &[f32], y: &[f32], out: &mut Vec<f32>) {
    out.resize(g.len(), 0.0);
    for ((o, &d), &v) in out.iter_mut().zip(g).zip(y) {
        *o = if v > 0.0 { d } else { 0.0 };
    }
}

impl CustomOp3 for GradSums {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
    }

    /// (x, dy, y) -> (2, C).
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let g = f32_data(s2, l2, self.name())?;
        let y = f32_data(s3, l3, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..c)
            .into_par_iter()
            .map_init(Vec::new, |masked, ch| {
                let (m, is) = (self.mean[ch], self.invstd[ch]);
                let (mut sb, mut sg) = (0f64, 0f64);
                vectorize(
                    #[inline(always)]
                    || {
                        for b in 0..n {
                            let r = (b * c + ch) * hw..(b * c + ch + 1) * hw;
                            let xp = &x[r.clone()];
                            let gp = if self.relu {
                                masked_into(&g[r.clone()], &y[r], masked);
                                &masked[..]
                            } else {
                                &g[r]
                            };
                            let s = super::lanes::sum(gp);
                            sb += s as f64;
                            // sum(dy (x - mean)) = sum(dy x) - mean sum(dy)
                            sg += (super::lanes::dot(gp, xp) - m * s) as f64 * is as f64;
                        }
                    },
                );
                (sb as f32, sg as f32)
            })
            .unzip();
        let mut out = dbeta;
        out.extend(dgamma);
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// (x, dy, y) -> dx = gamma invstd (dy - dbeta / M - x_hat dgamma / M), dy masked as in `GradSums`.
struct GradInput {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
    dbeta: Vec<f32>,
    dgamma: Vec<f32>,
    /// Mask dy where y <= 0 (the fused ReLU's backward).
    relu: bool,
}

impl CustomOp3 for GradInput {
    fn name(&self) -> &'static str {
        "batch-norm-grad-input"
    }

    /// (x, dy, y) -> dx.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s1, l1, self.name())?;
        let g = f32_data(s2, l2, self.name())?;
        let y = f32_data(s3, l3, self.name())?;
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let m = (n * hw) as f32;
        // SAFETY: every element is written below, one plane per task.
        let (gx, ()) = unsafe {
            crate::ops::storage::filled(x.len(), |gx| {
                gx.par_chunks_mut(hw).enumerate().for_each(|(p, out)| {
                    let ch = p % c;
                    let (mu, is) = (self.mean[ch], self.invstd[ch]);
                    let k = self.gamma[ch] * is;
                    let (db, dg) = (self.dbeta[ch] / m, self.dgamma[ch] / m);
                    let (xp, gp, yp) = (&x[p * hw..(p + 1) * hw], &g[p * hw..(p + 1) * hw], &y[p * hw..(p + 1) * hw]);
                    vectorize(
                        #[inline(always)]
                        || {
                            if self.relu {
                                for (((o, &d), &v), &u) in out.iter_mut().zip(gp).zip(xp).zip(yp) {
                                    let d = if u > 0.0 { d } else { 0.0 };
                                    *o = k * (d - db - (v - mu) * is * dg);
                                }
                            } else {
                                for ((o, &d), &v) in out.iter_mut().zip(gp).zip(xp) {
                                    *o = k * (d - db - (v - mu) * is * dg);
                                }
                            }
                        },
                    )
                });
            })
        };
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}
