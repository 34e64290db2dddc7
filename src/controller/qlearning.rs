//! MetaQNN's tabular Q-learning (Baker et al. 2017, Sec. 3 and Algorithms 1-3):
//! epsilon-greedy walks through the layer states, Q updated from the final
//! accuracy by one-step Q-learning over a replay of earlier walks. Also walks
//! any fixed list of choices (state: position and previous choice).
use super::searcher::Searcher;
use crate::space::metaqnn::{step_token, Position, Step};
use crate::space::{encoding, Arch, MetaArch, SpaceKind};
use candle_core::Result;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sec. 4.2: Q starts at 0.5, learning rate 0.01, no discount, K = 128 replays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QConfig {
    pub q_init: f64,
    pub learning_rate: f64,
    pub discount: f64,
    pub replay: usize,
    /// Models the epsilon schedule is compressed into.
    pub models: usize,
}

impl QConfig {
    pub fn paper(models: usize) -> QConfig {
        QConfig { q_init: 0.5, learning_rate: 0.01, discount: 1.0, replay: 128, models }
    }
}

/// Table 2: epsilon 1.0 for 1,500 models, then 0.9 to 0.1 for 100 to 150 models each.
pub const PAPER_SCHEDULE: [(f64, usize); 10] =
    [(1.0, 1500), (0.9, 100), (0.8, 100), (0.7, 100), (0.6, 150), (0.5, 150), (0.4, 150), (0.3, 150), (0.2, 150), (0.1, 150)];

/// The paper's schedule scaled to `models` in all (largest remainders keep the
/// total; exact ties go to the later, greedier levels).
pub fn schedule(models: usize) -> Vec<(f64, usize)> {
    let total: usize = PAPER_SCHEDULE.iter().map(|p| p.1).sum();
    let exact: Vec<f64> = PAPER_SCHEDULE.iter().map(|p| p.1 as f64 * models as f64 / total as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(b.cmp(&a)));
    let short = models - counts.iter().sum::<usize>();
    for &i in order.iter().take(short) {
        counts[i] += 1;
    }
    PAPER_SCHEDULE.iter().zip(counts).map(|(p, c)| (p.0, c)).collect()
}

/// Epsilon for the model with index `m` (0-based); the last level after the schedule ends.
pub fn epsilon_at(schedule: &[(f64, usize)], m: usize) -> f64 {
    let mut seen = 0;
    for &(eps, n) in schedule {
        seen += n;
        if m < seen {
            return eps;
        }
    }
    schedule.last().map(|s| s.0).unwrap_or(0.1)
}

/// One transition of a walk: the state, the action, and the actions legal after it (none at the end).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transition {
    pub state: String,
    pub action: String,
    pub next_actions: Vec<String>,
}

/// The space a walk goes through.
pub enum QSpace {
    /// MetaQNN layers for square inputs of this side.
    Metaqnn { image_size: usize },
    /// A fixed list of choices (NB201, macro, micro).
    Choices { space: SpaceKind, cardinalities: Vec<usize> },
}

enum QState {
    Meta(Position),
    Choice { at: usize, picks: Vec<usize> },
}

impl QSpace {
    pub fn new(space: SpaceKind, size: usize) -> QSpace {
        match encoding::cardinalities(space, size) {
            Some(cardinalities) => QSpace::Choices { space, cardinalities },
            None => QSpace::Metaqnn { image_size: size },
        }
    }

    fn key(&self, s: &QState) -> String {
        match s {
            QState::Meta(p) => p.key(),
            QState::Choice { at, picks } => format!("{at}/{}", picks.last().map(|p| p.to_string()).unwrap_or("-".into())),
        }
    }

