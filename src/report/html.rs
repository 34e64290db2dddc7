//! `report.html`: one self-contained page (inline SVG and CSS, no scripts, no
//! external resources) built from whatever a run or stage directory holds so
//! far, so it also works while the run goes on: the command, the stages, the
//! chosen architecture drawn, the curves, the derive table, the test accuracy.
use super::draw::{graphs, to_svg};
use super::escape;
use super::plots::{line_chart, Series};
use crate::space::{Arch, SpaceKind};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()).unwrap_or_default()
}

fn series(rows: &[Value], field: &str, name: &str) -> Series {
    Series::line(name, rows.iter().filter_map(|r| Some((r["epoch"].as_f64()?, r[field].as_f64()?))).collect())
}

fn chart(html: &mut String, title: &str, y: &str, s: Vec<Series>) -> Result<()> {
    if let Some(svg) = line_chart(title, "epoch", y, &s)? {
        html.push_str(&format!("<figure>{svg}</figure>\n"));
    }
    Ok(())
}

/// The architecture a directory settled on (derive's, else retrain's, else its own arch.json).
fn arch_of(dir: &Path) -> Option<Arch> {
    ["derive/arch.json", "retrain/arch.json", "arch.json"].iter().find_map(|p| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(p)).ok()?).ok()?;
        Arch::from_json(SpaceKind::from_name(v["space"].as_str()?)?, &v).ok()
    })
}

/// Where each stage's files are: a pipeline run has subdirectories, a stage directory is its own.
fn stage_dir(dir: &Path, stage: &str, marker: &str) -> Option<PathBuf> {
    let sub = dir.join(stage);
    if sub.join(marker).exists() {
        return Some(sub);
    }
    let own = jsonl(&dir.join("metrics.jsonl"));
    let is_search = own.first().is_some_and(|r| r.get("mean_reward").is_some());
    let matches = match stage {
        "search" => is_search,
        "retrain" => !own.is_empty() && !is_search,
        _ => dir.join(marker).exists(),
    };
    matches.then(|| dir.to_path_buf())
}

