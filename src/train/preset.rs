//! Presets: every setting of search, derive and retrain for one size of run.
//! `paper` holds the authors' hyperparameters (scripts/cifar10_{micro,macro}_{search,final}.sh
//! of their repository); `quick` fits the whole pipeline on Fashion-MNIST into an
//! hour on 2 cores; `smoke` runs in seconds for the tests.
use super::derive::DeriveOptions;
use super::retrain::RetrainConfig;
use super::search::{RewardBn, SearchConfig};
use super::SgdConfig;
use crate::controller::{Algo, ControllerSettings, PolicyConfig};
use crate::data::{Augment, DataShape, DatasetKind};
use crate::model::NetConfig;
use crate::space::SpaceKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Smoke,
    #[default]
    Quick,
    Paper,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Quick => "quick",
            Preset::Paper => "paper",
        }
    }

    /// What a result of this preset is worth, for reports.
    pub fn caveat(self) -> Option<&'static str> {
        (self == Preset::Smoke).then_some("smoke: a plumbing check in seconds, not a result; its accuracy means nothing")
    }
}

/// Everything `enas train` runs; the retrain's `arch` is filled in by derive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub preset: Preset,
    pub search: SearchConfig,
    pub derive: DeriveOptions,
    pub retrain: RetrainConfig,
}

/// What the user chose; the preset fills in the rest.
pub struct Choice {
    pub preset: Preset,
    pub space: SpaceKind,
    pub algo: Algo,
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    /// The dataset's input and classes (a folder dataset's read from its images).
    pub shape: DataShape,
    pub seed: u64,
}

/// The size of one network: layers, width, batch, epochs, regularisation.
struct Size {
    layers: usize,
    channels: usize,
    batch: usize,
    epochs: usize,
    /// Paper: the authors' l2_reg; the others: our weight decay (`weight_decay`).
    weight_decay: f64,
    lr_min: f64,
    /// SGDR's first period, None for one cosine over the run.
    lr_t0: Option<f64>,
    aux_weight: f64,
    dropout: f32,
    drop_path: f32,
    cutout: usize,
    /// Pad-and-random-crop; off where the network underfits in the epochs it has.
    crop: bool,
}

fn net(c: &Choice, s: &Size) -> NetConfig {
    NetConfig {
        layers: s.layers,
        channels: s.channels,
        in_channels: c.shape.in_channels,
        image_size: c.shape.image_size,
        classes: c.shape.classes,
        aux_head: s.aux_weight > 0.0 && c.space == SpaceKind::Micro,
        dropout: s.dropout,
        drop_path: s.drop_path,
        width: 1.0,
        macro_skips: Default::default(),
    }
}

fn sgd(lr: f64, weight_decay: f64) -> SgdConfig {
    // The authors' child optimiser: Nesterov momentum 0.9, L2 in the loss.
    SgdConfig { lr, momentum: 0.9, nesterov: true, weight_decay, decoupled: false }
}

/// The weight decay of a preset's size: the authors add l2_reg * sum(w^2) to
/// the loss (utils.py), a gradient of 2 l2_reg w, where ours adds
/// weight_decay * w, so the paper presets, which hold their l2_reg, decay at
/// twice it; the others hold our own weight decay.
fn weight_decay(c: &Choice, s: &Size) -> f64 {
    if c.preset == Preset::Paper {
        2.0 * s.weight_decay
    } else {
        s.weight_decay
    }
}

fn augment(c: &Choice, s: &Size) -> Augment {
    let crop_pad = if s.crop { c.dataset.crop_pad(c.shape.image_size) } else { 0 };
    Augment { crop_pad, flip: c.dataset != DatasetKind::Mnist, cutout: s.cutout }
}

