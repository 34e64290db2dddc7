//! `enas train`: search, derive and retrain in one resumable run directory:
//! `DIR/search` (checkpoint, metrics), `DIR/derive` (arch.json, derive.csv),
//! `DIR/retrain` (the final model).
use super::derive::{self, Derived};
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

/// Present once a run has started in a directory.
const STARTED: &str = "search";

/// Runs every stage not yet finished in `out`. Returns None when `stop_after`
/// (counted in search epochs) ended the run early.
pub fn run(plan: &Plan, out: &Path, opts: &RunOptions, device: &Device) -> Result<Option<TrainResult>> {
    // Each stage's directory guards its own settings; the plan guards the whole.
    super::checkpoint::prepare_run_dir(out, plan, opts.resume, STARTED)?;
    let stage_opts = RunOptions { resume: true, ..opts.clone() };
    let search_dir = out.join("search");
    let Some(history) = search::run(&plan.search, &search_dir, &stage_opts, device)? else {
        return Ok(None);
    };
    let search_seconds = history.iter().map(|e| e.seconds).sum();
    let derive_dir = out.join("derive");
    let derived_path = derive_dir.join("derive.json");
    let derived: Derived = match std::fs::read_to_string(&derived_path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{}: unreadable; delete it to derive again", derived_path.display()))?,
        Err(_) => {
            if opts.show_progress {
                eprintln!("deriving: {} samples from the policy, {} uniform draws", plan.derive.samples, plan.derive.uniform);
            }
            derive::run(&search_dir, &derive_dir, &plan.derive, opts.show_progress, device)?
        }
    };
    let mut retrain_cfg = plan.retrain.clone();
    retrain_cfg.arch = derived.arch.clone();
    let Some(summary) = retrain::run(&retrain_cfg, &out.join("retrain"), &RunOptions { stop_after: None, ..stage_opts }, device)? else {
        return Ok(None);
    };
    Ok(Some(TrainResult { plan: plan.clone(), search: history, search_seconds, derived, retrain: summary }))
}
