//! `enas train`, `enas search` and `enas derive`.
use super::DataArgs;
use crate::controller::{Algo, Strategy};
use crate::data::cifar::Variant;
use crate::data::{fetch, folder, DataShape, Dataset, DatasetKind};
use crate::model::MacroSkips;
use crate::space::SpaceKind;
use crate::train::derive::{self, DeriveOptions};
use crate::train::executor::ExecutorKind;
use crate::train::pipeline;
use crate::train::preset::{self, Choice, Preset};
use crate::train::retrain::{self, RunOptions};
use crate::train::search::{self, RewardBn};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// What `train` and `search` share: the data, the space, the run directory and how the run goes.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub(super) data: DataArgs,
    /// Search space: the ENAS micro cells, the ENAS macro network, MetaQNN layer chains or NAS-Bench-201.
    #[arg(long, value_enum, default_value = "micro")]
    pub(super) space: SpaceKind,
    /// Sizes and schedules of every stage: smoke (seconds, a plumbing check), quick (an hour on 2 cores), paper (the authors').
    #[arg(long, value_enum, default_value = "quick")]
    pub(super) preset: Preset,
    /// Output directory of the run (created; with --resume, the run to continue).
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Seed of every random number of the run (the same seed gives the same numbers).
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Continue the run in --out where it stopped, with the settings it was started with.
    #[arg(long)]
    pub(super) resume: bool,
    /// Download CIFAR-10/100 into the cache first if it is not there.
    #[arg(long)]
    pub(super) download: bool,
    /// Stop after this many epochs (children, for multi-trial) of this invocation (to test --resume).
    #[arg(long, hide = true)]
    pub(super) stop_after: Option<usize>,
    /// No progress bars or per-epoch lines, only the result.
    #[arg(long)]
    pub(super) quiet: bool,
    /// Print the outcome as one JSON object (no progress bars) instead of a sentence.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) device: super::DeviceArg,
}

/// The ENAS search's own settings, for `train` and `search --mode enas`.
#[derive(Args)]
pub struct EnasArgs {
    /// Controller: PPO, REINFORCE (the paper) or uniformly random architectures [default: ppo].
    #[arg(long, value_enum)]
    pub(super) controller: Option<Algo>,
    /// Search epochs instead of the preset's.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) search_epochs: Option<usize>,
    /// Training images held out as the validation split (the controller's rewards; the retrain's per-epoch validation) instead of the preset's.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) valid_size: Option<usize>,
    /// Macro search: skips concatenated and projected (the shape the child is
    /// retrained in) or summed, as the authors' search code [default: concat].
    #[arg(long, value_enum)]
    pub(super) macro_skips: Option<MacroSkips>,
    /// Macro: batch norm in the reward pass and derive with the batch's statistics or the running averages (the authors') [default: moving for --preset paper, else batch].
    #[arg(long, value_enum)]
    pub(super) reward_bn: Option<RewardBn>,
    /// Also write each stage's per-epoch metrics as TensorBoard scalars (STAGE/tensorboard/).
    #[arg(long)]
    pub(super) tensorboard: bool,
}

/// `enas train`: search, derive and retrain.
#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(flatten)]
    pub(super) enas: EnasArgs,
    /// Retrain epochs instead of the preset's.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) retrain_epochs: Option<usize>,
}

/// `enas search`: the ENAS search, or a multi-trial one.
#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub(super) run: RunArgs,
    /// enas: one shared supernet (ENAS); multi-trial: every child trained from scratch (NAS-RL, MetaQNN).
    #[arg(long, value_enum, default_value = "enas")]
    pub(super) mode: Mode,
    #[command(flatten)]
    pub(super) enas: EnasArgs,
    #[command(flatten)]
    pub(super) trials: TrialArgs,
}

