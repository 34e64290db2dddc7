//! The fixed-arc child of the macro space (Pham et al. 2018, Sec. 2.2; the
//! authors' `GeneralChild`, whole channels): per layer one op, the chosen
//! earlier outputs concatenated with it and projected back by ReLU-1x1-BN,
//! every output factorized-reduced at the two pooling points.
use super::layers::{dropout, global_avg_pool, BatchNorm, Conv, Conv1x1, FactorizedReduce, Linear, ReluConvBn};
use super::onnx::{Graph, Value};
use super::{Ctx, NetConfig, Output};
use crate::ops::{self, PoolKind};
use crate::space::MacroArch;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Layers after which every output is reduced (authors' `pool_layers`).
pub fn pool_layers(num_layers: usize) -> [usize; 2] {
    let d = (num_layers / 3).max(1);
    [d - 1, 2 * d - 1]
}

/// The op of one layer, as the search trains it (`_conv_branch` / `_pool_branch`):
/// 1x1 conv, BN, ReLU, then the k x k (separable) conv, BN, ReLU, or the pool.
/// The supernet holds one of each per layer.
pub struct MacroOp {
    pub(super) inp: Conv1x1,
    pub(super) inp_bn: BatchNorm,
    pub(super) op: Op,
}

pub(super) enum Op {
    Conv(Conv, BatchNorm),
    Sep(Tensor, Conv1x1, BatchNorm),
    Pool(PoolKind),
}

impl MacroOp {
    pub fn new(vb: VarBuilder, op: usize, c: usize) -> Result<MacroOp> {
        let inp = Conv1x1::new(vb.pp("inp"), c, c)?;
        let inp_bn = BatchNorm::new(vb.pp("inp_bn"), c)?;
        let op = match op {
            0 | 2 => Op::Conv(Conv::new(vb.pp("conv"), c, c, if op == 0 { 3 } else { 5 })?, BatchNorm::new(vb.pp("op_bn"), c)?),
            1 | 3 => {
                let k = if op == 1 { 3 } else { 5 };
                let dw = super::layers::param(&vb.pp("sep"), &[c, 1, k, k], "w_depth")?;
                Op::Sep(dw, Conv1x1::new(vb.pp("sep").pp("point"), c, c)?, BatchNorm::new(vb.pp("op_bn"), c)?)
            }
            4 => Op::Pool(PoolKind::Avg),
            _ => Op::Pool(PoolKind::Max),
        };
        Ok(MacroOp { inp, inp_bn, op })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if let (Op::Conv(conv, bn), true, true) = (&self.op, train, x.device().is_cpu()) {
            return super::macro_op::conv_branch_train(x, self.inp.weight(), &self.inp_bn, conv.weight(), bn);
        }
        self.forward_composed(x, train)
    }

    /// `forward` as separate ops of candle's graph, as it runs off the CPU and in evaluation.
    pub fn forward_composed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // The ReLU after the input BN is fused into the op that follows (convolutions) or the BN (pools);
        // each convolution and its BN run as one op.
        let relu = matches!(self.op, Op::Pool(_));
        let x = self.inp_bn.after_conv(x, self.inp.weight(), false, relu, train)?;
        match &self.op {
            Op::Conv(conv, bn) => bn.after_conv(&x, conv.weight(), true, true, train),
            Op::Sep(dw, point, bn) => bn.after_sep_conv(&x, dw, point.weight(), true, train),
            Op::Pool(PoolKind::Avg) => ops::avg_pool2d(&x, 3, 1),
            Op::Pool(PoolKind::Max) => ops::max_pool2d(&x, 3, 1),
        }
    }

    fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let inp = self.inp.onnx(g, x, false)?;
        let x = self.inp_bn.onnx(g, &inp, matches!(self.op, Op::Pool(_)))?;
        match &self.op {
            Op::Conv(conv, bn) => {
                let y = conv.onnx(g, &x, true)?;
                bn.onnx(g, &y, true)
            }
            Op::Sep(dw, point, bn) => {
                let dw = g.conv(&x, dw, dw.dim(2)?, 1, dw.dim(0)?, true)?;
                let y = point.onnx(g, &dw, false)?;
                bn.onnx(g, &y, true)
            }
            Op::Pool(kind) => Ok(g.pool(&x, *kind, 3, 1, true)),
        }
    }
}

struct Layer {
    op: MacroOp,
    skips: Vec<bool>,
    skip_proj: Option<ReluConvBn>,
}

