//! Deriving the final architecture (Pham et al. 2018, Sec. 2.2 "Deriving
//! Architectures"): sample from the trained policy, score every sample on the
//! whole validation split with the shared weights, keep the best. Uniform draws
//! scored the same way show what the policy bought.
use super::checkpoint::write_atomic;
use super::search::{self, accuracy_on, stream};
use crate::controller::{mean, uniform_arch, Algo, Pick};
use crate::space::Arch;
use anyhow::Result;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeriveOptions {
    /// Architectures sampled from the policy (the argmax is added).
    pub samples: usize,
    /// Uniform draws scored alike, for comparison.
    pub uniform: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Candidate {
    /// "argmax", "policy" or "uniform".
    pub source: String,
    pub arch: String,
    pub valid_accuracy: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Derived {
    pub arch: String,
    pub valid_accuracy: f64,
    pub source: String,
    /// Mean shared-weight validation accuracy of the uniform draws.
    pub uniform_mean: f64,
    pub candidates: Vec<Candidate>,
    pub seconds: f64,
}

const DERIVE_STREAM: u64 = 0xde21_7e00;

/// Derives from the search in `search_dir`, writing `arch.json` and `derive.csv` into `out`.
pub fn run(search_dir: &Path, out: &Path, opts: &DeriveOptions, show: bool, device: &Device) -> Result<Derived> {
    let started = Instant::now();
    let loaded = search::load(search_dir, device)?;
    let (cfg, s) = (&loaded.cfg, &loaded.setup);
    let mut rng = stream(cfg.seed, DERIVE_STREAM, 0);
    // Random search has no policy: its candidates are its own uniform draws.
    let mut pool: Vec<(String, Arch)> = Vec::new();
    if cfg.controller.algo != Algo::Random {
        pool.push(("argmax".into(), s.controller.sample(&mut Pick::Greedy)?.arch));
        for _ in 0..opts.samples {
            pool.push(("policy".into(), s.controller.sample(&mut Pick::Draw(&mut rng))?.arch));
        }
    }
    let mut uniform_rng = stream(cfg.seed, DERIVE_STREAM ^ 0x1, 0);
    let n_uniform = if cfg.controller.algo == Algo::Random { opts.samples.max(opts.uniform) } else { opts.uniform };
    for _ in 0..n_uniform {
        pool.push(("uniform".into(), uniform_arch(cfg.space, cfg.arch_size(), &mut uniform_rng)));
    }
    let valid = Arc::new(s.data.valid.clone());
    let bar = super::progress::steps_bar(pool.len() as u64, "derive", show);
    let mut candidates = Vec::with_capacity(pool.len());
    for (source, arch) in pool {
        let valid_accuracy = accuracy_on(&s.eval_net, &arch, &valid, &s.data, cfg.batch, device)?;
        candidates.push(Candidate { source, arch: arch.to_arc_string(), valid_accuracy });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let uniform: Vec<f64> = candidates.iter().filter(|c| c.source == "uniform").map(|c| c.valid_accuracy).collect();
    let eligible = |c: &&Candidate| cfg.controller.algo == Algo::Random || c.source != "uniform";
    let best = candidates
        .iter()
        .filter(eligible)
        .fold(None::<&Candidate>, |b, c| if b.is_none_or(|b| c.valid_accuracy > b.valid_accuracy) { Some(c) } else { b })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("derive had no architecture to choose from; ask for at least one sample"))?;
    let derived = Derived {
        arch: best.arch.clone(),
        valid_accuracy: best.valid_accuracy,
        source: best.source.clone(),
        uniform_mean: mean(&uniform),
        candidates,
        seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(out)?;
    let arch = Arch::parse(cfg.space, &derived.arch)?;
    let mut json = arch.to_json();
    json["shared_valid_accuracy"] = serde_json::json!(derived.valid_accuracy);
    json["source"] = serde_json::json!(derived.source);
    write_atomic(&out.join("arch.json"), &serde_json::to_string_pretty(&json)?)?;
    let mut ranked: Vec<&Candidate> = derived.candidates.iter().collect();
    ranked.sort_by(|a, b| b.valid_accuracy.total_cmp(&a.valid_accuracy));
    let mut csv = String::from("rank,source,shared_valid_accuracy,arch\n");
    for (i, c) in ranked.iter().enumerate() {
        csv.push_str(&format!("{},{},{:.4},{}\n", i + 1, c.source, c.valid_accuracy, c.arch));
    }
    write_atomic(&out.join("derive.csv"), &csv)?;
    write_atomic(&out.join("derive.json"), &serde_json::to_string_pretty(&derived)?)?;
    Ok(derived)
}
