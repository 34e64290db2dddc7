//! `enas train`, `enas search` and `enas derive`.
use super::DataArgs;
use crate::controller::{Algo, Strategy};
use crate::data::cifar::Variant;
use crate::data::{fetch, Dataset, DatasetKind};
use crate::model::MacroSkips;
use crate::space::SpaceKind;
use crate::train::derive::{self, DeriveOptions};
use crate::train::pipeline;
use crate::train::preset::{self, Choice, Preset};
use crate::train::retrain::RunOptions;
use crate::train::search;
use anyhow::Result;
use candle_core::Device;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(super) data: DataArgs,
    /// Search space: the ENAS micro cells, the ENAS macro network, MetaQNN layer chains or NAS-Bench-201.
    #[arg(long, value_enum, default_value = "micro")]
    pub(super) space: SpaceKind,
    /// Controller: PPO (default), REINFORCE (the paper) or uniformly random architectures.
    #[arg(long, value_enum, default_value = "ppo")]
    pub(super) controller: Algo,
    /// enas: one shared supernet (ENAS); multi-trial: every child trained from scratch (NAS-RL, MetaQNN; `enas search` only).
    #[arg(long, value_enum, default_value = "enas")]
    pub(super) mode: Mode,
    /// Multi-trial: how architectures are chosen (default: reinforce, as NAS-RL; qlearning on metaqnn, as MetaQNN).
    #[arg(long, value_enum)]
    pub(super) strategy: Option<Strategy>,
    /// Multi-trial: distinct children to train.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 60)]
    pub(super) budget: usize,
    /// Multi-trial: epochs each child trains; its reward is its best validation accuracy.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 2)]
    pub(super) child_epochs: usize,
    /// Multi-trial, MetaQNN: filters and units are the paper's times this.
    #[arg(long, value_parser = super::ranges::positive, allow_negative_numbers = true, default_value_t = 1.0)]
    pub(super) width: f64,
    /// Multi-trial: children train on the first N training images only.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) train_limit: Option<usize>,
    /// Multi-trial: images held out of training for the children's rewards.
    #[arg(long)]
    pub(super) valid_size: Option<usize>,
    /// Macro search: skips concatenated and projected (the shape the child is
    /// retrained in) or summed, as the authors' search code.
    #[arg(long, value_enum, default_value = "concat")]
    pub(super) macro_skips: MacroSkips,
    /// Sizes and schedules of every stage: smoke (seconds), quick (an hour on 2 cores), paper (the authors').
    #[arg(long, value_enum, default_value = "quick")]
    pub(super) preset: Preset,
    /// Output directory of the run (created; with --resume, the run to continue).
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Seed of every random number of the run (the same seed gives the same numbers).
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Search epochs instead of the preset's.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) search_epochs: Option<usize>,
    /// Retrain epochs instead of the preset's.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) retrain_epochs: Option<usize>,
    /// Continue the run in --out where it stopped.
    #[arg(long)]
    pub(super) resume: bool,
    /// Download CIFAR-10/100 into the cache first if it is not there.
    #[arg(long)]
    pub(super) download: bool,
    /// Stop after this many search epochs of this invocation (to test --resume).
    #[arg(long, hide = true)]
    pub(super) stop_after: Option<usize>,
    /// No progress bars or per-epoch lines, only the result.
    #[arg(long)]
    pub(super) quiet: bool,
    /// Also write each stage's per-epoch metrics as TensorBoard scalars (STAGE/tensorboard/).
    #[arg(long)]
    pub(super) tensorboard: bool,
    /// Print the outcome as one JSON object (no progress bars) instead of a sentence.
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Enas,
    MultiTrial,
}

#[derive(Args)]
pub struct DeriveArgs {
    /// A run directory of `enas train` or `enas search` (its `search/` is read, `derive/` written).
    #[arg(long)]
    run: PathBuf,
    /// Architectures sampled from the trained policy (its argmax is added).
    #[arg(long, value_parser = super::ranges::count, default_value_t = 100)]
    samples: usize,
    /// Uniformly random architectures scored alike, for comparison.
    #[arg(long, default_value_t = 100)]
    uniform: usize,
    /// No progress bars or per-epoch lines, only the result.
    #[arg(long)]
    quiet: bool,
}

