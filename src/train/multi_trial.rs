//! Multi-trial search (NAS-RL, Zoph & Le 2017, Sec. 3; MetaQNN, Baker et al.
//! 2017): every architecture a strategy proposes is trained from scratch as an
//! independent child (its own seed and weights), its best validation accuracy
//! the reward. Up to `parallel` children train at once, on the executor's
//! slots; what the strategy learns from depends only on the seed and
//! `parallel` (rewards are taken in the order proposed, whatever order the
//! children finish in), so a run is reproducible for a given `parallel` and
//! `parallel = 1` is the one-at-a-time search. Finished children are logged
//! in `trials.jsonl`; a resumed run replays the strategy from the seed and
//! answers them from that log and from the children's own result files, so it
//! ends where an uninterrupted run would without training any child twice.
use super::checkpoint::{self, write_atomic};
use super::child::{self, ChildResult};
use super::executor::{Executor, ExecutorConfig, Finished};
use super::retrain::{RetrainConfig, RunOptions};
use super::trials::{searcher, Batches, Fresh, StrategyConfig};
use crate::space::SpaceKind;
use anyhow::{Context, Result};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// Children in flight at once; it shapes the strategy's batches, so it is part of the search.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub parallel: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
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
    /// Wall-clock times (seconds since the Unix epoch): first submitted, training started and ended.
    #[serde(default)]
    pub submitted: f64,
    #[serde(default)]
    pub started: f64,
    #[serde(default)]
    pub finished: f64,
    /// The executor's slot that trained it (a local slot and its device, or a Slurm node).
    #[serde(default)]
    pub slot: String,
    /// Its Slurm job, where one ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Submissions it took (a failed, preempted or cancelled job is resubmitted once).
    #[serde(default = "one")]
    pub attempts: usize,
    /// Why it scored 0: it diverged, or its job failed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

pub const LOG: &str = "trials.jsonl";

pub fn read_log(path: &Path) -> Result<Vec<TrialRecord>> {
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
pub fn run(cfg: &MultiTrialConfig, out: &Path, opts: &RunOptions, exec: &ExecutorConfig, device: &Device) -> Result<Option<Vec<TrialRecord>>> {
    if !opts.resume && out.join("children").exists() {
        anyhow::bail!("{}: a run is already there; pass --resume to continue it or choose another --out", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let _lock = super::lock::Lock::take(out)?;
    checkpoint::prepare_run_dir(out, cfg, opts.resume, LOG, device)?;
    let log_path = out.join(LOG);
    let mut log: BTreeMap<usize, TrialRecord> = read_log(&log_path)?.into_iter().map(|t| (t.index, t)).collect();
    let mut strategy = searcher(&cfg.strategy, cfg.space, cfg.arch_size, cfg.budget, cfg.seed, device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x007e_1a15);
    let parallel = cfg.parallel.max(1);
    let mut executor = Executor::new(&ExecutorConfig { parallel, ..exec.clone() }, device)?;
    let bar = super::progress::steps_bar(cfg.budget as u64, "children", opts.show_progress);
    bar.set_position(log.len() as u64);
    let mut batches = Batches::new(strategy.as_ref(), cfg.budget, cfg.budget * cfg.cap_factor.max(1), parallel);
    let mut notes: Vec<serde_json::Value> = Vec::new();
    let mut rewards: HashMap<usize, f64> = HashMap::new();
    // Children proposed and not yet started, in order.
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut specs: Vec<RetrainConfig> = Vec::new();
    let mut trained = 0usize;
    loop {
        for Fresh { index: i, arch, note } in batches.propose(strategy.as_mut(), &mut rng)? {
            let key = arch.to_arc_string();
            notes.push(note);
            let mut spec = cfg.child.clone();
            spec.arch = key.clone();
            spec.seed = child_seed(cfg.seed, i);
            spec.data_seed = Some(cfg.seed);
            specs.push(spec);
            match log.get(&i) {
                Some(t) if t.arch != key => {
                    anyhow::bail!("{}: child {i} is {} there but this search proposes {key}; the log was written by another search", log_path.display(), t.arch)
                }
                Some(t) => {
                    rewards.insert(i, t.reward);
                }
                None => waiting.push_back(i),
            }
        }
        if batches.is_empty() {
            break;
        }
        // Start what may start: finished children answered from their result files, earlier drivers' jobs re-attached.
        let mut submit = Vec::new();
        while executor.in_flight() + submit.len() < parallel {
            let Some(i) = waiting.pop_front() else { break };
            if let Some(result) = child::read_result(out, i) {
                let job = super::executor::Job::read(out, i).unwrap_or_default();
                record(&mut log, &log_path, &specs[i], &notes[i], Finished { trial: i, result, job }, &mut rewards)?;
            } else if !executor.attach(out, i)? {
                submit.push((i, specs[i].clone()));
            }
        }
        executor.submit(out, &submit)?;
        if batches.learn(strategy.as_mut(), |i| rewards.get(&i).copied(), &mut rng)? {
            continue;
        }
        if executor.in_flight() == 0 {
            continue;
        }
        for f in executor.wait(out)? {
            let i = f.trial;
            if opts.show_progress {
                let failed = f.result.failed.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                super::progress::say(&bar, true, format!("child {i:>3}: {:.4} {}{failed}", f.result.reward, specs[i].arch));
            }
            record(&mut log, &log_path, &specs[i], &notes[i], f, &mut rewards)?;
            trained += 1;
        }
        bar.set_position(log.len() as u64);
        if opts.stop_after.is_some_and(|n| trained >= n) {
            bar.finish_and_clear();
            return Ok(None);
        }
    }
    bar.finish_and_clear();
    write_atomic(&out.join("strategy.json"), &serde_json::to_string_pretty(&strategy.report())?)?;
    Ok(Some(log.into_values().collect()))
}

/// Logs a finished child in `trials.jsonl`, kept in the order proposed.
fn record(
    log: &mut BTreeMap<usize, TrialRecord>,
    path: &Path,
    spec: &RetrainConfig,
    note: &serde_json::Value,
    f: Finished,
    rewards: &mut HashMap<usize, f64>,
) -> Result<()> {
    let Finished { trial, result, job } = f;
    let ChildResult { reward, params, seconds, started, finished, host, failed, .. } = result;
    let slot = if job.slot.is_empty() { host } else { job.slot };
    let rec = TrialRecord {
        index: trial,
        arch: spec.arch.clone(),
        reward,
        params,
        seconds,
        note: note.clone(),
        submitted: job.submitted,
        started,
        finished,
        slot,
        job: (job.executor == super::executor::ExecutorKind::Slurm).then_some(job.id),
        attempts: job.attempts.max(1),
        failed,
    };
    rewards.insert(trial, reward);
    log.insert(trial, rec);
    let mut text = String::new();
    for t in log.values() {
        text.push_str(&serde_json::to_string(t)?);
        text.push('\n');
    }
    write_atomic(path, &text)
}
