//! `enas bench nb201`: search strategies against a tabular oracle
//! (NAS-Bench-201), the table's accuracy as the reward, many seeds in seconds.
use crate::controller::Strategy;
use crate::report::plots::{line_chart, Series};
use crate::space::{Arch, Nb201Arch, SpaceKind};
use crate::train::trials::{run_budget, searcher, StrategyConfig};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct Nb201Args {
    /// CSV with a header and rows `arch,accuracy` (NB201 strings; percent or fraction).
    #[arg(long)]
    pub table: PathBuf,
    /// Strategies to compare (comma-separated; default all five).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub strategy: Vec<Strategy>,
    /// Distinct architectures each search may look up.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 100)]
    pub budget: usize,
    /// Independent searches per strategy (seeds 0..S).
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// Gaussian noise (table units) on every observed reward; the best is judged by the true value.
    #[arg(long, value_parser = super::ranges::non_negative, allow_negative_numbers = true, default_value_t = 0.0)]
    pub noise: f64,
    /// Proposals allowed per search, as a multiple of the budget.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 50)]
    pub cap_factor: usize,
    /// Write the best-so-far curves here (CSV) instead of printing them.
    #[arg(long)]
    pub curve: Option<PathBuf>,
    /// Also plot the curves (mean, with a band of one standard deviation over seeds): .svg or .png.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// PPO/REINFORCE: Adam's learning rate (default 0.05).
    #[arg(long, value_parser = super::ranges::positive, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// PPO/REINFORCE: architectures per policy update (default 5).
    #[arg(long, value_parser = super::ranges::count)]
    pub samples_per_update: Option<usize>,
    /// PPO/REINFORCE: weight of the entropy bonus (default 0).
    #[arg(long, value_parser = super::ranges::non_negative, allow_negative_numbers = true)]
    pub entropy_weight: Option<f64>,
    /// PPO/REINFORCE: logits are c * tanh(logits), so no choice saturates (default 1.5; 0: off).
    #[arg(long, value_parser = super::ranges::positive, allow_negative_numbers = true)]
    pub tanh_constant: Option<f64>,
    /// PPO: advantages against the EMA baseline (the ENAS search's) instead of batch ranks.
    #[arg(long)]
    pub baseline_advantages: bool,
    /// Evolution: architectures kept in the population (default 20).
    #[arg(long, value_parser = super::ranges::count)]
    pub population: Option<usize>,
    /// Evolution: architectures sampled per tournament (default 5).
    #[arg(long, value_parser = super::ranges::count)]
    pub tournament: Option<usize>,
    /// One JSON object per strategy instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The accuracy of every architecture of a table, keyed by its string.
pub struct Table {
    pub acc: HashMap<String, f64>,
    /// Accuracies are percentages (any above 1): strategies see them / 100.
    pub percent: bool,
}

pub fn load_table(path: &PathBuf) -> Result<Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the table", path.display()))?;
    let mut acc = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && !line.starts_with('|')) {
            continue;
        }
        let (arch, value) = line.rsplit_once(',').with_context(|| format!("{}, line {}: expected `arch,accuracy`", path.display(), i + 1))?;
        let parsed: Nb201Arch = arch.trim().parse().map_err(|e| anyhow::anyhow!("{}, line {}: {e}", path.display(), i + 1))?;
        let v: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .with_context(|| format!("{}, line {}: accuracy '{}' is not a number", path.display(), i + 1, value.trim()))?;
        if acc.insert(parsed.to_string(), v).is_some() {
            bail!("{}, line {}: architecture {arch} appears twice", path.display(), i + 1);
        }
    }
    if acc.is_empty() {
        bail!("{}: no rows (expected a header, then `arch,accuracy` lines)", path.display());
    }
    let percent = acc.values().any(|&v| v > 1.0);
    Ok(Table { acc, percent })
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    pub budget: usize,
    pub seeds: u64,
    pub mean_best: f64,
    pub std_best: f64,
    /// Mean over seeds of the best (true) accuracy after k queries, k = 1..budget.
    pub curve: Vec<f64>,
    /// Its standard deviation over seeds.
    pub curve_std: Vec<f64>,
    /// Mean distinct architectures reached and proposals made per seed.
    pub mean_distinct: f64,
    pub mean_samples: f64,
    pub seconds: f64,
}

