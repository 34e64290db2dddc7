//! `cargo bench --bench ops`: every custom op, forward + backward, at the
//! shapes of the micro search workload (batch 64, 20 channels, 32 x 32), so a
//! regression in any one of them shows. `enas bench ops` times them against
//! candle's own composition of the same computation.
use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use enas::ops;

fn var(shape: &[usize], std: f64) -> Var {
    Var::from_tensor(&Tensor::randn(0f32, std as f32, shape, &Device::Cpu).unwrap()).unwrap()
}

/// Forward, sum, backward: what one training step asks of an op.
fn fwd_bwd(out: candle_core::Result<Tensor>) {
    let g = out.unwrap().sum_all().unwrap().backward().unwrap();
    std::hint::black_box(g);
}

fn custom_ops(c: &mut Criterion) {
    enas::cli::configure_runtime();
    let (n, ch, hw) = (64, 20, 32);
    let x = var(&[n, ch, hw, hw], 1.0);
    let mut g = c.benchmark_group("ops");
    g.sample_size(20);
    for k in [3usize, 5] {
        let w = var(&[ch, 1, k, k], 0.3);
        g.bench_function(format!("depthwise{k}x{k}"), |b| b.iter(|| fwd_bwd(ops::depthwise_conv2d(&x, &w, 1, 1))));
        g.bench_function(format!("relu_depthwise{k}x{k}"), |b| b.iter(|| fwd_bwd(ops::relu_depthwise_conv2d(&x, &w, 1, 1))));
    }
    g.bench_function("depthwise3x3_stride2", |b| {
        let w = var(&[ch, 1, 3, 3], 0.3);
        b.iter(|| fwd_bwd(ops::depthwise_conv2d(&x, &w, 2, 1)))
    });
    g.bench_function("maxpool3x3", |b| b.iter(|| fwd_bwd(ops::max_pool2d(&x, 3, 1))));
    g.bench_function("avgpool3x3", |b| b.iter(|| fwd_bwd(ops::avg_pool2d(&x, 3, 1))));
    let (gamma, beta) = (var(&[ch], 1.0), var(&[ch], 1.0));
    g.bench_function("batch_norm", |b| b.iter(|| fwd_bwd(ops::batch_norm_train(&x, &gamma, &beta, 1e-5).map(|r| r.0))));
    let w1 = var(&[ch, ch], 0.3);
    g.bench_function("conv1x1", |b| b.iter(|| fwd_bwd(ops::conv2d_same(&x, &w1, false))));
    g.bench_function("relu_conv1x1", |b| b.iter(|| fwd_bwd(ops::conv2d_same(&x, &w1, true))));
    for k in [3usize, 5] {
        let w = var(&[ch, ch, k, k], 0.1);
        g.bench_function(format!("conv{k}x{k}"), |b| b.iter(|| fwd_bwd(ops::conv2d_same(&x, &w, true))));
    }
    g.finish();
}

criterion_group!(benches, custom_ops);
criterion_main!(benches);