/// The multi-trial search's settings (`search --mode multi-trial`).
#[derive(Args)]
pub struct TrialArgs {
    /// Multi-trial: how architectures are chosen [default: reinforce, as NAS-RL; qlearning on metaqnn, as MetaQNN].
    #[arg(long, value_enum)]
    pub(super) strategy: Option<Strategy>,
    /// Multi-trial: distinct children to train [default: 60; 4 under --preset smoke].
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) budget: Option<usize>,
    /// Multi-trial: epochs each child trains; its reward is its best validation accuracy [default: 2; 1 under --preset smoke].
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) child_epochs: Option<usize>,
    /// Multi-trial, MetaQNN: filters and units are the paper's times this [default: 1; 1/16 under --preset smoke].
    #[arg(long, value_parser = super::ranges::positive, allow_negative_numbers = true)]
    pub(super) width: Option<f64>,
    /// Multi-trial: children train on the first N training images only.
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) train_limit: Option<usize>,
    /// Multi-trial: children in flight at once (a strategy's batch is what it would evaluate before its next update) [default: 1].
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) parallel: Option<usize>,
    /// Multi-trial: where children train: local (subprocesses of this binary; in this process at --parallel 1) or slurm (sbatch array jobs) [default: local].
    #[arg(long, value_enum)]
    pub(super) executor: Option<ExecutorKind>,
    /// Multi-trial, local executor: a device per slot, in turn (cpu, or cuda:0,cuda:1,...) [default: the search's --device for every slot].
    #[arg(long)]
    pub(super) devices: Option<String>,
    /// Multi-trial: threads each child uses [default: local, the cores shared out between the slots; slurm, its allocation's].
    #[arg(long, value_parser = super::ranges::count)]
    pub(super) child_threads: Option<usize>,
    /// Multi-trial, slurm executor: more sbatch arguments, e.g. "--partition=gpu --gres=gpu:1 --time=1:00:00".
    #[arg(long, allow_hyphen_values = true)]
    pub(super) slurm_args: Option<String>,
}

