//! One child of a multi-trial search as its own process (`enas child`): its
//! spec read from the run directory, trained there, its result written there.
//! The run directory is the only channel between the driver and a child, so
//! the child may run in the driver's process, as a subprocess, or as a Slurm
//! job on another node of a shared file system.
use super::checkpoint::write_atomic;
use super::retrain::{self, RetrainConfig, RunOptions};
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the driver asks of the child: `children/NNNN/spec.json`.
pub const SPEC: &str = "spec.json";
/// What the child answers: `children/NNNN/result.json`, written last and atomically.
pub const RESULT: &str = "result.json";

/// A finished child, as it reports itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChildResult {
    /// Best validation accuracy over its epochs; 0 for a child that failed.
    pub reward: f64,
    pub params: usize,
    /// Seconds of training.
    pub seconds: f64,
    /// Wall-clock start and end, seconds since the Unix epoch.
    pub started: f64,
    pub finished: f64,
    pub host: String,
    /// The Slurm job that ran it (its own job id, array task or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why it scored 0: diverged, or its job failed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

pub fn dir(run: &Path, trial: usize) -> PathBuf {
    run.join("children").join(format!("{trial:04}"))
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

pub fn write_spec(run: &Path, trial: usize, spec: &RetrainConfig) -> Result<()> {
    let d = dir(run, trial);
    std::fs::create_dir_all(&d).with_context(|| format!("{}: cannot create the child's directory", d.display()))?;
    write_atomic(&d.join(SPEC), &serde_json::to_string_pretty(spec)?)
}

/// The child's result, where it finished.
pub fn read_result(run: &Path, trial: usize) -> Option<ChildResult> {
    serde_json::from_str(&std::fs::read_to_string(dir(run, trial).join(RESULT)).ok()?).ok()
}

/// Trains child `trial` of the search in `run` from its spec (continuing its
/// own checkpoint if an earlier attempt was cut off) and writes its result.
pub fn run(run: &Path, trial: usize, device: &Device) -> Result<ChildResult> {
    let d = dir(run, trial);
    let spec_path = d.join(SPEC);
    let text =
        std::fs::read_to_string(&spec_path).with_context(|| format!("{}: no child spec here (is --run the search's directory?)", spec_path.display()))?;
    let spec: RetrainConfig = serde_json::from_str(&text).with_context(|| format!("{}: not a child spec", spec_path.display()))?;
    let result = train(&spec, &d, device)?;
    write_atomic(&d.join(RESULT), &serde_json::to_string_pretty(&result)?)?;
    Ok(result)
}

/// Trains one child into `dir`; a child that diverges is a bad architecture
/// and scores 0, any other error is the caller's.
pub fn train(spec: &RetrainConfig, dir: &Path, device: &Device) -> Result<ChildResult> {
    let started = now();
    let opts = RunOptions { resume: true, show_progress: false, stop_after: None, skip_test: true, tensorboard: false, ahead: None };
    let job = std::env::var("SLURM_JOB_ID").ok();
    let mut result = ChildResult { started, host: hostname(), job, ..ChildResult::default() };
    match retrain::run(spec, dir, &opts, device) {
        Ok(summary) => {
            let summary = summary.expect("a child runs to its end");
            result.reward = summary.epochs.iter().map(|e| e.valid_accuracy).fold(0.0, f64::max);
            result.params = summary.params;
            result.seconds = summary.seconds;
        }
        Err(e) if e.is::<retrain::Diverged>() => result.failed = Some("diverged".into()),
        Err(e) => return Err(e.context(format!("child in {} ({})", dir.display(), spec.arch))),
    }
    result.finished = now();
    Ok(result)
}
