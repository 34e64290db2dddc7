//! Optimisers, clipping, schedules and loss against hand-computed values.
use candle_core::{Device, Tensor, Var};
use enas::train::optim::collect_grads;
use enas::train::{clip_grad_norm, cross_entropy, Adam, Cosine, Sgd, SgdConfig};

fn scalar_var(v: f32) -> (String, Var) {
    ("w".to_string(), Var::new(&[v], &Device::Cpu).unwrap())
}

/// One step on loss = g * w, whose gradient is the constant g.
fn grads_for(vars: &[(String, Var)], g: f32) -> Vec<Option<Tensor>> {
    let loss = (vars[0].1.as_tensor() * g as f64).unwrap().sum_all().unwrap();
    collect_grads(&loss.backward().unwrap(), vars)
}

fn value(var: &Var) -> f32 {
    var.as_tensor().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn sgd_nesterov_momentum_matches_hand_computation() {
    let vars = vec![scalar_var(1.0)];
    let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0, decoupled: false };
    let mut sgd = Sgd::new(vars.clone(), cfg);
    sgd.step(&grads_for(&vars, 0.5)).unwrap();
    // v = 0.5; w -= 0.1 (0.5 + 0.9 * 0.5)
    assert!((value(&vars[0].1) - 0.905).abs() < 1e-6);
    sgd.step(&grads_for(&vars, 0.5)).unwrap();
    // v = 0.95; w -= 0.1 (0.5 + 0.9 * 0.95)
    assert!((value(&vars[0].1) - 0.7695).abs() < 1e-6);
    // The momentum buffer survives a save / load.
    let state = sgd.state();
    assert_eq!(state["sgd.velocity.w"].to_vec1::<f32>().unwrap(), vec![0.95]);
}

#[test]
fn sgd_heavy_ball_and_both_weight_decays() {
    let vars = vec![scalar_var(2.0)];
    let mut sgd = Sgd::new(vars.clone(), SgdConfig { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0, decoupled: false });
    sgd.step(&grads_for(&vars, 1.0)).unwrap();
    sgd.step(&grads_for(&vars, 1.0)).unwrap();
    // v1 = 1, v2 = 1.9: w = 2 - 0.1 - 0.19
    assert!((value(&vars[0].1) - 1.71).abs() < 1e-6);

    let vars = vec![scalar_var(2.0)];
    let mut l2 = Sgd::new(vars.clone(), SgdConfig { lr: 0.1, momentum: 0.0, nesterov: false, weight_decay: 0.5, decoupled: false });
    l2.step(&grads_for(&vars, 1.0)).unwrap();
    // g = 1 + 0.5 * 2: w = 2 - 0.1 * 2
    assert!((value(&vars[0].1) - 1.8).abs() < 1e-6);

    let vars = vec![scalar_var(2.0)];
    let mut sgdw = Sgd::new(vars.clone(), SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.5, decoupled: true });
    sgdw.step(&grads_for(&vars, 1.0)).unwrap();
    // decay outside the momentum: w = 2 - 0.1 (1 + 0.9) - 0.1 * 0.5 * 2
    assert!((value(&vars[0].1) - 1.71).abs() < 1e-6);
}

#[test]
fn momentum_buffers_hold_no_graph() {
    // With L2 decay the update involves the weight itself; if that recorded ops,
    // each buffer would keep the previous one alive and memory would grow every step.
    let vars = vec![scalar_var(1.0)];
    let mut sgd = Sgd::new(vars.clone(), SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.1, decoupled: false });
    for _ in 0..3 {
        sgd.step(&grads_for(&vars, 0.5)).unwrap();
    }
    assert!(!sgd.state()["sgd.velocity.w"].track_op());
}

#[test]
fn adam_first_step_moves_by_the_learning_rate() {
    let vars = vec![scalar_var(1.0)];
    let mut adam = Adam::new(vars.clone(), 0.01);
    adam.step(&grads_for(&vars, 3.0)).unwrap();
    // Bias-corrected m / sqrt(v) = g / |g| on the first step.
    assert!((value(&vars[0].1) - 0.99).abs() < 1e-6);
    adam.step(&grads_for(&vars, -3.0)).unwrap();
    // m2 = 0.9 m1 + 0.1 g, v2 = 0.999 v1 + 0.001 g^2, both bias-corrected.
    let m = (0.9 * 0.3 - 0.3) / (1.0 - 0.81f64);
    let v = (0.999 * 0.009 + 0.001 * 9.0) / (1.0 - 0.998001f64);
    let expect = 0.99 - 0.01 * m / (v.sqrt() + 1e-8);
    assert!((value(&vars[0].1) as f64 - expect).abs() < 1e-6, "{} vs {expect}", value(&vars[0].1));
    assert_eq!(adam.t, 2);
}

