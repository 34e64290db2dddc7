//! `enas bench retrain`: the final retrain's training step at the paper's size
//! (the fixed micro child, 15 layers x 36 channels, batch 144, auxiliary head
//! at 0.4, drop-path 0.4, dropout 0.2, SGD with Nesterov momentum, the clip at
//! 5), on a fixed random CIFAR-sized batch, timed as scripts/bench_retrain_torch.py
//! times PyTorch's: warm-up steps, then every step's loss read back.
use crate::model::{seeded_init, trainable_vars, Ctx, NetConfig, Network};
use crate::space::{Arch, SpaceKind};
use crate::train::loss::cross_entropy;
use crate::train::optim::{collect_grads, Sgd, SgdConfig};
use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::time::Instant;

/// The published ENAS micro cells (normal, then reduction).
pub const PUBLISHED: &str = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1";

#[derive(Args, Clone, Debug)]
pub struct RetrainBenchArgs {
    /// The micro architecture in the authors' string format [default: the published cells].
    #[arg(long, default_value = PUBLISHED)]
    pub arch: String,
    /// Normal cells in all, a reduction cell after each third.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 15)]
    pub layers: usize,
    #[arg(long, value_parser = super::ranges::count, default_value_t = 36)]
    pub channels: usize,
    /// Images per training step.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 144)]
    pub batch: usize,
    /// Side of the square input images, in pixels.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 32)]
    pub image: usize,
    /// Channels of the input images.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 3)]
    pub in_channels: usize,
    /// Timed steps.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Seed of the weights and the batch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// One JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &RetrainBenchArgs) -> Result<()> {
    let device = a.device.open()?;
    let arch = Arch::parse(SpaceKind::Micro, &a.arch).with_context(|| format!("--arch {:?}", a.arch))?;
    let cfg = NetConfig {
        layers: a.layers,
        channels: a.channels,
        in_channels: a.in_channels,
        image_size: a.image,
        classes: 10,
        aux_head: true,
        dropout: 0.2,
        drop_path: 0.4,
        width: 1.0,
        macro_skips: Default::default(),
    };
    let varmap = VarMap::new();
    let net = Network::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &arch, &cfg).context("cannot build the network")?;
    seeded_init(&varmap, a.seed)?;
    let params: usize = trainable_vars(&varmap).iter().map(|(_, v)| v.elem_count()).sum();
    // The paper preset's final decay: twice the authors' l2_reg of 2e-4 (docs/DESIGN.md).
    let mut sgd = Sgd::new(trainable_vars(&varmap), SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 4e-4, decoupled: false });
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let pixels: Vec<f32> = (0..a.batch * a.in_channels * a.image * a.image).map(|_| rng.sample(StandardNormal)).collect();
    let x = Tensor::from_vec(pixels, (a.batch, a.in_channels, a.image, a.image), &device)?;
    let labels: Vec<u32> = (0..a.batch).map(|_| rng.gen_range(0..10)).collect();
    let y = Tensor::from_vec(labels, a.batch, &device)?;
    let mut step = |rng: &mut ChaCha8Rng| -> Result<f64> {
        let out = net.forward(&x, &mut Ctx { train: true, rng, progress: 0.5 })?;
        let mut loss = cross_entropy(&out.logits, &y, 0.0)?;
        if let Some(aux) = &out.aux_logits {
            loss = (loss + (cross_entropy(aux, &y, 0.0)? * 0.4)?)?;
        }
        let mut grads = collect_grads(&loss.backward()?, sgd.vars());
        sgd.clip_and_step(&mut grads, 5.0)?;
        Ok(loss.to_scalar::<f32>()? as f64)
    };
    for _ in 0..a.warmup {
        step(&mut rng)?;
    }
    let started = Instant::now();
    let losses = (0..a.steps).map(|_| step(&mut rng)).collect::<Result<Vec<_>>>()?;
    let seconds = started.elapsed().as_secs_f64();
    let images_per_s = (a.batch * a.steps) as f64 / seconds;
    let device_name = crate::ops::device::name(&device);
    if a.json {
        let v = serde_json::json!({
            "device": device_name, "layers": a.layers, "channels": a.channels, "batch": a.batch, "params": params,
            "steps": a.steps, "seconds": seconds, "images_per_s": images_per_s, "last_loss": losses.last(),
        });
        println!("{v}");
    } else {
        println!(
            "retrain step, {} layers x {} channels, batch {}, {params} parameters, on {device_name}: {images_per_s:.1} images/s over {} steps ({seconds:.2} s)",
            a.layers, a.channels, a.batch, a.steps
        );
    }
    Ok(())
}