pub(super) fn ensure_data(kind: DatasetKind, dir: &Option<PathBuf>, download: bool, show: bool) -> Result<()> {
    if Dataset::load(kind, dir.as_deref(), 0, 0).is_ok() {
        return Ok(());
    }
    let variant = match kind {
        DatasetKind::Cifar10 => Variant::Cifar10,
        DatasetKind::Cifar100 => Variant::Cifar100,
        // Loading again gives the error with its install command.
        _ => return Dataset::load(kind, dir.as_deref(), 0, 0).map(|_| ()).map_err(Into::into),
    };
    if !download {
        let err = Dataset::load(kind, dir.as_deref(), 0, 0).err().map(|e| e.to_string()).unwrap_or_default();
        anyhow::bail!("{err} (or add --download to fetch it now)");
    }
    let target = dir.clone().unwrap_or_else(fetch::cache_dir);
    fetch::fetch(variant, &fetch::official(variant), &target, show)?;
    Ok(())
}

fn plan_of(a: &TrainArgs) -> Result<preset::Plan> {
    if a.mode == Mode::Enas && !a.space.has_supernet() {
        anyhow::bail!("--space {} has no supernet: search it with --mode multi-trial (or `enas bench nb201` for the NB201 table)", a.space.name());
    }
    let mut plan = preset::plan(&Choice {
        preset: a.preset,
        space: a.space,
        algo: a.controller,
        dataset: a.data.dataset,
        data_dir: a.data.data_dir.clone(),
        seed: a.seed,
    });
    if a.search_epochs == Some(0) || a.retrain_epochs == Some(0) {
        anyhow::bail!("--search-epochs and --retrain-epochs must be positive");
    }
    if let Some(e) = a.search_epochs {
        plan.search.set_epochs(e);
    }
    plan.search.net.macro_skips = a.macro_skips;
    if let Some(e) = a.retrain_epochs {
        plan.retrain.set_epochs(e);
    }
    Ok(plan)
}

pub fn train(a: TrainArgs, device: &Device) -> Result<()> {
    if a.mode == Mode::MultiTrial {
        anyhow::bail!("--mode multi-trial runs as `enas search`; retrain its best child with `enas retrain`");
    }
    let show = !a.quiet && !a.json;
    ensure_data(a.data.dataset, &a.data.data_dir, a.download, show)?;
    let plan = plan_of(&a)?;
    let opts = RunOptions { resume: a.resume, show_progress: show, stop_after: a.stop_after, skip_test: false, tensorboard: a.tensorboard };
    let Some(result) = pipeline::run(&plan, &a.out, &opts, device)? else {
        println!("stopped as asked; continue with --resume");
        return Ok(());
    };
    crate::report::write(&a.out, &result)?;
    super::record_command(&a.out)?;
    crate::report::html::write(&a.out)?;
    if a.json {
        println!("{}", crate::report::result_json(&result));
        return Ok(());
    }
    println!(
        "test accuracy {:.4} with {} (shared-weight valid {:.4}, uniform mean {:.4}); report in {}",
        result.retrain.test_accuracy,
        result.derived.arch,
        result.derived.valid_accuracy,
        result.derived.uniform_mean,
        a.out.join("report.md").display()
    );
    Ok(())
}

/// The search stage alone, into `--out`/search.
pub fn search(a: TrainArgs, device: &Device) -> Result<()> {
    if a.mode == Mode::MultiTrial {
        return super::multi_trial::search(&a, device);
    }
    let show = !a.quiet && !a.json;
    ensure_data(a.data.dataset, &a.data.data_dir, a.download, show)?;
    let plan = plan_of(&a)?;
    let opts = RunOptions { resume: a.resume, show_progress: show, stop_after: a.stop_after, skip_test: false, tensorboard: a.tensorboard };
    let Some(history) = search::run(&plan.search, &a.out.join("search"), &opts, device)? else {
        println!("stopped as asked; continue with --resume");
        return Ok(());
    };
    super::record_command(&a.out)?;
    if a.json {
        println!("{}", serde_json::to_string(&history.last())?);
        return Ok(());
    }
    let last = history.last().map(|e| (e.favoured_arch.clone(), e.valid_accuracy)).unwrap_or_default();
    println!("search done: favoured architecture {} (shared-weight valid {:.4}); derive with `enas derive --run {}`", last.0, last.1, a.out.display());
    Ok(())
}

pub fn derive(a: DeriveArgs, device: &Device) -> Result<()> {
    let opts = DeriveOptions { samples: a.samples, uniform: a.uniform };
    let d = derive::run(&a.run.join("search"), &a.run.join("derive"), &opts, !a.quiet, device)?;
    println!(
        "derived {} (shared-weight valid {:.4}; uniform mean {:.4}); written to {}",
        d.arch,
        d.valid_accuracy,
        d.uniform_mean,
        a.run.join("derive").display()
    );
    Ok(())
}