    fn actions(&self, s: &QState) -> Vec<String> {
        match (self, s) {
            (_, QState::Meta(p)) => p.legal().iter().map(step_token).collect(),
            (QSpace::Choices { cardinalities, .. }, QState::Choice { at, .. }) => {
                cardinalities.get(*at).map(|&n| (0..n).map(|a| a.to_string()).collect()).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Takes action `i` of `actions(s)`: the next state, or the finished architecture.
    fn step(&self, s: QState, i: usize) -> std::result::Result<QState, Arch> {
        match (self, s) {
            (_, QState::Meta(p)) => match p.legal()[i] {
                Step::Layer(l) => Ok(QState::Meta(p.after(l))),
                Step::End(_) => unreachable!("ends are taken by `walk`"),
            },
            (QSpace::Choices { space, cardinalities }, QState::Choice { at, mut picks }) => {
                picks.push(i);
                if at + 1 == cardinalities.len() {
                    Err(Arch::from_choices(*space, &picks).expect("choices within their cardinalities"))
                } else {
                    Ok(QState::Choice { at: at + 1, picks })
                }
            }
            _ => unreachable!("state of the other space"),
        }
    }

    fn start(&self) -> QState {
        match self {
            QSpace::Metaqnn { image_size } => QState::Meta(Position::start(*image_size)),
            QSpace::Choices { .. } => QState::Choice { at: 0, picks: Vec::new() },
        }
    }
}

pub type QTable = BTreeMap<String, BTreeMap<String, f64>>;

fn q_of(q: &QTable, init: f64, s: &str, a: &str) -> f64 {
    q.get(s).and_then(|m| m.get(a)).copied().unwrap_or(init)
}

/// Algorithm 2: from the start, a uniform legal action with probability
/// epsilon, else the best by Q (ties broken uniformly), until the end.
pub fn walk(space: &QSpace, q: &QTable, init: f64, epsilon: f64, rng: &mut ChaCha8Rng) -> (Arch, Vec<Transition>) {
    let mut state = space.start();
    let mut path: Vec<Transition> = Vec::new();
    let mut layers = Vec::new();
    loop {
        let key = space.key(&state);
        let actions = space.actions(&state);
        if let Some(last) = path.last_mut() {
            last.next_actions = actions.clone();
        }
        let i = if rng.gen::<f64>() < epsilon {
            rng.gen_range(0..actions.len())
        } else {
            let values: Vec<f64> = actions.iter().map(|a| q_of(q, init, &key, a)).collect();
            let best = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ties: Vec<usize> = (0..actions.len()).filter(|&i| values[i] == best).collect();
            *ties.choose(rng).expect("a state has a legal action")
        };
        path.push(Transition { state: key, action: actions[i].clone(), next_actions: Vec::new() });
        if let QState::Meta(p) = &state {
            match p.legal()[i] {
                Step::Layer(l) => layers.push(l),
                Step::End(end) => return (Arch::Metaqnn(MetaArch { layers, end }), path),
            }
        }
        match space.step(state, i) {
            Ok(next) => state = next,
            Err(arch) => return (arch, path),
        }
    }
}

/// A uniform legal walk through MetaQNN's space (epsilon 1).
pub fn random_walk(image_size: usize, rng: &mut ChaCha8Rng) -> MetaArch {
    match walk(&QSpace::Metaqnn { image_size }, &QTable::new(), 0.0, 1.0, rng).0 {
        Arch::Metaqnn(a) => a,
        _ => unreachable!(),
    }
}

/// Algorithm 3: one-step Q-learning backwards along a walk, the accuracy as
/// the reward of its last transition and zero before.
pub fn update(q: &mut QTable, cfg: &QConfig, path: &[Transition], reward: f64) {
    for (i, t) in path.iter().enumerate().rev() {
        let r = if i + 1 == path.len() { reward } else { 0.0 };
        let next = path.get(i + 1).map(|n| n.state.as_str());
        let future = match next {
            Some(s) => t.next_actions.iter().map(|a| q_of(q, cfg.q_init, s, a)).fold(f64::NEG_INFINITY, f64::max),
            None => 0.0,
        };
        let old = q_of(q, cfg.q_init, &t.state, &t.action);
        let new = (1.0 - cfg.learning_rate) * old + cfg.learning_rate * (r + cfg.discount * future);
        q.entry(t.state.clone()).or_default().insert(t.action.clone(), new);
    }
}

/// The MetaQNN agent: Q-table, replay memory and epsilon schedule.
pub struct QLearner {
    pub cfg: QConfig,
    pub space: QSpace,
    pub q: QTable,
    /// Every model walked so far with its reward (Algorithm 1's replay memory).
    pub memory: Vec<(Vec<Transition>, f64)>,
    pub schedule: Vec<(f64, usize)>,
    pending: Vec<Vec<Transition>>,
    /// Epsilon of each model proposed, in order.
    pub epsilons: Vec<f64>,
}

impl QLearner {
    pub fn new(cfg: QConfig, space: QSpace) -> QLearner {
        let schedule = schedule(cfg.models);
        QLearner { cfg, space, q: QTable::new(), memory: Vec::new(), schedule, pending: Vec::new(), epsilons: Vec::new() }
    }

    /// Epsilon of the next proposal.
    pub fn epsilon(&self) -> f64 {
        epsilon_at(&self.schedule, self.epsilons.len())
    }

    /// Epsilon the latest proposal was made with.
    pub fn epsilon_of_last(&self) -> f64 {
        self.epsilons.last().copied().unwrap_or(1.0)
    }
}

impl Searcher for QLearner {
    fn name(&self) -> &'static str {
        "qlearning"
    }

    fn propose(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        self.propose_batch(1, rng)
    }

    /// `k` walks at the current epsilon; the replay follows the whole batch.
    fn propose_batch(&mut self, k: usize, rng: &mut ChaCha8Rng) -> Result<Vec<Arch>> {
        let eps = self.epsilon();
        let mut archs = Vec::with_capacity(k);
        self.pending.clear();
        for _ in 0..k.max(1) {
            let (arch, path) = walk(&self.space, &self.q, self.cfg.q_init, eps, rng);
            self.epsilons.push(eps);
            self.pending.push(path);
            archs.push(arch);
        }
        Ok(archs)
    }

    fn observe(&mut self, _archs: &[Arch], rewards: &[f64], rng: &mut ChaCha8Rng) -> Result<()> {
        for (path, &r) in std::mem::take(&mut self.pending).into_iter().zip(rewards) {
            self.memory.push((path, r));
        }
        // Algorithm 1: after each new model, K walks drawn from the memory replayed.
        for _ in 0..self.cfg.replay {
            let (path, r) = &self.memory[rng.gen_range(0..self.memory.len())];
            update(&mut self.q, &self.cfg, path, *r);
        }
        Ok(())
    }

    fn note(&self) -> serde_json::Value {
        serde_json::json!({"epsilon": self.epsilons.last()})
    }

    fn report(&self) -> serde_json::Value {
        serde_json::json!({"epsilon_schedule": self.schedule, "epsilons": self.epsilons, "q": self.q})
    }
}
