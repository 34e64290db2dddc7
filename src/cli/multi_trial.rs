//! `enas search --mode multi-trial`: children trained from scratch, chosen by
//! REINFORCE, PPO, Q-learning, regularised evolution or at random.
use super::search::{ensure_data, SearchArgs, TrialArgs};
use crate::controller::{Algo, Strategy};
use crate::data::DataShape;
use crate::model::NetConfig;
use crate::space::SpaceKind;
use crate::train::executor::{parse_devices, ExecutorConfig, ExecutorKind};
use crate::train::multi_trial::{self, MultiTrialConfig, TrialRecord};
use crate::train::preset::{self, Choice, Preset};
use crate::train::retrain::RunOptions;
use crate::train::trials::StrategyConfig;
use anyhow::{bail, Result};

pub fn config(a: &SearchArgs, shape: DataShape) -> Result<MultiTrialConfig> {
    // The ENAS search's own flags mean nothing to children trained from scratch.
    let enas = &a.enas;
    for (given, flag, instead) in [
        (enas.controller.is_some(), "--controller", "--strategy chooses the children"),
        (enas.search_epochs.is_some(), "--search-epochs", "--child-epochs sets each child's training"),
        (enas.macro_skips.is_some(), "--macro-skips", "children are trained as retrained networks, skips concatenated"),
        (enas.tensorboard, "--tensorboard", "each child's metrics are in search/trials.jsonl"),
        (enas.reward_bn.is_some(), "--reward-bn", "children are scored as trained networks, with their running averages"),
    ] {
        if given {
            bail!("{flag}: a setting of the ENAS search, not of --mode multi-trial ({instead})");
        }
    }
    let (r, t) = (&a.run, &a.trials);
    // Smoke is a plumbing check in seconds in every mode: a few children, one epoch, MetaQNN's filters at 1/16.
    let smoke = r.preset == Preset::Smoke;
    let width = t.width.unwrap_or(if smoke { 1.0 / 16.0 } else { 1.0 });
    if width > 4.0 {
        bail!("--width must be in (0, 4], got {width}");
    }
    let budget = t.budget.unwrap_or(if smoke { 4 } else { 60 });
    let strategy = t.strategy.unwrap_or(if r.space == SpaceKind::Metaqnn { Strategy::Qlearning } else { Strategy::Reinforce });
    match (r.space, strategy) {
        (SpaceKind::Nb201, _) => bail!("--space nb201 is a table, not trained here: use `enas bench nb201 --table FILE`"),
        (SpaceKind::Metaqnn, Strategy::Ppo | Strategy::Reinforce | Strategy::Evolution) => {
            bail!("--space metaqnn takes --strategy qlearning or random (its chains vary in length; the LSTM and evolution need fixed choices)")
        }
        _ => {}
    }
    let plan = preset::plan(&Choice {
        preset: r.preset,
        space: if r.space == SpaceKind::Metaqnn { SpaceKind::Macro } else { r.space },
        algo: Algo::Ppo,
        dataset: r.data.dataset,
        data_dir: r.data.data_dir.clone(),
        shape,
        seed: r.seed,
    });
    let mut child = plan.retrain.clone();
    child.space = r.space;
    child.aux_weight = 0.0;
    child.net = NetConfig { aux_head: false, drop_path: 0.0, width, ..plan.search.net.clone() };
    child.batch = plan.search.batch;
    child.set_epochs(t.child_epochs.unwrap_or(if smoke { 1 } else { 2 }));
    child.train_limit = t.train_limit.or(child.train_limit);
    child.valid_size = super::search::valid_size(&r.data, enas.valid_size, plan.search.valid_size)?;
    if child.valid_size == 0 {
        bail!("--valid-size must be positive: the children's rewards are validation accuracies");
    }
    let arch_size = match r.space {
        SpaceKind::Metaqnn => child.net.image_size,
        _ => plan.search.arch_size(),
    };
    let parallel = t.parallel.unwrap_or(1);
    Ok(MultiTrialConfig {
        space: r.space,
        strategy: StrategyConfig::defaults(strategy, budget),
        budget,
        cap_factor: 50,
        arch_size,
        child,
        seed: r.seed,
        parallel,
    })
}

/// Where the children train (`--executor`, `--devices`, `--child-threads`, `--slurm-args`).
pub fn executor(t: &TrialArgs, device: &str) -> Result<ExecutorConfig> {
    let kind = t.executor.unwrap_or_default();
    if kind == ExecutorKind::Slurm && t.devices.is_some() {
        bail!("--devices: a setting of --executor local (on Slurm each child gets what --slurm-args asks for, e.g. --gres=gpu:1)");
    }
    if kind == ExecutorKind::Local && t.slurm_args.is_some() {
        bail!("--slurm-args: a setting of --executor slurm");
    }
    let devices = t.devices.as_deref().map(parse_devices).transpose()?.unwrap_or_default();
    let slurm_args = match &t.slurm_args {
        Some(text) => shell_words::split(text).map_err(|e| anyhow::anyhow!("--slurm-args {text:?}: {e}"))?,
        None => Vec::new(),
    };
    Ok(ExecutorConfig {
        kind,
        parallel: t.parallel.unwrap_or(1),
        devices,
        default_device: device.to_string(),
        threads: t.child_threads,
        slurm_args,
        poll_seconds: 1.0,
    })
}

