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

/// Seeds per learning test. One seed's outcome belongs to the floats of the
/// machine it ran on (issue 19: PPO's micro seed 4 went 0.428 -> 0.830 with
/// gemm's AVX-512 kernels and 0.428 -> 0.480 with its AVX2 ones), so the tests
/// assert what a working optimiser reaches on average over several seeds.
/// Measured over 24 seeds with each of gemm's kernel sets (BENCHMARKS.md,
/// issue 19), PPO left the micro toy reward unlearnt within 150 updates on 1
/// and 3 of them; eight seeds fail the bounds below only if five or more do.
const SEEDS: std::ops::Range<u64> = 0..8;

/// `train_on_toy_reward` for every seed, in seed order: two halves at a time,
/// each in a rayon pool of one thread, as the LSTM's ops are too small to
/// share out (handing them to the global pool spent more time waking threads
/// than computing).
fn over_seeds(algo: Algo, space: SpaceKind) -> Vec<(f64, f64)> {
    // The binary's thread settings: without them candle reads /proc/cpuinfo at every op.
    static RUNTIME: std::sync::Once = std::sync::Once::new();
    RUNTIME.call_once(enas::cli::configure_runtime);
    let seeds: Vec<u64> = SEEDS.collect();
    let run = |half: &[u64]| -> Vec<(f64, f64)> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| half.iter().map(|&seed| train_on_toy_reward(algo, space, seed)).collect())
    };
    let runs: Vec<Vec<(f64, f64)>> = std::thread::scope(|s| {
        let halves: Vec<_> = seeds.chunks(seeds.len().div_ceil(2)).map(|half| s.spawn(move || run(half))).collect();
        halves.into_iter().map(|h| h.join().unwrap()).collect()
    });
    runs.concat()
}

/// Means over seeds of the last ten updates' reward and of its gain over the first ten.
fn means(runs: &[(f64, f64)]) -> (f64, f64) {
    let n = runs.len() as f64;
    (runs.iter().map(|r| r.1).sum::<f64>() / n, runs.iter().map(|r| r.1 - r.0).sum::<f64>() / n)
}

/// Where the last ten updates must end up on average: well above the uniform
/// policy (micro 5/12, macro 1/6), which a broken update stays at or falls below.
const LEARNED_FLOOR: f64 = 0.5;

fn assert_learns(algo: Algo) {
    for space in [SpaceKind::Micro, SpaceKind::Macro] {
        let runs = over_seeds(algo, space);
        let (last, gain) = means(&runs);
        let per_seed: Vec<String> = runs.iter().map(|(f, l)| format!("{f:.3} -> {l:.3}")).collect();
        assert!(last > LEARNED_FLOOR && gain > 0.05, "{algo:?}, {space:?}: mean last {last:.3}, mean gain {gain:.3}; per seed {per_seed:?}");
    }
}

#[test]
fn ppo_learns_a_toy_reward() {
    assert_learns(Algo::Ppo);
}

#[test]
fn reinforce_learns_a_toy_reward() {
    assert_learns(Algo::Reinforce);
}

#[test]
fn random_search_does_not_learn() {
    for space in [SpaceKind::Micro, SpaceKind::Macro] {
        let (last, gain) = means(&over_seeds(Algo::Random, space));
        assert!(last < LEARNED_FLOOR - 0.05 && gain.abs() < 0.05, "{space:?}: mean last {last:.3}, mean gain {gain:.3}");
    }
}
