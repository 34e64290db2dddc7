//! Our own seeded initialisation: candle's CPU RNG cannot be seeded, so every
//! variable is created constant and then filled here from one seed, in name order.
use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Variables sorted by name, so order never depends on the hash map.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock poisoned");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The variables an optimiser updates: everything but batch-norm running statistics.
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    sorted_vars(varmap).into_iter().filter(|(n, _)| !is_running_stat(n)).collect()
}

/// He-normal weights (as the authors' `create_weight`), BN scale 1, shifts and
/// running means 0, running variances 1.
pub fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1417_1a11);
    for (name, var) in sorted_vars(varmap) {
        let shape = var.shape().clone();
        let dev = var.device().clone();
        let value = if name.ends_with("gamma") || name.ends_with("running_var") {
            Tensor::ones(&shape, candle_core::DType::F32, &dev)?
        } else if name.ends_with("beta") || name.ends_with("running_mean") || name.ends_with("bias") {
            Tensor::zeros(&shape, candle_core::DType::F32, &dev)?
        } else {
            let fan_in = (shape.elem_count() / shape.dims()[0].max(1)).max(1);
            let normal = Normal::new(0f32, (2.0 / fan_in as f32).sqrt()).expect("valid std");
            let v: Vec<f32> = (0..shape.elem_count()).map(|_| normal.sample(&mut rng)).collect();
            Tensor::from_vec(v, &shape, &dev)?
        };
        var.set(&value)?;
    }
    Ok(())
}
