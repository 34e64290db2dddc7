//! Black-box search under a budget of distinct architectures: a strategy
//! proposes, each new architecture is evaluated once (a child trained from
//! scratch, or a table lookup), repeats are answered from the cache.
use super::optim::{collect_grads, Adam};
use super::search::controller_adam;
use crate::controller::qlearning::{QConfig, QLearner, QSpace};
use crate::controller::{Controller, ControllerSettings, Evolution, PolicyConfig, PolicyOptimizer, RandomSearcher, Sample, Searcher, Strategy};
use crate::space::{Arch, SpaceKind};
use candle_core::{Device, Result, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Everything a strategy needs besides the space.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StrategyConfig {
    pub strategy: Strategy,
    /// PPO and REINFORCE: the LSTM policy and its optimiser.
    pub controller: ControllerSettings,
    /// Regularised evolution: population and tournament size.
    pub population: usize,
    pub tournament: usize,
    /// Q-learning: the paper's constants; `models` is set to the budget.
    pub q: QConfig,
}

impl StrategyConfig {
    /// Defaults for black-box search, tuned on the NB201 CIFAR-10 table
    /// (BENCHMARKS.md): small batches, a high learning rate, rank advantages
    /// for PPO, and tanh-bounded logits so no choice's probability saturates.
    pub fn defaults(strategy: Strategy, budget: usize) -> StrategyConfig {
        let controller = ControllerSettings {
            algo: if strategy == Strategy::Reinforce { crate::controller::Algo::Reinforce } else { crate::controller::Algo::Ppo },
            policy: PolicyConfig { lstm_size: 32, temperature: None, tanh_constant: Some(1.5), op_tanh_reduce: 1.0, skip_target: 0.4 },
            lr: 0.05,
            updates_per_epoch: 1,
            samples_per_update: 5,
            reward_batches: 1,
            entropy_weight: 0.0,
            baseline_decay: 0.9,
            skip_weight: 0.0,
            ppo_epochs: 4,
            ppo_clip: 0.2,
            ppo_target_kl: 0.02,
            rank_advantages: true,
        };
        // The calibration figure of issue 5: population 20, tournament 5.
        StrategyConfig { strategy, controller, population: 20, tournament: 5, q: QConfig::paper(budget) }
    }
}

/// The ENAS controller as a black-box strategy: each update's samples are proposed, then learned from.
pub struct PolicySearcher {
    controller: Controller,
    optimizer: Box<dyn PolicyOptimizer>,
    adam: Adam,
    pending: Vec<Sample>,
}

impl Searcher for PolicySearcher {
    fn name(&self) -> &'static str {
        self.optimizer.name()
    }

    fn propose(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        self.pending = self.optimizer.propose(&self.controller, rng)?;
        Ok(self.pending.iter().map(|s| s.arch.clone()).collect())
    }

    fn observe(&mut self, _archs: &[Arch], rewards: &[f64], _rng: &mut ChaCha8Rng) -> Result<()> {
        let samples = std::mem::take(&mut self.pending);
        let (controller, adam) = (&self.controller, &mut self.adam);
        let mut step = |loss: &Tensor| -> Result<()> {
            let grads = collect_grads(&loss.backward()?, controller.params.vars());
            adam.step(&grads)
        };
        self.optimizer.update(controller, samples, rewards, &mut step)?;
        Ok(())
    }
}

/// The strategy of `cfg` over `space` (`size`: micro nodes, macro layers, MetaQNN image side).
pub fn searcher(cfg: &StrategyConfig, space: SpaceKind, size: usize, budget: usize, seed: u64, device: &Device) -> Result<Box<dyn Searcher>> {
    Ok(match cfg.strategy {
        Strategy::Random => Box::new(RandomSearcher { space, size }),
        Strategy::Evolution => Box::new(Evolution::new(space, size, cfg.population, cfg.tournament)?),
        Strategy::Qlearning => Box::new(QLearner::new(QConfig { models: budget, ..cfg.q.clone() }, QSpace::new(space, size))),
        Strategy::Ppo | Strategy::Reinforce => {
            let mut settings = cfg.controller.clone();
            settings.algo = if cfg.strategy == Strategy::Ppo { crate::controller::Algo::Ppo } else { crate::controller::Algo::Reinforce };
            let controller = Controller::new(space, size, &settings.policy, seed, device)?;
            let adam = controller_adam(&controller, settings.lr);
            Box::new(PolicySearcher { optimizer: settings.optimizer(), controller, adam, pending: Vec::new() })
        }
    })
}

/// What a budgeted search looked at.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Distinct architectures in the order first seen, with their rewards.
    pub distinct: Vec<(Arch, f64)>,
    /// Proposals in all, repeats included.
    pub samples: usize,
}

/// Runs `searcher` until `budget` distinct architectures are evaluated or
/// `cap` proposals are made (a policy that only repeats itself must end).
/// `evaluate` is called once per architecture not in `cache`, and its reward
/// added there; `on_new` hears of every distinct one, cached or not, with the
/// strategy's note on it (Q-learning: its epsilon).
pub fn run_budget(
    searcher: &mut dyn Searcher,
    budget: usize,
    cap: usize,
    rng: &mut ChaCha8Rng,
    cache: &mut HashMap<String, f64>,
    evaluate: &mut dyn FnMut(&Arch, usize) -> anyhow::Result<f64>,
    on_new: &mut dyn FnMut(&Arch, f64, usize, serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mut seen = HashSet::new();
    while out.distinct.len() < budget && out.samples < cap {
        let archs = searcher.propose(rng)?;
        let mut rewards = Vec::with_capacity(archs.len());
        for arch in &archs {
            out.samples += 1;
            let key = arch.to_arc_string();
            if !seen.contains(&key) {
                if out.distinct.len() >= budget {
                    return Ok(out);
                }
                let index = out.distinct.len();
                let r = match cache.get(&key) {
                    Some(&r) => r,
                    None => {
                        let r = evaluate(arch, index)?;
                        cache.insert(key.clone(), r);
                        r
                    }
                };
                seen.insert(key.clone());
                out.distinct.push((arch.clone(), r));
                on_new(arch, r, index, searcher.note())?;
            }
            rewards.push(cache[&key]);
        }
        searcher.observe(&archs, &rewards, rng)?;
    }
    Ok(out)
}
