//! Multi-trial search (NAS-RL, Zoph & Le 2017, Sec. 3; MetaQNN, Baker et al.
//! 2017): every architecture a strategy proposes is trained from scratch as an
//! independent child (its own seed and weights), its best validation accuracy
//! the reward. Finished children are logged in `trials.jsonl`; a resumed run
//! replays the strategy from the seed and answers them from that log, so it
//! ends where an uninterrupted run would without training any child twice.
use super::checkpoint::{self, write_atomic};
use super::retrain::{self, RetrainConfig, RunOptions};
use super::trials::{run_budget, searcher, StrategyConfig};
use crate::space::{Arch, SpaceKind};
use anyhow::{Context, Result};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MultiTrialConfig {
    pub space: SpaceKind,
    pub strategy: StrategyConfig,
    /// Distinct children to train.
    pub budget: usize,
    /// Proposals allowed, as a multiple of the budget.
    pub cap_factor: usize,
    /// Micro nodes per cell, macro layers, or MetaQNN's input side.
    pub arch_size: usize,
    /// How every child trains; its `arch` and `seed` are set per child.
    pub child: RetrainConfig,
    pub seed: u64,
}

/// One finished child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Order in which it was first proposed.
    pub index: usize,
    pub arch: String,
    /// Best validation accuracy over its epochs.
    pub reward: f64,
    pub params: usize,
    pub seconds: f64,
    /// The strategy's note (Q-learning: epsilon when it was proposed).
    #[serde(default)]
    pub note: serde_json::Value,
}

const LOG: &str = "trials.jsonl";

fn read_log(path: &Path) -> Result<Vec<TrialRecord>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}, line {}: not a trial record", path.display(), i + 1)))
        .collect()
}

pub(crate) fn child_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(index as u64 + 1)
}

/// Runs (or resumes) the search into `out`; returns every child in the order
/// proposed, or None when `stop_after` children were trained in this invocation.
pub fn run(cfg: &MultiTrialConfig, out: &Path, opts: &RunOptions, device: &Device) -> Result<Option<Vec<TrialRecord>>> {
    if !opts.resume && out.join("children").exists() {
        anyhow::bail!("{}: a run is already there; pass --resume to continue it or choose another --out", out.display());
    }
    checkpoint::prepare_run_dir(out, cfg, opts.resume, LOG, device)?;
    let log_path = out.join(LOG);
    let mut log = read_log(&log_path)?;
    let mut cache: HashMap<String, f64> = log.iter().map(|t| (t.arch.clone(), t.reward)).collect();
    let mut strategy = searcher(&cfg.strategy, cfg.space, cfg.arch_size, cfg.budget, cfg.seed, device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x007e_1a15);
    let bar = super::progress::steps_bar(cfg.budget as u64, "children", opts.show_progress);
    bar.set_position(log.len() as u64);
    let mut trained = 0usize;
    // Children trained in this invocation, until `on_new` logs them.
    let finished: RefCell<HashMap<String, (usize, f64)>> = RefCell::new(HashMap::new());
    let mut evaluate = |arch: &Arch, index: usize| -> Result<f64> {
        if opts.stop_after.is_some_and(|n| trained >= n) {
            anyhow::bail!(Stopped);
        }
        let mut child = cfg.child.clone();
        child.arch = arch.to_arc_string();
        child.seed = child_seed(cfg.seed, index);
        child.data_seed = Some(cfg.seed);
        let dir = out.join("children").join(format!("{index:04}"));
        let child_opts = RunOptions { resume: true, show_progress: false, stop_after: None, skip_test: true, tensorboard: false, ahead: None };
        let (reward, params, seconds) = match retrain::run(&child, &dir, &child_opts, device) {
            Ok(summary) => {
                let summary = summary.expect("a child runs to its end");
                (summary.epochs.iter().map(|e| e.valid_accuracy).fold(0.0, f64::max), summary.params, summary.seconds)
            }
            // A child whose training diverged is a bad architecture, not a failed search.
            Err(e) if e.is::<retrain::Diverged>() => (0.0, 0, 0.0),
            Err(e) => return Err(e.context(format!("child {index} ({})", child.arch))),
        };
        finished.borrow_mut().insert(child.arch.clone(), (params, seconds));
        trained += 1;
        Ok(reward)
    };
    let mut on_new = |arch: &Arch, reward: f64, index: usize, note: serde_json::Value| -> Result<()> {
        let key = arch.to_arc_string();
        let done = finished.borrow_mut().remove(&key);
        if let Some((params, seconds)) = done {
            let rec = TrialRecord { index, arch: key, reward, params, seconds, note };
            let mut text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.push_str(&serde_json::to_string(&rec)?);
            text.push('\n');
            write_atomic(&log_path, &text)?;
            if opts.show_progress {
                super::progress::say(&bar, opts.show_progress, format!("child {index:>3}: {:.4} {}", rec.reward, rec.arch));
            }
            log.push(rec);
            bar.set_position(log.len() as u64);
        }
        Ok(())
    };
    let result = run_budget(strategy.as_mut(), cfg.budget, cfg.budget * cfg.cap_factor.max(1), &mut rng, &mut cache, &mut evaluate, &mut on_new);
    bar.finish_and_clear();
    write_atomic(&out.join("strategy.json"), &serde_json::to_string_pretty(&strategy.report())?)?;
    match result {
        Err(e) if e.is::<Stopped>() => Ok(None),
        Err(e) => Err(e),
        Ok(_) => {
            let mut log = read_log(&log_path)?;
            log.sort_by_key(|t| t.index);
            Ok(Some(log))
        }
    }
}

#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped as asked")
    }
}

impl std::error::Error for Stopped {}
