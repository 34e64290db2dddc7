//! The ENAS controller: scoring reproduces sampling, and PPO and REINFORCE
//! learn a reward that random search cannot.
use candle_core::Device;
use enas::controller::{Algo, Controller, ControllerSettings, Pick, PolicyConfig};
use enas::space::{Arch, SpaceKind};
use enas::train::optim::collect_grads;
use enas::train::search::controller_adam;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn policy() -> PolicyConfig {
    PolicyConfig { lstm_size: 32, temperature: None, tanh_constant: Some(1.1), op_tanh_reduce: 2.5, skip_target: 0.4 }
}

#[test]
fn scoring_a_sample_gives_its_log_probability_and_entropy() {
    for (space, size) in [(SpaceKind::Micro, 4), (SpaceKind::Macro, 6)] {
        let ctrl = Controller::new(space, size, &policy(), 7, &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            let s = ctrl.sample(&mut Pick::Draw(&mut rng)).unwrap();
            seen.insert(s.arch.to_arc_string());
            let again = ctrl.score(&s.arch).unwrap();
            let (lp, lp2) = (s.log_prob_value().unwrap(), again.log_prob_value().unwrap());
            assert!(lp < 0.0 && (lp - lp2).abs() < 1e-4, "{space:?}: {lp} vs {lp2}");
            assert!((s.entropy_value().unwrap() - again.entropy_value().unwrap()).abs() < 1e-4);
            assert_eq!(s.skip_penalty.is_some(), space == SpaceKind::Macro);
        }
        assert!(seen.len() > 1, "{space:?}: six draws gave one architecture");
        let greedy = ctrl.sample(&mut Pick::Greedy).unwrap().arch;
        assert_eq!(greedy, ctrl.sample(&mut Pick::Greedy).unwrap().arch);
    }
}

/// Micro: how often an input id is 0 (uniform policy: 5/12 with two nodes);
/// macro: how often a layer's op is max pool (uniform: 1/6).
fn toy_reward(arch: &Arch) -> f64 {
    match arch {
        Arch::Micro(a) => {
            let ids: Vec<usize> = a.normal.nodes.iter().chain(&a.reduce.nodes).flat_map(|n| [n.x_id, n.y_id]).collect();
            ids.iter().filter(|&&i| i == 0).count() as f64 / ids.len() as f64
        }
        Arch::Macro(a) => a.layers.iter().filter(|l| l.op == 5).count() as f64 / a.layers.len() as f64,
        Arch::Nb201(a) => a.ops.iter().filter(|&&o| o == 3).count() as f64 / a.ops.len() as f64,
        Arch::Metaqnn(_) => unreachable!("no LSTM policy over MetaQNN"),
    }
}

/// Mean toy reward of the first and the last ten updates. The learning rate
/// is near the authors' (0.0035 micro): at 0.03 the micro LSTM saturates
/// within a few dozen updates and stops learning the input choices.
fn train_on_toy_reward(algo: Algo, space: SpaceKind, seed: u64) -> (f64, f64) {
    let (size, updates) = if space == SpaceKind::Micro { (2, 150) } else { (4, 60) };
    let settings = ControllerSettings {
        algo,
        policy: PolicyConfig { tanh_constant: Some(if space == SpaceKind::Micro { 1.1 } else { 1.5 }), ..policy() },
        lr: 0.01,
        updates_per_epoch: 0,
        samples_per_update: 8,
        reward_batches: 1,
        entropy_weight: 1e-4,
        baseline_decay: 0.9,
        skip_weight: 0.0,
        ppo_epochs: 4,
        ppo_clip: 0.2,
        ppo_target_kl: 0.05,
        rank_advantages: false,
    };
    let ctrl = Controller::new(space, size, &settings.policy, 9 + seed, &Device::Cpu).unwrap();
    let mut opt = settings.optimizer();
    let mut adam = controller_adam(&ctrl, settings.lr);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means = Vec::new();
    for _ in 0..updates {
        let samples = opt.propose(&ctrl, &mut rng).unwrap();
        let rewards: Vec<f64> = samples.iter().map(|s| toy_reward(&s.arch)).collect();
        means.push(rewards.iter().sum::<f64>() / rewards.len() as f64);
        let mut step = |loss: &candle_core::Tensor| adam.step(&collect_grads(&loss.backward()?, ctrl.params.vars()));
        opt.update(&ctrl, samples, &rewards, &mut step).unwrap();
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (avg(&means[..10]), avg(&means[updates - 10..]))
}

/// Where the last ten updates must end up: well above the uniform policy.
fn learned_floor(space: SpaceKind) -> f64 {
    if space == SpaceKind::Micro { 0.55 } else { 0.5 }
}

#[test]
fn ppo_learns_a_toy_reward() {
    // Several seeds: with advantages left uncentred PPO learned this reward on
    // one seed and drifted back to the uniform policy on others.
    for space in [SpaceKind::Micro, SpaceKind::Macro] {
        for seed in [2, 3, 4] {
            let (first, last) = train_on_toy_reward(Algo::Ppo, space, seed);
            assert!(last > learned_floor(space) && last > first, "{space:?}, seed {seed}: {first:.3} -> {last:.3}");
        }
    }
}

#[test]
fn reinforce_learns_a_toy_reward() {
    for space in [SpaceKind::Micro, SpaceKind::Macro] {
        let (first, last) = train_on_toy_reward(Algo::Reinforce, space, 2);
        assert!(last > learned_floor(space) && last > first, "{space:?}: {first:.3} -> {last:.3}");
    }
}

#[test]
fn random_search_does_not_learn() {
    for space in [SpaceKind::Micro, SpaceKind::Macro] {
        let (first, last) = train_on_toy_reward(Algo::Random, space, 2);
        assert!(last < learned_floor(space) - 0.05 && (last - first).abs() < 0.12, "{space:?}: {first:.3} -> {last:.3}");
    }
}
