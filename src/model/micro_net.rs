//! The fixed-arc child of the micro space (Pham et al. 2018, Sec. 2.3 and the
//! authors' `MicroChild` with `fixed_arc`): stem, stages of normal cells with a
//! reduction cell between them, auxiliary head, global pooling, classifier.
use super::layers::{drop_path, dropout, global_avg_pool, BatchNorm, Conv, Conv1x1, FactorizedReduce, Linear, ReluConvBn, SepConv};
use super::onnx::{Graph, Value};
use super::{Ctx, NetConfig, Output};
use crate::ops::{self, PoolKind, Window};
use crate::space::{Cell, MicroArch};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub(super) type Hw = (usize, usize);

pub(super) fn halve((h, w): Hw) -> Hw {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Where the two reduction cells go among `num_layers + 2` cells (authors' `pool_layers`).
pub fn pool_layers(num_layers: usize) -> [usize; 2] {
    let d = num_layers / 3;
    [d, 2 * d + 1]
}

/// One input of a node: the op applied to a previous state.
enum Branch {
    Sep(SepConv),
    Pool { kind: PoolKind, stride: usize, proj: Option<ReluConvBn> },
    Identity { reduce: Option<FactorizedReduce>, proj: Option<ReluConvBn> },
}

impl Branch {
    fn new(vb: VarBuilder, op: usize, c_in: usize, c_out: usize, stride: usize) -> Result<Branch> {
        let proj = |vb: VarBuilder| if c_in != c_out { Some(ReluConvBn::new(vb.pp("proj"), c_in, c_out)).transpose() } else { Ok(None) };
        Ok(match op {
            0 | 1 => Branch::Sep(SepConv::new(vb, c_in, c_out, [3, 5][op], stride)?),
            2 | 3 => Branch::Pool { kind: if op == 2 { PoolKind::Avg } else { PoolKind::Max }, stride, proj: proj(vb)? },
            _ => {
                let reduce = if stride > 1 { Some(FactorizedReduce::new(vb.pp("reduce"), c_in, c_out)?) } else { None };
                // After a factorized reduction the channels already match.
                let proj = if reduce.is_some() { None } else { proj(vb)? };
                Branch::Identity { reduce, proj }
            }
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Branch::Sep(s) => s.forward(x, train),
            Branch::Pool { kind, stride, proj } => {
                let (_, _, h, w) = x.dims4()?;
                let y = ops::pool2d(x, *kind, Window::same(h, w, 3, *stride, 1))?;
                match proj {
                    Some(p) => p.forward(&y, train),
                    None => Ok(y),
                }
            }
            Branch::Identity { reduce, proj } => {
                let y = match reduce {
                    Some(r) => r.forward(x, train)?,
                    None => x.clone(),
                };
                match proj {
                    Some(p) => p.forward(&y, train),
                    None => Ok(y),
                }
            }
        }
    }

    fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let (y, proj) = match self {
            Branch::Sep(s) => return s.onnx(g, x),
            Branch::Pool { kind, stride, proj } => (g.pool(x, *kind, 3, *stride, true), proj),
            Branch::Identity { reduce, proj } => (
                match reduce {
                    Some(r) => r.onnx(g, x, false)?,
                    None => x.clone(),
                },
                proj,
            ),
        };
        match proj {
            Some(p) => p.onnx(g, &y),
            None => Ok(y),
        }
    }

    fn is_identity(&self) -> bool {
        matches!(self, Branch::Identity { .. })
    }
}

/// How the two inputs of a cell are brought to its resolution and width (the
/// authors' `_maybe_calibrate_size`).
pub(super) struct Calibrate {
    x: CalibrateX,
    y: Option<ReluConvBn>,
}

enum CalibrateX {
    Keep,
    Reduce(FactorizedReduce),
    Project(ReluConvBn),
}

impl Calibrate {
    pub(super) fn new(vb: &VarBuilder, prev: [(usize, Hw); 2], c: usize) -> Result<Calibrate> {
        let [(c0, hw0), (c1, hw1)] = prev;
        let x = if hw0 != hw1 {
            CalibrateX::Reduce(FactorizedReduce::new(vb.pp("calibrate_x"), c0, c)?)
        } else if c0 != c {
            CalibrateX::Project(ReluConvBn::new(vb.pp("calibrate_x"), c0, c)?)
        } else {
            CalibrateX::Keep
        };
        let y = if c1 != c { Some(ReluConvBn::new(vb.pp("calibrate_y"), c1, c)?) } else { None };
        Ok(Calibrate { x, y })
    }

    pub(super) fn forward(&self, x0: &Tensor, x1: &Tensor, train: bool) -> Result<[Tensor; 2]> {
        let x0 = match &self.x {
            CalibrateX::Keep => x0.clone(),
            CalibrateX::Reduce(r) => r.forward_relu(x0, train)?,
            CalibrateX::Project(p) => p.forward(x0, train)?,
        };
        let x1 = match &self.y {
            Some(p) => p.forward(x1, train)?,
            None => x1.clone(),
        };
        Ok([x0, x1])
    }

    fn onnx(&self, g: &mut Graph, x0: &Value, x1: &Value) -> Result<[Value; 2]> {
        let x0 = match &self.x {
            CalibrateX::Keep => x0.clone(),
            CalibrateX::Reduce(r) => r.onnx(g, x0, true)?,
            CalibrateX::Project(p) => p.onnx(g, x0)?,
        };
        let x1 = match &self.y {
            Some(p) => p.onnx(g, x1)?,
            None => x1.clone(),
        };
        Ok([x0, x1])
    }
}

/// One cell of a fixed architecture (the authors' `_fixed_layer`).
struct FixedCell {
    calibrate: Calibrate,
    base: ReluConvBn,
    /// Per node: (x input id, x branch, y input id, y branch).
    nodes: Vec<(usize, Branch, usize, Branch)>,
    /// States concatenated into the output, each maybe reduced to the output resolution.
    combine: Vec<(usize, Option<FactorizedReduce>)>,
}

impl FixedCell {
    /// `prev` are the (channels, size) of the two inputs; returns the cell and its output shape.
    fn new(vb: VarBuilder, cell: &Cell, prev: [(usize, Hw); 2], c: usize, reduction: bool) -> Result<(FixedCell, (usize, Hw))> {
        let hw1 = prev[1].1;
        let calibrate = Calibrate::new(&vb, prev, c)?;
        let base = ReluConvBn::new(vb.pp("base"), c, c)?;
        let stride = if reduction { 2 } else { 1 };
        let mut sizes = vec![hw1, hw1];
        let mut nodes = Vec::with_capacity(cell.nodes.len());
        for (i, n) in cell.nodes.iter().enumerate() {
            let vb = vb.pp(format!("node_{i}"));
            let s = |id: usize| if id < 2 { stride } else { 1 };
            let x = Branch::new(vb.pp("x"), n.x_op, c, c, s(n.x_id))?;
            let y = Branch::new(vb.pp("y"), n.y_op, c, c, s(n.y_id))?;
            let size = if n.x_id < 2 && reduction { halve(sizes[n.x_id]) } else { sizes[n.x_id] };
            sizes.push(size);
            nodes.push((n.x_id, x, n.y_id, y));
        }
        let unused = cell.unused();
        let out_hw = (0..sizes.len()).filter(|&i| unused[i]).map(|i| sizes[i]).min().expect("the last node is never used");
        let mut combine = Vec::new();
        for (i, &u) in unused.iter().enumerate() {
            if u {
                let reduce = if sizes[i] != out_hw { Some(FactorizedReduce::new(vb.pp(format!("combine_{i}")), c, c)?) } else { None };
                combine.push((i, reduce));
            }
        }
        let out_c = c * combine.len();
        Ok((FixedCell { calibrate, base, nodes, combine }, (out_c, out_hw)))
    }

    fn forward(&self, x0: &Tensor, x1: &Tensor, keep: f32, ctx: &mut Ctx) -> Result<Tensor> {
        let train = ctx.train;
        let [x0, x1] = self.calibrate.forward(x0, x1, train)?;
        let mut states = vec![x0, self.base.forward(&x1, train)?];
        for (x_id, xb, y_id, yb) in &self.nodes {
            let mut x = xb.forward(&states[*x_id], train)?;
            if !xb.is_identity() {
                x = drop_path(&x, keep, ctx)?;
            }
            let mut y = yb.forward(&states[*y_id], train)?;
            if !yb.is_identity() {
                y = drop_path(&y, keep, ctx)?;
            }
            states.push((x + y)?);
        }
        let outs = self
            .combine
            .iter()
            .map(|(i, r)| match r {
                Some(r) => r.forward(&states[*i], train),
                None => Ok(states[*i].clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&outs, 1)
    }

    fn onnx(&self, g: &mut Graph, x0: &Value, x1: &Value) -> Result<Value> {
        let [x0, x1] = self.calibrate.onnx(g, x0, x1)?;
        let base = self.base.onnx(g, &x1)?;
        let mut states = vec![x0, base];
        for (x_id, xb, y_id, yb) in &self.nodes {
            let x = xb.onnx(g, &states[*x_id])?;
            let y = yb.onnx(g, &states[*y_id])?;
            states.push(g.add(&x, &y));
        }
        let outs = self
            .combine
            .iter()
            .map(|(i, r)| match r {
                Some(r) => r.onnx(g, &states[*i], false),
                None => Ok(states[*i].clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(g.concat(&outs))
    }
}

/// The authors' auxiliary head: ReLU, 5x5/3 average pool, 1x1 conv to 128,
/// a conv over the whole remaining map to 768, classifier.
pub struct AuxHead {
    proj: Conv1x1,
    proj_bn: BatchNorm,
    wide: super::layers::Linear,
    wide_bn: BatchNorm,
    fc: Linear,
    window: Window,
}

impl AuxHead {
    pub fn new(vb: VarBuilder, c: usize, hw: Hw, classes: usize) -> Result<AuxHead> {
        let k = 5.min(hw.0).min(hw.1);
        let window = Window::valid(hw.0, hw.1, k, 3);
        let area = window.out_h * window.out_w;
        Ok(AuxHead {
            proj: Conv1x1::new(vb.pp("proj"), c, 128)?,
            proj_bn: BatchNorm::new(vb.pp("proj_bn"), 128)?,
            wide: Linear::new(vb.pp("wide"), 128 * area, 768)?,
            wide_bn: BatchNorm::new(vb.pp("wide_bn"), 768)?,
            fc: Linear::new(vb.pp("fc"), 768, classes)?,
            window,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = ops::pool2d(&x.relu()?, PoolKind::Avg, self.window)?;
        let x = self.proj_bn.after_conv(&x, self.proj.weight(), false, true, train)?;
        let n = x.dim(0)?;
        let x = self.wide.forward(&x.flatten_from(1)?)?.reshape((n, 768, 1, 1))?;
        let x = self.wide_bn.forward_relu(&x, train)?;
        self.fc.forward(&x.flatten_from(1)?)
    }
}

pub struct MicroNet {
    stem: Conv,
    stem_bn: BatchNorm,
    cells: Vec<FixedCell>,
    aux: Option<(usize, AuxHead)>,
    fc: Linear,
    num_layers: usize,
    dropout: f32,
    drop_path: f32,
}

impl MicroNet {
    pub fn new(vb: VarBuilder, arch: &MicroArch, cfg: &NetConfig) -> Result<MicroNet> {
        let c = cfg.channels;
        let stem_c = 3 * c;
        let stem = Conv::new(vb.pp("stem"), cfg.in_channels, stem_c, 3)?;
        let stem_bn = BatchNorm::new(vb.pp("stem_bn"), stem_c)?;
        let pools = pool_layers(cfg.layers);
        let start: Hw = (cfg.image_size, cfg.image_size);
        let mut prev = [(stem_c, start), (stem_c, start)];
        let mut out_c = c;
        let mut cells = Vec::new();
        let mut aux = None;
        for layer_id in 0..cfg.layers + 2 {
            let reduction = pools.contains(&layer_id);
            if reduction {
                out_c *= 2;
            }
            let arc = if reduction { &arch.reduce } else { &arch.normal };
            let (cell, out) = FixedCell::new(vb.pp(format!("cell_{layer_id}")), arc, prev, out_c, reduction)?;
            cells.push(cell);
            prev = [prev[1], out];
            if cfg.aux_head && layer_id == pools[1] + 1 {
                aux = Some((layer_id, (out.0, out.1)));
            }
        }
        let aux = match aux {
            Some((at, (ch, hw))) => Some((at, AuxHead::new(vb.pp("aux"), ch, hw, cfg.classes)?)),
            None => None,
        };
        let fc = Linear::new(vb.pp("fc"), prev[1].0, cfg.classes)?;
        Ok(MicroNet { stem, stem_bn, cells, aux, fc, num_layers: cfg.layers, dropout: cfg.dropout, drop_path: cfg.drop_path })
    }

    /// Keep probability of drop-path in cell `layer_id` at this point of training (authors' `_apply_drop_path`).
    fn keep(&self, layer_id: usize, progress: f32) -> f32 {
        if self.drop_path <= 0.0 {
            return 1.0;
        }
        let layer_ratio = (layer_id + 1) as f32 / (self.num_layers + 2) as f32;
        let keep = 1.0 - layer_ratio * self.drop_path;
        1.0 - progress.clamp(0.0, 1.0) * (1.0 - keep)
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Output> {
        let s = self.stem_bn.after_conv(x, self.stem.weight(), false, false, ctx.train)?;
        let mut prev = [s.clone(), s];
        let mut aux_logits = None;
        for (layer_id, cell) in self.cells.iter().enumerate() {
            let keep = self.keep(layer_id, ctx.progress);
            let out = cell.forward(&prev[0], &prev[1], keep, ctx)?;
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

    /// `forward` in evaluation (no auxiliary head, no dropout or drop-path) as ONNX nodes.
    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let stem = self.stem.onnx(g, x, false)?;
        let s = self.stem_bn.onnx(g, &stem, false)?;
        let mut prev = [s.clone(), s];
        for cell in &self.cells {
            let out = cell.onnx(g, &prev[0], &prev[1])?;
            prev = [prev[1].clone(), out];
        }
        let x = g.relu(&prev[1]);
        let x = g.global_avg_pool(&x);
        self.fc.onnx(g, &x)
    }
}
