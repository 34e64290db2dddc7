//! `report.html`: one self-contained page (inline SVG and CSS, no scripts, no
//! external resources) built from whatever a run or stage directory holds so
//! far, so it also works while the run goes on: the command, the stages, the
//! chosen architecture drawn, the curves, the derive table, the test accuracy.
use super::draw::{graphs, to_svg};
use super::escape;
use super::plots::{line_chart, Series};
use crate::space::{Arch, SpaceKind};
use crate::train::checkpoint::stored_commands;
use crate::train::checkpoint::{DEVICE, MACHINE};
use crate::train::preset::Preset;
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

/// The JSON in `path`, if it is there and parses.
fn json_file(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The architecture a stage directory trained or chose: its arch.json, else
/// the `arch` of its config.json (a retrain still running).
fn arch_in(dir: &Path) -> Option<Arch> {
    if let Some(v) = json_file(&dir.join("arch.json")) {
        return Arch::from_json(SpaceKind::from_name(v["space"].as_str()?)?, &v).ok();
    }
    let v = json_file(&dir.join("config.json"))?;
    Arch::parse(SpaceKind::from_name(v["space"].as_str()?)?, v["arch"].as_str()?).ok()
}

/// The commands that worked on `dir` and its stages, in order, each once.
fn commands(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for d in [dir.to_path_buf(), dir.join("search"), dir.join("retrain")] {
        for words in stored_commands(&d) {
            let line = shell_words::join(&words);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines
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
        let summary = retrain.as_ref().and_then(|d| json_file(&d.join("summary.json")));
        let params = summary
            .map_or(String::new(), |s| format!(" ({})", super::size_of(s["params"].as_u64().unwrap_or(0) as usize, s["multiply_adds"].as_u64().unwrap_or(0))));
        writeln!(h, "<p class=\"big\"><b>Test accuracy {:.2}%</b> after retraining from scratch{params}.</p>", 100.0 * t)?;
    }
    let config = json_file(&dir.join("config.json"));
    if let Some(caveat) = config.as_ref().and_then(|c| serde_json::from_value::<Preset>(c["preset"].clone()).ok()).and_then(Preset::caveat) {
        writeln!(h, "<p><b>{}</b></p>", escape(caveat))?;
    }
    let lines = commands(dir);
    if !lines.is_empty() {
        writeln!(h, "<p>Reproduce with:</p><pre>{}</pre>", escape(&lines.join("\n")))?;
    }
    let ran_on = config.as_ref().or(retrain.as_ref().and_then(|d| json_file(&d.join("config.json"))).as_ref()).map(|c| {
        let machine = serde_json::from_value::<crate::ops::simd::Machine>(c[MACHINE].clone()).map(|m| m.to_string()).unwrap_or_default();
        format!("{}; {machine}", c[DEVICE].as_str().unwrap_or("cpu"))
    });
    if let Some(ran_on) = ran_on {
        writeln!(h, "<p>Started on device {}.</p>", escape(&ran_on))?;
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

    architecture(&mut h, retrain.as_deref(), derive.as_deref())?;
    if let Some(d) = derive.as_ref().and_then(|d| json_file(&d.join("derive.json"))) {
        search_bought(&mut h, &d)?;
    }
    let entropy = |r: Option<&Value>| r.and_then(|r| r["entropy"].as_f64());
    if let (Some(a), Some(b)) = (entropy(search_rows.first()), entropy(search_rows.last())) {
        writeln!(h, "<p>{}</p>", escape(&super::entropy_trend(a, b)))?;
    }
    if let Some(k) = crate::train::ranking::load(dir) {
        h.push_str("<h2>Does the supernet rank architectures?</h2>\n");
        writeln!(
            h,
            "<p>{} (<code>enas bench ranking</code>; every architecture in <code>ranking/ranking.csv</code>.)</p>",
            escape(&super::ranking::statement(&k))
        )?;
        if let Some(svg) = super::ranking::scatter(&k)? {
            writeln!(h, "<figure>{svg}</figure>")?;
        }
    }

    if !search_rows.is_empty() {
        h.push_str("<h2>Search</h2>\n");
        h.push_str(
            "<p>The <i>favoured architecture</i> is the policy's most likely one (its argmax) at the end of each epoch, \
scored with the shared weights on the validation split. The policy's <i>entropy</i> is summed over all its decisions, in nats \
(natural-log units): it falls as the controller settles on its choices.</p>\n",
        );
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
        if let Some((timeline, best)) = super::timeline::charts(&super::timeline::spans(&trials))? {
            writeln!(h, "<figure>{timeline}</figure>\n<figure>{best}</figure>")?;
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
        // The training loss carries the auxiliary head's weighted loss; validation is the classifier's cross-entropy alone.
        let aux = retrain.as_ref().and_then(|d| json_file(&d.join("config.json"))).and_then(|c| c["aux_weight"].as_f64()).filter(|w| *w > 0.0);
        let train_name = aux.map_or("train, cross-entropy".to_string(), |w| format!("train, cross-entropy + {w} x auxiliary head's"));
        chart(&mut h, "loss", "loss", vec![series(&retrain_rows, "train_loss", &train_name), series(&retrain_rows, "valid_loss", "valid, cross-entropy")])?;
        chart(&mut h, "accuracy", "accuracy", vec![series(&retrain_rows, "train_accuracy", "train"), series(&retrain_rows, "valid_accuracy", "valid")])?;
    }
    if let Ok(cfg) = std::fs::read_to_string(dir.join("config.json")) {
        writeln!(h, "<h2>Configuration</h2>\n<details><summary>config.json</summary><pre>{}</pre></details>", escape(&cfg))?;
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The architecture retrained (whose test accuracy the page shows) and the one
/// derived, drawn; both when `enas derive` chose again after the retrain.
fn architecture(h: &mut String, retrain: Option<&Path>, derive: Option<&Path>) -> Result<()> {
    let retrained = retrain.and_then(arch_in);
    let derived = derive.and_then(arch_in);
    if retrained.is_none() && derived.is_none() {
        return Ok(());
    }
    h.push_str("<h2>Architecture</h2>\n");
    let same = retrained.as_ref().zip(derived.as_ref()).is_some_and(|(r, d)| r.to_arc_string() == d.to_arc_string());
    let mut draw =
        |what: &str, arch: &Arch| writeln!(h, "<p>{what}: <code>{}</code></p>\n<figure>{}</figure>", escape(&arch.to_arc_string()), to_svg(&graphs(arch)));
    match (&retrained, &derived) {
        (Some(r), _) if same => draw("Derived and retrained", r)?,
        (Some(r), Some(d)) => {
            draw("Retrained (the test accuracy above is this one's)", r)?;
            draw("Derived again since, not retrained", d)?;
        }
        (Some(r), None) => draw("Retrained", r)?,
        (None, Some(d)) => draw("Derived (not retrained yet)", d)?,
        (None, None) => {}
    }
    Ok(())
}

/// The derived architecture's shared-weight accuracy beside what random draws and the policy got.
fn search_bought(h: &mut String, d: &Value) -> Result<()> {
    let scores = |source: &str| -> Vec<f64> {
        d["candidates"].as_array().into_iter().flatten().filter(|c| c["source"] == source).filter_map(|c| c["valid_accuracy"].as_f64()).collect()
    };
    let (uniform, policy) = (scores("uniform"), scores("policy"));
    h.push_str("<h2>What the search bought</h2>\n<table><tr><th></th><th>shared-weight validation accuracy</th></tr>\n");
    if let Some(v) = d["valid_accuracy"].as_f64() {
        writeln!(h, "<tr><td>derived architecture ({})</td><td>{v:.4}</td></tr>", escape(d["source"].as_str().unwrap_or("")))?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    if !policy.is_empty() {
        writeln!(h, "<tr><td>mean of the {} policy samples</td><td>{:.4}</td></tr>", policy.len(), mean(&policy))?;
    }
    if !uniform.is_empty() {
        writeln!(h, "<tr><td>mean of {} uniformly random architectures</td><td>{:.4}</td></tr>", uniform.len(), mean(&uniform))?;
        writeln!(h, "<tr><td>best of them</td><td>{:.4}</td></tr>", uniform.iter().copied().fold(f64::MIN, f64::max))?;
    }
    h.push_str("</table>\n");
    if let Some(verdict) = super::policy_against_uniform(&policy, &uniform) {
        writeln!(h, "<p>{}</p>", escape(&verdict))?;
    }
    Ok(())
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
