//! A trained model's directory (a retrain's output, or a train run holding
//! one in `retrain/`): its settings, weights and input, for `enas eval`,
//! `enas export` and `enas predict`.
use super::checkpoint::load_varmap;
use super::retrain::{build, evaluate, load_data, RetrainConfig, Setup, INPUT};
use crate::data::DatasetKind;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the model takes and what its outputs name (`input.json`).
#[derive(Clone, Debug, Deserialize)]
pub struct Input {
    pub classes: Vec<String>,
    pub channels: usize,
    pub image_size: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// The directory holding the model: `dir` itself, or a train run's `retrain/`.
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    let stage = dir.join("retrain");
    if dir.join("model.safetensors").exists() {
        return Ok(dir.to_path_buf());
    }
    if stage.join("model.safetensors").exists() {
        return Ok(stage);
    }
    if dir.join("search").is_dir() || stage.is_dir() {
        bail!("{}: a train run whose retrain stage has not finished: no model in {}", dir.display(), stage.display());
    }
    bail!("{}: no model.safetensors (give the --out of `enas retrain` or `enas train`)", dir.display())
}

pub fn config(dir: &Path) -> Result<RetrainConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read (is this a retrain output?)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a retrain config", path.display()))
}

/// The network of `cfg` with the weights in `dir`.
fn built(dir: &Path, cfg: &RetrainConfig, data: crate::data::Dataset, device: &Device) -> Result<Setup> {
    let setup = build(cfg, data, device)?;
    let model_path = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&model_path, device).with_context(|| format!("{}: cannot read", model_path.display()))?;
    load_varmap(&setup.varmap, &tensors, "", &model_path)?;
    Ok(setup)
}

/// A trained model, ready to run in evaluation.
pub struct Trained {
    pub cfg: RetrainConfig,
    pub input: Input,
    pub setup: Setup,
}

/// Opens the model in `dir`. Its `input.json` says what it takes; a model
/// trained before that was written gets it from its dataset, loaded once.
pub fn open(dir: &Path, device: &Device) -> Result<Trained> {
    let dir = resolve(dir)?;
    let cfg = config(&dir)?;
    let input_path = dir.join(INPUT);
    let stored: Option<Input> = match std::fs::read_to_string(&input_path) {
        Ok(text) => Some(serde_json::from_str(&text).with_context(|| format!("{}: not an input description", input_path.display()))?),
        Err(_) => None,
    };
    // Building the network needs a dataset value, not its images: an empty one where input.json has what matters.
    let data = match &stored {
        Some(_) => crate::data::Dataset::empty(cfg.dataset, cfg.net.in_channels, cfg.net.image_size),
        None => load_data(&cfg)?,
    };
    let input = stored.unwrap_or_else(|| Input {
        classes: data.classes.clone(),
        channels: cfg.net.in_channels,
        image_size: cfg.net.image_size,
        mean: data.mean.clone(),
        std: data.std.clone(),
    });
    let setup = built(&dir, &cfg, data, device)?;
    Ok(Trained { cfg, input, setup })
}

/// A model tested, and its size.
pub struct Evaluated {
    pub accuracy: f64,
    pub params: usize,
    pub multiply_adds: u64,
}

/// Loads the model in `dir` and tests it (on another dataset of the same shape, or data directory, if given).
pub fn eval_dir(dir: &Path, dataset: Option<DatasetKind>, data_dir: Option<PathBuf>, show: bool, device: &Device) -> Result<Evaluated> {
    let dir = resolve(dir)?;
    let mut cfg = config(&dir)?;
    if let Some(d) = dataset {
        let fits = d.builtin_shape().is_some_and(|s| (s.in_channels, s.image_size, s.classes) == (cfg.net.in_channels, cfg.net.image_size, cfg.net.classes));
        if !fits && d != DatasetKind::Folder {
            bail!("{}: the model was trained on {}, whose images and classes differ from {}", dir.join("config.json").display(), cfg.dataset.name(), d.name());
        }
        cfg.dataset = d;
    }
    if data_dir.is_some() {
        cfg.data_dir = data_dir;
    }
    let setup = built(&dir, &cfg, load_data(&cfg)?, device)?;
    let (accuracy, _) = evaluate(&setup.eval_net, &Arc::new(setup.data.test.clone()), &setup.data, cfg.eval_batch, show, device)?;
    Ok(Evaluated { accuracy, params: super::retrain::param_count(&setup.varmap), multiply_adds: setup.eval_net.multiply_adds(&cfg.net)? })
}
