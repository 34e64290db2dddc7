//! MetaQNN: the layer space's rules, the epsilon schedule, the Q-update, and
//! a Q-learner that learns a toy reward.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use enas::controller::qlearning::{epsilon_at, schedule, update, walk, QConfig, QLearner, QSpace, QTable, PAPER_SCHEDULE};
use enas::controller::Searcher;
use enas::model::{seeded_init, Ctx, MetaqnnNet, NetConfig};
use enas::space::metaqnn::{Layer, Position, Termination, MAX_LAYERS};
use enas::space::{Arch, MetaArch, SpaceKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn meta(a: &Arch) -> &MetaArch {
    match a {
        Arch::Metaqnn(m) => m,
        _ => panic!("not a MetaQNN architecture"),
    }
}

#[test]
fn random_walks_obey_the_transition_rules() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let space = QSpace::Metaqnn { image_size: 28 };
    let mut ends = [0usize; 2];
    for _ in 0..2000 {
        let (arch, path) = walk(&space, &QTable::new(), 0.5, 1.0, &mut rng);
        let a = meta(&arch);
        a.validate(28).unwrap();
        assert!(!a.layers.is_empty() && a.layers.len() <= MAX_LAYERS);
        assert_eq!(path.len(), a.layers.len() + 1);
        let mut pos = Position::start(28);
        for (i, l) in a.layers.iter().enumerate() {
            if let Layer::Fc { .. } = l {
                assert!(pos.size <= 8, "FC at size {} in {a}", pos.size);
            }
            if i > 0 {
                let prev = a.layers[i - 1];
                assert!(!(matches!(prev, Layer::Pool { .. }) && matches!(l, Layer::Pool { .. })), "pool after pool: {a}");
                if let Layer::Fc { units: before } = prev {
                    assert!(matches!(l, Layer::Fc { units } if *units <= before), "after FC only a narrower FC: {a}");
                }
            }
            pos = pos.after(*l);
        }
        ends[(a.end == Termination::Softmax) as usize] += 1;
        assert_eq!(a.to_string().parse::<MetaArch>().unwrap(), *a);
    }
    assert!(ends[0] > 0 && ends[1] > 0, "both terminations occur: {ends:?}");
}

#[test]
fn illegal_chains_and_bad_tokens_are_named() {
    let cases = [
        ("C(64,3) P(2,2) P(2,2) GAP", "layer 3 (P(2,2)) is not allowed"),
        ("C(64,3) FC(512) SM", "layer 2 (FC(512)) is not allowed"),
        ("C(64,3) P(5,3) FC(256) FC(512) SM", "layer 4 (FC(512)) is not allowed"),
        ("C(64,3) P(5,3) FC(256) GAP", "GAP cannot end"),
    ];
    for (text, says) in cases {
        let a: MetaArch = text.parse().unwrap();
        let e = a.validate(28).unwrap_err();
        assert!(e.contains(says), "{text}: {e}");
    }
    for (text, says) in [("C(64,7) GAP", "token 1"), ("C(64,3) P(2,2)", "GAP or SM"), ("X(1) SM", "expected C(")] {
        let e = text.parse::<MetaArch>().unwrap_err().to_string();
        assert!(e.contains(says), "{text}: {e}");
    }
    // Fifteen layers is past the depth limit.
    let long = format!("{}GAP", "C(64,3) ".repeat(MAX_LAYERS + 1));
    assert!(long.parse::<MetaArch>().unwrap().validate(28).unwrap_err().contains("not allowed"));
}

#[test]
fn the_epsilon_schedule_is_the_papers_compressed() {
    assert_eq!(schedule(2700), PAPER_SCHEDULE.to_vec());
    for models in [10, 60, 100, 1000] {
        let s = schedule(models);
        assert_eq!(s.iter().map(|x| x.1).sum::<usize>(), models);
        assert_eq!(epsilon_at(&s, 0), 1.0);
        assert_eq!(epsilon_at(&s, models - 1), 0.1);
        let eps: Vec<f64> = (0..models).map(|m| epsilon_at(&s, m)).collect();
        assert!(eps.windows(2).all(|w| w[1] <= w[0]));
    }
    let s = schedule(60);
    assert!((33..=34).contains(&s[0].1), "{s:?}");
}

