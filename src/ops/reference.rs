//! The same computations composed from candle's own ops: the references our
//! custom ops are tested and timed against.
use candle_core::{Result, Tensor};

/// The nine shifted copies of `x` padded by one pixel with `fill`.
fn shifted(x: &Tensor, fill: f32) -> Result<Vec<Tensor>> {
    let (n, c, h, w) = x.dims4()?;
    let row = Tensor::full(fill, (n, c, 1, w), x.device())?;
    let xp = Tensor::cat(&[&row, x, &row], 2)?;
    let col = Tensor::full(fill, (n, c, h + 2, 1), x.device())?;
    let xp = Tensor::cat(&[&col, &xp, &col], 3)?;
    let mut out = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            out.push(xp.narrow(2, dy, h)?.narrow(3, dx, w)?);
        }
    }
    Ok(out)
}

/// 3x3 stride-1 max pool with -inf padding.
pub fn max_pool3x3(x: &Tensor) -> Result<Tensor> {
    let s = shifted(x, f32::NEG_INFINITY)?;
    s[1..].iter().try_fold(s[0].clone(), |m, t| m.maximum(t))
}

/// 3x3 stride-1 average pool that divides by the in-image pixel count.
pub fn avg_pool3x3(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let s = shifted(x, 0.0)?;
    let sum = s[1..].iter().try_fold(s[0].clone(), |a, t| a + t)?;
    let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
    let counts = shifted(&ones, 0.0)?;
    let count = counts[1..].iter().try_fold(counts[0].clone(), |a, t| a + t)?;
    sum.broadcast_div(&count)
}
