//! Training a fixed architecture from scratch (`enas retrain`) and evaluating
//! it (`enas eval`).
use super::checkpoint::{self, load_varmap, varmap_tensors, write_atomic};
use super::loss::{correct, cross_entropy};
use super::optim::{collect_grads, Sgd, SgdConfig};
use super::progress::steps_bar;
use super::schedule::Cosine;
use crate::data::loader::batches_per_epoch;
use crate::data::{Augment, Dataset, DatasetKind, ImageSet, Loader, LoaderConfig};
use crate::model::{seeded_init, trainable_vars, Ctx, NetConfig, Network};
use crate::space::{Arch, SpaceKind};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetrainConfig {
    pub space: SpaceKind,
    /// The architecture in the authors' string format.
    pub arch: String,
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    pub net: NetConfig,
    pub epochs: usize,
    pub batch: usize,
    pub eval_batch: usize,
    pub sgd: SgdConfig,
    pub lr_min: f64,
    /// SGDR: first period in epochs and its growth factor.
    pub lr_t0: f64,
    pub lr_t_mul: f64,
    pub grad_clip: f64,
    pub label_smoothing: f64,
    pub aux_weight: f64,
    pub augment: Augment,
    pub valid_size: usize,
    /// Train on only the first N training images (quick experiments and tests).
    pub train_limit: Option<usize>,
    pub seed: u64,
    /// Seed of the validation split when it must not follow `seed` (the children
    /// of a multi-trial search differ in seed but share one split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_seed: Option<u64>,
}

impl RetrainConfig {
    /// Changes the length of the run; a single cosine period follows it.
    pub fn set_epochs(&mut self, epochs: usize) {
        if self.lr_t_mul == 1.0 && self.lr_t0 == self.epochs as f64 {
            self.lr_t0 = epochs as f64;
        }
        self.epochs = epochs;
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub valid_loss: f64,
    pub valid_accuracy: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The architecture trained, in the authors' string format.
    #[serde(default)]
    pub arch: String,
    /// NaN where the test set was skipped (written as null).
    #[serde(deserialize_with = "nan_if_null")]
    pub test_accuracy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    pub epochs: Vec<EpochMetrics>,
    pub params: usize,
    /// Per image, in evaluation (0 in runs finished before it was counted).
    #[serde(default)]
    pub multiply_adds: u64,
    pub seconds: f64,
}

/// JSON has no NaN: serde_json writes it as null, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Everything that is built from a config: data, model and optimiser.
pub struct Setup {
    pub data: Dataset,
    pub varmap: VarMap,
    pub net: Network,
    /// The same weights, for evaluation without a graph.
    pub eval_net: Network,
    pub arch: Arch,
}

pub fn load_data(cfg: &RetrainConfig) -> Result<Dataset> {
    let mut data = Dataset::load(cfg.dataset, cfg.data_dir.as_deref(), Some(cfg.net.input_shape()), cfg.valid_size, cfg.data_seed.unwrap_or(cfg.seed))?;
    if let Some(n) = cfg.train_limit {
        let idx: Vec<usize> = (0..n.min(data.train.len())).collect();
        data.train = data.train.subset(&idx);
    }
    Ok(data)
}

pub fn build(cfg: &RetrainConfig, data: Dataset, device: &Device) -> Result<Setup> {
    let arch = Arch::parse(cfg.space, &cfg.arch)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let net = Network::new(vb, &arch, &cfg.net).context("cannot build the network")?;
    seeded_init(&varmap, cfg.seed)?;
    let eval_net = Network::detached(&varmap, &arch, &cfg.net, device)?;
    Ok(Setup { data, varmap, net, eval_net, arch })
}

pub fn param_count(varmap: &VarMap) -> usize {
    trainable_vars(varmap).iter().map(|(_, v)| v.elem_count()).sum()
}

/// Accuracy and mean loss of `net` on `set`, batch-norm in evaluation mode.
pub fn evaluate(net: &Network, set: &Arc<ImageSet>, data: &Dataset, batch: usize, show: bool, device: &Device) -> Result<(f64, f64)> {
    let cfg = LoaderConfig { batch_size: batch, shuffle: false, drop_last: false, augment: Augment::NONE, mean: data.mean.clone(), std: data.std.clone() };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut right, mut loss, mut seen) = (0usize, 0f64, 0usize);
    let loader = Loader::new(set.clone(), cfg, 0, 0);
    let bar = steps_bar(loader.len() as u64, "evaluate", show);
    for b in loader {
        bar.inc(1);
        let n = b.len();
        let (x, y) = b.to_tensors(device)?;
        let out = net.forward(&x, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })?;
        right += correct(&out.logits, &y)?;
        loss += cross_entropy(&out.logits, &y, 0.0)?.to_scalar::<f32>()? as f64 * n as f64;
        seen += n;
    }
    bar.finish_and_clear();
    Ok((right as f64 / seen.max(1) as f64, loss / seen.max(1) as f64))
}

