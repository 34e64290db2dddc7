//! The ENAS search (Pham et al. 2018, Sec. 2.2): each epoch one pass of
//! shared-weight training, every minibatch on a fresh architecture from the
//! controller, then the controller's updates, rewarded by the sampled child's
//! accuracy on validation minibatches with the shared weights.
use super::checkpoint::{self, load_varmap, varmap_tensors, write_atomic};
use super::loss::{correct, cross_entropy};
use super::optim::{collect_grads, Adam, Sgd, SgdConfig};
use super::progress::steps_bar;
use super::retrain::RunOptions;
use super::schedule::Cosine;
use crate::controller::{mean, uniform_arch, Algo, Controller, ControllerSettings, Pick, UpdateStats};
use crate::data::loader::batches_per_epoch;
use crate::data::{Augment, Dataset, DatasetKind, ImageSet, Loader, LoaderConfig};
use crate::model::{seeded_init, trainable_vars, Ctx, NetConfig, Supernet};
use crate::space::{Arch, SpaceKind};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchConfig {
    pub space: SpaceKind,
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    /// The supernet: micro normal cells in all (or macro layers), width, aux head, dropout.
    pub net: NetConfig,
    /// Micro: nodes per cell.
    pub nodes: usize,
    pub epochs: usize,
    pub batch: usize,
    pub sgd: SgdConfig,
    pub lr_min: f64,
    pub lr_t0: f64,
    pub lr_t_mul: f64,
    pub grad_clip: f64,
    pub aux_weight: f64,
    pub augment: Augment,
    pub valid_size: usize,
    pub train_limit: Option<usize>,
    pub controller: ControllerSettings,
    pub seed: u64,
    /// Batch norm in the reward pass (and derive): the batch's statistics, or (macro) the running averages.
    /// Not written when it is the batch's, which runs started before it was a setting used: they resume.
    #[serde(default, skip_serializing_if = "RewardBn::is_batch")]
    pub reward_bn: RewardBn,
}

/// Which statistics batch norm uses when the shared weights score an architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RewardBn {
    /// The batch's own, as the authors' micro search.
    #[default]
    Batch,
    /// The running averages of training, as the authors' macro search (`is_training=False`).
    Moving,
}

impl RewardBn {
    fn is_batch(&self) -> bool {
        *self == RewardBn::Batch
    }
}

impl SearchConfig {
    /// Changes the length of the search; a single cosine period follows it.
    pub fn set_epochs(&mut self, epochs: usize) {
        if self.lr_t_mul == 1.0 && self.lr_t0 == self.epochs as f64 {
            self.lr_t0 = epochs as f64;
        }
        self.epochs = epochs;
    }

    /// Nodes per cell (micro) or layers (macro): the size of an architecture.
    pub fn arch_size(&self) -> usize {
        match self.space {
            SpaceKind::Micro => self.nodes,
            SpaceKind::Macro => self.net.layers,
            SpaceKind::Metaqnn => self.net.image_size,
            SpaceKind::Nb201 => 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchEpoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// The architecture the controller favours (its argmax; for random search
    /// the epoch's best-rewarded draw) on the whole validation split.
    pub valid_accuracy: f64,
    pub favoured_arch: String,
    /// Mean accuracy of the controller's samples this epoch, and of its first and last update.
    pub mean_reward: f64,
    pub first_update_reward: f64,
    pub last_update_reward: f64,
    pub baseline: f64,
    pub entropy: f64,
    pub clip_fraction: f64,
    pub approx_kl: f64,
    pub controller_loss: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// The random stream `salt` of epoch `epoch`: a pure function of the seed, so
/// a resumed run draws what an uninterrupted one would.
pub fn stream(seed: u64, salt: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ salt);
    rng.set_stream(epoch);
    rng
}

const ARCH_STREAM: u64 = 0xa2c4_5eed;
const MODEL_STREAM: u64 = 0x5e4c_40de;
const REWARD_STREAM: u64 = 0x2e3a_7d00;

/// Validation minibatches without end, reshuffled on every pass; each of the
/// batch size (a pass's last, partial batch is left out: it would score a
/// reward on a few images), unless the whole split is smaller than a batch.
pub struct BatchCycle {
    set: Arc<ImageSet>,
    cfg: LoaderConfig,
    seed: u64,
    stream: u64,
    loader: Option<Loader>,
}

impl BatchCycle {
    pub fn new(set: Arc<ImageSet>, data: &Dataset, batch: usize, seed: u64, epoch: u64) -> BatchCycle {
        let drop_last = set.len() >= batch;
        let cfg = LoaderConfig { batch_size: batch, shuffle: true, drop_last, augment: Augment::NONE, mean: data.mean.clone(), std: data.std.clone() };
        BatchCycle { set, cfg, seed: seed ^ REWARD_STREAM, stream: epoch << 20, loader: None }
    }

    pub fn next_batch(&mut self, device: &Device) -> Result<(Tensor, Tensor)> {
        loop {
            let loader = self.loader.get_or_insert_with(|| Loader::new(self.set.clone(), self.cfg.clone(), self.seed, self.stream));
            if let Some(b) = loader.next() {
                return Ok(b.to_tensors(device)?);
            }
            self.loader = None;
            self.stream += 1;
        }
    }
}

/// Accuracy of `arch` on the next `batches` minibatches, shared weights, no graph.
pub fn reward(net: &Supernet, arch: &Arch, cycle: &mut BatchCycle, batches: usize, device: &Device) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut right, mut seen) = (0usize, 0usize);
    for _ in 0..batches.max(1) {
        let (x, y) = cycle.next_batch(device)?;
        let out = net.forward(&x, arch, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })?;
        right += correct(&out.logits, &y)?;
        seen += y.dim(0)?;
    }
    Ok(right as f64 / seen.max(1) as f64)
}

