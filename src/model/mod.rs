//! Standalone child networks built from an architecture (the authors'
//! fixed-arc child), and the layers they are made of.
pub mod init;
pub mod layers;
pub mod macro_net;
mod macro_op;
pub mod macro_supernet;
mod macro_trunk;
pub mod metaqnn_net;
mod micro_cell;
pub mod micro_net;
pub mod micro_supernet;
pub mod onnx;

pub use init::{seeded_init, trainable_vars};
pub use macro_net::MacroNet;
pub use macro_supernet::MacroSupernet;
pub use metaqnn_net::MetaqnnNet;
pub use micro_net::MicroNet;
pub use micro_supernet::MicroSupernet;

use crate::space::{Arch, SpaceKind};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand_chacha::ChaCha8Rng;

/// Size and regularisation of a child network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// Micro: normal cells in all (the authors' `num_layers`), a reduction cell after each third; macro: layers.
    pub layers: usize,
    pub channels: usize,
    pub in_channels: usize,
    /// Side of the (square) input images.
    pub image_size: usize,
    pub classes: usize,
    pub aux_head: bool,
    /// Drop probability before the classifier.
    pub dropout: f32,
    /// Final drop-path probability (reached at the last layer and the last step).
    pub drop_path: f32,
    /// MetaQNN: filters and units are the paper's times this (CPU-sized children).
    #[serde(default = "full_width")]
    pub width: f64,
    /// Macro supernet: how a layer's chosen skips join its op's output.
    #[serde(default)]
    pub macro_skips: MacroSkips,
}

impl NetConfig {
    /// The images this network takes: a folder dataset is converted to it.
    pub fn input_shape(&self) -> crate::data::folder::Shape {
        crate::data::folder::Shape { channels: self.in_channels, size: self.image_size }
    }
}

/// How the macro supernet joins skip connections (docs/DESIGN.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MacroSkips {
    /// Concatenated with the op's output, then ReLU, 1x1 conv, BN: the shape
    /// the derived child is retrained in (the paper, Sec. 2.2).
    #[default]
    Concat,
    /// Summed with the op's output, then BN: the authors' search code.
    Sum,
}

fn full_width() -> f64 {
    1.0
}

/// What one forward pass needs besides the input: training or evaluation,
/// the random stream for dropout and drop-path, and the schedule position.
pub struct Ctx<'a> {
    pub train: bool,
    pub rng: &'a mut ChaCha8Rng,
    /// Fraction of training done, in [0, 1]; drop-path ramps up with it.
    pub progress: f32,
}

pub struct Output {
    pub logits: Tensor,
    pub aux_logits: Option<Tensor>,
}

pub enum Network {
    Micro(MicroNet),
    Macro(MacroNet),
    Metaqnn(MetaqnnNet),
}

impl Network {
    /// A network over detached views of `varmap`'s tensors: it sees every update
    /// of the weights but records no graph, so evaluation keeps no intermediates.
    pub fn detached(varmap: &candle_nn::VarMap, arch: &Arch, cfg: &NetConfig, device: &candle_core::Device) -> Result<Network> {
        let tensors = init::sorted_vars(varmap).into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
        Network::new(VarBuilder::from_tensors(tensors, candle_core::DType::F32, device), arch, cfg)
    }

    pub fn new(vb: VarBuilder, arch: &Arch, cfg: &NetConfig) -> Result<Network> {
        Ok(match arch {
            Arch::Micro(a) => Network::Micro(MicroNet::new(vb, a, cfg)?),
            Arch::Macro(a) => Network::Macro(MacroNet::new(vb, a, cfg)?),
            Arch::Metaqnn(a) => Network::Metaqnn(MetaqnnNet::new(vb, a, cfg)?),
            Arch::Nb201(_) => candle_core::bail!("NB201 cells are looked up in a table (enas bench nb201), not trained here"),
        })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Output> {
        match self {
            Network::Micro(n) => n.forward(x, ctx),
            Network::Macro(n) => n.forward(x, ctx),
            Network::Metaqnn(n) => n.forward(x, ctx),
        }
    }

    /// The network in evaluation as an ONNX model taking pixels 0-255 that
    /// it normalises with `mean` and `std`, as the loader does.
    pub fn to_onnx(&self, cfg: &NetConfig, mean: &[f32], std: &[f32], classes: &[String]) -> Result<Vec<u8>> {
        if classes.len() != cfg.classes {
            candle_core::bail!("onnx: {} class names for {} outputs", classes.len(), cfg.classes);
        }
        let (g, logits) = self.graph(cfg, mean, std)?;
        Ok(g.finish([cfg.in_channels, cfg.image_size, cfg.image_size], &logits, classes))
    }

    /// Multiply-adds per image in evaluation (convolutions and fully connected layers).
    pub fn multiply_adds(&self, cfg: &NetConfig) -> Result<u64> {
        let ones = vec![1.0; cfg.in_channels];
        Ok(self.graph(cfg, &vec![0.0; cfg.in_channels], &ones)?.0.multiply_adds)
    }

    fn graph(&self, cfg: &NetConfig, mean: &[f32], std: &[f32]) -> Result<(onnx::Graph, onnx::Value)> {
        let mut g = onnx::Graph::default();
        let pixels = onnx::Value { name: onnx::INPUT.into(), hw: (cfg.image_size, cfg.image_size) };
        let x = g.normalise(&pixels, mean, std);
        let logits = match self {
            Network::Micro(n) => n.onnx(&mut g, &x)?,
            Network::Macro(n) => n.onnx(&mut g, &x)?,
            Network::Metaqnn(n) => n.onnx(&mut g, &x)?,
        };
        Ok((g, logits))
    }
}

/// The shared weights of every architecture of a space (ENAS's one-shot model).
pub enum Supernet {
    Micro(MicroSupernet),
    Macro(MacroSupernet),
}

impl Supernet {
    /// Over detached views of `varmap`'s tensors, for evaluation without a graph.
    pub fn detached(varmap: &candle_nn::VarMap, space: SpaceKind, nodes: usize, cfg: &NetConfig, device: &candle_core::Device) -> Result<Supernet> {
        let tensors = init::sorted_vars(varmap).into_iter().map(|(n, v)| (n, v.as_tensor().detach())).collect();
        Supernet::new(VarBuilder::from_tensors(tensors, candle_core::DType::F32, device), space, nodes, cfg)
    }

    /// Micro: `cfg.layers` normal cells in all and `nodes` per cell; macro: `cfg.layers` layers.
    pub fn new(vb: VarBuilder, space: SpaceKind, nodes: usize, cfg: &NetConfig) -> Result<Supernet> {
        Ok(match space {
            SpaceKind::Micro => Supernet::Micro(MicroSupernet::new(vb, nodes, cfg)?),
            SpaceKind::Macro => Supernet::Macro(MacroSupernet::new(vb, cfg.layers, cfg)?),
            other => candle_core::bail!("the {} space has no supernet (use --mode multi-trial)", other.name()),
        })
    }

    pub fn forward(&self, x: &Tensor, arch: &Arch, ctx: &mut Ctx) -> Result<Output> {
        match (self, arch) {
            (Supernet::Micro(n), Arch::Micro(a)) => n.forward(x, a, ctx),
            (Supernet::Macro(n), Arch::Macro(a)) => n.forward(x, a, ctx),
            _ => candle_core::bail!("architecture of the other space than the supernet's"),
        }
    }
}
