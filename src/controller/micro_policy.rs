//! The ENAS micro controller (Pham et al. 2018, Sec. 2.3; the authors'
//! `MicroController`): per node two inputs chosen by attention over the earlier
//! nodes' anchors, then two ops; the normal cell, then the reduction cell from
//! the same LSTM state.
use super::decide::{choose, squash, Pick};
use super::lstm::{Lstm, State};
use super::params::Params;
use super::{PolicyConfig, Trace};
use crate::space::{Cell, MicroArch, Node, MICRO_OPS};
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;

pub struct MicroPolicy {
    lstm: Lstm,
    g_emb: Tensor,
    w_emb: Tensor,
    w_soft: Tensor,
    b_soft: Tensor,
    /// Fixed bias of the normal cell's op logits (authors' `b_soft_no_learn`).
    b_normal: Tensor,
    w_attn_1: Tensor,
    w_attn_2: Tensor,
    v_attn: Tensor,
    nodes: usize,
    cfg: PolicyConfig,
}

impl MicroPolicy {
    pub fn new(params: &mut Params, nodes: usize, cfg: &PolicyConfig, rng: &mut ChaCha8Rng) -> Result<MicroPolicy> {
        let h = cfg.lstm_size;
        let ops = MICRO_OPS.len();
        let lstm = Lstm::new(params, h, rng)?;
        let g_emb = params.uniform("g_emb", &[1, h], rng)?;
        let w_emb = params.uniform("emb.w", &[ops, h], rng)?;
        let w_soft = params.uniform("softmax.w", &[h, ops], rng)?;
        // The authors start the two separable convs' logits high (bias 10 before the tanh).
        let b_soft = params.with_values("softmax.b", &[1, ops], (0..ops).map(|i| if i < 2 { 10.0 } else { 0.0 }).collect())?;
        let w_attn_1 = params.uniform("attention.w_1", &[h, h], rng)?;
        let w_attn_2 = params.uniform("attention.w_2", &[h, h], rng)?;
        let v_attn = params.uniform("attention.v", &[h, 1], rng)?;
        let bias: Vec<f32> = (0..ops).map(|i| if i < 2 { 0.25 } else { -0.25 }).collect();
        let b_normal = Tensor::from_vec(bias, (1, ops), g_emb.device())?;
        Ok(MicroPolicy { lstm, g_emb, w_emb, w_soft, b_soft, b_normal, w_attn_1, w_attn_2, v_attn, nodes, cfg: cfg.clone() })
    }

    /// Chooses an architecture by `pick`, or with `forced` scores the given one.
    pub fn run(&self, forced: Option<&MicroArch>, pick: &mut Pick) -> Result<(MicroArch, Trace)> {
        let mut trace = Trace::default();
        let mut state = self.lstm.zero_state()?;
        let normal = self.cell(forced.map(|a| &a.normal), true, &mut state, &mut trace, pick)?;
        let reduce = self.cell(forced.map(|a| &a.reduce), false, &mut state, &mut trace, pick)?;
        Ok((MicroArch { normal, reduce }, trace))
    }

    fn cell(&self, forced: Option<&Cell>, normal: bool, state: &mut State, trace: &mut Trace, pick: &mut Pick) -> Result<Cell> {
        if let Some(f) = forced {
            if f.nodes.len() != self.nodes {
                candle_core::bail!("architecture has {} nodes per cell, the controller {}", f.nodes.len(), self.nodes);
            }
        }
        let c = &self.cfg;
        let mut anchors = Vec::with_capacity(self.nodes + 2);
        let mut anchors_w1 = Vec::with_capacity(self.nodes + 2);
        for _ in 0..2 {
            *state = self.lstm.step(&self.g_emb, state)?;
            anchors.push(state.h.zeros_like()?);
            anchors_w1.push(state.h.matmul(&self.w_attn_1)?);
        }
        let mut nodes = Vec::with_capacity(self.nodes);
        for node in 0..self.nodes {
            let given = forced.map(|f| f.nodes[node]);
            let mut inputs = self.g_emb.clone();
            let keys = Tensor::cat(&anchors_w1, 0)?;
            let mut ids = [0usize; 2];
            for (i, id) in ids.iter_mut().enumerate() {
                *state = self.lstm.step(&inputs, state)?;
                let query = keys.broadcast_add(&state.h.matmul(&self.w_attn_2)?)?.tanh()?.matmul(&self.v_attn)?;
                let logits = squash(&query.t()?, c.temperature, c.tanh_constant)?;
                let given_id = given.map(|g| [if i == 0 { g.x_id } else { g.y_id }]);
                *id = trace.add(choose(&logits, given_id.as_ref().map(|p| &p[..]), pick)?)?[0];
                inputs = anchors[*id].clone();
            }
            let mut ops = [0usize; 2];
            let op_tanh = c.tanh_constant.map(|t| t / c.op_tanh_reduce);
            for (i, op) in ops.iter_mut().enumerate() {
                *state = self.lstm.step(&inputs, state)?;
                let mut logits = squash(&state.h.matmul(&self.w_soft)?.broadcast_add(&self.b_soft)?, c.temperature, op_tanh)?;
                if normal {
                    logits = (logits + &self.b_normal)?;
                }
                let given_op = given.map(|g| [if i == 0 { g.x_op } else { g.y_op }]);
                *op = trace.add(choose(&logits, given_op.as_ref().map(|p| &p[..]), pick)?)?[0];
                inputs = self.w_emb.narrow(0, *op, 1)?;
            }
            *state = self.lstm.step(&inputs, state)?;
            anchors.push(state.h.clone());
            anchors_w1.push(state.h.matmul(&self.w_attn_1)?);
            nodes.push(Node { x_id: ids[0], x_op: ops[0], y_id: ids[1], y_op: ops[1] });
        }
        Ok(Cell { nodes })
    }
}
