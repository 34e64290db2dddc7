//! `enas train`: search, derive and retrain in one resumable run directory:
//! `DIR/search` (checkpoint, metrics), `DIR/derive` (arch.json, derive.csv),
//! `DIR/retrain` (the final model).
use super::derive::{self, Derived};
use super::eta::{self, Ahead};
use super::preset::Plan;
use super::retrain::{self, RunOptions, Summary};
use super::search::{self, SearchEpoch};
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainResult {
    pub plan: Plan,
    pub search: Vec<SearchEpoch>,
    pub search_seconds: f64,
    pub derived: Derived,
    pub retrain: Summary,
}

impl TrainResult {
    /// The architecture whose test accuracy this is: the retrain's (a later `enas derive` may have chosen another).
    pub fn trained_arch(&self) -> &str {
        if self.retrain.arch.is_empty() {
            &self.derived.arch
        } else {
            &self.retrain.arch
        }
    }
}

/// The architecture a run's retrain stage trains (or trained), from its `config.json`.
pub struct Retrained {
    pub arch: String,
    pub finished: bool,
}

/// What the retrain stage of the run in `out` holds, if it has started.
pub fn retrained(out: &Path) -> Option<Retrained> {
    let dir = out.join("retrain");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
    Some(Retrained { arch: config["arch"].as_str()?.to_string(), finished: retrain::finished(&dir).is_some() })
}

/// The retrain's seconds, from a few timed steps of its network on the images it will train on.
fn retrain_estimate(plan: &Plan, device: &Device) -> Result<f64> {
    let data = retrain::load_data(&plan.retrain)?;
    eta::retrain_seconds(&plan.retrain, plan.search.arch_size(), (data.train.len(), data.valid.len(), data.test.len()), device)
}

/// Present once a run has started in a directory.
const STARTED: &str = "search";

/// Runs every stage not yet finished in `out`. Returns None when `stop_after`
/// (counted in search epochs) ended the run early.
pub fn run(plan: &Plan, out: &Path, opts: &RunOptions, device: &Device) -> Result<Option<TrainResult>> {
    // Each stage's directory guards its own settings; the plan guards the whole.
    super::checkpoint::prepare_run_dir(out, plan, opts.resume, STARTED, device)?;
    let stage_opts = RunOptions { resume: true, ..opts.clone() };
    let search_dir = out.join("search");
    let derive_candidates = 1 + plan.derive.samples + plan.derive.uniform;
    let ahead =
        if opts.show_progress && retrained(out).is_none() { Some(Ahead { derive_candidates, retrain_seconds: retrain_estimate(plan, device)? }) } else { None };
    let Some(history) = search::run(&plan.search, &search_dir, &RunOptions { ahead, ..stage_opts.clone() }, device)? else {
        return Ok(None);
    };
    let search_seconds = history.iter().map(|e| e.seconds).sum();
    let derive_dir = out.join("derive");
    let derived_path = derive_dir.join("derive.json");
    let derived: Derived = match std::fs::read_to_string(&derived_path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}: unreadable; delete it to derive again", derived_path.display()))?,
        Err(_) => {
            if opts.show_progress {
                let then = ahead.map_or(String::new(), |a| format!("; then the retrain, about {}", eta::duration(a.retrain_seconds)));
                eprintln!("deriving: {} samples from the policy, {} uniform draws{then}", plan.derive.samples, plan.derive.uniform);
            }
            derive::run(&search_dir, &derive_dir, &plan.derive, opts.show_progress, device)?
        }
    };
    let mut retrain_cfg = plan.retrain.clone();
    // A finished retrain keeps the architecture it trained, though `enas derive` may have chosen another since.
    retrain_cfg.arch = match retrained(out) {
        Some(r) if r.finished => r.arch,
        _ => derived.arch.clone(),
    };
    let Some(summary) = retrain::run(&retrain_cfg, &out.join("retrain"), &RunOptions { stop_after: None, ..stage_opts }, device)? else {
        return Ok(None);
    };
    Ok(Some(TrainResult { plan: plan.clone(), search: history, search_seconds, derived, retrain: summary }))
}
