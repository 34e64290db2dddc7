//! PPO (Schulman et al. 2017) for the ENAS controller: a batch of sampled
//! architectures with their log-probabilities frozen, several epochs of the
//! clipped surrogate on advantages against the EMA baseline, an entropy bonus,
//! and an early stop when the approximate KL grows. Defaults and why: docs/DESIGN.md.
use super::{mean, Baseline, Controller, Pick, PolicyOptimizer, Sample, StepFn, UpdateStats};
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PpoConfig {
    /// Architectures sampled per update (M).
    pub samples_per_update: usize,
    /// Optimisation epochs over them (K).
    pub epochs: usize,
    pub clip: f64,
    /// Weight of the mean summed entropy in the loss.
    pub entropy_weight: f64,
    pub baseline_decay: f64,
    /// Stop the epochs once the approximate KL exceeds 1.5 x this.
    pub target_kl: f64,
    pub skip_weight: f64,
    /// Advantages from the rewards' ranks within the batch instead of the
    /// baseline: scale-free, and robust to the outliers of a table (docs/DESIGN.md).
    #[serde(default)]
    pub rank_advantages: bool,
}

pub struct Ppo {
    pub cfg: PpoConfig,
    pub baseline: Baseline,
}

impl Ppo {
    pub fn new(cfg: PpoConfig) -> Ppo {
        let baseline = Baseline { value: 0.0, decay: cfg.baseline_decay };
        Ppo { cfg, baseline }
    }
}

/// Advantages against the baseline, centred on their batch mean and scaled by
/// their spread (PPO's usual normalisation; uncentred, the policy learned a toy
/// reward and then drifted back to uniform on some seeds: docs/DESIGN.md).
fn advantages(rewards: &[f64], baselines: &[f64]) -> Vec<f64> {
    let raw: Vec<f64> = rewards.iter().zip(baselines).map(|(r, b)| r - b).collect();
    let m = mean(&raw);
    let var = raw.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / raw.len().max(1) as f64;
    let scale = if var > 1e-12 { var.sqrt() } else { 1.0 };
    raw.iter().map(|a| (a - m) / scale).collect()
}

/// Centred ranks in [-0.5, 0.5]: only the order of the batch's rewards counts.
fn rank_advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len();
    if n < 2 {
        return vec![0.0; n];
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| rewards[a].total_cmp(&rewards[b]));
    let mut adv = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && rewards[order[j + 1]] == rewards[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0;
        for k in i..=j {
            adv[order[k]] = rank / (n - 1) as f64 - 0.5;
        }
        i = j + 1;
    }
    adv
}

impl PolicyOptimizer for Ppo {
    fn name(&self) -> &'static str {
        "ppo"
    }

    fn propose(&mut self, ctrl: &Controller, rng: &mut ChaCha8Rng) -> Result<Vec<Sample>> {
        (0..self.cfg.samples_per_update).map(|_| ctrl.sample(&mut Pick::Draw(rng))).collect()
    }

    fn update(&mut self, ctrl: &Controller, samples: Vec<Sample>, accuracies: &[f64], step: &mut StepFn) -> Result<UpdateStats> {
        let c = self.cfg.clone();
        let old: Vec<f64> = samples.iter().map(|s| s.log_prob_value()).collect::<Result<_>>()?;
        let baselines: Vec<f64> = accuracies.iter().map(|&r| self.baseline.update(r)).collect();
        let adv = if c.rank_advantages { rank_advantages(accuracies) } else { advantages(accuracies, &baselines) };
        let n = samples.len() as f64;
        let mut stats = UpdateStats { mean_reward: mean(accuracies), baseline: self.baseline.value, ..Default::default() };
        stats.entropy = mean(&samples.iter().map(|s| s.entropy_value()).collect::<Result<Vec<_>>>()?);
        for epoch in 0..c.epochs {
            let scored: Vec<Sample> = samples.iter().map(|s| ctrl.score(&s.arch)).collect::<Result<_>>()?;
            let mut kl = 0.0;
            let mut clipped = 0usize;
            let mut terms = Vec::with_capacity(scored.len());
            for ((s, &old_lp), &a) in scored.iter().zip(&old).zip(&adv) {
                let lp = s.log_prob.as_ref().expect("scored samples carry log p");
                let new_lp = super::decide::scalar(lp)? as f64;
                let r = (new_lp - old_lp).exp();
                // Schulman's k3 estimator of KL(old || new): never negative, unlike the mean of log p_old - log p_new.
                kl += (r - 1.0 - (new_lp - old_lp)) / n;
                let ratio = (lp - old_lp)?.exp()?;
                if (r - 1.0).abs() > c.clip {
                    clipped += 1;
                }
                let surrogate = (&ratio * a)?.minimum(&(ratio.clamp(1.0 - c.clip, 1.0 + c.clip)? * a)?)?;
                let mut term = surrogate.neg()?;
                term = (term - (s.entropy.as_ref().expect("scored samples carry entropy") * c.entropy_weight)?)?;
                if let Some(p) = &s.skip_penalty {
                    term = (term + (p * c.skip_weight)?)?;
                }
                terms.push(term);
            }
            stats.approx_kl = kl;
            stats.clip_fraction = clipped as f64 / n;
            if epoch > 0 && kl > 1.5 * c.target_kl {
                break;
            }
            let loss = Tensor::stack(&terms, 0)?.mean_all()?;
            step(&loss)?;
            stats.loss = super::decide::scalar(&loss)? as f64;
            stats.epochs = epoch + 1;
        }
        Ok(stats)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "baseline": self.baseline.value })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.baseline.value = state["baseline"].as_f64().ok_or_else(|| candle_core::Error::Msg("checkpoint lacks the baseline".into()))?;
        Ok(())
    }
}
