//! What a run found and what it cost: `report.md` for people, `result.json`
//! for scripts.
pub mod draw;
pub mod html;
pub mod plots;
pub mod ranking;
pub mod runs;
pub mod timeline;

use crate::train::checkpoint::write_atomic;
use crate::train::pipeline::TrainResult;
use crate::train::ranking::Ranking;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// Text made safe inside SVG and HTML elements and attributes.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `n` and the noun, plural unless `n` is 1: "1 epoch", "8 epochs".
pub fn count_of(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "N parameters, M multiply-adds per image" (the second left out where it was not counted).
pub fn size_of(params: usize, multiply_adds: u64) -> String {
    let macs = if multiply_adds > 0 { format!(", {:.1} M multiply-adds per image", multiply_adds as f64 / 1e6) } else { String::new() };
    format!("{params} parameters{macs}")
}

/// Mean and standard error of the mean of `v`.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, (var / n).sqrt())
}

/// Whether the policy's samples beat uniform draws on shared-weight
/// accuracy, said plainly with the standard errors it rests on.
pub fn policy_against_uniform(policy: &[f64], uniform: &[f64]) -> Option<String> {
    if policy.is_empty() || uniform.is_empty() {
        return None;
    }
    let ((p, p_se), (u, u_se)) = (mean_se(policy), mean_se(uniform));
    let (diff, se) = (p - u, (p_se * p_se + u_se * u_se).sqrt());
    let z = if se > 0.0 { diff / se } else { 0.0 };
    let verdict = if z > 2.0 {
        "beat"
    } else if z < -2.0 {
        "do worse than"
    } else {
        "do not clearly beat (within two standard errors of)"
    };
    Some(format!(
        "The policy's {} samples {verdict} the {} uniform draws: mean shared-weight accuracy {p:.4} ± {p_se:.4} against {u:.4} ± {u_se:.4} (± one standard error), a difference of {diff:.4} ± {se:.4}, {z:.1} standard errors.",
        policy.len(),
        uniform.len()
    ))
}

/// Whether the controller's policy settled: its entropy in the first and the last search epoch.
pub fn entropy_trend(first: f64, last: f64) -> String {
    let moved = if last < first { "fell" } else { "did not fall" };
    format!("The policy's entropy {moved} over the search: {first:.2} nats in the first epoch, {last:.2} in the last.")
}

/// Mean reward of the controller's samples in the first and the last search epoch.
pub fn reward_trend(r: &TrainResult) -> (f64, f64) {
    let first = r.search.first().map_or(0.0, |e| e.mean_reward);
    let last = r.search.last().map_or(0.0, |e| e.mean_reward);
    (first, last)
}

pub fn result_json(r: &TrainResult) -> serde_json::Value {
    let (first, last) = reward_trend(r);
    let p = &r.plan;
    serde_json::json!({
        "space": p.search.space,
        "dataset": p.search.dataset.name(),
        "controller": p.search.controller.algo.name(),
        "preset": p.preset.name(),
        "arch": r.trained_arch(),
        "derived_arch": r.derived.arch,
        "test_accuracy": r.retrain.test_accuracy,
        "shared_valid_accuracy": r.derived.valid_accuracy,
        "uniform_mean_shared_valid_accuracy": r.derived.uniform_mean,
        "mean_reward_first_epoch": first,
        "mean_reward_last_epoch": last,
        "params": r.retrain.params,
        "multiply_adds": r.retrain.multiply_adds,
        "seconds": {
            "search": r.search_seconds,
            "derive": r.derived.seconds,
            "retrain": r.retrain.seconds,
            "total": r.search_seconds + r.derived.seconds + r.retrain.seconds,
        },
    })
}

