//! `enas bench ops`: our custom ops against candle's own composition of the
//! same computation, forward + backward, median milliseconds.
use crate::ops::{self, reference};
use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use clap::Subcommand;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time each custom op forward+backward against candle's composition.
    Ops {
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
        /// Timed repetitions per op.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Input shape N C H W.
        #[arg(long, num_args = 4, default_values_t = [64, 32, 16, 16])]
        shape: Vec<usize>,
        #[command(flatten)]
        device: super::DeviceArg,
    },
    /// The ENAS search step of the peer PyTorch scripts on our supernet: images/s, peak RSS, time per op kind.
    Supernet(super::bench_supernet::SupernetArgs),
    /// Search strategies on a NAS-Bench-201 table: best accuracy found within a budget of lookups.
    Nb201(super::bench_nb201::Nb201Args),
    /// The final retrain's training step at the paper's size (15 x 36, batch 144, aux head, drop-path): images/s.
    Retrain(super::bench_retrain::RetrainBenchArgs),
    /// Does the supernet rank architectures? Random ones scored with a run's shared weights, then trained from scratch: Kendall's tau, Spearman's rho.
    Ranking(super::bench_ranking::RankingArgs),
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ops { json, reps, shape, device } => bench_ops(json, reps, &shape, &device.open()?),
        BenchCommand::Supernet(args) => super::bench_supernet::print(&super::bench_supernet::run_supernet_on(&args, &args.device.open()?)?, args.json),
        BenchCommand::Nb201(args) => super::bench_nb201::print(&args, &super::bench_nb201::run(&args)?),
        BenchCommand::Ranking(args) => super::bench_ranking::run(&args),
        BenchCommand::Retrain(args) => super::bench_retrain::run(&args),
    }
}

/// Median over `reps` runs of `f` (after one warm-up), in milliseconds.
fn median_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    Ok(times[times.len() / 2])
}

/// Forward, sum, backward: what one training step asks of an op.
fn fwd_bwd(out: candle_core::Result<Tensor>) -> candle_core::Result<()> {
    let g = out?.sum_all()?.backward()?;
    std::hint::black_box(g);
    Ok(())
}

pub fn bench_ops(json: bool, reps: usize, shape: &[usize], device: &Device) -> Result<()> {
    let dev = device.clone();
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?)?;
    let mut rows = Vec::new();
    for k in [3usize, 5] {
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.3, (c, 1, k, k), &dev)?)?;
        let name = format!("depthwise{k}x{k}");
        rows.push((name.clone(), "enas", median_ms(reps, || fwd_bwd(ops::depthwise_conv2d(&x, &wt, 1, 1)))?));
        rows.push((name, "candle", median_ms(reps, || fwd_bwd(x.conv2d(&wt, k / 2, 1, 1, c)))?));
    }
    rows.push(("maxpool3x3".into(), "enas", median_ms(reps, || fwd_bwd(ops::max_pool2d(&x, 3, 1)))?));
    rows.push(("maxpool3x3".into(), "candle", median_ms(reps, || fwd_bwd(reference::max_pool3x3(&x)))?));
    rows.push(("avgpool3x3".into(), "enas", median_ms(reps, || fwd_bwd(ops::avg_pool2d(&x, 3, 1)))?));
    rows.push(("avgpool3x3".into(), "candle", median_ms(reps, || fwd_bwd(reference::avg_pool3x3(&x)))?));
    for k in [1usize, 3, 5] {
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.3, (c, c, k, k), &dev)?)?;
        let name = format!("relu+conv{k}x{k}");
        rows.push((name.clone(), "enas", median_ms(reps, || fwd_bwd(ops::conv2d_same(&x, &wt, true)))?));
        rows.push((name, "candle", median_ms(reps, || fwd_bwd(x.relu()?.conv2d(&wt, k / 2, 1, 1, 1)))?));
    }
    if json {
        for (op, imp, ms) in &rows {
            println!("{}", serde_json::json!({"op": op, "impl": imp, "ms": ms, "kernels": crate::ops::simd::active().name()}));
        }
    } else {
        println!("forward+backward at ({n}, {c}, {h}, {w}), median of {reps}, on {}", crate::ops::simd::Machine::current());
        println!("{:<14} {:>10} {:>10} {:>8}", "op", "enas ms", "candle ms", "speedup");
        for pair in rows.chunks(2) {
            println!("{:<14} {:>10.3} {:>10.3} {:>7.1}x", pair[0].0, pair[0].2, pair[1].2, pair[1].2 / pair[0].2);
        }
    }
    Ok(())
}
