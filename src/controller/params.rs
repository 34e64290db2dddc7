//! The controller's own parameters: plain variables in a fixed order, filled
//! from the run's seeded stream (the authors' uniform(-0.1, 0.1)), never part
//! of the shared model's VarMap.
use candle_core::{Device, Result, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

pub struct Params {
    vars: Vec<(String, Var)>,
    device: Device,
}

/// The authors' initialiser for every controller weight.
const INIT_RANGE: f32 = 0.1;

impl Params {
    pub fn new(device: &Device) -> Params {
        Params { vars: Vec::new(), device: device.clone() }
    }

    /// A new variable of `shape`, uniform in (-0.1, 0.1).
    pub fn uniform(&mut self, name: &str, shape: &[usize], rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-INIT_RANGE..INIT_RANGE)).collect();
        self.with_values(name, shape, values)
    }

    /// A new variable holding `values`.
    pub fn with_values(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, &self.device)?)?;
        let t = var.as_tensor().clone();
        self.vars.push((name.to_string(), var));
        Ok(t)
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Copies of the current values, by name, for checkpoints.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.vars.iter().map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?))).collect()
    }

    /// Restores values saved by `tensors`; every variable must be present with its shape.
    pub fn load(&self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.vars {
            let t = saved.get(name).ok_or_else(|| candle_core::Error::Msg(format!("controller weight {name} missing")))?;
            var.set(t)?;
        }
        Ok(())
    }
}
