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
use std::collections::{HashMap, VecDeque};

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

/// A distinct architecture proposed for the first time, numbered in the order first seen.
pub struct Fresh {
    pub index: usize,
    pub arch: Arch,
    /// The strategy's note on it (Q-learning: its epsilon).
    pub note: serde_json::Value,
}

/// The bookkeeping every budgeted search shares, whether its architectures
/// are trained one at a time, trained `parallel` at once, or looked up: the
/// proposals not yet learned from, every distinct architecture's number, and
/// the budget (distinct architectures) and cap (proposals, so that a policy
/// that only repeats itself ends).
pub struct Batches {
    budget: usize,
    cap: usize,
    parallel: usize,
    steady: bool,
    index_of: HashMap<String, usize>,
    /// Proposals in order, each with its architecture's number.
    pending: VecDeque<(Arch, usize)>,
    samples: usize,
    /// A proposal went over the budget: nothing more is proposed.
    cut: bool,
}

impl Batches {
    pub fn new(searcher: &dyn Searcher, budget: usize, cap: usize, parallel: usize) -> Batches {
        let steady = searcher.steady_state();
        Batches { budget, cap, parallel: parallel.max(1), steady, index_of: HashMap::new(), pending: VecDeque::new(), samples: 0, cut: false }
    }

    /// Proposes while the strategy may (a whole batch once the last is
    /// learned from, or in steady state one whenever fewer than `parallel`
    /// wait); returns the architectures proposed for the first time.
    pub fn propose(&mut self, searcher: &mut dyn Searcher, rng: &mut ChaCha8Rng) -> Result<Vec<Fresh>> {
        let mut fresh = Vec::new();
        while !self.cut
            && self.index_of.len() < self.budget
            && self.samples < self.cap
            && (if self.steady { self.pending.len() < self.parallel } else { self.pending.is_empty() })
        {
            let archs = searcher.propose_batch(if self.steady { 1 } else { self.parallel }, rng)?;
            let note = searcher.note();
            for arch in archs {
                self.samples += 1;
                let key = arch.to_arc_string();
                let index = match self.index_of.get(&key) {
                    Some(&i) => i,
                    None if self.index_of.len() >= self.budget => {
                        self.cut = true;
                        break;
                    }
                    None => {
                        let i = self.index_of.len();
                        self.index_of.insert(key, i);
                        fresh.push(Fresh { index: i, arch: arch.clone(), note: note.clone() });
                        i
                    }
                };
                self.pending.push_back((arch, index));
            }
        }
        Ok(fresh)
    }

    /// Every proposal learned from: once `propose` adds none, the search is over.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Proposals made, repeats included.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Feeds the strategy the oldest proposals once `reward` knows them, in
    /// the order proposed whatever order they finished in: the whole batch,
    /// or in steady state the oldest alone. Says whether it took any.
    pub fn learn(&mut self, searcher: &mut dyn Searcher, reward: impl Fn(usize) -> Option<f64>, rng: &mut ChaCha8Rng) -> Result<bool> {
        let ready = |p: &(Arch, usize)| reward(p.1).is_some();
        let whole = if self.steady { self.pending.front().is_some_and(ready) } else { !self.pending.is_empty() && self.pending.iter().all(ready) };
        if !whole {
            return Ok(false);
        }
        let batch: Vec<(Arch, usize)> = if self.steady { self.pending.pop_front().into_iter().collect() } else { self.pending.drain(..).collect() };
        // The batch that went over the budget ends the search unlearned from, as a one-at-a-time search would.
        if self.cut && self.pending.is_empty() && !self.steady {
            return Ok(true);
        }
        let rewards: Vec<f64> = batch.iter().filter_map(|p| reward(p.1)).collect();
        let archs: Vec<Arch> = batch.into_iter().map(|p| p.0).collect();
        searcher.observe(&archs, &rewards, rng)?;
        Ok(true)
    }
}

/// Runs `searcher`, evaluating one architecture at a time, until `budget`
/// distinct architectures are evaluated or `cap` proposals are made;
/// `evaluate` is called once per distinct architecture, in the order first
/// proposed.
pub fn run_budget(
    searcher: &mut dyn Searcher,
    budget: usize,
    cap: usize,
    rng: &mut ChaCha8Rng,
    evaluate: &mut dyn FnMut(&Arch) -> anyhow::Result<f64>,
) -> anyhow::Result<Outcome> {
    let mut batches = Batches::new(searcher, budget, cap, 1);
    let mut distinct: Vec<(Arch, f64)> = Vec::new();
    loop {
        for f in batches.propose(searcher, rng)? {
            let r = evaluate(&f.arch)?;
            distinct.push((f.arch, r));
        }
        if batches.is_empty() {
            break;
        }
        batches.learn(searcher, |i| distinct.get(i).map(|d| d.1), rng)?;
    }
    Ok(Outcome { distinct, samples: batches.samples() })
}
