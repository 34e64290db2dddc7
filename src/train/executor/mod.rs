//! Where a multi-trial search's children train: in the driver's process one
//! at a time (`--executor local --parallel 1`, as before executors), as
//! subprocesses of this binary (`local`, K at once, a device and a share of
//! the cores each), or as Slurm array jobs (`slurm`). Children and driver
//! speak only through the run directory (`child.rs`), so the driver can be
//! killed and restarted at any moment: a resumed driver re-attaches to the jobs
//! whose ids it wrote down and never trains a finished child again.
mod local;
mod slurm;

use super::checkpoint::write_atomic;
use super::child::{self, ChildResult};
use super::retrain::RetrainConfig;
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::Path;

pub use local::Local;
pub use slurm::Slurm;

/// `--executor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// How children are run; not part of the search's identity (a run may be
/// resumed under another executor), except `parallel`, which shapes its batches.
#[derive(Clone, Debug, Default)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    /// Children in flight at once.
    pub parallel: usize,
    /// Local: one device per slot, in turn (`cpu`, `cuda:0`, ...); empty: `default_device` for all.
    pub devices: Vec<String>,
    /// The driver's own `--device`, for children when `devices` names none.
    pub default_device: String,
    /// Threads each child may use (default: the cores shared out between local slots; Slurm: the allocation's).
    pub threads: Option<usize>,
    /// Slurm: extra `sbatch` arguments (partition, --gres, time limit, account).
    pub slurm_args: Vec<String>,
    /// Slurm: seconds between polls of the queue.
    pub poll_seconds: f64,
}

/// Submissions a child gets before it is scored as failed: the first and one resubmission.
pub const ATTEMPTS: usize = 2;
/// The driver's record of a child's job: `children/NNNN/job.json`.
pub const JOB: &str = "job.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Job {
    pub executor: ExecutorKind,
    /// Slurm: `<array job>_<task>`; local: the process id.
    pub id: String,
    /// Host the driver ran on when it submitted.
    pub host: String,
    pub attempts: usize,
    /// When first submitted (seconds since the Unix epoch).
    pub submitted: f64,
    /// The executor's slot (local: slot and device; Slurm: filled from the node that ran it).
    pub slot: String,
    /// Why earlier attempts ended without a result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl Job {
    pub fn read(run: &Path, trial: usize) -> Option<Job> {
        serde_json::from_str(&std::fs::read_to_string(child::dir(run, trial).join(JOB)).ok()?).ok()
    }

    pub fn write(&self, run: &Path, trial: usize) -> Result<()> {
        write_atomic(&child::dir(run, trial).join(JOB), &serde_json::to_string_pretty(self)?)
    }

    /// The next attempt of `trial`: its earlier attempts and failures kept.
    fn next(run: &Path, trial: usize, executor: ExecutorKind) -> Job {
        let mut job = Job::read(run, trial).unwrap_or_else(|| Job { submitted: child::now(), ..Job::default() });
        job.executor = executor;
        job.host = child::hostname();
        job.attempts += 1;
        job
    }
}

/// A child done: its result (a failed one scores 0) and its job.
#[derive(Clone, Debug)]
pub struct Finished {
    pub trial: usize,
    pub result: ChildResult,
    pub job: Job,
}

/// A child whose job ended without a result: resubmitted while attempts
/// remain, else scored 0 with the reasons.
enum Retry {
    Again(Job),
    Failed(Finished),
}

fn after_failure(trial: usize, mut job: Job, reason: String) -> Retry {
    job.failures.push(reason);
    if job.attempts < ATTEMPTS {
        job.attempts += 1;
        return Retry::Again(job);
    }
    let failed = Some(format!("no result after {} attempts: {}", job.attempts, job.failures.join("; ")));
    let now = child::now();
    Retry::Failed(Finished { trial, result: ChildResult { failed, started: now, finished: now, host: job.host.clone(), ..ChildResult::default() }, job })
}