/// Builds the page for `dir`.
pub fn render(dir: &Path) -> Result<String> {
    let mut h = String::new();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    writeln!(h, "<title>enas report: {}</title>", escape(&name))?;
    h.push_str(
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
figure{margin:1em 0}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
code,pre{background:#f4f4f4;padding:2px 4px}pre{overflow-x:auto;padding:8px}.big{font-size:1.4em}</style>\n</head><body>\n",
    );
    writeln!(h, "<h1>enas report: {}</h1>", escape(&name))?;

    let retrain = stage_dir(dir, "retrain", "metrics.jsonl");
    let retrain_rows = retrain.as_ref().map(|d| jsonl(&d.join("metrics.jsonl"))).unwrap_or_default();
    if let Some(t) = retrain_rows.iter().find_map(|r| r["test_accuracy"].as_f64()) {
        writeln!(h, "<p class=\"big\"><b>Test accuracy {:.2}%</b> after retraining from scratch.</p>", 100.0 * t)?;
    }
    if let Ok(cmd) = std::fs::read_to_string(dir.join("command.txt")) {
        writeln!(h, "<p>Reproduce with:</p><pre>{}</pre>", escape(cmd.trim()))?;
    }

    // Stages and their time so far.
    let search = stage_dir(dir, "search", "metrics.jsonl");
    let search_rows = search.as_ref().map(|d| jsonl(&d.join("metrics.jsonl"))).unwrap_or_default();
    let derive = stage_dir(dir, "derive", "derive.csv");
    let trials = jsonl(&dir.join("trials.jsonl")).into_iter().chain(jsonl(&dir.join("search/trials.jsonl"))).collect::<Vec<_>>();
    h.push_str("<h2>Stages</h2>\n<table><tr><th>stage</th><th>state</th><th>seconds</th></tr>\n");
    let secs = |rows: &[Value]| rows.iter().filter_map(|r| r["seconds"].as_f64()).sum::<f64>();
    if !search_rows.is_empty() {
        writeln!(h, "<tr><td>search</td><td>{}</td><td>{:.0}</td></tr>", super::count_of(search_rows.len(), "epoch"), secs(&search_rows))?;
    }
    if !trials.is_empty() {
        writeln!(h, "<tr><td>multi-trial search</td><td>{} children</td><td>{:.0}</td></tr>", trials.len(), secs(&trials))?;
    }
    if derive.is_some() {
        h.push_str("<tr><td>derive</td><td>done</td><td></td></tr>\n");
    }
    let epochs: Vec<&Value> = retrain_rows.iter().filter(|r| r.get("epoch").is_some()).collect();
    if !epochs.is_empty() {
        let done = if retrain_rows.iter().any(|r| r.get("test_accuracy").is_some()) { "done" } else { "running" };
        writeln!(
            h,
            "<tr><td>retrain</td><td>{}, {done}</td><td>{:.0}</td></tr>",
            super::count_of(epochs.len(), "epoch"),
            epochs.iter().filter_map(|r| r["seconds"].as_f64()).sum::<f64>()
        )?;
    }
    h.push_str("</table>\n");

    if let Some(arch) = arch_of(dir) {
        writeln!(h, "<h2>Architecture</h2>\n<p><code>{}</code></p>\n<figure>{}</figure>", escape(&arch.to_arc_string()), to_svg(&graphs(&arch)))?;
    }

    if !search_rows.is_empty() {
        h.push_str("<h2>Search</h2>\n");
        chart(
            &mut h,
            "controller reward and shared-weight accuracy",
            "accuracy",
            vec![
                series(&search_rows, "mean_reward", "mean reward of samples"),
                series(&search_rows, "baseline", "baseline"),
                series(&search_rows, "valid_accuracy", "favoured architecture, valid"),
                series(&search_rows, "train_accuracy", "shared model, train"),
            ],
        )?;
        chart(&mut h, "policy entropy", "nats", vec![series(&search_rows, "entropy", "entropy")])?;
        chart(
            &mut h,
            "PPO clip fraction and approximate KL",
            "",
            vec![series(&search_rows, "clip_fraction", "clip fraction"), series(&search_rows, "approx_kl", "approx. KL")],
        )?;
    }
    if !trials.is_empty() {
        h.push_str("<h2>Multi-trial search</h2>\n");
        let pts: Vec<(f64, f64)> = trials.iter().filter_map(|t| Some((t["index"].as_f64()?, t["reward"].as_f64()?))).collect();
        let mut best = f64::NEG_INFINITY;
        let best_so_far = pts
            .iter()
            .map(|&(x, y)| {
                best = best.max(y);
                (x, best)
            })
            .collect();
        if let Some(svg) =
            line_chart("child validation accuracy", "child", "accuracy", &[Series::line("child", pts), Series::line("best so far", best_so_far)])?
        {
            writeln!(h, "<figure>{svg}</figure>")?;
        }
    }
    if let Some(d) = &derive {
        let csv = std::fs::read_to_string(d.join("derive.csv")).unwrap_or_default();
        let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.splitn(4, ',').collect()).filter(|r: &Vec<&str>| r.len() == 4).collect();
        h.push_str("<h2>Derive</h2>\n");
        let sorted = |src: &str| {
            let mut v: Vec<f64> = rows.iter().filter(|r| r[1] == src).filter_map(|r| r[2].parse().ok()).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            Series::line(src, v.into_iter().enumerate().map(|(i, a)| (i as f64 + 1.0, a)).collect())
        };
        if let Some(svg) =
            line_chart("shared-weight validation accuracy, best first", "rank within its source", "accuracy", &[sorted("policy"), sorted("uniform")])?
        {
            writeln!(h, "<figure>{svg}</figure>")?;
        }
        h.push_str("<table><tr><th>rank</th><th>source</th><th>shared valid acc</th><th>architecture</th></tr>\n");
        for r in rows.iter().take(10) {
            writeln!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", r[0], escape(r[1]), r[2], escape(r[3]))?;
        }
        h.push_str("</table>\n");
    }
    if !epochs.is_empty() {
        h.push_str("<h2>Retrain</h2>\n");
        chart(&mut h, "loss", "cross-entropy", vec![series(&retrain_rows, "train_loss", "train"), series(&retrain_rows, "valid_loss", "valid")])?;
        chart(&mut h, "accuracy", "accuracy", vec![series(&retrain_rows, "train_accuracy", "train"), series(&retrain_rows, "valid_accuracy", "valid")])?;
    }
    if let Ok(cfg) = std::fs::read_to_string(dir.join("config.json")) {
        writeln!(h, "<h2>Configuration</h2>\n<details><summary>config.json</summary><pre>{}</pre></details>", escape(&cfg))?;
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Writes `dir/report.html`; returns its path.
pub fn write(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        anyhow::bail!("{}: not a directory", dir.display());
    }
    let markers = ["metrics.jsonl", "trials.jsonl", "config.json", "command.txt", "search", "derive", "retrain"];
    if !markers.iter().any(|m| dir.join(m).exists()) {
        anyhow::bail!("{}: not an enas run (none of {} in it); give the --out of a train, search or retrain", dir.display(), markers.join(", "));
    }
    let path = dir.join("report.html");
    crate::train::checkpoint::write_atomic(&path, &render(dir)?)?;
    Ok(path)
}
