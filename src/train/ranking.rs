//! `enas bench ranking`: does the supernet rank architectures as training them
//! does? Uniform draws (and the derived architecture) are scored with a
//! search's shared weights on its validation split, as derive scores them,
//! then each is trained from scratch at the search's size for a short fixed
//! budget and scored on the same split (the test of weight sharing of Yu et
//! al. 2020 and Zela et al. 2020). Each child keeps its own directory, so an
//! interrupted measurement continues where it stopped.
use super::checkpoint::{differences, write_atomic};
use super::derive::Derived;
use super::multi_trial::child_seed;
use super::rank_stats::{bootstrap, kendall_tau, spearman_rho, top_k_overlap, Interval};
use super::retrain::{self, RetrainConfig, RunOptions};
use super::search::{self, accuracy_on, stream};
use crate::controller::uniform_arch;
use crate::space::Arch;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What to measure; stored in `ranking/config.json` so a rerun continues only the same measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RankingOptions {
    /// Uniformly random architectures (the derived one is added).
    pub archs: usize,
    /// Epochs each architecture trains from scratch.
    pub epochs: usize,
    /// Training images per epoch; None for the search's own subset.
    pub train_limit: Option<usize>,
    /// Bootstrap resamples for the intervals.
    pub resamples: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankedArch {
    /// "uniform" or "derived".
    pub source: String,
    pub arch: String,
    /// Validation accuracy with the search's shared weights.
    pub shared_accuracy: f64,
    /// Validation accuracy after `epochs` epochs from scratch (0 where training diverged).
    pub standalone_accuracy: f64,
    pub params: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ranking {
    pub options: RankingOptions,
    pub archs: Vec<RankedArch>,
    pub kendall_tau: Interval,
    pub spearman_rho: Interval,
    /// Of the `top_k` best by shared weights, how many are among the `top_k` best from scratch.
    pub top_overlap: usize,
    pub top_k: usize,
    pub train_images: usize,
    pub valid_images: usize,
    /// The run's wall time: scoring and training every architecture.
    pub seconds: f64,
}

/// Where a run's ranking is written.
pub const DIR: &str = "ranking";
pub const RESULT: &str = "ranking.json";
const SALT: u64 = 0x4a4e_c0de;

/// The search stage of `run`: a train run's `search/`, or a search directory itself.
pub fn search_dir(run: &Path) -> PathBuf {
    let stage = run.join("search");
    if stage.join("config.json").exists() {
        stage
    } else {
        run.to_path_buf()
    }
}

/// The stored ranking of a run, if `enas bench ranking` has measured it.
pub fn load(run: &Path) -> Option<Ranking> {
    serde_json::from_str(&std::fs::read_to_string(run.join(DIR).join(RESULT)).ok()?).ok()
}

fn check_options(out: &Path, opts: &RankingOptions) -> Result<()> {
    let path = out.join("config.json");
    let now = serde_json::to_value(opts)?;
    if let Ok(text) = std::fs::read_to_string(&path) {
        let then: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        let changed = differences(&then, &now, "");
        if !changed.is_empty() {
            bail!(
                "{}: a ranking with other settings is there ({}); give the same to continue it, or delete {} to measure anew",
                path.display(),
                changed.join("; "),
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_atomic(&path, &serde_json::to_string_pretty(&now)?)
}

/// Measures the ranking of the search in `run` into `run/ranking`.
pub fn run(run: &Path, opts: &RankingOptions, show: bool, device: &Device) -> Result<Ranking> {
    if opts.archs < 2 {
        bail!("--archs {}: a rank correlation needs at least 2 random architectures", opts.archs);
    }
    let started = Instant::now();
    let out = run.join(DIR);
    let loaded = search::load(&search_dir(run), device)?;
    let (cfg, s) = (loaded.cfg.clone(), &loaded.setup);
    check_options(&out, opts)?;

    let mut pool: Vec<(&str, Arch)> = Vec::new();
    let derived_path = run.join("derive").join("derive.json");
    if let Ok(text) = std::fs::read_to_string(&derived_path) {
        let d: Derived = serde_json::from_str(&text).with_context(|| format!("{}: not a derive result", derived_path.display()))?;
        pool.push(("derived", Arch::parse(cfg.space, &d.arch).with_context(|| format!("{}", derived_path.display()))?));
    }
    let mut rng = stream(cfg.seed, SALT, 0);
    let wanted = pool.len() + opts.archs;
    for _ in 0..100 * wanted {
        if pool.len() == wanted {
            break;
        }
        let arch = uniform_arch(cfg.space, cfg.arch_size(), &mut rng);
        if !pool.iter().any(|(_, a)| a.to_arc_string() == arch.to_arc_string()) {
            pool.push(("uniform", arch));
        }
    }
    if pool.len() < wanted {
        bail!("--archs {}: the {:?} space has fewer distinct architectures than that", opts.archs, cfg.space);
    }

    let valid = Arc::new(s.data.valid.clone());
    let bar = super::progress::steps_bar(pool.len() as u64 * 2, "ranking", show);
    bar.set_message("scoring with the shared weights");
    let mut shared = Vec::with_capacity(pool.len());
    for (_, arch) in &pool {
        shared.push(accuracy_on(&s.eval_net, arch, &valid, &s.data, cfg.batch, device)?);
        bar.inc(1);
    }
    let train_images = opts.train_limit.or(cfg.train_limit).map_or(s.data.train.len(), |n| n.min(s.data.train.len()));
    let valid_images = s.data.valid.len();
    drop(loaded);

    let mut archs = Vec::with_capacity(pool.len());
    for (index, ((source, arch), shared_accuracy)) in pool.iter().zip(shared).enumerate() {
        let child = child_config(&cfg, arch, index, opts);
        let dir = out.join("children").join(format!("{index:04}"));
        bar.set_message(format!("training {} from scratch", arch.to_arc_string()));
        let child_opts = RunOptions { resume: true, skip_test: true, ..Default::default() };
        let (standalone_accuracy, params, seconds) = match retrain::run(&child, &dir, &child_opts, device) {
            Ok(summary) => {
                let summary = summary.expect("a child runs to its end");
                (summary.epochs.last().map_or(0.0, |e| e.valid_accuracy), summary.params, summary.seconds)
            }
            Err(e) if e.is::<retrain::Diverged>() => (0.0, 0, 0.0),
            Err(e) => return Err(e.context(format!("architecture {index} ({})", child.arch))),
        };
        let row = RankedArch { source: source.to_string(), arch: child.arch, shared_accuracy, standalone_accuracy, params, seconds };
        super::progress::say(&bar, show, format!("{index:>3} {:<8} shared {:.4}  from scratch {:.4}", row.source, shared_accuracy, standalone_accuracy));
        archs.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let x: Vec<f64> = archs.iter().map(|a| a.shared_accuracy).collect();
    let y: Vec<f64> = archs.iter().map(|a| a.standalone_accuracy).collect();
    let mut boot = stream(cfg.seed, SALT ^ 0xb007, 0);
    // Top 5 (fewer where 5 would be half the architectures or more, and say nothing).
    let top_k = 5.min(archs.len() / 2).max(1);
    let ranking = Ranking {
        options: opts.clone(),
        kendall_tau: bootstrap(&x, &y, kendall_tau, opts.resamples, &mut boot),
        spearman_rho: bootstrap(&x, &y, spearman_rho, opts.resamples, &mut boot),
        top_overlap: top_k_overlap(&x, &y, top_k),
        top_k,
        archs,
        train_images,
        valid_images,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut csv = String::from("index,source,shared_valid_accuracy,standalone_valid_accuracy,params,seconds,arch\n");
    for (i, a) in ranking.archs.iter().enumerate() {
        csv.push_str(&format!("{i},{},{:.4},{:.4},{},{:.1},{}\n", a.source, a.shared_accuracy, a.standalone_accuracy, a.params, a.seconds, a.arch));
    }
    write_atomic(&out.join("ranking.csv"), &csv)?;
    write_atomic(&out.join(RESULT), &serde_json::to_string_pretty(&ranking)?)?;
    Ok(ranking)
}

/// An architecture trained alone as the search trained the shared weights:
/// its size, batch, optimiser, augmentation and validation split.
fn child_config(cfg: &search::SearchConfig, arch: &Arch, index: usize, opts: &RankingOptions) -> RetrainConfig {
    RetrainConfig {
        space: cfg.space,
        arch: arch.to_arc_string(),
        dataset: cfg.dataset,
        data_dir: cfg.data_dir.clone(),
        net: cfg.net.clone(),
        epochs: opts.epochs,
        batch: cfg.batch,
        eval_batch: cfg.batch,
        sgd: cfg.sgd.clone(),
        lr_min: cfg.lr_min,
        lr_t0: opts.epochs as f64,
        lr_t_mul: 1.0,
        grad_clip: cfg.grad_clip,
        label_smoothing: 0.0,
        aux_weight: cfg.aux_weight,
        augment: cfg.augment,
        valid_size: cfg.valid_size,
        train_limit: opts.train_limit.or(cfg.train_limit),
        seed: child_seed(cfg.seed, index),
        data_seed: Some(cfg.seed),
    }
}