pub enum Executor {
    /// In the driver's process, one child at a time (local, `--parallel 1`).
    Inline {
        device: Device,
        done: VecDeque<Finished>,
    },
    Local(Local),
    Slurm(Slurm),
}

impl Executor {
    pub fn new(cfg: &ExecutorConfig, device: &Device) -> Result<Executor> {
        let exe = || std::env::current_exe().context("cannot find this enas binary to run children with");
        Ok(match cfg.kind {
            ExecutorKind::Local if cfg.parallel <= 1 && cfg.devices.is_empty() && cfg.threads.is_none() => {
                Executor::Inline { device: device.clone(), done: VecDeque::new() }
            }
            ExecutorKind::Local => Executor::Local(Local::new(exe()?, cfg)),
            ExecutorKind::Slurm => Executor::Slurm(Slurm::new(exe()?, cfg)),
        })
    }

    /// Children now training (or queued).
    pub fn in_flight(&self) -> usize {
        match self {
            Executor::Inline { done, .. } => done.len(),
            Executor::Local(l) => l.in_flight(),
            Executor::Slurm(s) => s.in_flight(),
        }
    }

    /// Starts `trials` (their specs are written first); the caller keeps no
    /// more in flight than the executor's parallelism.
    pub fn submit(&mut self, run: &Path, trials: &[(usize, RetrainConfig)]) -> Result<()> {
        for (trial, spec) in trials {
            child::write_spec(run, *trial, spec)?;
        }
        let ids: Vec<usize> = trials.iter().map(|t| t.0).collect();
        match self {
            Executor::Inline { device, done } => {
                for (trial, spec) in trials {
                    let submitted = child::now();
                    let result = child::train(spec, &child::dir(run, *trial), device)?;
                    write_atomic(&child::dir(run, *trial).join(child::RESULT), &serde_json::to_string_pretty(&result)?)?;
                    let job = Job {
                        executor: ExecutorKind::Local,
                        id: std::process::id().to_string(),
                        host: child::hostname(),
                        attempts: 1,
                        submitted,
                        slot: "0".into(),
                        failures: Vec::new(),
                    };
                    done.push_back(Finished { trial: *trial, result, job });
                }
                Ok(())
            }
            Executor::Local(l) => ids.iter().try_for_each(|&t| l.submit(run, t)),
            Executor::Slurm(s) => s.submit(run, &ids),
        }
    }

    /// Re-attaches to `trial`'s job where a driver before this one left it
    /// running; false where there is none (the caller submits it).
    pub fn attach(&mut self, run: &Path, trial: usize) -> Result<bool> {
        let job = Job::read(run, trial);
        match self {
            Executor::Inline { .. } => Ok(false),
            Executor::Local(l) => l.attach(run, trial, job),
            Executor::Slurm(s) => s.attach(run, trial, job),
        }
    }

    /// Blocks until at least one child in flight is done; returns those done.
    pub fn wait(&mut self, run: &Path) -> Result<Vec<Finished>> {
        match self {
            Executor::Inline { done, .. } => Ok(done.drain(..).collect()),
            Executor::Local(l) => l.wait(run),
            Executor::Slurm(s) => s.wait(run),
        }
    }
}

/// `--devices cpu|cuda:0,cuda:1,...`, checked before anything starts.
pub fn parse_devices(text: &str) -> Result<Vec<String>> {
    let devices: Vec<String> = text.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    if devices.is_empty() {
        anyhow::bail!("--devices: name at least one device (cpu, cuda:0, cuda:1, ...)");
    }
    for d in &devices {
        let ok = d == "cpu" || d.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok());
        if !ok {
            anyhow::bail!("--devices: {d:?} is not a device (cpu, cuda:0, cuda:1, ...)");
        }
    }
    Ok(devices)
}

/// The last lines of a child's log, for an error that names why it ended.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if last.is_empty() {
        String::new()
    } else {
        format!(" ({})", last.chars().take(200).collect::<String>())
    }
}