fn model_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd20b_a7e5);
    rng.set_stream(epoch);
    rng
}

const CHECKPOINT: &str = "checkpoint.safetensors";
/// Written when a retrain has finished: its `Summary`.
pub const SUMMARY: &str = "summary.json";

/// Written beside the model: what it takes and what its outputs name.
pub const INPUT: &str = "input.json";

/// The classes by output index and the input's normalisation, for anything
/// that runs the model outside a run (predict, export).
fn input_of(data: &Dataset, net: &NetConfig) -> serde_json::Value {
    serde_json::json!({
        "dataset": data.kind.name(),
        "classes": data.classes,
        "channels": net.in_channels,
        "image_size": net.image_size,
        "normalisation": "pixels / 255, then (x - mean) / std per channel",
        "mean": data.mean,
        "std": data.std,
    })
}

/// The summary of the finished retrain in `out`, if it has finished.
pub fn finished(out: &Path) -> Option<Summary> {
    serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY)).ok()?).ok()
}

/// A loss that became NaN or infinite (a multi-trial search scores the child 0).
#[derive(Debug, thiserror::Error)]
#[error("training diverged at epoch {epoch} step {step}: loss is {loss}; try a lower --lr")]
pub struct Diverged {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
}

/// How one invocation runs, as opposed to what it trains (`RetrainConfig`).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue the run in the output directory from its last finished epoch.
    pub resume: bool,
    pub show_progress: bool,
    /// Stop after this many epochs of this invocation, as if interrupted (tests resume).
    pub stop_after: Option<usize>,
    /// Skip the test set at the end (test accuracy reported as NaN).
    pub skip_test: bool,
    /// Also write every epoch's metrics as TensorBoard scalars into `out/tensorboard`.
    pub tensorboard: bool,
    /// The stages of the run after this one, for the run's ETA.
    pub ahead: Option<super::eta::Ahead>,
}

