//! The NAS-RL controller (Zoph & Le 2017, Sec. 3.1) over a fixed list of
//! categorical choices: an LSTM whose input at each step is the embedding of
//! the previous choice, with its own softmax per choice. Used for the NB201 cell.
use super::decide::{choose, squash, Pick};
use super::lstm::Lstm;
use super::params::Params;
use super::{PolicyConfig, Trace};
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;

pub struct SeqPolicy {
    lstm: Lstm,
    g_emb: Tensor,
    /// Per choice: softmax weights (hidden, options) and embeddings of its options (options, hidden).
    soft: Vec<Tensor>,
    emb: Vec<Tensor>,
    cfg: PolicyConfig,
}

impl SeqPolicy {
    pub fn new(params: &mut Params, cardinalities: &[usize], cfg: &PolicyConfig, rng: &mut ChaCha8Rng) -> Result<SeqPolicy> {
        let h = cfg.lstm_size;
        let lstm = Lstm::new(params, h, rng)?;
        let g_emb = params.uniform("g_emb", &[1, h], rng)?;
        let mut soft = Vec::with_capacity(cardinalities.len());
        let mut emb = Vec::with_capacity(cardinalities.len());
        for (i, &n) in cardinalities.iter().enumerate() {
            soft.push(params.uniform(&format!("softmax.{i}.w"), &[h, n], rng)?);
            emb.push(params.uniform(&format!("emb.{i}.w"), &[n, h], rng)?);
        }
        Ok(SeqPolicy { lstm, g_emb, soft, emb, cfg: cfg.clone() })
    }

    /// Makes every choice by `pick`, or with `forced` scores the given ones.
    pub fn run(&self, forced: Option<&[usize]>, pick: &mut Pick) -> Result<(Vec<usize>, Trace)> {
        if let Some(f) = forced {
            if f.len() != self.soft.len() {
                candle_core::bail!("architecture has {} choices, the controller {}", f.len(), self.soft.len());
            }
        }
        let mut trace = Trace::default();
        let mut state = self.lstm.zero_state()?;
        let mut input = self.g_emb.clone();
        let mut choices = Vec::with_capacity(self.soft.len());
        for (i, (w, e)) in self.soft.iter().zip(&self.emb).enumerate() {
            state = self.lstm.step(&input, &state)?;
            let logits = squash(&state.h.matmul(w)?, self.cfg.temperature, self.cfg.tanh_constant)?;
            let given = forced.map(|f| [f[i]]);
            let c = trace.add(choose(&logits, given.as_ref().map(|g| &g[..]), pick)?)?[0];
            input = e.narrow(0, c, 1)?;
            choices.push(c);
        }
        Ok((choices, trace))
    }
}
