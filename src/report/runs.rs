//! `enas runs DIR`: the runs under a directory side by side, one row each
//! (space, method, how far it got, test accuracy, time, command), read from
//! the files the runs wrote, so it works on runs still going.
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct RunRow {
    pub dir: PathBuf,
    pub space: String,
    /// `enas/ppo`, `multi-trial/qlearning`, `retrain`.
    pub method: String,
    pub preset: Option<String>,
    /// How far it got: `search 3/10`, `derived`, `retrain 2/6`, `finished`.
    pub stage: String,
    pub test_accuracy: Option<f64>,
    /// Multi-trial: the best child's validation accuracy.
    pub best_valid: Option<f64>,
    pub seconds: f64,
    pub command: String,
}

fn json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()).unwrap_or_default()
}

fn seconds(rows: &[Value]) -> f64 {
    rows.iter().filter_map(|r| r["seconds"].as_f64()).sum()
}

/// Retrain epochs done of how many, its seconds and test accuracy, from a retrain directory.
fn retrain_state(dir: &Path) -> Option<(String, f64, Option<f64>)> {
    let config = json(&dir.join("config.json"))?;
    let rows = jsonl(&dir.join("metrics.jsonl"));
    let test = rows.iter().find_map(|r| r["test_accuracy"].as_f64());
    let epochs = rows.iter().filter(|r| r.get("epoch").is_some()).count();
    let stage = if test.is_some() { "finished".to_string() } else { format!("retrain {epochs}/{}", config["epochs"]) };
    Some((stage, seconds(&rows), test))
}

/// The row of `dir`, if it holds a run of `train`, `search` or `retrain`.
pub fn row(dir: &Path) -> Option<RunRow> {
    let words = crate::train::checkpoint::stored_commands(dir).into_iter().next().unwrap_or_default();
    let top = json(&dir.join("config.json"));
    // A multi-trial config does not keep the preset; its command does (`quick` when not given).
    let preset_flag = words.iter().position(|w| w == "--preset").and_then(|i| words.get(i + 1)).cloned();
    let preset_of_command = preset_flag.or_else(|| ["train", "search"].contains(&words.get(1).map_or("", |w| w.as_str())).then(|| "quick".to_string()));
    let command = shell_words::join(&words);
    let search = json(&dir.join("search/config.json"));
    let mut r = RunRow {
        dir: dir.to_path_buf(),
        space: String::new(),
        method: String::new(),
        preset: top.as_ref().and_then(|c| c["preset"].as_str()).map(String::from).or(preset_of_command),
        stage: String::new(),
        test_accuracy: None,
        best_valid: None,
        seconds: 0.0,
        command,
    };
    if let Some(s) = search.as_ref().filter(|s| s.get("strategy").is_some()) {
        // A multi-trial search.
        let trials = jsonl(&dir.join("search/trials.jsonl"));
        r.space = s["space"].as_str().unwrap_or("").into();
        r.method = format!("multi-trial/{}", s["strategy"]["strategy"].as_str().unwrap_or("?"));
        r.stage = format!("{}/{} children", trials.len(), s["budget"]);
        r.best_valid = trials.iter().filter_map(|t| t["reward"].as_f64()).reduce(f64::max);
        r.seconds = seconds(&trials);
    } else if let Some(s) = search.as_ref().or(top.as_ref().map(|t| &t["search"]).filter(|s| s.is_object())) {
        // An ENAS run: search, derive, retrain.
        let epochs = jsonl(&dir.join("search/metrics.jsonl"));
        r.space = s["space"].as_str().unwrap_or("").into();
        r.method = format!("enas/{}", s["controller"]["algo"].as_str().unwrap_or("?"));
        r.stage = format!("search {}/{}", epochs.len(), s["epochs"]);
        r.seconds = seconds(&epochs);
        if let Some(d) = json(&dir.join("derive/derive.json")) {
            r.stage = "derived".into();
            r.seconds += d["seconds"].as_f64().unwrap_or(0.0);
        }
        if let Some((stage, secs, test)) = retrain_state(&dir.join("retrain")) {
            (r.stage, r.test_accuracy) = (stage, test);
            r.seconds += secs;
        }
    } else if top.as_ref().is_some_and(|c| c.get("arch").is_some()) {
        // `enas retrain` alone.
        let (stage, secs, test) = retrain_state(dir)?;
        r.space = top.as_ref().and_then(|c| c["space"].as_str()).unwrap_or("").into();
        r.method = "retrain".into();
        (r.stage, r.seconds, r.test_accuracy) = (stage, secs, test);
    } else {
        return None;
    }
    Some(r)
}

/// `root` if it is a run, else the runs among its subdirectories, by name.
pub fn scan(root: &Path) -> anyhow::Result<Vec<RunRow>> {
    if let Some(run) = row(root) {
        return Ok(vec![run]);
    }
    let entries = std::fs::read_dir(root).map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", root.display()))?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs.iter().filter_map(|d| row(d)).collect())
}

/// The rows as an aligned text table.
pub fn table(rows: &[RunRow], root: &Path) -> String {
    let header = ["run", "space", "method", "preset", "stage", "test acc", "time", "command"].map(String::from);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let name = r.dir.strip_prefix(root).ok().filter(|p| !p.as_os_str().is_empty()).unwrap_or(&r.dir).display().to_string();
            let acc = match (r.test_accuracy, r.best_valid) {
                (Some(t), _) => format!("{:.2}%", 100.0 * t),
                (None, Some(v)) => format!("(valid {:.2}%)", 100.0 * v),
                _ => "-".into(),
            };
            [
                name,
                r.space.clone(),
                r.method.clone(),
                r.preset.clone().unwrap_or_else(|| "-".into()),
                r.stage.clone(),
                acc,
                crate::train::eta::duration(r.seconds),
                r.command.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..8).map(|i| cells.iter().map(|c| c[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |c: &[String; 8]| {
        let parts: Vec<String> = c.iter().zip(&widths).enumerate().map(|(i, (s, w))| if i == 7 { s.clone() } else { format!("{s:<w$}") }).collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    std::iter::once(&header).chain(cells.iter()).map(line).collect()
}
