//! The ENAS micro supernet (Pham et al. 2018, Sec. 2.3; the authors'
//! `MicroChild` in search mode): every cell holds, per node, per branch (x, y)
//! and per input index, its own separable convolutions; pools and identity
//! need no weights once the inputs are calibrated. A forward runs only the
//! sampled path. Batch norm uses batch statistics, as in the authors' search.
use super::layers::{dropout, global_avg_pool, param, BatchNorm, Conv, FactorizedReduce, Linear, SepConv};
use super::micro_cell;
use super::micro_net::{halve, pool_layers, AuxHead, Calibrate, Hw};
use super::{Ctx, NetConfig, Output};
use crate::ops::{self, PoolKind, Window};
use crate::space::{Cell, MicroArch};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// The weighted ops one branch can apply to one input (`_enas_conv` x 2).
pub(super) struct SharedConvs {
    pub(super) sep3: SepConv,
    pub(super) sep5: SepConv,
}

impl SharedConvs {
    fn apply(&self, op: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        match op {
            0 => self.sep3.forward(x, train),
            1 => self.sep5.forward(x, train),
            2 => ops::pool2d(x, PoolKind::Avg, Window::same(h, w, 3, 1, 1)),
            3 => ops::pool2d(x, PoolKind::Max, Window::same(h, w, 3, 1, 1)),
            _ => Ok(x.clone()),
        }
    }
}

/// One searched cell (the authors' `_enas_layer`).
struct EnasCell {
    calibrate: Calibrate,
    /// [node][branch x = 0, y = 1][input id]
    convs: Vec<[Vec<SharedConvs>; 2]>,
    /// (nodes + 2, C, C): the 1x1 over the unused states is sliced from it.
    final_w: Tensor,
    final_bn: BatchNorm,
}

impl EnasCell {
    fn new(vb: VarBuilder, nodes: usize, prev: [(usize, Hw); 2], c: usize) -> Result<EnasCell> {
        let calibrate = Calibrate::new(&vb, prev, c)?;
        let mut convs = Vec::with_capacity(nodes);
        for node in 0..nodes {
            let branch = |name: &str| -> Result<Vec<SharedConvs>> {
                (0..node + 2)
                    .map(|input| {
                        let vb = vb.pp(format!("node_{node}")).pp(name).pp(format!("from_{input}"));
                        Ok(SharedConvs { sep3: SepConv::new(vb.pp("sep3"), c, c, 3, 1)?, sep5: SepConv::new(vb.pp("sep5"), c, c, 5, 1)? })
                    })
                    .collect()
            };
            convs.push([branch("x")?, branch("y")?]);
        }
        let final_w = param(&vb.pp("final"), &[nodes + 2, c, c], "w")?;
        let final_bn = BatchNorm::new(vb.pp("final").pp("bn"), c)?;
        Ok(EnasCell { calibrate, convs, final_w, final_bn })
    }

    fn forward(&self, x0: &Tensor, x1: &Tensor, cell: &Cell, train: bool, fused: bool) -> Result<Tensor> {
        if cell.nodes.len() != self.convs.len() {
            candle_core::bail!("architecture has {} nodes per cell, the supernet {}", cell.nodes.len(), self.convs.len());
        }
        let [x0, x1] = self.calibrate.forward(x0, x1, true)?;
        let unused: Vec<usize> = cell.unused().iter().enumerate().filter(|(_, u)| **u).map(|(i, _)| i).collect();
        let k = unused.len();
        let c = self.final_w.dim(1)?;
        let idx = Tensor::from_vec(unused.iter().map(|&i| i as u32).collect::<Vec<_>>(), k, self.final_w.device())?;
        // (k, C_out, C_in) -> (C_out, k * C_in), matching the concatenation order.
        let w = self.final_w.index_select(&idx, 0)?.transpose(0, 1)?.reshape((c, k * c))?;
        if fused && train && x0.device().is_cpu() {
            return micro_cell::cell_train(&x0, &x1, &self.convs, cell, &unused, &w, &self.final_bn);
        }
        let mut states = vec![x0, x1];
        for (node, n) in self.convs.iter().zip(&cell.nodes) {
            let x = node[0][n.x_id].apply(n.x_op, &states[n.x_id], train)?;
            let y = node[1][n.y_id].apply(n.y_op, &states[n.y_id], train)?;
            states.push((x + y)?);
        }
        let concat = Tensor::cat(&unused.iter().map(|&i| states[i].clone()).collect::<Vec<_>>(), 1)?;
        self.final_bn.after_conv(&concat, &w, true, false, train)
    }
}

