//! REINFORCE as the authors train the ENAS controller (Pham et al. 2018,
//! Sec. 2.2; `build_trainer`): reward = accuracy + entropy weight x entropy,
//! EMA baseline updated before each advantage, loss -(R - b) log p (+ skip
//! penalty), gradients of a batch of samples averaged into one step.
use super::{mean, Baseline, Controller, Pick, PolicyOptimizer, Sample, StepFn, UpdateStats};
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReinforceConfig {
    /// Samples whose gradients make one step (the authors' `num_aggregate`).
    pub samples_per_update: usize,
    pub entropy_weight: f64,
    pub baseline_decay: f64,
    /// Macro: weight of the skip-probability KL penalty (0 for micro).
    pub skip_weight: f64,
}

pub struct Reinforce {
    pub cfg: ReinforceConfig,
    pub baseline: Baseline,
}

impl Reinforce {
    pub fn new(cfg: ReinforceConfig) -> Reinforce {
        let baseline = Baseline { value: 0.0, decay: cfg.baseline_decay };
        Reinforce { cfg, baseline }
    }
}

impl PolicyOptimizer for Reinforce {
    fn name(&self) -> &'static str {
        "reinforce"
    }

    fn propose(&mut self, ctrl: &Controller, rng: &mut ChaCha8Rng) -> Result<Vec<Sample>> {
        (0..self.cfg.samples_per_update).map(|_| ctrl.sample(&mut Pick::Draw(rng))).collect()
    }

    fn update(&mut self, _ctrl: &Controller, samples: Vec<Sample>, accuracies: &[f64], step: &mut StepFn) -> Result<UpdateStats> {
        let mut terms = Vec::with_capacity(samples.len());
        let mut rewards = Vec::with_capacity(samples.len());
        let mut entropies = Vec::with_capacity(samples.len());
        for (s, &acc) in samples.iter().zip(accuracies) {
            let (Some(log_prob), Some(_)) = (&s.log_prob, &s.entropy) else {
                candle_core::bail!("REINFORCE needs samples drawn from the policy");
            };
            let entropy = s.entropy_value()?;
            let reward = acc + self.cfg.entropy_weight * entropy;
            let b = self.baseline.update(reward);
            let mut term = (log_prob * (-(reward - b)))?;
            if let Some(p) = &s.skip_penalty {
                term = (term + (p * self.cfg.skip_weight)?)?;
            }
            terms.push(term);
            rewards.push(reward);
            entropies.push(entropy);
        }
        let loss = Tensor::stack(&terms, 0)?.mean_all()?;
        step(&loss)?;
        Ok(UpdateStats {
            loss: super::decide::scalar(&loss)? as f64,
            mean_reward: mean(&rewards),
            baseline: self.baseline.value,
            entropy: mean(&entropies),
            epochs: 1,
            ..Default::default()
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "baseline": self.baseline.value })
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.baseline.value = state["baseline"].as_f64().ok_or_else(|| candle_core::Error::Msg("checkpoint lacks the baseline".into()))?;
        Ok(())
    }
}