/// Accuracy of `arch` on all of `set`, shared weights, batch statistics.
pub fn accuracy_on(net: &Supernet, arch: &Arch, set: &Arc<ImageSet>, data: &Dataset, batch: usize, device: &Device) -> Result<f64> {
    let cfg = LoaderConfig { batch_size: batch, shuffle: false, drop_last: false, augment: Augment::NONE, mean: data.mean.clone(), std: data.std.clone() };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (mut right, mut seen) = (0usize, 0usize);
    for b in Loader::new(set.clone(), cfg, 0, 0) {
        let (x, y) = b.to_tensors(device)?;
        let out = net.forward(&x, arch, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })?;
        right += correct(&out.logits, &y)?;
        seen += y.dim(0)?;
    }
    Ok(right as f64 / seen.max(1) as f64)
}

/// A search's model, controller and data, built from its config.
pub struct SearchSetup {
    pub data: Dataset,
    pub varmap: VarMap,
    pub supernet: Supernet,
    /// The same weights without a graph, for rewards and evaluation.
    pub eval_net: Supernet,
    pub controller: Controller,
}

pub fn load_data(cfg: &SearchConfig) -> Result<Dataset> {
    let mut data = Dataset::load(cfg.dataset, cfg.data_dir.as_deref(), Some(cfg.net.input_shape()), cfg.valid_size, cfg.seed)?;
    if let Some(n) = cfg.train_limit {
        let idx: Vec<usize> = (0..n.min(data.train.len())).collect();
        data.train = data.train.subset(&idx);
    }
    if data.valid.is_empty() {
        bail!("the search needs a validation split for its rewards; --valid-size is 0");
    }
    Ok(data)
}

pub fn build(cfg: &SearchConfig, data: Dataset, device: &Device) -> Result<SearchSetup> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let supernet = Supernet::new(vb, cfg.space, cfg.nodes, &cfg.net).context("cannot build the supernet")?;
    seeded_init(&varmap, cfg.seed)?;
    let mut eval_net = Supernet::detached(&varmap, cfg.space, cfg.nodes, &cfg.net, device)?;
    if let Supernet::Macro(net) = &mut eval_net {
        net.moving_bn_in_eval = cfg.reward_bn == RewardBn::Moving;
    }
    let controller = Controller::new(cfg.space, cfg.arch_size(), &cfg.controller.policy, cfg.seed, device)?;
    Ok(SearchSetup { data, varmap, supernet, eval_net, controller })
}

/// The controller's Adam as the authors set it (`get_train_ops`: beta1 0, epsilon 1e-3).
pub fn controller_adam(ctrl: &Controller, lr: f64) -> Adam {
    let mut adam = Adam::new(ctrl.params.vars().to_vec(), lr);
    adam.beta1 = 0.0;
    adam.eps = 1e-3;
    adam
}