/// `report.md`; `device` is the one the run started on (its `config.json`),
/// `ranking` what `enas bench ranking` measured on it, if it ran.
pub fn report_md(r: &TrainResult, device: &str, ranking: Option<&Ranking>) -> Result<String> {
    let p = &r.plan;
    let (first, last) = reward_trend(r);
    let mut s = String::new();
    writeln!(s, "# enas run: {:?} space, {} controller, {}", p.search.space, p.search.controller.algo.name(), p.search.dataset.name())?;
    writeln!(s)?;
    if let Some(caveat) = p.preset.caveat() {
        writeln!(s, "**{caveat}**")?;
        writeln!(s)?;
    }
    writeln!(
        s,
        "**Test accuracy {:.2}%** after retraining from scratch ({}).",
        100.0 * r.retrain.test_accuracy,
        size_of(r.retrain.params, r.retrain.multiply_adds)
    )?;
    writeln!(s)?;
    writeln!(s, "Chosen and retrained architecture (the authors' string format):")?;
    writeln!(s)?;
    writeln!(s, "```\n{}\n```", r.trained_arch())?;
    writeln!(s)?;
    if r.trained_arch() != r.derived.arch {
        writeln!(s, "`enas derive` chose again after that retrain (not retrained; the table below is this one's):")?;
        writeln!(s)?;
        writeln!(s, "```\n{}\n```", r.derived.arch)?;
        writeln!(s)?;
    }
    writeln!(s, "## What the search bought")?;
    writeln!(s)?;
    let uniform = r.derived.candidates.iter().filter(|c| c.source == "uniform").count();
    writeln!(s, "| | shared-weight validation accuracy |")?;
    writeln!(s, "| --- | --- |")?;
    writeln!(s, "| derived architecture ({}) | {:.4} |", r.derived.source, r.derived.valid_accuracy)?;
    writeln!(s, "| mean of {uniform} uniformly random architectures | {:.4} |", r.derived.uniform_mean)?;
    // The derived one is the best of many draws: show the policy's average and the best random draw beside it.
    let of = |source: &str| r.derived.candidates.iter().filter(|c| c.source == source).map(|c| c.valid_accuracy).collect::<Vec<f64>>();
    let policy = of("policy");
    if !policy.is_empty() {
        writeln!(s, "| mean of the {} policy samples | {:.4} |", policy.len(), policy.iter().sum::<f64>() / policy.len() as f64)?;
    }
    if let Some(best) = of("uniform").into_iter().reduce(f64::max) {
        writeln!(s, "| best of the {uniform} uniformly random architectures | {best:.4} |")?;
    }
    writeln!(s)?;
    if let Some(verdict) = policy_against_uniform(&policy, &of("uniform")) {
        writeln!(s, "{verdict}")?;
        writeln!(s)?;
    }
    if let (Some(a), Some(b)) = (r.search.first(), r.search.last()) {
        writeln!(s, "{}", entropy_trend(a.entropy, b.entropy))?;
        writeln!(s)?;
    }
    writeln!(s, "Mean reward of the controller's samples: {first:.4} in the first search epoch, {last:.4} in the last.")?;
    writeln!(s)?;
    writeln!(s, "## Does the supernet rank architectures?")?;
    writeln!(s)?;
    match ranking {
        Some(k) => writeln!(s, "{} (`enas bench ranking`; every architecture in `ranking/ranking.csv`.)", ranking::statement(k))?,
        None => writeln!(
            s,
            "Not measured: `enas bench ranking --run DIR` trains random architectures from scratch and sets their accuracy against the shared weights' scores."
        )?,
    }
    writeln!(s)?;
    writeln!(s, "## Search, per epoch")?;
    writeln!(s)?;
    writeln!(s, "The favoured architecture is the policy's most likely one (its argmax) at the end of the epoch, scored with the shared weights on the validation split; the entropy is the policy's, summed over its decisions, in nats. The shared loss includes the auxiliary head's weighted loss where the search has one.")?;
    writeln!(s)?;
    writeln!(s, "| epoch | shared loss | shared acc | mean reward | baseline | entropy | clip frac | KL | favoured arch valid acc | seconds |")?;
    writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
    for e in &r.search {
        writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.2} | {:.3} | {:.4} | {:.4} | {:.0} |",
            e.epoch, e.train_loss, e.train_accuracy, e.mean_reward, e.baseline, e.entropy, e.clip_fraction, e.approx_kl, e.valid_accuracy, e.seconds
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## Retrain, per epoch")?;
    writeln!(s)?;
    if r.plan.retrain.aux_weight > 0.0 {
        writeln!(
            s,
            "The train loss includes {} x the auxiliary head's loss; the valid loss is the classifier's cross-entropy alone.",
            r.plan.retrain.aux_weight
        )?;
        writeln!(s)?;
    }
    writeln!(s, "| epoch | train loss | train acc | valid loss | valid acc | images/s | seconds |")?;
    writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |")?;
    for e in &r.retrain.epochs {
        writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.0} | {:.0} |",
            e.epoch, e.train_loss, e.train_accuracy, e.valid_loss, e.valid_accuracy, e.images_per_s, e.seconds
        )?;
    }
    writeln!(s)?;
    writeln!(s, "## Time per stage")?;
    writeln!(s)?;
    writeln!(s, "| stage | seconds |")?;
    writeln!(s, "| --- | --- |")?;
    writeln!(s, "| search ({}) | {:.0} |", count_of(r.search.len(), "epoch"), r.search_seconds)?;
    writeln!(s, "| derive ({} candidates) | {:.0} |", r.derived.candidates.len(), r.derived.seconds)?;
    writeln!(s, "| retrain ({}) | {:.0} |", count_of(r.retrain.epochs.len(), "epoch"), r.retrain.seconds)?;
    writeln!(s, "| total | {:.0} |", r.search_seconds + r.derived.seconds + r.retrain.seconds)?;
    writeln!(s)?;
    writeln!(
        s,
        "Started on device {device}; finished on {}; each stage's `config.json` records the device and machine it started on.",
        crate::ops::simd::Machine::current()
    )?;
    Ok(s)
}

/// Writes `report.md` and `result.json` into `out`.
pub fn write(out: &Path, r: &TrainResult) -> Result<()> {
    let config: serde_json::Value = std::fs::read_to_string(out.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let device = config[crate::train::checkpoint::DEVICE].as_str().unwrap_or("cpu");
    write_atomic(&out.join("report.md"), &report_md(r, device, crate::train::ranking::load(out).as_ref())?)?;
    write_atomic(&out.join("result.json"), &serde_json::to_string_pretty(&result_json(r))?)
}