pub fn plan(c: &Choice) -> Plan {
    let micro = c.space == SpaceKind::Micro;
    // (search size, retrain size, nodes, controller: updates, samples, lr, tanh, valid size,
    //  training images per search / retrain epoch, derive samples)
    let (search, retrain, nodes, ctrl, valid_size, (search_limit, retrain_limit), derive) = match (c.preset, micro) {
        (Preset::Paper, true) => (
            Size {
                layers: 6,
                channels: 20,
                batch: 160,
                epochs: 150,
                weight_decay: 1e-4,
                lr_min: 5e-4,
                lr_t0: Some(10.0),
                aux_weight: 0.4,
                dropout: 0.1,
                drop_path: 0.0,
                cutout: 0,
                crop: true,
            },
            Size {
                layers: 15,
                channels: 36,
                batch: 144,
                epochs: 630,
                weight_decay: 2e-4,
                lr_min: 1e-4,
                lr_t0: Some(10.0),
                aux_weight: 0.4,
                dropout: 0.2,
                drop_path: 0.4,
                cutout: 16,
                crop: true,
            },
            5,
            (30, 10, 0.0035, 1.10),
            5000,
            (None, None),
            100,
        ),
        (Preset::Paper, false) => (
            Size {
                layers: 12,
                channels: 36,
                batch: 128,
                epochs: 310,
                weight_decay: 2.5e-4,
                lr_min: 5e-4,
                lr_t0: Some(10.0),
                aux_weight: 0.0,
                dropout: 0.1,
                drop_path: 0.0,
                cutout: 0,
                crop: true,
            },
            Size {
                layers: 12,
                channels: 96,
                batch: 100,
                epochs: 310,
                weight_decay: 2e-4,
                lr_min: 1e-3,
                lr_t0: Some(10.0),
                aux_weight: 0.0,
                dropout: 0.5,
                drop_path: 0.0,
                cutout: 0,
                crop: true,
            },
            5,
            (50, 20, 0.001, 1.5),
            5000,
            (None, None),
            100,
        ),
        (Preset::Quick, true) => (
            Size {
                layers: 1,
                channels: 8,
                batch: 64,
                // Issue 22: at 6 epochs the search was 100 s of a 35-minute run.
                epochs: 20,
                weight_decay: 1e-4,
                lr_min: 5e-4,
                lr_t0: None,
                aux_weight: 0.0,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: false,
            },
            Size {
                layers: 3,
                channels: 12,
                batch: 64,
                epochs: 6,
                weight_decay: 3e-4,
                lr_min: 0.0,
                lr_t0: None,
                aux_weight: 0.4,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: false,
            },
            5,
            (10, 10, 0.0035, 1.10),
            2000,
            (Some(16000), None),
            100,
        ),
        (Preset::Quick, false) => (
            Size {
                layers: 6,
                channels: 16,
                batch: 64,
                epochs: 6,
                weight_decay: 2.5e-4,
                lr_min: 5e-4,
                lr_t0: None,
                aux_weight: 0.0,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: false,
            },
            Size {
                layers: 6,
                channels: 32,
                batch: 64,
                epochs: 4,
                weight_decay: 2e-4,
                lr_min: 0.0,
                lr_t0: None,
                aux_weight: 0.0,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: false,
            },
            5,
            (10, 10, 0.001, 1.5),
            2000,
            (Some(16000), None),
            100,
        ),
        (Preset::Smoke, _) => (
            Size {
                layers: if micro { 1 } else { 3 },
                channels: 4,
                batch: 16,
                epochs: 2,
                weight_decay: 1e-4,
                lr_min: 0.0,
                lr_t0: None,
                aux_weight: 0.4,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: true,
            },
            Size {
                layers: if micro { 1 } else { 3 },
                channels: 4,
                batch: 16,
                epochs: 1,
                weight_decay: 1e-4,
                lr_min: 0.0,
                lr_t0: None,
                aux_weight: 0.4,
                dropout: 0.0,
                drop_path: 0.0,
                cutout: 0,
                crop: true,
            },
            2,
            (2, 3, 0.0035, if micro { 1.10 } else { 1.5 }),
            64,
            (Some(128), Some(128)),
            4,
        ),
    };
    let (updates, samples, ctrl_lr, tanh) = ctrl;
    let controller = ControllerSettings {
        algo: c.algo,
        policy: PolicyConfig { lstm_size: 64, temperature: None, tanh_constant: Some(tanh), op_tanh_reduce: 2.5, skip_target: 0.4 },
        lr: ctrl_lr,
        updates_per_epoch: updates,
        samples_per_update: samples,
        reward_batches: 1,
        entropy_weight: 1e-4,
        baseline_decay: 0.99,
        skip_weight: if micro { 0.0 } else { 0.8 },
        ppo_epochs: 4,
        ppo_clip: 0.2,
        ppo_target_kl: 0.02,
        rank_advantages: false,
    };
    let search_cfg = SearchConfig {
        space: c.space,
        dataset: c.dataset,
        data_dir: c.data_dir.clone(),
        net: net(c, &search),
        nodes,
        epochs: search.epochs,
        batch: search.batch,
        sgd: sgd(0.05, weight_decay(c, &search)),
        lr_min: search.lr_min,
        lr_t0: search.lr_t0.unwrap_or(search.epochs as f64),
        lr_t_mul: if search.lr_t0.is_some() { 2.0 } else { 1.0 },
        grad_clip: 5.0,
        aux_weight: search.aux_weight,
        augment: augment(c, &search),
        valid_size,
        train_limit: search_limit,
        controller,
        seed: c.seed,
        // The authors' macro child scores its rewards with is_training=False (general_child.py); the micro one with the batch.
        reward_bn: if c.preset == Preset::Paper && !micro { RewardBn::Moving } else { RewardBn::Batch },
    };
    let retrain_cfg = RetrainConfig {
        space: c.space,
        arch: String::new(),
        dataset: c.dataset,
        data_dir: c.data_dir.clone(),
        net: net(c, &retrain),
        epochs: retrain.epochs,
        batch: retrain.batch,
        eval_batch: 100,
        sgd: sgd(0.05, weight_decay(c, &retrain)),
        lr_min: retrain.lr_min,
        lr_t0: retrain.lr_t0.unwrap_or(retrain.epochs as f64),
        lr_t_mul: if retrain.lr_t0.is_some() { 2.0 } else { 1.0 },
        grad_clip: 5.0,
        label_smoothing: 0.0,
        aux_weight: if c.space == SpaceKind::Micro { retrain.aux_weight } else { 0.0 },
        augment: augment(c, &retrain),
        // The authors retrain on the whole training set; smaller presets keep a
        // split to report validation accuracy per epoch.
        valid_size: if c.preset == Preset::Paper { 0 } else { valid_size },
        train_limit: retrain_limit,
        seed: c.seed,
        data_seed: None,
    };
    Plan { preset: c.preset, search: search_cfg, derive: DeriveOptions { samples: derive, uniform: derive }, retrain: retrain_cfg }
}
