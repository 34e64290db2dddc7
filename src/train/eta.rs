//! How long a run has left, the stages ahead included: each stage's own
//! epochs so far give its remaining time; the retrain, which comes last and
//! trains another network, is estimated before it starts by timing a few of
//! its steps.
use super::loss::cross_entropy;
use super::retrain::RetrainConfig;
use crate::controller::uniform_arch;
use crate::model::{seeded_init, Ctx, Network};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// What comes after the search stage of a run, for its ETA.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ahead {
    /// Architectures derive scores, each one pass over the validation split.
    pub derive_candidates: usize,
    /// The retrain's estimated seconds.
    pub retrain_seconds: f64,
}

/// `40s`, `12m05s`, `2h03m`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=99 => format!("{s}s"),
        100..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Seconds left of a stage of `total` epochs whose finished ones took `done`.
pub fn remaining(done: &[f64], total: usize) -> f64 {
    if done.is_empty() {
        return 0.0;
    }
    done.iter().sum::<f64>() / done.len() as f64 * total.saturating_sub(done.len()) as f64
}

/// The retrain of `cfg` (any architecture of its space: its size is the
/// preset's, its ops are not yet known) on `train`/`valid`/`test` images:
/// seconds estimated from two timed training steps on a batch of zeros.
pub fn retrain_seconds(cfg: &RetrainConfig, arch_size: usize, (train, valid, test): (usize, usize, usize), device: &Device) -> Result<f64> {
    // Its own random streams: the run's are untouched.
    let mut rng = ChaCha8Rng::seed_from_u64(0x00e7_a000);
    let arch = uniform_arch(cfg.space, arch_size, &mut rng);
    let varmap = VarMap::new();
    let net = Network::new(VarBuilder::from_varmap(&varmap, DType::F32, device), &arch, &cfg.net)?;
    seeded_init(&varmap, 0)?;
    let (c, s) = (cfg.net.in_channels, cfg.net.image_size);
    let x = Tensor::zeros((cfg.batch, c, s, s), DType::F32, device)?;
    let y = Tensor::zeros(cfg.batch, DType::U32, device)?;
    let mut step = || -> Result<()> {
        let out = net.forward(&x, &mut Ctx { train: true, rng: &mut rng, progress: 0.5 })?;
        let loss = cross_entropy(&out.logits, &y, 0.0)?;
        loss.backward()?;
        loss.to_scalar::<f32>()?;
        Ok(())
    };
    step()?;
    let t = Instant::now();
    step()?;
    step()?;
    let per_step = t.elapsed().as_secs_f64() / 2.0;
    // Evaluation is a forward pass: about a third of a training step per image.
    let per_image_eval = per_step / 3.0 / cfg.batch as f64;
    let steps = train / cfg.batch;
    Ok(cfg.epochs as f64 * (steps as f64 * per_step + valid as f64 * per_image_eval) + test as f64 * per_image_eval)
}