impl Layer {
    fn new(vb: VarBuilder, op: usize, skips: &[bool], c: usize) -> Result<Layer> {
        let skip_proj = if skips.is_empty() {
            None
        } else {
            let inputs = 1 + skips.iter().filter(|s| **s).count();
            Some(ReluConvBn::new(vb.pp("skip"), inputs * c, c)?)
        };
        Ok(Layer { op: MacroOp::new(vb, op, c)?, skips: skips.to_vec(), skip_proj })
    }

    fn forward(&self, states: &[Tensor], train: bool) -> Result<Tensor> {
        let y = self.op.forward(states.last().expect("the stem is always there"), train)?;
        match &self.skip_proj {
            None => Ok(y),
            Some(proj) => {
                let mut cat: Vec<Tensor> = self.skips.iter().zip(states).filter(|(s, _)| **s).map(|(_, t)| t.clone()).collect();
                cat.push(y);
                proj.forward(&Tensor::cat(&cat, 1)?, train)
            }
        }
    }

    fn onnx(&self, g: &mut Graph, states: &[Value]) -> Result<Value> {
        let y = self.op.onnx(g, states.last().expect("the stem is always there"))?;
        match &self.skip_proj {
            None => Ok(y),
            Some(proj) => {
                let mut cat: Vec<Value> = self.skips.iter().zip(states).filter(|(s, _)| **s).map(|(_, t)| t.clone()).collect();
                cat.push(y);
                let joined = g.concat(&cat);
                proj.onnx(g, &joined)
            }
        }
    }
}

pub struct MacroNet {
    stem: Conv,
    stem_bn: BatchNorm,
    layers: Vec<Layer>,
    /// After layer i (a pooling point), one reduction per output so far.
    reductions: Vec<(usize, Vec<FactorizedReduce>)>,
    fc: Linear,
    dropout: f32,
}

impl MacroNet {
    pub fn new(vb: VarBuilder, arch: &MacroArch, cfg: &NetConfig) -> Result<MacroNet> {
        let mut c = cfg.channels;
        let stem = Conv::new(vb.pp("stem"), cfg.in_channels, c, 3)?;
        let stem_bn = BatchNorm::new(vb.pp("stem_bn"), c)?;
        let pools = pool_layers(arch.layers.len());
        let mut layers = Vec::new();
        let mut reductions = Vec::new();
        for (i, l) in arch.layers.iter().enumerate() {
            layers.push(Layer::new(vb.pp(format!("layer_{i}")), l.op, &l.skips, c)?);
            if pools.contains(&i) && i + 1 < arch.layers.len() {
                let vb = vb.pp(format!("pool_at_{i}"));
                let reds = (0..i + 2).map(|j| FactorizedReduce::new(vb.pp(format!("from_{j}")), c, 2 * c)).collect::<Result<Vec<_>>>()?;
                reductions.push((i, reds));
                c *= 2;
            }
        }
        let fc = Linear::new(vb.pp("fc"), c, cfg.classes)?;
        Ok(MacroNet { stem, stem_bn, layers, reductions, fc, dropout: cfg.dropout })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Output> {
        let train = ctx.train;
        let mut states = vec![self.stem_bn.after_conv(x, self.stem.weight(), false, false, train)?];
        for (i, layer) in self.layers.iter().enumerate() {
            let out = layer.forward(&states, train)?;
            states.push(out);
            if let Some((_, reds)) = self.reductions.iter().find(|(at, _)| *at == i) {
                states = states.iter().zip(reds).map(|(s, r)| r.forward(s, train)).collect::<Result<Vec<_>>>()?;
            }
        }
        let x = global_avg_pool(states.last().expect("at least the stem"))?;
        let x = dropout(&x, self.dropout, ctx)?;
        Ok(Output { logits: self.fc.forward(&x)?, aux_logits: None })
    }

    /// `forward` in evaluation (no dropout) as ONNX nodes.
    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let stem = self.stem.onnx(g, x, false)?;
        let mut states = vec![self.stem_bn.onnx(g, &stem, false)?];
        for (i, layer) in self.layers.iter().enumerate() {
            let out = layer.onnx(g, &states)?;
            states.push(out);
            if let Some((_, reds)) = self.reductions.iter().find(|(at, _)| *at == i) {
                states = states.iter().zip(reds).map(|(s, r)| r.onnx(g, s, false)).collect::<Result<Vec<_>>>()?;
            }
        }
        let x = g.global_avg_pool(states.last().expect("at least the stem"));
        self.fc.onnx(g, &x)
    }
}