/// `enas child --run DIR --trial N`: one child of a multi-trial search, as its executor started it.
pub fn child(a: &ChildArgs) -> Result<()> {
    let device = a.device.open()?;
    let result = crate::train::child::run(&a.run, a.trial, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct ChildArgs {
    /// The search's directory (OUT/search).
    #[arg(long)]
    run: std::path::PathBuf,
    /// The child's number (its folder children/NNNN).
    #[arg(long)]
    trial: usize,
    #[command(flatten)]
    device: super::DeviceArg,
}

pub fn search(a: &SearchArgs) -> Result<()> {
    let r = &a.run;
    let show = !r.quiet && !r.json;
    let shape = ensure_data(&r.data, r.download, show)?;
    let cfg = config(a, shape)?;
    let device = r.device.open()?;
    let out = r.out.join("search");
    super::session::begin(&r.out, &out.join("config.json"), &[], r.resume, &device, show)?;
    // Children go where the driver's --device points, `auto` resolved once here.
    let child_device = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        _ => "cpu".to_string(),
    };
    let exec = executor(&a.trials, &child_device)?;
    let opts = RunOptions { resume: r.resume, show_progress: show, stop_after: r.stop_after, skip_test: true, tensorboard: false, ahead: None };
    let Some(trials) = multi_trial::run(&cfg, &out, &opts, &exec, &device)? else {
        println!("stopped as asked; continue with --resume");
        return Ok(());
    };
    let report: serde_json::Value = std::fs::read_to_string(out.join("strategy.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let text = summary(&trials, cfg.space, &report);
    crate::train::checkpoint::write_atomic(&out.join("summary.md"), &text)?;
    if r.json {
        let best = trials.iter().max_by(|x, y| x.reward.total_cmp(&y.reward));
        println!("{}", serde_json::json!({"children": trials.len(), "best": best, "out": out}));
        return Ok(());
    }
    print!("{text}");
    println!("children and their metrics in {}", out.display());
    Ok(())
}

/// The best children, and for Q-learning the epsilon schedule, the mean
/// reward at each epsilon and the largest Q-values.
pub fn summary(trials: &[TrialRecord], space: SpaceKind, report: &serde_json::Value) -> String {
    let mut s = format!("{} children trained ({} space)\n\nbest children:\n", trials.len(), space.name());
    let mut best: Vec<&TrialRecord> = trials.iter().collect();
    best.sort_by(|a, b| b.reward.total_cmp(&a.reward).then(a.index.cmp(&b.index)));
    for t in best.iter().take(5) {
        s.push_str(&format!("  #{:<3} valid {:.4}  {:>9} params  {:>6.0}s  {}\n", t.index, t.reward, t.params, t.seconds, t.arch));
    }
    let mut by_eps: Vec<(f64, Vec<f64>)> = Vec::new();
    for t in trials {
        if let Some(e) = t.note.get("epsilon").and_then(|e| e.as_f64()) {
            match by_eps.iter_mut().find(|(x, _)| *x == e) {
                Some((_, v)) => v.push(t.reward),
                None => by_eps.push((e, vec![t.reward])),
            }
        }
    }
    if !by_eps.is_empty() {
        s.push_str("\nmean validation accuracy by epsilon:\n");
        for (e, v) in &by_eps {
            s.push_str(&format!("  epsilon {e:.1}: {:.4} over {} models\n", v.iter().sum::<f64>() / v.len() as f64, v.len()));
        }
    }
    if let Some(schedule) = report["epsilon_schedule"].as_array() {
        let parts: Vec<String> = schedule.iter().map(|p| format!("{} x {}", p[0], p[1])).collect();
        s.push_str(&format!("\nepsilon schedule (epsilon x models): {}\n", parts.join(", ")));
    }
    if let Some(q) = report["q"].as_object() {
        let mut values: Vec<(f64, &str, &str)> = q
            .iter()
            .flat_map(|(state, actions)| actions.as_object().into_iter().flatten().map(move |(a, v)| (v.as_f64().unwrap_or(0.0), state.as_str(), a.as_str())))
            .collect();
        values.sort_by(|a, b| b.0.total_cmp(&a.0));
        s.push_str(&format!("\nlargest of {} Q-values (state -> action: Q; all start at 0.5):\n", values.len()));
        for (v, state, action) in values.iter().take(10) {
            s.push_str(&format!("  {state} -> {action}: {v:.4}\n"));
        }
        if let Some(start) = q.get("start").and_then(|m| m.as_object()) {
            let mut first: Vec<(&String, f64)> = start.iter().map(|(a, v)| (a, v.as_f64().unwrap_or(0.0))).collect();
            first.sort_by(|a, b| b.1.total_cmp(&a.1));
            let parts: Vec<String> = first.iter().take(5).map(|(a, v)| format!("{a} {v:.4}")).collect();
            s.push_str(&format!("first layer, best by Q: {}\n", parts.join(", ")));
        }
    }
    s
}