impl TrialArgs {
    /// The first multi-trial flag given, for a search that trains no children.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.strategy.is_some(), "--strategy"),
            (self.budget.is_some(), "--budget"),
            (self.child_epochs.is_some(), "--child-epochs"),
            (self.width.is_some(), "--width"),
            (self.train_limit.is_some(), "--train-limit"),
            (self.parallel.is_some(), "--parallel"),
            (self.executor.is_some(), "--executor"),
            (self.devices.is_some(), "--devices"),
            (self.child_threads.is_some(), "--child-threads"),
            (self.slurm_args.is_some(), "--slurm-args"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
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
    #[command(flatten)]
    device: super::DeviceArg,
}

/// Readies the dataset: a built-in one present (or fetched with `download`),
/// a folder one listed, checked and decoded into its cache with a progress
/// bar. Returns the shape the networks are built for.
pub(super) fn ensure_data(d: &DataArgs, download: bool, show: bool) -> Result<DataShape> {
    let folder_only = [("--image-channels", d.image_channels.is_some()), ("--image-size", d.image_size.is_some()), ("--strict", d.strict)];
    if let Some((flag, _)) = folder_only.iter().find(|(_, given)| *given).filter(|_| d.dataset != DatasetKind::Folder) {
        anyhow::bail!("{flag}: a setting of --dataset folder, not of {}", d.dataset.name());
    }
    if let Some(shape) = d.dataset.builtin_shape() {
        ensure_builtin(d.dataset, &d.data_dir, download, show)?;
        return Ok(shape);
    }
    let Some(dir) = d.data_dir.as_deref() else {
        anyhow::bail!("--dataset folder needs --data-dir DIR, the folder holding train/<class>/ folders of images");
    };
    let listing = folder::list(dir)?;
    let shape = folder::shape(dir, &listing, d.image_channels, d.image_size)?;
    let bar = |total: u64| -> Box<dyn Fn() + Sync> {
        let bar = crate::train::progress::steps_bar(total, "decoding images", show);
        Box::new(move || bar.inc(1))
    };
    let loaded = folder::load(dir, shape, d.strict, &bar)?;
    if show {
        eprintln!(
            "{}: {} classes, {} training images{}, as {}x{} {}",
            dir.display(),
            loaded.classes.len(),
            loaded.train.len(),
            loaded.test.as_ref().map_or(" (a tenth held out for testing)".to_string(), |t| format!(", {} test images", t.len())),
            shape.size,
            shape.size,
            if shape.channels == 1 { "grey" } else { "RGB" }
        );
    }
    Ok(DataShape { in_channels: shape.channels, image_size: shape.size, classes: loaded.classes.len() })
}

/// `enas data info`: the dataset loaded as a run loads it, timed.
pub(super) fn data_info(d: &DataArgs, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let shape = ensure_data(d, false, !json)?;
    let folder_shape = folder::Shape { channels: shape.in_channels, size: shape.image_size };
    let data = Dataset::load(d.dataset, d.data_dir.as_deref(), Some(folder_shape), 0, 0)?;
    let seconds = started.elapsed().as_secs_f64();
    let counts = |labels: &[u8]| (0..data.classes.len()).map(|c| labels.iter().filter(|&&l| l as usize == c).count()).collect::<Vec<_>>();
    let info = serde_json::json!({
        "dataset": d.dataset.name(),
        "classes": data.classes,
        "train": data.train.len(),
        "test": data.test.len(),
        "train_per_class": counts(&data.train.labels),
        "test_per_class": counts(&data.test.labels),
        "channels": shape.in_channels,
        "image_size": shape.image_size,
        "mean": data.mean,
        "std": data.std,
        "seconds": seconds,
    });
    if json {
        println!("{info}");
    } else {
        println!(
            "{}: {} classes ({}), {} training and {} test images, {}x{}x{}",
            d.dataset.name(),
            data.classes.len(),
            data.classes.join(", "),
            data.train.len(),
            data.test.len(),
            shape.in_channels,
            shape.image_size,
            shape.image_size
        );
        println!("per class, training: {:?}; test: {:?}", counts(&data.train.labels), counts(&data.test.labels));
        println!("mean {:?}, std {:?} (of the whole training set, pixels / 255); loaded in {seconds:.1}s", data.mean, data.std);
    }
    Ok(())
}

fn ensure_builtin(kind: DatasetKind, dir: &Option<PathBuf>, download: bool, show: bool) -> Result<()> {
    let load = || Dataset::load(kind, dir.as_deref(), None, 0, 0);
    if load().is_ok() {
        return Ok(());
    }
    let variant = match kind {
        DatasetKind::Cifar10 => Variant::Cifar10,
        DatasetKind::Cifar100 => Variant::Cifar100,
        // Loading again gives the error with its install command.
        _ => return load().map(|_| ()).map_err(Into::into),
    };
    if !download {
        let err = load().err().map(|e| e.to_string()).unwrap_or_default();
        anyhow::bail!("{err} (or add --download to fetch it now)");
    }
    let target = dir.clone().unwrap_or_else(fetch::cache_dir);
    fetch::fetch(variant, &fetch::official(variant), &target, show)?;
    Ok(())
}

/// The validation split: the one given, else the preset's, but for a folder
/// of your own images (which may be far smaller than the preset's datasets)
/// at most a tenth of it.
pub(super) fn valid_size(data: &DataArgs, given: Option<usize>, preset: usize) -> Result<usize> {
    Ok(match (given, &data.data_dir, data.dataset) {
        (Some(v), _, _) => v,
        (None, Some(dir), DatasetKind::Folder) => preset.min(folder::list(dir)?.train.len() / 10),
        (None, _, _) => preset,
    })
}

fn plan_of(run: &RunArgs, enas: &EnasArgs, retrain_epochs: Option<usize>, shape: DataShape) -> Result<preset::Plan> {
    if !run.space.has_supernet() {
        anyhow::bail!(
            "--space {} has no supernet: search it with `enas search --mode multi-trial` (or `enas bench nb201` for the NB201 table)",
            run.space.name()
        );
    }
    if enas.macro_skips.is_some() && run.space != SpaceKind::Macro {
        anyhow::bail!("--macro-skips: a setting of --space macro, not of {}", run.space.name());
    }
    let mut plan = preset::plan(&Choice {
        preset: run.preset,
        space: run.space,
        algo: enas.controller.unwrap_or(Algo::Ppo),
        dataset: run.data.dataset,
        data_dir: run.data.data_dir.clone(),
        shape,
        seed: run.seed,
    });
    if let Some(e) = enas.search_epochs {
        plan.search.set_epochs(e);
    }
    match (enas.reward_bn, run.space) {
        (Some(RewardBn::Moving), SpaceKind::Micro) => {
            anyhow::bail!("--reward-bn moving: the micro supernet scores with the batch's statistics, as the authors' (it keeps no running averages)")
        }
        (Some(bn), _) => plan.search.reward_bn = bn,
        (None, _) => {}
    }
    let v = valid_size(&run.data, enas.valid_size, plan.search.valid_size)?;
    plan.search.valid_size = v;
    plan.retrain.valid_size = v;
    plan.search.net.macro_skips = enas.macro_skips.unwrap_or_default();
    if let Some(e) = retrain_epochs {
        plan.retrain.set_epochs(e);
    }
    Ok(plan)
}

fn run_options(run: &RunArgs, tensorboard: bool) -> RunOptions {
    RunOptions { resume: run.resume, show_progress: !run.quiet && !run.json, stop_after: run.stop_after, skip_test: false, tensorboard, ahead: None }
}

pub fn train(a: TrainArgs) -> Result<()> {
    let r = &a.run;
    let opts = run_options(r, a.enas.tensorboard);
    let shape = ensure_data(&r.data, r.download, opts.show_progress)?;
    let plan = plan_of(r, &a.enas, a.retrain_epochs, shape)?;
    let device = r.device.open()?;
    super::session::begin(&r.out, &r.out.join("config.json"), &[&r.out.join("search/config.json")], r.resume, &device, opts.show_progress)?;
    let had_finished = r.resume && retrain::finished(&r.out.join("retrain")).is_some();
    let Some(result) = pipeline::run(&plan, &r.out, &opts, &device)? else {
        println!("stopped as asked; continue with --resume");
        return Ok(());
    };
    if had_finished {
        eprintln!("{}: this run had finished; its result:", r.out.display());
    }
    crate::report::write(&r.out, &result)?;
    crate::report::html::write(&r.out)?;
    if r.json {
        println!("{}", crate::report::result_json(&result));
        return Ok(());
    }
    println!(
        "test accuracy {:.4} with {} (shared-weight valid {:.4}, uniform mean {:.4}); report in {}",
        result.retrain.test_accuracy,
        result.trained_arch(),
        result.derived.valid_accuracy,
        result.derived.uniform_mean,
        r.out.join("report.md").display()
    );
    Ok(())
}

/// The search stage alone, into `--out`/search.
pub fn search(a: SearchArgs) -> Result<()> {
    if a.mode == Mode::MultiTrial {
        return super::multi_trial::search(&a);
    }
    if let Some(flag) = a.trials.first_given() {
        anyhow::bail!("{flag}: a setting of --mode multi-trial (children trained from scratch), not of an ENAS search");
    }
    let r = &a.run;
    let opts = run_options(r, a.enas.tensorboard);
    let shape = ensure_data(&r.data, r.download, opts.show_progress)?;
    let plan = plan_of(r, &a.enas, None, shape)?;
    let device = r.device.open()?;
    let dir = r.out.join("search");
    super::session::begin(&r.out, &dir.join("config.json"), &[], r.resume, &device, opts.show_progress)?;
    let Some(history) = search::run(&plan.search, &dir, &opts, &device)? else {
        println!("stopped as asked; continue with --resume");
        return Ok(());
    };
    if r.json {
        println!("{}", serde_json::to_string(&history.last())?);
        return Ok(());
    }
    let last = history.last().map(|e| (e.favoured_arch.clone(), e.valid_accuracy)).unwrap_or_default();
    println!("search done: favoured architecture {} (shared-weight valid {:.4}); derive with `enas derive --run {}`", last.0, last.1, r.out.display());
    Ok(())
}

pub fn derive(a: DeriveArgs) -> Result<()> {
    let device = a.device.open()?;
    let opts = DeriveOptions { samples: a.samples, uniform: a.uniform };
    let before = pipeline::retrained(&a.run);
    let d = derive::run(&a.run.join("search"), &a.run.join("derive"), &opts, !a.quiet, &device)?;
    super::session::record_command(&a.run)?;
    println!(
        "derived {} (shared-weight valid {:.4}; uniform mean {:.4}); written to {}",
        d.arch,
        d.valid_accuracy,
        d.uniform_mean,
        a.run.join("derive").display()
    );
    // A retrain of an earlier derive stays as it is: say what that means for the run.
    if let Some(r) = before.filter(|r| r.arch != d.arch) {
        let retrain = a.run.join("retrain");
        if r.finished {
            println!(
                "note: {} keeps the model retrained from the earlier derive ({}); the report pairs its test accuracy with that architecture, and `enas train --resume` does not retrain the new one: retrain it with `enas retrain --arch {} --out DIR`",
                retrain.display(),
                r.arch,
                a.run.join("derive").join("arch.json").display()
            );
        } else {
            println!(
                "note: {} was retraining the earlier derive ({}); `enas train --resume` now refuses to mix the two: remove that directory to retrain the new architecture",
                retrain.display(),
                r.arch
            );
        }
    }
    Ok(())
}
