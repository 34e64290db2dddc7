//! `enas bench supernet`: the peer scripts' workload (`../shared/peer/enas_*_torch.py`)
//! on our supernet: one architecture of an arc file per step, a fixed random
//! batch, SGD with Nesterov momentum and coupled weight decay, gradient norm
//! clipped at 5. Prints images/s, peak RSS and where the time went.
use crate::model::{seeded_init, trainable_vars, Ctx, MacroSkips, NetConfig, Supernet};
use crate::ops::profile;
use crate::ops::simd::Machine;
use crate::space::{Arch, SpaceKind};
use crate::train::loss::cross_entropy;
use crate::train::optim::{collect_grads, Sgd, SgdConfig};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Clone, Debug)]
pub struct SupernetArgs {
    /// Search space: the ENAS micro cells, the ENAS macro network, MetaQNN layer chains or NAS-Bench-201.
    #[arg(long, value_enum, default_value = "micro")]
    pub space: SpaceKind,
    /// One architecture a line in the authors' integer format; step i uses line i mod len.
    #[arg(long)]
    pub arcs: PathBuf,
    /// Images per training step.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// Default: 20 (micro) or 36 (macro), as the peer scripts.
    #[arg(long, value_parser = super::ranges::count)]
    pub channels: Option<usize>,
    /// Micro: normal cells in all, the authors' num_layers, with a reduction cell after each third (default 6: N N R N N R N N); macro: layers (default: the arc file's).
    #[arg(long, value_parser = super::ranges::count)]
    pub layers: Option<usize>,
    /// Micro: nodes per cell.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 5)]
    pub nodes: usize,
    /// Side of the square input images, in pixels.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 32)]
    pub image: usize,
    /// Channels of the input images.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 3)]
    pub in_channels: usize,
    /// Timed steps (default: 20 micro, 10 macro).
    #[arg(long, value_parser = super::ranges::count)]
    pub steps: Option<usize>,
    /// Untimed steps first (default: 3 micro, 2 macro).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Seed of every random number of the run (the same seed gives the same numbers).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Macro: skips summed then BN (the peer's and the authors' search code) or
    /// concatenated and projected (our search default).
    #[arg(long, value_enum, default_value = "sum")]
    pub macro_skips: MacroSkips,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(serde::Serialize, Debug)]
pub struct SupernetBench {
    pub space: String,
    /// Macro only: how skips were joined.
    pub macro_skips: Option<MacroSkips>,
    pub images_per_s: f64,
    pub seconds: f64,
    pub peak_rss_mb: f64,
    /// Loss of every step, warm-up included, in order: the numerics check.
    pub losses: Vec<f64>,
    /// Share of the timed steps' wall time per phase and per op kind.
    pub phases: Vec<(String, f64)>,
    pub ops: Vec<(String, f64)>,
    pub steps: usize,
    pub batch: usize,
    pub channels: usize,
    pub layers: usize,
    pub threads: usize,
    /// The CPU and the kernel sets that ran.
    pub machine: Machine,
}

fn read_arcs(args: &SupernetArgs) -> Result<Vec<Arch>> {
    let text = std::fs::read_to_string(&args.arcs).with_context(|| format!("cannot read the arc file {}", args.arcs.display()))?;
    let mut arcs = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let arch = Arch::parse(args.space, line).map_err(|e| anyhow::anyhow!("{}, line {}: {e}", args.arcs.display(), i + 1))?;
        arcs.push(arch);
    }
    if arcs.is_empty() {
        bail!("{}: no architectures in it", args.arcs.display());
    }
    Ok(arcs)
}

/// Peak resident set size of this process so far (Linux `VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The peer workload, built once: the supernet, its optimiser, one fixed batch and the arcs.
pub struct Workload {
    net: Supernet,
    sgd: Sgd,
    x: Tensor,
    y: Tensor,
    arcs: Vec<Arch>,
    rng: ChaCha8Rng,
    pub channels: usize,
    pub layers: usize,
    pub steps: usize,
    pub warmup: usize,
}

impl Workload {
    /// The workload on the CPU.
    pub fn new(args: &SupernetArgs) -> Result<Workload> {
        Workload::on(args, &Device::Cpu)
    }

