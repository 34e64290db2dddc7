//! `enas bench ranking --run DIR`: the supernet's ranking of architectures
//! against training them from scratch; writes `DIR/ranking/` and adds the
//! result to the run's reports.
use crate::train::pipeline;
use crate::train::preset::Plan;
use crate::train::ranking::{self, Ranking, RankingOptions};
use crate::train::retrain::{self, RunOptions};
use anyhow::Result;
use candle_core::Device;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct RankingArgs {
    /// A run directory of `enas train` or `enas search` whose search has run (`ranking/` is written into it).
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Uniformly random architectures to rank (the derived one is added where the run has derived).
    #[arg(long, value_parser = super::ranges::count, default_value_t = 20)]
    archs: usize,
    /// Epochs each architecture trains from scratch, at the search's size and settings (2: 21 architectures in about 26 minutes at the quick preset's size on 2 cores).
    #[arg(long, value_parser = super::ranges::count, default_value_t = 2)]
    epochs: usize,
    /// Training images per epoch [default: the search's own].
    #[arg(long, value_parser = super::ranges::count)]
    train_limit: Option<usize>,
    /// Bootstrap resamples for the 95% intervals.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 1000)]
    resamples: usize,
    /// One JSON object (ranking.json's) instead of sentences.
    #[arg(long)]
    json: bool,
    /// No progress bar or per-architecture lines, only the result.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    device: super::DeviceArg,
}

pub fn run(a: &RankingArgs) -> Result<()> {
    let device = a.device.open()?;
    let opts = RankingOptions { archs: a.archs, epochs: a.epochs, train_limit: a.train_limit, resamples: a.resamples };
    let r = ranking::run(&a.run, &opts, !a.quiet && !a.json, &device)?;
    let out = a.run.join(ranking::DIR);
    if let Some(svg) = crate::report::ranking::scatter(&r)? {
        crate::train::checkpoint::write_atomic(&out.join("ranking.svg"), &svg)?;
    }
    super::session::record_command(&a.run)?;
    refresh_reports(&a.run, &device)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print(&r, &out);
    }
    Ok(())
}

fn print(r: &Ranking, out: &Path) {
    println!("{}", crate::report::ranking::statement(r));
    println!("{:.0}s on {} training images an epoch; written to {} (ranking.json, ranking.csv, ranking.svg)", r.seconds, r.train_images, out.display());
}

/// The run's report.html and, for a finished `enas train`, its report.md, written again with the ranking in them.
fn refresh_reports(run: &Path, device: &Device) -> Result<()> {
    if run.join(crate::train::checkpoint::COMMANDS).exists() || run.join("report.html").exists() {
        crate::report::html::write(run)?;
    }
    if retrain::finished(&run.join("retrain")).is_none() {
        return Ok(());
    }
    let Some(plan) = std::fs::read_to_string(run.join("config.json")).ok().and_then(|t| serde_json::from_str::<Plan>(&t).ok()) else {
        return Ok(());
    };
    // Every stage has finished: this reads their results back without computing.
    if let Some(result) = pipeline::run(&plan, run, &RunOptions { resume: true, ..Default::default() }, device)? {
        crate::report::write(run, &result)?;
    }
    Ok(())
}
