//! SGD with momentum, Nesterov and weight decay, Adam, and global-norm
//! gradient clipping: candle's own SGD has none of these.
use crate::ops::{sgd_velocity, sgd_weight, SgdStep};
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// Gradients of `vars` in their order (None where a variable got none).
/// Detached: candle records the ops that accumulate a gradient, so an
/// optimiser state built from it would keep the whole backward pass alive, and
/// through the state every earlier one (600 MB per controller update).
pub fn collect_grads(grads: &GradStore, vars: &[(String, Var)]) -> Vec<Option<Tensor>> {
    vars.iter().map(|(_, v)| grads.get(v.as_tensor()).map(Tensor::detach)).collect()
}

/// Scales all gradients so their global L2 norm is at most `max_norm`;
/// returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    // Each gradient's square sum on its device, read back together: one
    // device-to-host copy instead of one per gradient (each a sync on a GPU).
    let sums = grads.iter().flatten().map(|g| g.sqr()?.sum_all()).collect::<Result<Vec<_>>>()?;
    let norm = if sums.is_empty() { 0.0 } else { Tensor::stack(&sums, 0)?.to_vec1::<f32>()?.iter().map(|&s| s as f64).sum::<f64>().sqrt() };
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Decoupled (SGDW, Loshchilov & Hutter) rather than L2 added to the gradient.
    pub decoupled: bool,
}

/// SGD with heavy-ball or Nesterov momentum, in the form TensorFlow and PyTorch share:
/// `v = mu v + g; w -= lr (g + mu v)` with Nesterov, `w -= lr v` without.
pub struct Sgd {
    pub cfg: SgdConfig,
    vars: Vec<(String, Var)>,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(vars: Vec<(String, Var)>, cfg: SgdConfig) -> Sgd {
        let velocity = vec![None; vars.len()];
        Sgd { cfg, vars, velocity }
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Clips `grads` to the global norm `max_norm` (none when it is 0, as
    /// `clip_grad_norm`), then takes the step. On a GPU both run on the device
    /// in three launches for all variables, with no read-back of the norm
    /// (`ops::device::cuda::sgd_all`); `grads` are then left unscaled.
    pub fn clip_and_step(&mut self, grads: &mut [Option<Tensor>], max_norm: f64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if self.vars.first().is_some_and(|(_, v)| v.device().is_cuda()) {
            return self.step_on_cuda(grads, max_norm);
        }
        clip_grad_norm(grads, max_norm)?;
        self.step(grads)
    }

    #[cfg(feature = "cuda")]
    fn step_on_cuda(&mut self, grads: &[Option<Tensor>], max_norm: f64) -> Result<()> {
        let c = &self.cfg;
        let step = SgdStep { lr: c.lr, momentum: c.momentum, nesterov: c.nesterov, weight_decay: c.weight_decay, decoupled: c.decoupled };
        let grads = grads.iter().map(|g| g.as_ref().map(Tensor::contiguous).transpose()).collect::<Result<Vec<_>>>()?;
        for (((_, var), g), vel) in self.vars.iter().zip(&grads).zip(self.velocity.iter_mut()) {
            // A zero velocity's first update is the (decayed) gradient itself, as `step` starts it.
            if g.is_some() && c.momentum > 0.0 && vel.is_none() {
                *vel = Some(var.as_tensor().zeros_like()?);
            }
        }
        let entries: Vec<(&Tensor, &Tensor, &Tensor)> = self
            .vars
            .iter()
            .zip(&grads)
            .zip(&self.velocity)
            .filter_map(|(((_, var), g), vel)| g.as_ref().map(|g| (var.as_tensor(), g, vel.as_ref().unwrap_or(var.as_tensor()))))
            .collect();
        crate::ops::device::cuda::sgd_all(&entries, &step, max_norm)
    }

    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        let c = &self.cfg;
        let step = SgdStep { lr: c.lr, momentum: c.momentum, nesterov: c.nesterov, weight_decay: c.weight_decay, decoupled: c.decoupled };
        for (((_, var), g), vel) in self.vars.iter().zip(grads).zip(self.velocity.iter_mut()) {
            let Some(g) = g else { continue };
            // In place, two ops per variable (ops::sgd): the velocity, then the weight.
            // They read contiguous tensors (a gradient is one unless a caller built it otherwise).
            let (w, g) = (var.as_tensor(), &g.contiguous()?);
            if c.momentum > 0.0 {
                match vel {
                    Some(v) => sgd_velocity(v, g, w, step)?,
                    // The first step's velocity is the (decayed) gradient itself.
                    None => {
                        let w = w.detach();
                        *vel = Some(if c.weight_decay > 0.0 && !c.decoupled { (g + (&w * c.weight_decay)?)? } else { g.copy()? });
                    }
                }
            }
            let v = vel.as_ref().unwrap_or(g);
            sgd_weight(w, g, v, step)?;
        }
        Ok(())
    }

    /// Momentum buffers by variable name, for checkpoints.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.vars.iter().zip(&self.velocity).filter_map(|((n, _), v)| v.as_ref().map(|v| (format!("sgd.velocity.{n}"), v.copy().expect("copy")))).collect()
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for ((n, _), vel) in self.vars.iter().zip(self.velocity.iter_mut()) {
            // Copied: the step updates the buffers in place.
            *vel = state.get(&format!("sgd.velocity.{n}")).map(Tensor::copy).transpose()?;
        }
        Ok(())
    }
}

/// Adam (Kingma & Ba) with bias correction, for the controller.
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    vars: Vec<(String, Var)>,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    pub t: u64,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, lr: f64) -> Adam {
        let n = vars.len();
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, vars, m: vec![None; n], v: vec![None; n], t: 0 }
    }

    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (i, ((_, var), g)) in self.vars.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let m = match self.m[i].take() {
                Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
                None => (g * (1.0 - b1))?,
            };
            let v = match self.v[i].take() {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let step = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor().detach() - (step * self.lr)?)?)?;
            self.m[i] = Some(m);
            self.v[i] = Some(v);
        }
        Ok(())
    }

    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (n, _)) in self.vars.iter().enumerate() {
            if let (Some(m), Some(v)) = (&self.m[i], &self.v[i]) {
                out.insert(format!("adam.m.{n}"), m.clone());
                out.insert(format!("adam.v.{n}"), v.clone());
            }
        }
        out
    }

    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) {
        self.t = t;
        for (i, (n, _)) in self.vars.iter().enumerate() {
            self.m[i] = state.get(&format!("adam.m.{n}")).cloned();
            self.v[i] = state.get(&format!("adam.v.{n}")).cloned();
        }
    }
}