pub fn strategy_config(a: &Nb201Args, strategy: Strategy) -> StrategyConfig {
    let mut cfg = StrategyConfig::defaults(strategy, a.budget);
    let c = &mut cfg.controller;
    c.lr = a.lr.unwrap_or(c.lr);
    c.samples_per_update = a.samples_per_update.unwrap_or(c.samples_per_update);
    c.entropy_weight = a.entropy_weight.unwrap_or(c.entropy_weight);
    if let Some(t) = a.tanh_constant {
        c.policy.tanh_constant = Some(t).filter(|t| *t > 0.0);
    }
    c.rank_advantages = !a.baseline_advantages;
    cfg.population = a.population.unwrap_or(cfg.population);
    cfg.tournament = a.tournament.unwrap_or(cfg.tournament);
    cfg
}

/// One search of `strategy` with `seed`: the best-so-far curve (true accuracy
/// of the best observed), the distinct count and proposals.
fn one_search(a: &Nb201Args, table: &Table, strategy: Strategy, seed: u64) -> Result<(Vec<f64>, usize, usize)> {
    let cfg = strategy_config(a, strategy);
    let mut s = searcher(&cfg, SpaceKind::Nb201, 0, a.budget, seed, &Device::Cpu)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut noise_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x004e_015e);
    let noise = Normal::new(0.0, a.noise.max(0.0)).context("--noise must be finite")?;
    let scale = if table.percent { 0.01 } else { 1.0 };
    let truth = |arch: &Arch| -> Result<f64> {
        let key = arch.to_arc_string();
        table.acc.get(&key).copied().with_context(|| format!("{}: no row for {key}", a.table.display()))
    };
    let mut evaluate = |arch: &Arch| -> Result<f64> {
        let observed = truth(arch)? + if a.noise > 0.0 { noise.sample(&mut noise_rng) } else { 0.0 };
        Ok(observed * scale)
    };
    let out = run_budget(s.as_mut(), a.budget, a.budget * a.cap_factor.max(1), &mut rng, &mut evaluate)?;
    let (mut curve, mut best) = (Vec::with_capacity(a.budget), (f64::NEG_INFINITY, 0.0));
    for (arch, observed) in &out.distinct {
        if *observed > best.0 {
            best = (*observed, truth(arch)?);
        }
        curve.push(best.1);
    }
    let distinct = curve.len();
    while curve.len() < a.budget {
        curve.push(best.1);
    }
    Ok((curve, distinct, out.samples))
}

