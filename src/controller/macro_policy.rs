//! The ENAS macro controller (Pham et al. 2018, Sec. 2.2; the authors'
//! `GeneralController`, whole channels): per layer an op, then one skip bit per
//! earlier output chosen by attention, with a KL penalty pulling the skip
//! probability towards a target.
use super::decide::{choose, squash, Pick};
use super::lstm::Lstm;
use super::params::Params;
use super::{PolicyConfig, Trace};
use crate::space::{MacroArch, MacroLayer, MACRO_OPS};
use candle_core::{Result, Tensor, D};
use rand_chacha::ChaCha8Rng;

pub struct MacroPolicy {
    lstm: Lstm,
    g_emb: Tensor,
    w_emb: Tensor,
    w_soft: Tensor,
    w_attn_1: Tensor,
    w_attn_2: Tensor,
    v_attn: Tensor,
    layers: usize,
    cfg: PolicyConfig,
}

impl MacroPolicy {
    pub fn new(params: &mut Params, layers: usize, cfg: &PolicyConfig, rng: &mut ChaCha8Rng) -> Result<MacroPolicy> {
        let h = cfg.lstm_size;
        let ops = MACRO_OPS.len();
        let lstm = Lstm::new(params, h, rng)?;
        let g_emb = params.uniform("g_emb", &[1, h], rng)?;
        let w_emb = params.uniform("emb.w", &[ops, h], rng)?;
        let w_soft = params.uniform("softmax.w", &[h, ops], rng)?;
        let w_attn_1 = params.uniform("attention.w_1", &[h, h], rng)?;
        let w_attn_2 = params.uniform("attention.w_2", &[h, h], rng)?;
        let v_attn = params.uniform("attention.v", &[h, 1], rng)?;
        Ok(MacroPolicy { lstm, g_emb, w_emb, w_soft, w_attn_1, w_attn_2, v_attn, layers, cfg: cfg.clone() })
    }

    /// Chooses an architecture by `pick`, or with `forced` scores the given one.
    pub fn run(&self, forced: Option<&MacroArch>, pick: &mut Pick) -> Result<(MacroArch, Trace)> {
        if let Some(f) = forced {
            if f.layers.len() != self.layers {
                candle_core::bail!("architecture has {} layers, the controller {}", f.layers.len(), self.layers);
            }
        }
        let c = &self.cfg;
        let dev = self.g_emb.device();
        let mut trace = Trace::default();
        let mut state = self.lstm.zero_state()?;
        let mut inputs = self.g_emb.clone();
        let mut anchors = Vec::with_capacity(self.layers);
        let mut anchors_w1 = Vec::with_capacity(self.layers);
        let mut penalties = Vec::new();
        let target = Tensor::from_vec(vec![(1.0 - c.skip_target) as f32, c.skip_target as f32], (1, 2), dev)?;
        let mut layers = Vec::with_capacity(self.layers);
        for layer in 0..self.layers {
            let given = forced.map(|f| &f.layers[layer]);
            state = self.lstm.step(&inputs, &state)?;
            let logits = squash(&state.h.matmul(&self.w_soft)?, c.temperature, c.tanh_constant)?;
            let op = trace.add(choose(&logits, given.map(|g| [g.op]).as_ref().map(|p| &p[..]), pick)?)?[0];
            inputs = self.w_emb.narrow(0, op, 1)?;
            state = self.lstm.step(&inputs, &state)?;
            let mut skips = Vec::new();
            if layer > 0 {
                let query = Tensor::cat(&anchors_w1, 0)?.broadcast_add(&state.h.matmul(&self.w_attn_2)?)?.tanh()?.matmul(&self.v_attn)?;
                let logits = squash(&Tensor::cat(&[&query.neg()?, &query], D::Minus1)?, c.temperature, c.tanh_constant)?;
                let forced_bits: Option<Vec<usize>> = given.map(|g| g.skips.iter().map(|&s| s as usize).collect());
                let bits = trace.add(choose(&logits, forced_bits.as_deref(), pick)?)?;
                // The authors' penalty: sigmoid of each logit against (1 - target, target), summed.
                let p = candle_nn::ops::sigmoid(&logits)?;
                penalties.push((&p * p.broadcast_div(&target)?.log()?)?.sum_all()?);
                let bits_f: Vec<f32> = bits.iter().map(|&b| b as f32).collect();
                let count: f32 = bits_f.iter().sum();
                let row = Tensor::from_vec(bits_f, (1, layer), dev)?;
                inputs = (row.matmul(&Tensor::cat(&anchors, 0)?)? / (1.0 + count as f64))?;
                skips = bits.iter().map(|&b| b == 1).collect();
            } else {
                inputs = self.g_emb.clone();
            }
            anchors.push(state.h.clone());
            anchors_w1.push(state.h.matmul(&self.w_attn_1)?);
            layers.push(MacroLayer { op, skips });
        }
        if !penalties.is_empty() {
            trace.skip_penalty = Some((Tensor::stack(&penalties, 0)?.mean_all())?);
        }
        Ok((MacroArch { layers }, trace))
    }
}