#[test]
fn one_update_moves_q_by_the_learning_rate() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let space = QSpace::new(SpaceKind::Nb201, 0);
    let (_, path) = walk(&space, &QTable::new(), 0.5, 1.0, &mut rng);
    let cfg = QConfig::paper(10);
    let mut q = QTable::new();
    update(&mut q, &cfg, &path, 0.9);
    let last = path.last().unwrap();
    // Terminal: Q = 0.99 * 0.5 + 0.01 * 0.9.
    assert!((q[&last.state][&last.action] - (0.99 * 0.5 + 0.01 * 0.9)).abs() < 1e-12);
    // Earlier: the target is the best next Q (all 0.5 except the one just set, which is lower).
    let first = &path[0];
    assert!((q[&first.state][&first.action] - 0.5).abs() < 1e-12);
}

#[test]
fn q_learning_exploits_what_it_learned() {
    // Reward: the share of 3x3 convs in an NB201 cell.
    let reward = |a: &Arch| match a {
        Arch::Nb201(c) => c.ops.iter().filter(|&&o| o == 3).count() as f64 / 6.0,
        _ => unreachable!(),
    };
    let models = 300;
    let mut q = QLearner::new(QConfig::paper(models), QSpace::new(SpaceKind::Nb201, 0));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut by_eps: Vec<(f64, f64)> = Vec::new();
    for _ in 0..models {
        let archs = q.propose(&mut rng).unwrap();
        let r: Vec<f64> = archs.iter().map(reward).collect();
        by_eps.push((q.epsilon_of_last(), r[0]));
        q.observe(&archs, &r, &mut rng).unwrap();
    }
    let mean_at = |e: f64| {
        let v: Vec<f64> = by_eps.iter().filter(|x| x.0 == e).map(|x| x.1).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean_at(0.1) > mean_at(1.0) + 0.15, "epsilon 0.1: {}, epsilon 1.0: {}", mean_at(0.1), mean_at(1.0));
    assert_eq!(q.memory.len(), models);
}

#[test]
fn metaqnn_networks_follow_their_chain() {
    let cfg = NetConfig {
        layers: 0,
        channels: 0,
        in_channels: 1,
        image_size: 28,
        classes: 10,
        aux_head: false,
        dropout: 0.0,
        drop_path: 0.0,
        width: 0.25,
        macro_skips: Default::default(),
    };
    // Parameters, and multiply-adds per image (each convolution's weights at every output pixel, each FC's once).
    for (text, params, macs) in [
        // 1*16*9 + BN(16: gamma, beta) + classifier 16*10.
        ("C(64,3) GAP", 16 * 9 + 32 + 160, 28 * 28 * 16 * 9 + 160),
        // conv 1->16 (3x3), pool 28->8, FC on 16*8*8 -> 32 with BN, classifier 32*10.
        ("C(64,3) P(5,3) FC(128) SM", 16 * 9 + 32 + 16 * 8 * 8 * 32 + 64 + 32 * 10, 28 * 28 * 16 * 9 + 16 * 8 * 8 * 32 + 32 * 10),
        // pool 28->8, conv 1->32 (1x1), pool 8->3, classifier on 32*3*3.
        ("P(5,3) C(128,1) P(3,2) SM", 32 + 64 + 32 * 3 * 3 * 10, 8 * 8 * 32 + 32 * 3 * 3 * 10),
    ] {
        let arch: MetaArch = text.parse().unwrap();
        let varmap = VarMap::new();
        let net = MetaqnnNet::new(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu), &arch, &cfg).unwrap();
        seeded_init(&varmap, 0).unwrap();
        let n: usize = enas::model::trainable_vars(&varmap).iter().map(|(_, v)| v.elem_count()).sum();
        assert_eq!(n, params, "{text}");
        let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = net.forward(&x, &mut Ctx { train: true, rng: &mut rng, progress: 0.0 }).unwrap();
        assert_eq!(out.logits.dims(), &[2, 10], "{text}");
        let whole = enas::model::Network::Metaqnn(net);
        assert_eq!(whole.multiply_adds(&cfg).unwrap(), macs as u64, "{text}");
    }
}
