//! Controllers that choose architectures: the ENAS LSTM policy (micro and
//! macro), trained by PPO or REINFORCE, and uniform random search as the
//! control. The controller has its own parameters and optimiser and never
//! touches the shared model.
pub mod decide;
pub mod lstm;
pub mod macro_policy;
pub mod micro_policy;
pub mod params;
pub mod ppo;
pub mod qlearning;
pub mod reinforce;
pub mod searcher;
pub mod seq_policy;

pub use decide::Pick;
pub use ppo::{Ppo, PpoConfig};
pub use reinforce::{Reinforce, ReinforceConfig};
pub use searcher::{Evolution, RandomSearcher, Searcher, Strategy};

use crate::space::{Arch, MacroArch, MicroArch, Nb201Arch, SpaceKind};
use candle_core::{Device, Result, Tensor};
use decide::Choice;
use macro_policy::MacroPolicy;
use micro_policy::MicroPolicy;
use params::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seq_policy::SeqPolicy;
use serde::{Deserialize, Serialize};

/// Shape of the policy's logits (the authors' controller flags).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyConfig {
    pub lstm_size: usize,
    pub temperature: Option<f64>,
    pub tanh_constant: Option<f64>,
    /// Op logits use `tanh_constant / op_tanh_reduce` (micro).
    pub op_tanh_reduce: f64,
    /// Target skip probability of the macro KL penalty.
    pub skip_target: f64,
}

/// Log-probabilities and entropies collected along one pass of the policy.
#[derive(Default)]
pub struct Trace {
    log_probs: Vec<Tensor>,
    entropies: Vec<Tensor>,
    pub skip_penalty: Option<Tensor>,
}

impl Trace {
    /// Records a decision and returns its picks.
    pub fn add(&mut self, c: Choice) -> Result<Vec<usize>> {
        self.log_probs.push(c.log_prob);
        self.entropies.push(c.entropy);
        Ok(c.picks)
    }
}

/// An architecture with what the policy said about it.
pub struct Sample {
    pub arch: Arch,
    /// log p(arch) under the policy, with its graph; None for uniform draws.
    pub log_prob: Option<Tensor>,
    /// Summed entropy of every decision's distribution, with its graph.
    pub entropy: Option<Tensor>,
    /// Macro: the KL of the skip probabilities from the target.
    pub skip_penalty: Option<Tensor>,
}

impl Sample {
    fn from_trace(arch: Arch, t: Trace) -> Result<Sample> {
        let sum = |v: Vec<Tensor>| -> Result<Tensor> { Tensor::stack(&v, 0)?.sum_all() };
        Ok(Sample { arch, log_prob: Some(sum(t.log_probs)?), entropy: Some(sum(t.entropies)?), skip_penalty: t.skip_penalty })
    }

    pub fn uniform(arch: Arch) -> Sample {
        Sample { arch, log_prob: None, entropy: None, skip_penalty: None }
    }

    pub fn log_prob_value(&self) -> Result<f64> {
        self.log_prob.as_ref().map(|t| Ok(decide::scalar(t)? as f64)).unwrap_or(Ok(0.0))
    }

    pub fn entropy_value(&self) -> Result<f64> {
        self.entropy.as_ref().map(|t| Ok(decide::scalar(t)? as f64)).unwrap_or(Ok(0.0))
    }
}

enum Policy {
    Micro(MicroPolicy),
    Macro(MacroPolicy),
    /// NAS-RL's plain sequence of choices (the NB201 cell).
    Seq(SeqPolicy),
}

/// The LSTM policy and its parameters.
pub struct Controller {
    pub params: Params,
    policy: Policy,
    pub space: SpaceKind,
    /// Micro: nodes per cell; macro: layers.
    pub size: usize,
}

impl Controller {
    pub fn new(space: SpaceKind, size: usize, cfg: &PolicyConfig, seed: u64, device: &Device) -> Result<Controller> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0_4e7a);
        let mut params = Params::new(device);
        let policy = match space {
            SpaceKind::Micro => Policy::Micro(MicroPolicy::new(&mut params, size, cfg, &mut rng)?),
            SpaceKind::Macro => Policy::Macro(MacroPolicy::new(&mut params, size, cfg, &mut rng)?),
            SpaceKind::Nb201 => {
                let cards = crate::space::encoding::cardinalities(space, size).expect("NB201 has fixed choices");
                Policy::Seq(SeqPolicy::new(&mut params, &cards, cfg, &mut rng)?)
            }
            SpaceKind::Metaqnn => candle_core::bail!("the LSTM controller has no MetaQNN policy: use --strategy qlearning or random there"),
        };
        Ok(Controller { params, policy, space, size })
    }

    /// Chooses an architecture (drawn, or the most likely one).
    pub fn sample(&self, pick: &mut Pick) -> Result<Sample> {
        let (arch, trace) = match &self.policy {
            Policy::Micro(p) => {
                let (a, t) = p.run(None, pick)?;
                (Arch::Micro(a), t)
            }
            Policy::Macro(p) => {
                let (a, t) = p.run(None, pick)?;
                (Arch::Macro(a), t)
            }
            Policy::Seq(p) => {
                let (c, t) = p.run(None, pick)?;
                let arch = Arch::from_choices(self.space, &c).ok_or_else(|| candle_core::Error::Msg("policy made an invalid choice".into()))?;
                (arch, t)
            }
        };
        Sample::from_trace(arch, trace)
    }

    /// log p, entropy and penalty of a given architecture under the current policy.
    pub fn score(&self, arch: &Arch) -> Result<Sample> {
        let mut pick = Pick::Greedy;
        let trace = match (&self.policy, arch) {
            (Policy::Micro(p), Arch::Micro(a)) => p.run(Some(a), &mut pick)?.1,
            (Policy::Macro(p), Arch::Macro(a)) => p.run(Some(a), &mut pick)?.1,
            (Policy::Seq(p), a) if a.space() == self.space => {
                let c = a.choices().ok_or_else(|| candle_core::Error::Msg("architecture has no fixed choices".into()))?;
                p.run(Some(&c), &mut pick)?.1
            }
            _ => candle_core::bail!("architecture of the other space than the controller's"),
        };
        Sample::from_trace(arch.clone(), trace)
    }
}

