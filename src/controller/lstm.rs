//! The controller's one-layer LSTM (the authors' `stack_lstm`: one weight over
//! the concatenated input and hidden state, no bias).
use super::params::Params;
use candle_core::{Result, Tensor, D};
use rand_chacha::ChaCha8Rng;

pub struct Lstm {
    /// (input + hidden, 4 hidden): gates i, f, o and the candidate g.
    w: Tensor,
    hidden: usize,
}

#[derive(Clone)]
pub struct State {
    pub c: Tensor,
    pub h: Tensor,
}

impl Lstm {
    pub fn new(params: &mut Params, hidden: usize, rng: &mut ChaCha8Rng) -> Result<Lstm> {
        Ok(Lstm { w: params.uniform("lstm.w", &[2 * hidden, 4 * hidden], rng)?, hidden })
    }

    pub fn zero_state(&self) -> Result<State> {
        let z = Tensor::zeros((1, self.hidden), candle_core::DType::F32, self.w.device())?;
        Ok(State { c: z.clone(), h: z })
    }

    /// One step on input `x` (1, hidden).
    pub fn step(&self, x: &Tensor, s: &State) -> Result<State> {
        let gates = Tensor::cat(&[x, &s.h], D::Minus1)?.matmul(&self.w)?;
        let chunk = |i: usize| gates.narrow(D::Minus1, i * self.hidden, self.hidden);
        let i = candle_nn::ops::sigmoid(&chunk(0)?)?;
        let f = candle_nn::ops::sigmoid(&chunk(1)?)?;
        let o = candle_nn::ops::sigmoid(&chunk(2)?)?;
        let g = chunk(3)?.tanh()?;
        let c = ((i * g)? + (f * &s.c)?)?;
        let h = (o * c.tanh()?)?;
        Ok(State { c, h })
    }
}
