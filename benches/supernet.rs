//! `cargo bench --bench supernet`: one shared-weight training step of the
//! peer workloads (forward, backward, clipping, SGD), micro at the peer's size
//! and macro at its size; `enas bench supernet` is the same step with the
//! op-time breakdown, and scripts/bench-vs-pytorch.sh sets it beside PyTorch.
use criterion::{criterion_group, criterion_main, Criterion};
use enas::cli::bench_supernet::{SupernetArgs, Workload};
use enas::model::MacroSkips;
use enas::space::SpaceKind;
use std::path::PathBuf;

fn workload(space: SpaceKind, arcs: &str) -> Workload {
    let args = SupernetArgs {
        space,
        arcs: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(arcs),
        batch: 64,
        channels: None,
        layers: None,
        nodes: 5,
        image: 32,
        in_channels: 3,
        steps: None,
        warmup: None,
        seed: 0,
        // The peer's macro workload (skips summed).
        macro_skips: MacroSkips::Sum,
        device: enas::cli::DeviceArg { device: "cpu".into() },
        json: false,
    };
    Workload::new(&args).unwrap()
}

fn supernet_step(c: &mut Criterion) {
    enas::cli::configure_runtime();
    let mut g = c.benchmark_group("supernet_step");
    g.sample_size(10);
    for (name, space, arcs) in [("micro", SpaceKind::Micro, "micro_arcs.txt"), ("macro", SpaceKind::Macro, "macro_arcs.txt")] {
        let mut w = workload(space, arcs);
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                w.step(i).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, supernet_step);
criterion_main!(benches);
