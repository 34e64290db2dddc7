//! The supernets: one set of weights per (position, input, op), and a forward
//! that touches only the sampled path.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use enas::model::init::sorted_vars;
use enas::model::{seeded_init, Ctx, MacroSkips, MicroSupernet, NetConfig, Supernet};
use enas::space::{Arch, SpaceKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn config(layers: usize, aux: bool) -> NetConfig {
    NetConfig {
        layers,
        channels: 4,
        in_channels: 1,
        image_size: 12,
        classes: 3,
        aux_head: aux,
        dropout: 0.0,
        drop_path: 0.0,
        width: 1.0,
        macro_skips: Default::default(),
    }
}

fn input() -> Tensor {
    let v: Vec<f32> = (0..2 * 144).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    Tensor::from_vec(v, (2, 1, 12, 12), &Device::Cpu).unwrap()
}

/// Names of the variables that received a gradient from one training step on `arch`.
fn touched(space: SpaceKind, nodes: usize, cfg: &NetConfig, arch: &str) -> (Vec<String>, Vec<String>, (usize, usize), bool) {
    let varmap = VarMap::new();
    let net = Supernet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), space, nodes, cfg).unwrap();
    seeded_init(&varmap, 0).unwrap();
    let arch = Arch::parse(space, arch).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let out = net.forward(&input(), &arch, &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
    let mut loss = out.logits.sqr().unwrap().mean_all().unwrap();
    if let Some(aux) = &out.aux_logits {
        loss = (loss + aux.sqr().unwrap().mean_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (name, var) in sorted_vars(&varmap) {
        let g = grads.get(var.as_tensor()).map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap());
        match g {
            Some(g) if g > 0.0 => with.push(name),
            _ => without.push(name),
        }
    }
    (with, without, out.logits.dims2().unwrap(), out.aux_logits.is_some())
}

#[test]
fn micro_supernet_trains_only_the_sampled_path() {
    // Three nodes: (0 sep3, 1 identity), (2 avg, 0 sep5), (3 max, 2 sep3); same normal and reduction cell.
    let cell = "0 0 1 4 2 2 0 1 3 3 2 0";
    let (with, without, dims, aux) = touched(SpaceKind::Micro, 3, &config(1, true), &format!("{cell} {cell}"));
    assert_eq!(dims, (2, 3));
    assert!(aux, "training forward feeds the auxiliary head");
    let has = |v: &[String], s: &str| v.iter().any(|n| n.starts_with(s));
    // With one layer the cells are reduction, reduction, normal; look at the last.
    assert!(has(&with, "cell_2.node_0.x.from_0.sep3."));
    assert!(has(&with, "cell_2.node_1.y.from_0.sep5."));
    assert!(has(&with, "cell_2.node_2.y.from_2.sep3."));
    assert!(has(&with, "cell_2.final.w"));
    // Same node and branch, other input or other op: untouched.
    assert!(!has(&with, "cell_2.node_0.x.from_1."));
    assert!(!has(&with, "cell_2.node_0.x.from_0.sep5."));
    assert!(!has(&with, "cell_2.node_1.x."), "avg pool has no weights");
    assert!(has(&without, "cell_2.node_2.x.from_0.sep3."));
}

#[test]
fn macro_supernet_trains_only_the_sampled_ops_and_skips() {
    // Layer ops 0 conv3, 1 sep3, 4 avg pool, 5 max pool; skips: layer 2 takes the stem, layer 3 takes layer 1.
    let arch = "0 1 0 4 1 0 5 0 0 1";
    let (with, _, dims, aux) = touched(SpaceKind::Macro, 0, &config(4, false), arch);
    assert_eq!(dims, (2, 3));
    assert!(!aux);
    let has = |s: &str| with.iter().any(|n| n.starts_with(s));
    assert!(has("layer_0.op_0.conv") && !has("layer_0.op_1."));
    assert!(has("layer_1.op_1.sep") && !has("layer_1.op_0."));
    assert!(has("layer_2.op_4.inp") && has("layer_3.op_5.inp"));
    assert!(has("layer_2.skip.w") && has("layer_3.skip.w"));
}

#[test]
fn the_same_architecture_gives_the_same_output_and_another_does_not() {
    let varmap = VarMap::new();
    let cfg = config(1, false);
    let net = Supernet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), SpaceKind::Micro, 2, &cfg).unwrap();
    seeded_init(&varmap, 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut run = |a: &str| {
        let arch = Arch::parse(SpaceKind::Micro, a).unwrap();
        let out = net.forward(&input(), &arch, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 }).unwrap();
        out.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let a = run("0 0 1 1 2 3 0 4 0 0 1 1 2 3 0 4");
    assert_eq!(a, run("0 0 1 1 2 3 0 4 0 0 1 1 2 3 0 4"));
    assert_ne!(a, run("1 0 1 1 2 3 0 4 0 0 1 1 2 3 0 4"));
}