/// Runs (or resumes) the search in `out`. Returns None when `stop_after` ended it early.
pub fn run(cfg: &SearchConfig, out: &Path, opts: &RunOptions, device: &Device) -> Result<Option<Vec<SearchEpoch>>> {
    let ckpt_path = out.join(CHECKPOINT);
    checkpoint::prepare_run_dir(out, cfg, opts.resume, CHECKPOINT, device)?;
    let data = load_data(cfg)?;
    let SearchSetup { data, varmap, supernet, eval_net, controller } = build(cfg, data, device)?;
    let mut sgd = Sgd::new(trainable_vars(&varmap), cfg.sgd.clone());
    let mut adam = controller_adam(&controller, cfg.controller.lr);
    let mut policy_opt = cfg.controller.optimizer();
    let schedule = Cosine { lr_max: cfg.sgd.lr, lr_min: cfg.lr_min, t0: cfg.lr_t0, t_mul: cfg.lr_t_mul };
    let steps = batches_per_epoch(data.train.len(), cfg.batch, true);
    if steps == 0 {
        bail!("{} training images are fewer than one batch of {}", data.train.len(), cfg.batch);
    }
    let mut history: Vec<SearchEpoch> = Vec::new();
    let mut seconds_before = 0f64;
    if opts.resume && ckpt_path.exists() {
        let (tensors, meta) = checkpoint::load(&ckpt_path, device)?;
        load_varmap(&varmap, &tensors, "model.", &ckpt_path)?;
        sgd.load_state(&tensors)?;
        let ctrl: std::collections::HashMap<_, _> =
            tensors.iter().filter_map(|(k, v)| k.strip_prefix("controller.").map(|k| (k.to_string(), v.clone()))).collect();
        controller.params.load(&ctrl).with_context(|| format!("{}", ckpt_path.display()))?;
        adam.load_state(&tensors, meta["adam_t"].as_u64().unwrap_or(0));
        policy_opt.load_state(&meta["policy"]).with_context(|| format!("{}", ckpt_path.display()))?;
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
        let e = epoch as u64;
        let mut arch_rng = stream(cfg.seed, ARCH_STREAM, e);
        let mut model_rng = stream(cfg.seed, MODEL_STREAM, e);
        let loader_cfg =
            LoaderConfig { batch_size: cfg.batch, shuffle: true, drop_last: true, augment: cfg.augment, mean: data.mean.clone(), std: data.std.clone() };
        let bar = steps_bar(steps as u64, &format!("search {}/{} shared", epoch + 1, cfg.epochs), opts.show_progress);
        let (mut loss_sum, mut right, mut seen) = (0f64, 0usize, 0usize);
        let mut lr = cfg.sgd.lr;
        for (i, batch) in Loader::new(train_set.clone(), loader_cfg, cfg.seed, e).enumerate() {
            let arch = match cfg.controller.algo {
                Algo::Random => uniform_arch(cfg.space, cfg.arch_size(), &mut arch_rng),
                _ => controller.sample(&mut Pick::Draw(&mut arch_rng))?.arch,
            };
            let n = batch.len();
            let (x, y) = batch.to_tensors(device)?;
            lr = schedule.at(epoch as f64 + i as f64 / steps as f64);
            sgd.set_lr(lr);
            let out = supernet.forward(&x, &arch, &mut Ctx { train: true, rng: &mut model_rng, progress: 0.0 })?;
            let mut loss = cross_entropy(&out.logits, &y, 0.0)?;
            if let (Some(aux), true) = (&out.aux_logits, cfg.aux_weight > 0.0) {
                loss = (loss + (cross_entropy(aux, &y, 0.0)? * cfg.aux_weight)?)?;
            }
            let mut grads = collect_grads(&loss.backward()?, sgd.vars());
            sgd.clip_and_step(&mut grads, cfg.grad_clip)?;
            let l = loss.to_scalar::<f32>()? as f64;
            if !l.is_finite() {
                bail!("shared training diverged at epoch {} step {i}: loss is {l}; try a lower --lr", epoch + 1);
            }
            loss_sum += l * n as f64;
            right += correct(&out.logits, &y)?;
            seen += n;
            bar.set_message(format!(
                "loss {:.3} acc {:.3} {:.0} img/s",
                loss_sum / seen as f64,
                right as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let shared_secs = t0.elapsed().as_secs_f64();

        let c = &cfg.controller;
        let mut cycle = BatchCycle::new(valid_set.clone(), &data, cfg.batch, cfg.seed, e);
        let mut ctrl_rng = stream(cfg.seed, ARCH_STREAM ^ 0xc7, e);
        let bar = steps_bar(c.updates_per_epoch as u64, &format!("search {}/{} controller", epoch + 1, cfg.epochs), opts.show_progress);
        let mut updates: Vec<UpdateStats> = Vec::new();
        let mut best: Option<(f64, Arch)> = None;
        for _ in 0..c.updates_per_epoch {
            let samples = policy_opt.propose(&controller, &mut ctrl_rng)?;
            let accs = samples.iter().map(|s| reward(&eval_net, &s.arch, &mut cycle, c.reward_batches, device)).collect::<Result<Vec<_>>>()?;
            for (s, &a) in samples.iter().zip(&accs) {
                if best.as_ref().is_none_or(|(b, _)| a > *b) {
                    best = Some((a, s.arch.clone()));
                }
            }
            let mut step = |loss: &Tensor| -> candle_core::Result<()> {
                let grads = collect_grads(&loss.backward()?, controller.params.vars());
                adam.step(&grads)
            };
            let stats = policy_opt.update(&controller, samples, &accs, &mut step)?;
            bar.set_message(format!("reward {:.3} baseline {:.3}", stats.mean_reward, stats.baseline));
            bar.inc(1);
            updates.push(stats);
        }
        bar.finish_and_clear();
        let favoured = match (cfg.controller.algo, best) {
            (Algo::Random, Some((_, a))) => a,
            _ => controller.sample(&mut Pick::Greedy)?.arch,
        };
        let eval_started = Instant::now();
        let valid_accuracy = accuracy_on(&eval_net, &favoured, &valid_set, &data, cfg.batch, device)?;
        // One architecture scored on the validation split: what each of derive's candidates costs.
        let candidate_secs = eval_started.elapsed().as_secs_f64();
        let avg = |f: fn(&UpdateStats) -> f64| mean(&updates.iter().map(f).collect::<Vec<_>>());
        let m = SearchEpoch {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: right as f64 / seen.max(1) as f64,
            valid_accuracy,
            favoured_arch: favoured.to_arc_string(),
            mean_reward: avg(|u| u.mean_reward),
            first_update_reward: updates.first().map_or(0.0, |u| u.mean_reward),
            last_update_reward: updates.last().map_or(0.0, |u| u.mean_reward),
            baseline: updates.last().map_or(0.0, |u| u.baseline),
            entropy: avg(|u| u.entropy),
            clip_fraction: avg(|u| u.clip_fraction),
            approx_kl: avg(|u| u.approx_kl),
            controller_loss: avg(|u| u.loss),
            images_per_s: seen as f64 / shared_secs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        if opts.show_progress {
            let secs: Vec<f64> = history.iter().map(|e| e.seconds).chain([m.seconds]).collect();
            let ahead = opts.ahead.map_or(0.0, |a| a.derive_candidates as f64 * candidate_secs + a.retrain_seconds);
            eprintln!(
                "search {:>3}/{}: shared loss {:.4} acc {:.4} | reward {:.4} baseline {:.4} entropy {:.2} | favoured arch valid acc {:.4} | {:.0}s | {} {}",
                m.epoch,
                cfg.epochs,
                m.train_loss,
                m.train_accuracy,
                m.mean_reward,
                m.baseline,
                m.entropy,
                m.valid_accuracy,
                m.seconds,
                if opts.ahead.is_some() { "run ETA" } else { "ETA" },
                super::eta::duration(super::eta::remaining(&secs, cfg.epochs) + ahead)
            );
        }
        if let Some(b) = board.as_mut() {
            b.metrics("search", m.epoch as i64, &serde_json::to_value(&m)?)?;
        }
        history.push(m);
        let mut tensors = varmap_tensors(&varmap, "model.")?;
        tensors.extend(sgd.state());
        tensors.extend(controller.params.tensors()?.into_iter().map(|(k, v)| (format!("controller.{k}"), v)));
        tensors.extend(adam.state());
        let meta = serde_json::json!({
            "stage": "search",
            "epoch": epoch + 1,
            "rng": {"seed": cfg.seed, "next_stream": epoch + 1},
            "adam_t": adam.t,
            "policy": policy_opt.state(),
            "history": history,
            "seconds": seconds_before + started.elapsed().as_secs_f64(),
        });
        checkpoint::save_atomic(&ckpt_path, &tensors, &meta)?;
        let lines: Vec<String> = history.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        write_atomic(&out.join("metrics.jsonl"), &(lines.join("\n") + "\n"))?;
    }
    Ok(Some(history))
}

/// A finished (or stopped) search read back from its directory.
pub struct LoadedSearch {
    pub cfg: SearchConfig,
    pub setup: SearchSetup,
    pub history: Vec<SearchEpoch>,
    pub seconds: f64,
}

pub fn load(dir: &Path, device: &Device) -> Result<LoadedSearch> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read (is this a search directory?)", config_path.display()))?;
    let cfg: SearchConfig = serde_json::from_str(&text).with_context(|| format!("{}: not a search config", config_path.display()))?;
    let ckpt_path = dir.join(CHECKPOINT);
    if !ckpt_path.exists() {
        bail!("{}: no search checkpoint; run the search first", ckpt_path.display());
    }
    let setup = build(&cfg, load_data(&cfg)?, device)?;
    let (tensors, meta) = checkpoint::load(&ckpt_path, device)?;
    load_varmap(&setup.varmap, &tensors, "model.", &ckpt_path)?;
    let ctrl: std::collections::HashMap<_, _> = tensors.iter().filter_map(|(k, v)| k.strip_prefix("controller.").map(|k| (k.to_string(), v.clone()))).collect();
    setup.controller.params.load(&ctrl).with_context(|| format!("{}", ckpt_path.display()))?;
    let history = serde_json::from_value(meta["history"].clone()).with_context(|| format!("{}: bad history", ckpt_path.display()))?;
    Ok(LoadedSearch { cfg, setup, history, seconds: meta["seconds"].as_f64().unwrap_or(0.0) })
}
