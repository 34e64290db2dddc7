use candle_core::{Result, Tensor, D};
use candle_nn::ops::log_softmax;

/// Mean cross-entropy of `logits` (N, K) against `labels` (N,), with label
/// smoothing `eps`: the target puts 1 - eps on the label and eps spread evenly.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let logp = log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.neg()?.mean_all()?;
    if eps <= 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - eps))? + (uniform * eps)?
}

/// Number of rows whose arg-max equals the label.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?;
    Ok(pred.eq(labels)?.to_dtype(candle_core::DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize)
}