/// Trains `cfg` from scratch into `out` (or resumes it), then tests it.
/// Returns None when `stop_after` ended the invocation before the last epoch.
pub fn run(cfg: &RetrainConfig, out: &Path, opts: &RunOptions, device: &Device) -> Result<Option<Summary>> {
    let (resume, show_progress) = (opts.resume, opts.show_progress);
    let ckpt_path = out.join(CHECKPOINT);
    checkpoint::prepare_run_dir(out, cfg, resume, CHECKPOINT, device)?;
    if let Some(done) = finished(out).filter(|_| resume) {
        return Ok(Some(done));
    }

    let data = load_data(cfg)?;
    let Setup { data, varmap, net, eval_net, arch } = build(cfg, data, device)?;
    let params = param_count(&varmap);
    let mut sgd = Sgd::new(trainable_vars(&varmap), cfg.sgd.clone());
    let schedule = Cosine { lr_max: cfg.sgd.lr, lr_min: cfg.lr_min, t0: cfg.lr_t0, t_mul: cfg.lr_t_mul };
    let steps = batches_per_epoch(data.train.len(), cfg.batch, true);
    if steps == 0 {
        bail!("{} training images are fewer than one batch of {}", data.train.len(), cfg.batch);
    }
    let total_steps = steps * cfg.epochs;

    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut seconds_before = 0f64;
    if resume && ckpt_path.exists() {
        let (tensors, meta) = checkpoint::load(&ckpt_path, device)?;
        load_varmap(&varmap, &tensors, "model.", &ckpt_path)?;
        sgd.load_state(&tensors)?;
        history = serde_json::from_value(meta["history"].clone()).with_context(|| format!("{}: bad history", ckpt_path.display()))?;
        seconds_before = meta["seconds"].as_f64().unwrap_or(0.0);
    }
    let start_epoch = history.len();
    let mut board = if opts.tensorboard { Some(super::tensorboard::EventWriter::create(&out.join("tensorboard"))?) } else { None };
    let train_set = Arc::new(data.train.clone());
    let valid_set = Arc::new(data.valid.clone());
    let started = Instant::now();
    for epoch in start_epoch..cfg.epochs {
        if opts.stop_after.is_some_and(|n| epoch - start_epoch >= n) {
            return Ok(None);
        }
        let t0 = Instant::now();
        let loader = Loader::new(
            train_set.clone(),
            LoaderConfig { batch_size: cfg.batch, shuffle: true, drop_last: true, augment: cfg.augment, mean: data.mean.clone(), std: data.std.clone() },
            cfg.seed,
            epoch as u64,
        );
        let bar = steps_bar(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.epochs), show_progress);
        let mut rng = model_rng(cfg.seed, epoch as u64);
        let (mut loss_sum, mut right, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = cfg.sgd.lr;
        for (i, batch) in loader.enumerate() {
            let n = batch.len();
            let (x, y) = batch.to_tensors(device)?;
            let global = epoch * steps + i;
            lr = schedule.at(epoch as f64 + i as f64 / steps as f64);
            sgd.set_lr(lr);
            let progress = (global + 1) as f32 / total_steps as f32;
            let out = net.forward(&x, &mut Ctx { train: true, rng: &mut rng, progress })?;
            let mut loss = cross_entropy(&out.logits, &y, cfg.label_smoothing)?;
            if let (Some(aux), true) = (&out.aux_logits, cfg.aux_weight > 0.0) {
                loss = (loss + (cross_entropy(aux, &y, cfg.label_smoothing)? * cfg.aux_weight)?)?;
            }
            let grads = loss.backward()?;
            let mut grads = collect_grads(&grads, sgd.vars());
            sgd.clip_and_step(&mut grads, cfg.grad_clip)?;
            let l = loss.to_scalar::<f32>()? as f64;
            if !l.is_finite() {
                return Err(Diverged { epoch: epoch + 1, step: i, loss: l }.into());
            }
            loss_sum += l * n as f64;
            right += correct(&out.logits, &y)?;
            seen += n;
            let secs = t0.elapsed().as_secs_f64();
            bar.set_message(format!("loss {:.3} acc {:.3} {:.0} img/s lr {lr:.4}", loss_sum / seen as f64, right as f64 / seen as f64, seen as f64 / secs));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_secs = t0.elapsed().as_secs_f64();
        let (valid_accuracy, valid_loss) = evaluate(&eval_net, &valid_set, &data, cfg.eval_batch, show_progress, device)?;
        let valid_secs = t0.elapsed().as_secs_f64() - train_secs;
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            valid_loss,
            valid_accuracy,
            images_per_s: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if show_progress {
            // The test set is one more evaluation, at the validation split's speed per image.
            let secs: Vec<f64> = history.iter().map(|e| e.seconds).chain([m.seconds]).collect();
            let test = valid_secs / data.valid.len().max(1) as f64 * data.test.len() as f64;
            eprintln!(
                "epoch {:>3}/{}: train loss {:.4} acc {:.4} | valid loss {:.4} acc {:.4} | {:.0} img/s, {:.0}s | run ETA {}",
                m.epoch,
                cfg.epochs,
                m.train_loss,
                m.train_accuracy,
                m.valid_loss,
                m.valid_accuracy,
                m.images_per_s,
                m.seconds,
                super::eta::duration(super::eta::remaining(&secs, cfg.epochs) + test)
            );
        }
        if let Some(b) = board.as_mut() {
            b.metrics("retrain", m.epoch as i64, &serde_json::to_value(&m)?)?;
        }
        history.push(m);
        let mut tensors = varmap_tensors(&varmap, "model.")?;
        tensors.extend(sgd.state());
        // The random streams of epoch e are pure functions of (seed, e), so their
        // position is the epoch: the next run starts the streams of `epoch + 1`.
        let meta = serde_json::json!({
            "stage": "retrain",
            "epoch": epoch + 1,
            "step": (epoch + 1) * steps,
            "rng": {"seed": cfg.seed, "next_stream": epoch + 1},
            "history": history,
            "seconds": seconds_before + started.elapsed().as_secs_f64(),
        });
        checkpoint::save_atomic(&ckpt_path, &tensors, &meta)?;
        write_metrics(out, &history, None)?;
    }

    let (test_accuracy, test_loss) =
        if opts.skip_test { (f64::NAN, f64::NAN) } else { evaluate(&eval_net, &Arc::new(data.test.clone()), &data, cfg.eval_batch, show_progress, device)? };
    let seconds = seconds_before + started.elapsed().as_secs_f64();
    varmap.save(out.join("model.safetensors")).context("cannot write model.safetensors")?;
    checkpoint::readable(&out.join("model.safetensors"))?;
    let multiply_adds = eval_net.multiply_adds(&cfg.net)?;
    let mut arch_json = arch.to_json();
    (arch_json["params"], arch_json["multiply_adds"]) = (params.into(), multiply_adds.into());
    write_atomic(&out.join("arch.json"), &serde_json::to_string_pretty(&arch_json)?)?;
    write_atomic(&out.join(INPUT), &serde_json::to_string_pretty(&input_of(&data, &cfg.net))?)?;
    let summary = Summary { arch: arch.to_arc_string(), test_accuracy, test_loss, epochs: history, params, multiply_adds, seconds };
    write_metrics(out, &summary.epochs, Some((test_accuracy, test_loss)).filter(|t| t.0.is_finite()))?;
    write_atomic(&out.join(SUMMARY), &serde_json::to_string_pretty(&summary)?)?;
    Ok(Some(summary))
}

/// `metrics.jsonl`: one line per finished epoch, then the test result.
fn write_metrics(out: &Path, history: &[EpochMetrics], test: Option<(f64, f64)>) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m)?);
        text.push('\n');
    }
    if let Some((acc, loss)) = test {
        text.push_str(&serde_json::json!({"test_accuracy": acc, "test_loss": loss}).to_string());
        text.push('\n');
    }
    write_atomic(&out.join("metrics.jsonl"), &text)
}