pub fn run(a: &Nb201Args) -> Result<Vec<StrategyResult>> {
    if a.budget == 0 || a.seeds == 0 {
        bail!("--budget and --seeds must be positive");
    }
    if let Some(path) = &a.plot {
        plot_format(path)?;
    }
    let space_size = crate::space::nb201::NB201_OPS.len().pow(crate::space::nb201::NB201_EDGES as u32);
    if a.budget > space_size {
        eprintln!(
            "note: --budget {}: the NAS-Bench-201 space has {space_size} architectures; each search ends at its proposal cap (--cap-factor {} x the budget) with at most {space_size} looked up",
            a.budget, a.cap_factor
        );
    }
    let table = load_table(&a.table)?;
    let strategies = if a.strategy.is_empty() { Strategy::ALL.to_vec() } else { a.strategy.clone() };
    let mut results = Vec::new();
    for &strategy in &strategies {
        let t0 = Instant::now();
        let (mut bests, mut curves, mut distinct, mut samples) = (Vec::new(), Vec::new(), 0usize, 0usize);
        for seed in 0..a.seeds {
            let (curve, d, s) = one_search(a, &table, strategy, seed)?;
            bests.push(*curve.last().expect("budget > 0"));
            curves.push(curve);
            distinct += d;
            samples += s;
        }
        let n = a.seeds as f64;
        let mean = bests.iter().sum::<f64>() / n;
        let std = (bests.iter().map(|b| (b - mean) * (b - mean)).sum::<f64>() / n).sqrt();
        let curve: Vec<f64> = (0..a.budget).map(|k| curves.iter().map(|c| c[k]).sum::<f64>() / n).collect();
        let curve_std = (0..a.budget).map(|k| (curves.iter().map(|c| (c[k] - curve[k]).powi(2)).sum::<f64>() / n).sqrt()).collect();
        results.push(StrategyResult {
            strategy: strategy.name().to_string(),
            budget: a.budget,
            seeds: a.seeds,
            mean_best: mean,
            std_best: std,
            curve,
            curve_std,
            mean_distinct: distinct as f64 / n,
            mean_samples: samples as f64 / n,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(results)
}

enum PlotFormat {
    Svg,
    Png,
}

/// The format `--plot`'s extension names, checked before the searches run.
fn plot_format(path: &std::path::Path) -> Result<PlotFormat> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("svg") => Ok(PlotFormat::Svg),
        Some("png") => Ok(PlotFormat::Png),
        _ => bail!("--plot {}: the extension must be .svg or .png", path.display()),
    }
}

pub fn print(a: &Nb201Args, results: &[StrategyResult]) -> Result<()> {
    let mut csv = format!("queries,{}\n", results.iter().map(|r| r.strategy.as_str()).collect::<Vec<_>>().join(","));
    for k in 0..a.budget {
        let row: Vec<String> = results.iter().map(|r| format!("{:.4}", r.curve[k])).collect();
        csv.push_str(&format!("{},{}\n", k + 1, row.join(",")));
    }
    if let Some(path) = &a.curve {
        std::fs::write(path, &csv).with_context(|| format!("{}: cannot write the curve", path.display()))?;
    }
    if let Some(path) = &a.plot {
        let series: Vec<Series> = results
            .iter()
            .map(|r| {
                let points = r.curve.iter().enumerate().map(|(k, &m)| (k as f64 + 1.0, m)).collect();
                let band = r.curve.iter().zip(&r.curve_std).enumerate().map(|(k, (&m, &s))| (k as f64 + 1.0, m - s, m + s)).collect();
                Series { name: r.strategy.clone(), points, band: Some(band) }
            })
            .collect();
        // Every query from the first, and beside it from the tenth of the budget on, where the strategies start to differ.
        let skip = (a.budget / 10).max(1);
        let tail: Vec<Series> = series
            .iter()
            .map(|s| {
                let skip = skip.min(s.points.len().saturating_sub(1));
                Series { name: s.name.clone(), points: s.points[skip..].to_vec(), band: s.band.as_ref().map(|b| b[skip..].to_vec()) }
            })
            .collect();
        let title = format!("best accuracy found (mean +- sd over {} seeds)", a.seeds);
        let whole = line_chart(&title, "distinct architectures looked up", "accuracy", &series)?.context("nothing to plot")?;
        let zoomed =
            line_chart(&format!("the same from query {} on", skip + 1), "distinct architectures looked up", "accuracy", &tail)?.context("nothing to plot")?;
        let svg = crate::report::plots::side_by_side(&whole, &zoomed);
        let bytes = match plot_format(path)? {
            PlotFormat::Svg => svg.into_bytes(),
            PlotFormat::Png => crate::report::draw::to_png(&svg)?,
        };
        std::fs::write(path, bytes).with_context(|| format!("{}: cannot write the plot", path.display()))?;
    }
    if a.json {
        for r in results {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    println!("{}: budget {} distinct architectures, {} seeds, noise {}", a.table.display(), a.budget, a.seeds, a.noise);
    let marks: Vec<usize> = [10, 25, 50].into_iter().filter(|&m| m < a.budget).chain([a.budget]).collect();
    let head: Vec<String> = marks.iter().map(|m| format!("@{m}")).collect();
    println!(
        "{:<10} {:>9} {:>8} {} {:>9} {:>9} {:>8}",
        "strategy",
        "mean_best",
        "std_best",
        head.iter().map(|h| format!("{h:>7}")).collect::<String>(),
        "distinct",
        "proposals",
        "seconds"
    );
    for r in results {
        let at: String = marks.iter().map(|&m| format!("{:>7.2}", r.curve[m - 1])).collect();
        println!("{:<10} {:>9.3} {:>8.3} {at} {:>9.1} {:>9.1} {:>8.1}", r.strategy, r.mean_best, r.std_best, r.mean_distinct, r.mean_samples, r.seconds);
    }
    match &a.curve {
        None => println!("\nbest-so-far against queries (mean over seeds):\n{csv}"),
        Some(path) => println!("curves written to {}", path.display()),
    }
    Ok(())
}