    pub fn on(args: &SupernetArgs, dev: &Device) -> Result<Workload> {
        if !args.space.has_supernet() {
            bail!("--space {} has no supernet: the search-step bench is for micro and macro", args.space.name());
        }
        let micro = args.space == SpaceKind::Micro;
        let arcs = read_arcs(args)?;
        let arc_layers = match &arcs[0] {
            Arch::Macro(a) => a.layers.len(),
            _ => 6,
        };
        let (channels, layers) = (args.channels.unwrap_or(if micro { 20 } else { 36 }), args.layers.unwrap_or(arc_layers));
        let (steps, warmup) = (args.steps.unwrap_or(if micro { 20 } else { 10 }), args.warmup.unwrap_or(if micro { 3 } else { 2 }));
        for (i, arch) in arcs.iter().enumerate() {
            let (have, want, what) = match arch {
                Arch::Micro(a) => (a.num_nodes(), args.nodes, "nodes per cell (--nodes)"),
                Arch::Macro(a) => (a.layers.len(), layers, "layers (--layers)"),
                _ => unreachable!("checked above: micro or macro"),
            };
            if have != want {
                bail!("{}, architecture {}: {have} {what}, but the supernet is built with {want}", args.arcs.display(), i + 1);
            }
        }
        let cfg = NetConfig {
            layers,
            channels,
            in_channels: args.in_channels,
            image_size: args.image,
            classes: 10,
            aux_head: false,
            dropout: 0.1,
            drop_path: 0.0,
            width: 1.0,
            macro_skips: args.macro_skips,
        };
        let varmap = VarMap::new();
        let net = Supernet::new(VarBuilder::from_varmap(&varmap, DType::F32, dev), args.space, args.nodes, &cfg)?;
        seeded_init(&varmap, args.seed)?;
        // The peer scripts' optimiser: SGD, Nesterov momentum 0.9, L2 1e-4 (micro) or 2.5e-4 (macro).
        let sgd_cfg = SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: if micro { 1e-4 } else { 2.5e-4 }, decoupled: false };
        let sgd = Sgd::new(trainable_vars(&varmap), sgd_cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xbe4c);
        let n_in = args.batch * args.in_channels * args.image * args.image;
        let x: Vec<f32> = (0..n_in).map(|_| rng.sample(StandardNormal)).collect();
        let x = Tensor::from_vec(x, (args.batch, args.in_channels, args.image, args.image), dev)?;
        let y: Vec<u32> = (0..args.batch).map(|_| rng.gen_range(0..10)).collect();
        let y = Tensor::from_vec(y, args.batch, dev)?;
        Ok(Workload { net, sgd, x, y, arcs, rng, channels, layers, steps, warmup })
    }

    /// One training step on arc `i mod len`: its loss and the seconds in
    /// forward, backward, and clipping + the optimiser.
    pub fn step(&mut self, i: usize) -> Result<(f64, [f64; 3])> {
        let arch = &self.arcs[i % self.arcs.len()];
        let t = Instant::now();
        let out = self.net.forward(&self.x, arch, &mut Ctx { train: true, rng: &mut self.rng, progress: 0.0 })?;
        let loss = cross_entropy(&out.logits, &self.y, 0.0)?;
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let t_bwd = t.elapsed().as_secs_f64();
        let mut grads = collect_grads(&grads, self.sgd.vars());
        self.sgd.clip_and_step(&mut grads, 5.0)?;
        let t_all = t.elapsed().as_secs_f64();
        Ok((loss.to_scalar::<f32>()? as f64, [t_fwd, t_bwd - t_fwd, t_all - t_bwd]))
    }
}

pub fn run_supernet(args: &SupernetArgs) -> Result<SupernetBench> {
    run_supernet_on(args, &Device::Cpu)
}

/// The bench on `device` (each step ends by reading its loss back, so the time is the device's).
pub fn run_supernet_on(args: &SupernetArgs, device: &Device) -> Result<SupernetBench> {
    let mut w = Workload::on(args, device)?;
    let (steps, warmup) = (w.steps, w.warmup);
    let mut losses = Vec::with_capacity(warmup + steps);
    let mut phase = [0f64; 3];
    let mut t_timed = Instant::now();
    for i in 0..warmup + steps {
        if i == warmup {
            profile::take();
            profile::enable(true);
            t_timed = Instant::now();
        }
        let (loss, times) = w.step(i)?;
        if i >= warmup {
            phase.iter_mut().zip(times).for_each(|(p, t)| *p += t);
        }
        losses.push(loss);
    }
    let seconds = t_timed.elapsed().as_secs_f64();
    profile::enable(false);
    let total = seconds.max(1e-12);
    let phases = ["forward", "backward", "clip + optimiser"].iter().zip(phase).map(|(n, s)| (n.to_string(), s / total)).collect();
    let mut ops: Vec<(String, f64)> = profile::take().into_iter().map(|(k, s, _)| (k.to_string(), s / total)).collect();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(SupernetBench {
        space: args.space.name().to_string(),
        macro_skips: (args.space == SpaceKind::Macro).then_some(args.macro_skips),
        images_per_s: (steps * args.batch) as f64 / total,
        seconds,
        peak_rss_mb: peak_rss_mb(),
        losses,
        phases,
        ops,
        steps,
        batch: args.batch,
        channels: w.channels,
        layers: w.layers,
        threads: rayon::current_num_threads(),
        machine: Machine::current(),
    })
}

pub fn print(b: &SupernetBench, json: bool) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(b)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} supernet{}, batch {}, {} channels, {} layers, {} threads: {:.1} images/s over {} steps ({:.2} s), peak RSS {:.0} MB",
        b.space,
        match b.macro_skips {
            Some(MacroSkips::Sum) => " (skips summed)",
            Some(MacroSkips::Concat) => " (skips concatenated)",
            None => "",
        },
        b.batch,
        b.channels,
        b.layers,
        b.threads,
        b.images_per_s,
        b.steps,
        b.seconds,
        b.peak_rss_mb
    )?;
    writeln!(out, "on {}", b.machine)?;
    writeln!(out, "first losses: {}", b.losses.iter().take(3).map(|l| format!("{l:.6}")).collect::<Vec<_>>().join(" "))?;
    writeln!(out, "share of step time:")?;
    for (name, share) in &b.phases {
        writeln!(out, "  {name:<24} {:>5.1}%", share * 100.0)?;
    }
    writeln!(out, "of which in:")?;
    for (name, share) in &b.ops {
        writeln!(out, "  {name:<24} {:>5.1}%", share * 100.0)?;
    }
    let known: f64 = b.ops.iter().map(|(_, s)| s).sum::<f64>() + b.phases[2].1;
    writeln!(out, "  {:<24} {:>5.1}%", "other (candle ops)", (1.0 - known).max(0.0) * 100.0)?;
    Ok(())
}