/// A uniform draw from the space: every decision equally likely. `size`:
/// micro nodes per cell, macro layers, MetaQNN the input image side (a walk of
/// uniform legal steps).
pub fn uniform_arch(space: SpaceKind, size: usize, rng: &mut ChaCha8Rng) -> Arch {
    match space {
        SpaceKind::Micro => Arch::Micro(MicroArch::random(size, rng)),
        SpaceKind::Macro => Arch::Macro(MacroArch::random(size, rng)),
        SpaceKind::Nb201 => Arch::Nb201(Nb201Arch::random(rng)),
        SpaceKind::Metaqnn => Arch::Metaqnn(qlearning::random_walk(size, rng)),
    }
}

/// Exponential moving average of the reward (the authors' baseline, updated
/// with each reward before the advantage is taken).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub value: f64,
    pub decay: f64,
}

impl Baseline {
    pub fn update(&mut self, reward: f64) -> f64 {
        self.value -= (1.0 - self.decay) * (self.value - reward);
        self.value
    }
}

/// What one controller update did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpdateStats {
    pub loss: f64,
    pub mean_reward: f64,
    pub baseline: f64,
    /// Mean summed entropy of the samples' decisions.
    pub entropy: f64,
    /// PPO: fraction of samples whose ratio left [1 - eps, 1 + eps]; KL estimate.
    pub clip_fraction: f64,
    pub approx_kl: f64,
    /// PPO: optimisation epochs run before the KL stop.
    pub epochs: usize,
}

/// Applies one gradient step on the controller's parameters for a loss (the
/// caller owns the optimiser, Adam in the authors' setting).
pub type StepFn<'a> = dyn FnMut(&Tensor) -> Result<()> + 'a;

/// One way of learning from rewards: REINFORCE, PPO, or none (random search).
pub trait PolicyOptimizer {
    fn name(&self) -> &'static str;
    /// The architectures whose rewards the next update needs.
    fn propose(&mut self, ctrl: &Controller, rng: &mut ChaCha8Rng) -> Result<Vec<Sample>>;
    /// Learns from `accuracies`, one per proposed sample, in order.
    fn update(&mut self, ctrl: &Controller, samples: Vec<Sample>, accuracies: &[f64], step: &mut StepFn) -> Result<UpdateStats>;
    /// Scalars to checkpoint (the baseline), and their restore.
    fn state(&self) -> serde_json::Value;
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()>;
}

/// How the controller learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Ppo,
    Reinforce,
    Random,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::Reinforce => "reinforce",
            Algo::Random => "random",
        }
    }
}

/// Everything about the controller a search needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControllerSettings {
    pub algo: Algo,
    pub policy: PolicyConfig,
    /// Adam's learning rate.
    pub lr: f64,
    /// Policy updates after each epoch of shared training.
    pub updates_per_epoch: usize,
    pub samples_per_update: usize,
    /// Validation minibatches each reward averages over.
    pub reward_batches: usize,
    pub entropy_weight: f64,
    pub baseline_decay: f64,
    pub skip_weight: f64,
    pub ppo_epochs: usize,
    pub ppo_clip: f64,
    pub ppo_target_kl: f64,
    /// PPO: rank-based advantages (multi-trial search and the NB201 oracle).
    #[serde(default)]
    pub rank_advantages: bool,
}

impl ControllerSettings {
    pub fn optimizer(&self) -> Box<dyn PolicyOptimizer> {
        let s = self;
        match s.algo {
            Algo::Reinforce => Box::new(Reinforce::new(ReinforceConfig {
                samples_per_update: s.samples_per_update,
                entropy_weight: s.entropy_weight,
                baseline_decay: s.baseline_decay,
                skip_weight: s.skip_weight,
            })),
            Algo::Ppo => Box::new(Ppo::new(PpoConfig {
                samples_per_update: s.samples_per_update,
                epochs: s.ppo_epochs,
                clip: s.ppo_clip,
                entropy_weight: s.entropy_weight,
                baseline_decay: s.baseline_decay,
                target_kl: s.ppo_target_kl,
                skip_weight: s.skip_weight,
                rank_advantages: s.rank_advantages,
            })),
            Algo::Random => Box::new(RandomSearch { samples_per_update: s.samples_per_update }),
        }
    }
}

/// Uniform random search: proposes uniform draws and learns nothing.
pub struct RandomSearch {
    pub samples_per_update: usize,
}

impl PolicyOptimizer for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }
    fn propose(&mut self, ctrl: &Controller, rng: &mut ChaCha8Rng) -> Result<Vec<Sample>> {
        Ok((0..self.samples_per_update).map(|_| Sample::uniform(uniform_arch(ctrl.space, ctrl.size, rng))).collect())
    }
    fn update(&mut self, _ctrl: &Controller, _samples: Vec<Sample>, accuracies: &[f64], _step: &mut StepFn) -> Result<UpdateStats> {
        Ok(UpdateStats { mean_reward: mean(accuracies), ..Default::default() })
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