#[test]
fn summed_macro_skips_need_no_projection_and_change_the_output() {
    let cfg = NetConfig { macro_skips: MacroSkips::Sum, ..config(4, false) };
    let arch = "0 1 0 4 1 0 5 0 0 1";
    let (with, without, _, _) = touched(SpaceKind::Macro, 0, &cfg, arch);
    let all: Vec<&String> = with.iter().chain(&without).collect();
    assert!(!all.iter().any(|n| n.contains("skip.w")), "summed skips have no 1x1 projection: {all:?}");
    let has = |s: &str| with.iter().any(|n| n.starts_with(s));
    // As the authors' search code: BN after every layer but the first, skips or not.
    assert!(has("layer_1.skip.bn") && has("layer_2.skip.bn") && has("layer_3.skip.bn"));
    let varmap = VarMap::new();
    let net = Supernet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), SpaceKind::Macro, 0, &cfg).unwrap();
    seeded_init(&varmap, 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut run = |a: &str| {
        let out = net.forward(&input(), &Arch::parse(SpaceKind::Macro, a).unwrap(), &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
        out.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let a = run(arch);
    assert_eq!(a, run(arch));
    // Layer 3 also takes the stem.
    assert_ne!(a, run("0 1 0 4 1 0 5 1 0 1"));
}

/// The micro cell's nodes as one op (its own backward) and as candle's graph
/// give the same loss and the same gradient for every variable, on an arc with
/// every op kind, a state read twice, and identity and pool branches.
#[test]
fn fused_micro_cells_match_candles_graph() {
    let cfg = config(1, false);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut net = match Supernet::new(vb, SpaceKind::Micro, 4, &cfg).unwrap() {
        Supernet::Micro(n) => n,
        _ => unreachable!(),
    };
    seeded_init(&varmap, 3).unwrap();
    // (0 sep3, 1 sep5), (2 avg, 0 max), (1 identity, 3 sep3), (2 sep5, 2 identity); then a cell without
    // weights, one node of which passes state 0 through both branches.
    let arch = Arch::parse(SpaceKind::Micro, "0 0 1 1 2 2 0 3 1 4 3 0 2 1 2 4 0 2 1 3 0 4 0 4 1 4 3 3 4 2 2 4").unwrap();
    let Arch::Micro(arch) = arch else { unreachable!() };
    let run = |net: &MicroSupernet| {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = net.forward(&input(), &arch, &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
        let loss = out.logits.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<(String, Option<Vec<f32>>)> = sorted_vars(&varmap)
            .into_iter()
            .map(|(name, v)| (name, grads.get(v.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())))
            .collect();
        (loss.to_scalar::<f32>().unwrap(), g)
    };
    net.fused_cells = true;
    let (loss_fused, fused) = run(&net);
    net.fused_cells = false;
    let (loss_graph, graph) = run(&net);
    assert!((loss_fused - loss_graph).abs() <= 1e-6 * loss_graph.abs().max(1.0), "loss {loss_fused} vs {loss_graph}");
    let (compared, _) = same_gradients(&fused, &graph);
    assert!(compared > 20, "only {compared} variables had gradients");
}

/// Every variable's gradient on the fused path against the graph path's:
/// both present and close, or both absent. Returns how many were compared
/// and the names of those without.
fn same_gradients(fused: &[(String, Option<Vec<f32>>)], graph: &[(String, Option<Vec<f32>>)]) -> (usize, Vec<String>) {
    let (mut compared, mut without) = (0, Vec::new());
    for ((name, a), (_, b)) in fused.iter().zip(graph) {
        match (a, b) {
            (Some(a), Some(b)) => {
                // Relative to the largest entry, with a floor for gradients near zero (float sums in another order).
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(d <= 1e-4 * scale + 1e-6, "{name}: gradient differs by {d} (scale {scale})");
                compared += 1;
            }
            (None, None) => without.push(name.clone()),
            _ => panic!("{name}: a gradient on one path only"),
        }
    }
    (compared, without)
}

/// The macro layers as one op (its own backward) and as candle's graph give
/// the same loss, the same gradient for every variable and the same running
/// statistics, on an arc with every op kind, a layer without skips, outputs
/// read by several later layers, and an output no layer reads after a
/// pooling layer: its reduction gets no gradient on either path, and the op
/// does not run it (its running statistics stay as they were).
#[test]
fn fused_macro_layers_match_candles_graph() {
    use enas::model::MacroSupernet;
    let cfg = NetConfig { macro_skips: MacroSkips::Sum, ..config(6, false) };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut net = match Supernet::new(vb, SpaceKind::Macro, 0, &cfg).unwrap() {
        Supernet::Macro(n) => n,
        _ => unreachable!(),
    };
    // Reductions after layers 1 and 3; output 2 is reduced there and read by no later layer.
    let arch = Arch::parse(SpaceKind::Macro, "0 1 0 2 1 1 3 0 1 1 4 1 1 0 0 5 0 1 0 1 0").unwrap();
    let Arch::Macro(arch) = arch else { unreachable!() };
    let run = |net: &MacroSupernet| {
        seeded_init(&varmap, 4).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = net.forward(&input(), &arch, &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
        let loss = out.logits.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let vars = sorted_vars(&varmap);
        let g: Vec<(String, Option<Vec<f32>>)> =
            vars.iter().map(|(name, v)| (name.clone(), grads.get(v.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap()))).collect();
        let running: Vec<(String, Vec<f32>)> = vars
            .iter()
            .filter(|(name, _)| name.contains("running"))
            .map(|(name, v)| (name.clone(), v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        (loss.to_scalar::<f32>().unwrap(), g, running)
    };
    net.fused_layers = true;
    let (loss_fused, fused, running_fused) = run(&net);
    net.fused_layers = false;
    let (loss_graph, graph, running_graph) = run(&net);
    assert!((loss_fused - loss_graph).abs() <= 1e-6 * loss_graph.abs().max(1.0), "loss {loss_fused} vs {loss_graph}");
    let (compared, without) = same_gradients(&fused, &graph);
    assert!(compared > 40, "only {compared} variables had gradients");
    assert!(without.iter().any(|n| n.contains("pool.from_2")), "the unread reduction gets no gradient: {without:?}");
    seeded_init(&varmap, 4).unwrap();
    let initial: Vec<Vec<f32>> = sorted_vars(&varmap)
        .iter()
        .filter(|(name, _)| name.contains("running"))
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let mut unread = 0;
    for (((name, a), (_, b)), init) in running_fused.iter().zip(&running_graph).zip(&initial) {
        if name.starts_with("layer_3.pool.from_2.") {
            assert_eq!(a, init, "{name}: the unread output's reduction ran");
            assert_ne!(b, init, "{name}: the graph runs every reduction");
            unread += 1;
            continue;
        }
        let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d <= 1e-5, "{name}: running statistics differ by {d}");
    }
    assert_eq!(unread, 2, "the unread reduction's running mean and variance");
}

/// A macro layer's convolution branch as one op gives the output and the
/// gradients of the separate ops to the bit (the same float operations).
#[test]
fn fused_macro_conv_branch_is_bitwise_the_composition() {
    use enas::model::macro_net::MacroOp;
    for op in [0, 2] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let layer = MacroOp::new(vb, op, 4).unwrap();
        seeded_init(&varmap, 5).unwrap();
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 9, 7), &Device::Cpu).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 9, 7), &Device::Cpu).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let y = f(x.as_tensor());
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut all =
                vec![y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            for (_, v) in sorted_vars(&varmap) {
                if let Some(g) = grads.get(v.as_tensor()) {
                    all.push(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
            }
            all
        };
        let fused = run(&|x| layer.forward(x, true).unwrap());
        let composed = run(&|x| layer.forward_composed(x, true).unwrap());
        assert_eq!(fused.len(), composed.len(), "op {op}: the same variables get gradients");
        assert!(fused.len() >= 2 + 6, "op {op}: both convolutions' weights and batch norms have gradients");
        assert_eq!(fused, composed, "op {op}: output and gradients");
    }
}

/// The running statistics of every batch norm after one training forward of `arch`, and whether any moved from its start.
fn running_stats_move(space: SpaceKind, nodes: usize, cfg: &NetConfig, arch: &str) -> (usize, bool) {
    let varmap = VarMap::new();
    let net = Supernet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), space, nodes, cfg).unwrap();
    seeded_init(&varmap, 0).unwrap();
    let running = || -> Vec<(String, Vec<f32>)> {
        sorted_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| name.contains("running_"))
            .map(|(name, v)| (name, v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect()
    };
    let before = running();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let arch = Arch::parse(space, arch).unwrap();
    net.forward(&input(), &arch, &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
    (before.len(), before != running())
}

#[test]
fn the_micro_supernet_leaves_running_statistics_nothing_reads() {
    // It normalises with the batch in training, rewards and derive alike, so updating them would be work for nothing (issue 20).
    let cell = "0 0 1 4 2 2 0 1 3 3 2 0";
    let (count, moved) = running_stats_move(SpaceKind::Micro, 3, &config(1, true), &format!("{cell} {cell}"));
    assert!(count > 10 && !moved, "{count} running statistics, moved: {moved}");
    // The macro supernet's rewards may read them: they move.
    let (count, moved) = running_stats_move(SpaceKind::Macro, 0, &config(3, false), "0 1 0 2 1 0");
    assert!(count > 0 && moved);
    // And the switch is back on after the micro forward: a retrained network's move (tests/retrain.rs evaluates with them).
    let (_, moved) = running_stats_move(SpaceKind::Macro, 0, &config(3, false), "0 1 0 2 1 0");
    assert!(moved);
}

#[test]
fn moving_reward_bn_reads_the_running_averages() {
    // The authors' macro reward pass (is_training=False): batch norm with the running averages, not the batch's statistics (issue 22, item 2).
    let output_after_moving_the_averages = |moving: bool| -> (Vec<f32>, Vec<f32>) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut net = match Supernet::new(vb, SpaceKind::Macro, 0, &config(3, false)).unwrap() {
            Supernet::Macro(n) => n,
            Supernet::Micro(_) => unreachable!(),
        };
        seeded_init(&varmap, 0).unwrap();
        net.moving_bn_in_eval = moving;
        let Arch::Macro(arch) = Arch::parse(SpaceKind::Macro, "0 1 0 2 1 0").unwrap() else { unreachable!() };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut eval = || {
            net.forward(&input(), &arch, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })
                .unwrap()
                .logits
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let before = eval();
        for (name, var) in sorted_vars(&varmap) {
            if name.ends_with("running_mean") {
                var.set(&(var.as_tensor() + 0.5).unwrap()).unwrap();
            }
        }
        (before, eval())
    };
    let (before, after) = output_after_moving_the_averages(true);
    assert_ne!(before, after, "with --reward-bn moving the running averages are read");
    let (before, after) = output_after_moving_the_averages(false);
    assert_eq!(before, after, "with the batch's statistics they are not");
}
