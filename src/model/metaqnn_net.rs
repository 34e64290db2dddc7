//! A MetaQNN network (Baker et al. 2017, Sec. 4.1): the layers of the chain in
//! order, then global average pooling or a flatten, and the softmax classifier.
//! Convolutions are conv-BN-ReLU at stride 1 with 'same' padding; pooling is
//! max pooling without padding; fully connected layers are linear-BN-ReLU
//! (docs/DESIGN.md: without BN, SGD at our learning rate killed every ReLU of
//! some fully connected children).
use super::layers::{global_avg_pool, BatchNorm, Conv, Linear};
use super::onnx::{Graph, Value};
use super::{Ctx, NetConfig, Output};
use crate::ops::{self, PoolKind, Window};
use crate::space::metaqnn::{Layer, Termination};
use crate::space::MetaArch;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

enum Block {
    Conv(Conv, BatchNorm),
    Pool { field: usize, stride: usize },
    Fc(Linear, BatchNorm),
}

pub struct MetaqnnNet {
    blocks: Vec<Block>,
    gap: bool,
    classifier: Linear,
}

/// The paper's filter or unit count scaled by `width`, at least 1.
pub fn scaled(n: usize, width: f64) -> usize {
    ((n as f64 * width).round() as usize).max(1)
}

impl MetaqnnNet {
    pub fn new(vb: VarBuilder, arch: &MetaArch, cfg: &NetConfig) -> Result<MetaqnnNet> {
        arch.validate(cfg.image_size).map_err(|e| candle_core::Error::Msg(format!("MetaQNN architecture: {e}")))?;
        let (mut channels, mut size, mut flat) = (cfg.in_channels, cfg.image_size, None::<usize>);
        let mut blocks = Vec::with_capacity(arch.layers.len());
        for (i, layer) in arch.layers.iter().enumerate() {
            let vb = vb.pp(format!("layer_{i}"));
            blocks.push(match *layer {
                Layer::Conv { depth, field } => {
                    let c = scaled(depth, cfg.width);
                    let block = Block::Conv(Conv::new(vb.pp("conv"), channels, c, field)?, BatchNorm::new(vb.pp("bn"), c)?);
                    channels = c;
                    block
                }
                Layer::Pool { field, stride } => {
                    size = (size - field) / stride + 1;
                    Block::Pool { field, stride }
                }
                Layer::Fc { units } => {
                    let u = scaled(units, cfg.width);
                    let block = Block::Fc(Linear::new(vb.pp("fc"), flat.unwrap_or(channels * size * size), u)?, BatchNorm::new(vb.pp("bn"), u)?);
                    flat = Some(u);
                    block
                }
            });
        }
        let gap = arch.end == Termination::GlobalAvgPool;
        let features = if gap { channels } else { flat.unwrap_or(channels * size * size) };
        let classifier = Linear::new(vb.pp("classifier"), features, cfg.classes)?;
        Ok(MetaqnnNet { blocks, gap, classifier })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Output> {
        let mut x = x.clone();
        for block in &self.blocks {
            x = match block {
                Block::Conv(conv, bn) => bn.after_conv(&x, conv.weight(), false, true, ctx.train)?,
                Block::Pool { field, stride } => {
                    let (_, _, h, w) = x.dims4()?;
                    ops::pool2d(&x, PoolKind::Max, Window::valid(h, w, *field, *stride))?
                }
                Block::Fc(fc, bn) => {
                    let y = fc.forward(&x.flatten_from(1)?)?;
                    let (n, u) = y.dims2()?;
                    bn.forward_relu(&y.reshape((n, u, 1, 1))?, ctx.train)?.reshape((n, u))?
                }
            };
        }
        let features = if self.gap { global_avg_pool(&x)? } else { x.flatten_from(1)? };
        Ok(Output { logits: self.classifier.forward(&features)?, aux_logits: None })
    }

    /// `forward` in evaluation as ONNX nodes (batch norm after a fully
    /// connected layer normalises (N, units), which ONNX's takes as it is).
    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let mut x = x.clone();
        for block in &self.blocks {
            x = match block {
                Block::Conv(conv, bn) => {
                    let y = conv.onnx(g, &x, false)?;
                    bn.onnx(g, &y, true)?
                }
                Block::Pool { field, stride } => g.pool(&x, PoolKind::Max, *field, *stride, false),
                Block::Fc(fc, bn) => {
                    let flat = g.flatten(&x);
                    let y = fc.onnx(g, &flat)?;
                    bn.onnx(g, &y, true)?
                }
            };
        }
        let features = if self.gap { g.global_avg_pool(&x) } else { g.flatten(&x) };
        self.classifier.onnx(g, &features)
    }
}
