//! Black-box search strategies: propose architectures, learn from their
//! rewards. The multi-trial runner and the NB201 oracle drive them alike.
use super::uniform_arch;
use crate::space::{encoding, Arch, SpaceKind};
use candle_core::Result;
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Rewards are accuracies in [0, 1]; larger is better.
pub trait Searcher {
    fn name(&self) -> &'static str;
    /// The next architectures to evaluate.
    fn propose(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>>;
    /// The next batch when `k` children may train at once: what the strategy
    /// would evaluate before its next update (PPO and REINFORCE: one update's
    /// samples, whatever `k`). `k = 1` is `propose`.
    fn propose_batch(&mut self, _k: usize, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        self.propose(rng)
    }
    /// Whether the strategy learns from each child alone as it finishes
    /// (regularised evolution's steady state) rather than from whole batches.
    fn steady_state(&self) -> bool {
        false
    }
    /// Their rewards, in the order proposed.
    fn observe(&mut self, archs: &[Arch], rewards: &[f64], rng: &mut ChaCha8Rng) -> Result<()>;
    /// What the strategy has learned, for the run's files (Q-table, population).
    fn report(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    /// What to record beside the latest proposal (Q-learning: its epsilon).
    fn note(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Strategies of `--strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Ppo,
    Reinforce,
    Qlearning,
    Random,
    Evolution,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [Strategy::Random, Strategy::Evolution, Strategy::Reinforce, Strategy::Ppo, Strategy::Qlearning];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ppo => "ppo",
            Strategy::Reinforce => "reinforce",
            Strategy::Qlearning => "qlearning",
            Strategy::Random => "random",
            Strategy::Evolution => "evolution",
        }
    }
}

/// Uniform draws, one at a time.
pub struct RandomSearcher {
    pub space: SpaceKind,
    pub size: usize,
}

impl Searcher for RandomSearcher {
    fn name(&self) -> &'static str {
        "random"
    }
    fn propose(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        Ok(vec![uniform_arch(self.space, self.size, rng)])
    }
    fn propose_batch(&mut self, k: usize, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        Ok((0..k.max(1)).map(|_| uniform_arch(self.space, self.size, rng)).collect())
    }
    fn observe(&mut self, _archs: &[Arch], _rewards: &[f64], _rng: &mut ChaCha8Rng) -> Result<()> {
        Ok(())
    }
}

/// Regularised evolution (Real et al. 2019, Algorithm 1): a population of the
/// latest `population` models; each child mutates the best of `sample_size`
/// members drawn at random, and the oldest member dies.
pub struct Evolution {
    pub space: SpaceKind,
    pub size: usize,
    pub population: usize,
    pub sample_size: usize,
    cardinalities: Vec<usize>,
    members: VecDeque<(Vec<usize>, f64)>,
}

impl Evolution {
    pub fn new(space: SpaceKind, size: usize, population: usize, sample_size: usize) -> Result<Evolution> {
        let cardinalities = encoding::cardinalities(space, size)
            .ok_or_else(|| candle_core::Error::Msg(format!("evolution needs a space of fixed choices; {} has none", space.name())))?;
        Ok(Evolution { space, size, population, sample_size: sample_size.min(population).max(1), cardinalities, members: VecDeque::new() })
    }

    /// One choice changed to another of its options (Real et al.'s op mutation).
    fn mutate(&self, parent: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut child = parent.to_vec();
        let mutable: Vec<usize> = (0..child.len()).filter(|&i| self.cardinalities[i] > 1).collect();
        if mutable.is_empty() {
            return child;
        }
        let i = mutable[rng.gen_range(0..mutable.len())];
        let other = rng.gen_range(0..self.cardinalities[i] - 1);
        child[i] = if other >= child[i] { other + 1 } else { other };
        child
    }
}

impl Searcher for Evolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn propose(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        if self.members.len() < self.population {
            return Ok(vec![uniform_arch(self.space, self.size, rng)]);
        }
        let picks = sample(rng, self.members.len(), self.sample_size);
        let parent = picks.iter().map(|i| &self.members[i]).fold(None::<&(Vec<usize>, f64)>, |best, m| match best {
            Some(b) if b.1 >= m.1 => Some(b),
            _ => Some(m),
        });
        let child = self.mutate(&parent.expect("a non-empty sample").0, rng);
        Ok(vec![Arch::from_choices(self.space, &child).expect("mutation keeps choices in range")])
    }

    fn steady_state(&self) -> bool {
        true
    }

    fn observe(&mut self, archs: &[Arch], rewards: &[f64], _rng: &mut ChaCha8Rng) -> Result<()> {
        for (a, &r) in archs.iter().zip(rewards) {
            self.members.push_back((a.choices().expect("fixed-choice space"), r));
            if self.members.len() > self.population {
                self.members.pop_front();
            }
        }
        Ok(())
    }

    fn report(&self) -> serde_json::Value {
        let members: Vec<_> =
            self.members.iter().map(|(c, r)| serde_json::json!({"arc": Arch::from_choices(self.space, c).map(|a| a.to_arc_string()), "reward": r})).collect();
        serde_json::json!({"population": members})
    }
}
