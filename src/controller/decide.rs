//! One categorical decision of the controller: shaping the logits as the
//! authors do, then sampling (or scoring a given choice) with its log-probability
//! and entropy.
use candle_core::{DType, Result, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Divide by the temperature, then `c * tanh` (the authors' order).
pub fn squash(logits: &Tensor, temperature: Option<f64>, tanh_constant: Option<f64>) -> Result<Tensor> {
    let mut l = logits.clone();
    if let Some(t) = temperature {
        l = (l / t)?;
    }
    if let Some(c) = tanh_constant {
        l = (l.tanh()? * c)?;
    }
    Ok(l)
}

pub struct Choice {
    /// One choice per row of the logits.
    pub picks: Vec<usize>,
    /// Sum over rows of log p(pick), with its graph.
    pub log_prob: Tensor,
    /// Sum over rows of the entropy of the row's distribution, with its graph.
    pub entropy: Tensor,
}

/// How choices are made where the architecture is not given.
pub enum Pick<'a> {
    Draw(&'a mut ChaCha8Rng),
    /// The most likely option at every decision.
    Greedy,
}

/// Rows of `logits` (rows, n) are independent categorical decisions. With
/// `forced`, those choices are scored; otherwise they are made by `pick`.
pub fn choose(logits: &Tensor, forced: Option<&[usize]>, pick: &mut Pick) -> Result<Choice> {
    let (rows, n) = logits.dims2()?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picks = match forced {
        Some(f) => {
            if f.len() != rows || f.iter().any(|&c| c >= n) {
                candle_core::bail!("forced choice {f:?} does not fit {rows} decisions over {n} options");
            }
            f.to_vec()
        }
        None => {
            let probs = log_p.exp()?.to_vec2::<f32>()?;
            match pick {
                Pick::Draw(rng) => probs.iter().map(|row| draw(row, rng)).collect(),
                Pick::Greedy => probs.iter().map(|row| argmax(row)).collect(),
            }
        }
    };
    let idx = Tensor::from_vec(picks.iter().map(|&p| p as u32).collect::<Vec<_>>(), (rows, 1), logits.device())?;
    let log_prob = log_p.gather(&idx, 1)?.sum_all()?;
    let entropy = (log_p.exp()? * &log_p)?.sum_all()?.neg()?;
    Ok(Choice { picks, log_prob, entropy })
}

/// Inverse-CDF draw from probabilities that sum to about one.
fn draw(probs: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let u: f32 = rng.gen();
    let mut acc = 0f32;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding left `acc` just under one: the last option with any mass.
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

pub fn scalar(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?.to_scalar::<f32>()
}
