//! The ENAS macro supernet (Pham et al. 2018, Sec. 2.2; the authors'
//! `GeneralChild` in search mode, whole channels): every layer holds one set
//! of weights per op, and the chosen earlier outputs are concatenated with the
//! op's output and projected back by ReLU-1x1-BN, the 1x1 sliced from a
//! per-layer weight by the chosen inputs. Width stays constant (the authors
//! double it only in the fixed child); a forward runs only the sampled path,
//! with batch statistics in every batch norm. `MacroSkips::Sum` sums the skips
//! instead and applies BN, as the authors' search code does.
use super::layers::{dropout, global_avg_pool, param, BatchNorm, Conv, FactorizedReduce, Linear};
use super::macro_net::{pool_layers, MacroOp};
use super::macro_trunk::Trunk;
use super::{Ctx, MacroSkips, NetConfig, Output};
use crate::space::{MacroArch, MACRO_OPS};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

struct SharedLayer {
    ops: Vec<MacroOp>,
    /// (layer + 1, C, C): slot i < layer for earlier output i, the last for the
    /// op; none when skips are summed.
    skip_w: Option<Tensor>,
    skip_bn: Option<BatchNorm>,
}

pub struct MacroSupernet {
    stem: Conv,
    stem_bn: BatchNorm,
    layers: Vec<SharedLayer>,
    reductions: Vec<(usize, Vec<FactorizedReduce>)>,
    fc: Linear,
    dropout: f32,
    /// With summed skips on the CPU, the layers as one op (`macro_trunk`), or as candle's graph.
    pub fused_layers: bool,
    /// Outside training, batch norm with its running averages (the authors'
    /// macro reward pass, `is_training=False`) instead of the batch's statistics.
    pub moving_bn_in_eval: bool,
}

impl MacroSupernet {
    pub fn new(vb: VarBuilder, num_layers: usize, cfg: &NetConfig) -> Result<MacroSupernet> {
        let c = cfg.channels;
        let stem = Conv::new(vb.pp("stem"), cfg.in_channels, c, 3)?;
        let stem_bn = BatchNorm::new(vb.pp("stem_bn"), c)?;
        let pools = pool_layers(num_layers);
        let mut layers = Vec::with_capacity(num_layers);
        let mut reductions = Vec::new();
        for i in 0..num_layers {
            let vb = vb.pp(format!("layer_{i}"));
            let ops = (0..MACRO_OPS.len()).map(|op| MacroOp::new(vb.pp(format!("op_{op}")), op, c)).collect::<Result<Vec<_>>>()?;
            let (skip_w, skip_bn) = match (i, cfg.macro_skips) {
                (0, _) => (None, None),
                (_, MacroSkips::Concat) => (Some(param(&vb.pp("skip"), &[i + 1, c, c], "w")?), Some(BatchNorm::new(vb.pp("skip").pp("bn"), c)?)),
                (_, MacroSkips::Sum) => (None, Some(BatchNorm::new(vb.pp("skip").pp("bn"), c)?)),
            };
            layers.push(SharedLayer { ops, skip_w, skip_bn });
            if pools.contains(&i) && i + 1 < num_layers {
                let vb = vb.pp("pool");
                let reds = (0..i + 2).map(|j| FactorizedReduce::new(vb.pp(format!("from_{j}")), c, c)).collect::<Result<Vec<_>>>()?;
                reductions.push((i, reds));
            }
        }
        let fc = Linear::new(vb.pp("fc"), c, cfg.classes)?;
        Ok(MacroSupernet { stem, stem_bn, layers, reductions, fc, dropout: cfg.dropout, fused_layers: true, moving_bn_in_eval: false })
    }

    pub fn forward(&self, x: &Tensor, arch: &MacroArch, ctx: &mut Ctx) -> Result<Output> {
        if arch.layers.len() != self.layers.len() {
            candle_core::bail!("architecture has {} layers, the supernet {}", arch.layers.len(), self.layers.len());
        }
        // Batch statistics in training, and outside it unless the running averages are asked for.
        let batch = ctx.train || !self.moving_bn_in_eval;
        let stem = self.stem_bn.after_conv(x, self.stem.weight(), false, false, batch)?;
        let last = if batch && self.fused_layers && x.device().is_cpu() && self.layers.iter().all(|l| l.skip_w.is_none()) {
            self.trunk(&stem, arch)?
        } else {
            self.graph_layers(stem, arch, batch)?
        };
        let x = global_avg_pool(&last)?;
        let x = dropout(&x, self.dropout, ctx)?;
        Ok(Output { logits: self.fc.forward(&x)?, aux_logits: None })
    }

    /// The layers (skips summed) as one op of candle's graph.
    fn trunk(&self, stem: &Tensor, arch: &MacroArch) -> Result<Tensor> {
        let mut trunk = Trunk::new(stem)?;
        for (i, (layer, choice)) in self.layers.iter().zip(&arch.layers).enumerate() {
            trunk.layer(&layer.ops[choice.op], layer.skip_bn.as_ref(), &choice.skips)?;
            if let Some((_, reds)) = self.reductions.iter().find(|(at, _)| *at == i) {
                // Output j is read later as the next layer's input (j = i + 1) or as a skip.
                trunk.reduce(reds, |j| j == i + 1 || arch.layers[i + 1..].iter().any(|l| l.skips.get(j) == Some(&true)))?;
            }
        }
        trunk.finish(stem)
    }

    /// The layers as candle's graph, batch norm with the batch's statistics
    /// when `batch`, else its running averages: the last layer's output.
    fn graph_layers(&self, stem: Tensor, arch: &MacroArch, batch: bool) -> Result<Tensor> {
        let mut states = vec![stem];
        for (i, (layer, choice)) in self.layers.iter().zip(&arch.layers).enumerate() {
            let y = layer.ops[choice.op].forward(states.last().expect("the stem is always there"), batch)?;
            let out = match (&layer.skip_w, &layer.skip_bn) {
                (Some(w), Some(bn)) => {
                    let mut slots: Vec<u32> = choice.skips.iter().enumerate().filter(|(_, s)| **s).map(|(j, _)| j as u32).collect();
                    let mut cat: Vec<Tensor> = slots.iter().map(|&j| states[j as usize].clone()).collect();
                    slots.push(i as u32);
                    cat.push(y);
                    let (k, c) = (slots.len(), w.dim(1)?);
                    let idx = Tensor::from_vec(slots, k, w.device())?;
                    let w = w.index_select(&idx, 0)?.transpose(0, 1)?.reshape((c, k * c))?;
                    bn.after_conv(&Tensor::cat(&cat, 1)?, &w, true, false, batch)?
                }
                (None, Some(bn)) => {
                    // The skips summed among themselves, then added to the op's output inside the BN's op.
                    let mut skips = choice.skips.iter().enumerate().filter(|(_, s)| **s).map(|(j, _)| &states[j]);
                    match skips.next() {
                        Some(first) => bn.of_sum(&y, &skips.try_fold(first.clone(), |acc, s| acc + s)?, batch)?,
                        None => bn.forward(&y, batch)?,
                    }
                }
                _ => y,
            };
            states.push(out);
            if let Some((_, reds)) = self.reductions.iter().find(|(at, _)| *at == i) {
                states = states.iter().zip(reds).map(|(s, r)| r.forward(s, batch)).collect::<Result<Vec<_>>>()?;
            }
        }
        Ok(states.pop().expect("at least the stem"))
    }
}