#[test]
fn clipping_scales_to_the_global_norm() {
    let dev = Device::Cpu;
    let mut grads = vec![Some(Tensor::new(&[3f32], &dev).unwrap()), None, Some(Tensor::new(&[4f32], &dev).unwrap())];
    let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-6);
    let a = grads[0].as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
    let b = grads[2].as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((a - 0.6).abs() < 1e-5 && (b - 0.8).abs() < 1e-5);
    // Under the bound nothing changes.
    let mut small = vec![Some(Tensor::new(&[0.3f32], &dev).unwrap())];
    clip_grad_norm(&mut small, 1.0).unwrap();
    assert_eq!(small[0].as_ref().unwrap().to_vec1::<f32>().unwrap(), vec![0.3]);
}

#[test]
fn cosine_and_warm_restarts() {
    let c = Cosine { lr_max: 0.1, lr_min: 0.0, t0: 10.0, t_mul: 1.0 };
    assert!((c.at(0.0) - 0.1).abs() < 1e-12);
    assert!((c.at(5.0) - 0.05).abs() < 1e-12);
    assert!(c.at(9.999) < 1e-6);
    let r = Cosine { lr_max: 1.0, lr_min: 0.5, t0: 1.0, t_mul: 2.0 };
    // Restarts at epochs 1 and 3 (periods 1, 2, 4, ...).
    assert!((r.at(1.0) - 1.0).abs() < 1e-12);
    assert!((r.at(2.0) - 0.75).abs() < 1e-12);
    assert!((r.at(3.0) - 1.0).abs() < 1e-12);
    assert!((r.at(5.0) - 0.75).abs() < 1e-12);
}

#[test]
fn cross_entropy_with_label_smoothing() {
    let dev = Device::Cpu;
    let logits = Tensor::new(&[[2f32, 0.0, -1.0], [0.5, 0.5, 3.0]], &dev).unwrap();
    let labels = Tensor::new(&[0u32, 1], &dev).unwrap();
    let rows = [[2f64, 0.0, -1.0], [0.5, 0.5, 3.0]];
    let mut nll = 0.0;
    let mut uniform = 0.0;
    for (row, label) in rows.iter().zip([0usize, 1]) {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        nll += lse - row[label];
        uniform += row.iter().map(|v| lse - v).sum::<f64>() / 3.0;
    }
    let (nll, uniform) = (nll / 2.0, uniform / 2.0);
    let plain = cross_entropy(&logits, &labels, 0.0).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((plain - nll).abs() < 1e-5);
    let smooth = cross_entropy(&logits, &labels, 0.1).unwrap().to_scalar::<f32>().unwrap() as f64;
    assert!((smooth - (0.9 * nll + 0.1 * uniform)).abs() < 1e-5);
}

#[test]
fn paper_weight_decay_is_the_authors_effective_l2() {
    use enas::controller::Algo;
    use enas::data::DatasetKind;
    use enas::space::SpaceKind;
    use enas::train::preset::{plan, Choice, Preset};
    // The authors add l2_reg * sum(w^2) to the loss (utils.py); its gradient, computed by candle:
    let l2_reg = 1e-4;
    let w = Var::new(&[0.5f32, -2.0, 3.0], &Device::Cpu).unwrap();
    let term = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * l2_reg).unwrap();
    let grads = term.backward().unwrap();
    let theirs = grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    // Our decay adds weight_decay * w to the gradient: one plain SGD step of lr 1 on a zero loss gradient moves w by it.
    let vars = vec![("w".to_string(), w.clone())];
    let before = w.as_tensor().to_vec1::<f32>().unwrap();
    let choice = |space| Choice {
        preset: Preset::Paper,
        space,
        algo: Algo::Ppo,
        dataset: DatasetKind::Cifar10,
        data_dir: None,
        shape: DatasetKind::Cifar10.builtin_shape().unwrap(),
        seed: 0,
    };
    let micro = plan(&choice(SpaceKind::Micro));
    let mac = plan(&choice(SpaceKind::Macro));
    let mut sgd = Sgd::new(vars.clone(), SgdConfig { lr: 1.0, momentum: 0.0, nesterov: false, ..micro.search.sgd.clone() });
    sgd.step(&[Some(Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap())]).unwrap();
    let ours: Vec<f32> = before.iter().zip(w.as_tensor().to_vec1::<f32>().unwrap()).map(|(b, a)| b - a).collect();
    for (o, t) in ours.iter().zip(&theirs) {
        assert!((o - t).abs() < 1e-7, "ours {ours:?}, the authors' {theirs:?}");
    }
    // The macro paper preset scores rewards with the running averages, as the authors; micro with the batch.
    assert_eq!(mac.search.reward_bn, enas::train::search::RewardBn::Moving);
    assert_eq!(micro.search.reward_bn, enas::train::search::RewardBn::Batch);
    // Every paper preset: twice the authors' l2_reg (cifar10_{micro,macro}_{search,final}.sh).
    for (got, l2) in [
        (micro.search.sgd.weight_decay, 1e-4),
        (micro.retrain.sgd.weight_decay, 2e-4),
        (mac.search.sgd.weight_decay, 2.5e-4),
        (mac.retrain.sgd.weight_decay, 2e-4),
    ] {
        assert!((got - 2.0 * l2).abs() < 1e-12, "{got} against 2 x {l2}");
    }
}