pub struct MicroSupernet {
    stem: Conv,
    stem_bn: BatchNorm,
    /// Per layer: the reduction applied first at a pooling layer, then the cell.
    cells: Vec<(Option<FactorizedReduce>, EnasCell)>,
    aux: Option<(usize, AuxHead)>,
    fc: Linear,
    dropout: f32,
    /// Each cell's nodes as one op in CPU training (`micro_cell`), or as candle's graph.
    pub fused_cells: bool,
}

impl MicroSupernet {
    pub fn new(vb: VarBuilder, nodes: usize, cfg: &NetConfig) -> Result<MicroSupernet> {
        let c = cfg.channels;
        let stem = Conv::new(vb.pp("stem"), cfg.in_channels, 3 * c, 3)?;
        let stem_bn = BatchNorm::new(vb.pp("stem_bn"), 3 * c)?;
        let pools = pool_layers(cfg.layers);
        let start: Hw = (cfg.image_size, cfg.image_size);
        let mut prev = [(3 * c, start), (3 * c, start)];
        let mut out_c = c;
        let mut cells = Vec::new();
        let mut aux = None;
        for layer_id in 0..cfg.layers + 2 {
            let vb = vb.pp(format!("cell_{layer_id}"));
            let reduce = if pools.contains(&layer_id) {
                out_c *= 2;
                let fr = FactorizedReduce::new(vb.pp("reduce"), prev[1].0, out_c)?;
                prev = [prev[1], (out_c, halve(prev[1].1))];
                Some(fr)
            } else {
                None
            };
            cells.push((reduce, EnasCell::new(vb, nodes, prev, out_c)?));
            let out = (out_c, prev[1].1);
            prev = [prev[1], out];
            if cfg.aux_head && layer_id == pools[1] + 1 {
                aux = Some((layer_id, out));
            }
        }
        let aux = match aux {
            Some((at, (ch, hw))) => Some((at, AuxHead::new(vb.pp("aux"), ch, hw, cfg.classes)?)),
            None => None,
        };
        let fc = Linear::new(vb.pp("fc"), out_c, cfg.classes)?;
        Ok(MicroSupernet { stem, stem_bn, cells, aux, fc, dropout: cfg.dropout, fused_cells: true })
    }

    /// Runs `arch` on the shared weights. Batch norm always normalises with the
    /// batch; `ctx.train` switches the auxiliary head and dropout.
    pub fn forward(&self, x: &Tensor, arch: &MicroArch, ctx: &mut Ctx) -> Result<Output> {
        // Nothing reads the running statistics of a network that always normalises with the batch.
        super::layers::without_running_stats(|| self.forward_batch_stats(x, arch, ctx))
    }

    fn forward_batch_stats(&self, x: &Tensor, arch: &MicroArch, ctx: &mut Ctx) -> Result<Output> {
        let s = self.stem_bn.after_conv(x, self.stem.weight(), false, false, true)?;
        let mut prev = [s.clone(), s];
        let mut aux_logits = None;
        for (layer_id, (reduce, cell)) in self.cells.iter().enumerate() {
            let arc = match reduce {
                Some(fr) => {
                    let r = fr.forward(&prev[1], true)?;
                    prev = [prev[1].clone(), r];
                    &arch.reduce
                }
                None => &arch.normal,
            };
            let out = cell.forward(&prev[0], &prev[1], arc, true, self.fused_cells)?;
            if let Some((at, head)) = &self.aux {
                if *at == layer_id && ctx.train {
                    aux_logits = Some(head.forward(&out, true)?);
                }
            }
            prev = [prev[1].clone(), out];
        }
        let x = global_avg_pool(&prev[1].relu()?)?;
        let x = dropout(&x, self.dropout, ctx)?;
        Ok(Output { logits: self.fc.forward(&x)?, aux_logits })
    }
}
