//! Running an ONNX model of the kind `enas export` writes (`enas predict
//! --onnx`), with candle's ops and ours: the op types the export uses, no
//! others.
use super::read::{Constant, Model, Node};
use crate::ops::{self, PoolKind, Window};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

fn ints<'a>(m: &'a Model, name: &str) -> Result<&'a [i64]> {
    match m.constants.get(name) {
        Some(Constant::Ints(v)) => Ok(v),
        _ => bail!("{name}: expected an int64 constant"),
    }
}

fn pads4(n: &Node) -> Result<[usize; 4]> {
    let p = n.ints("pads").unwrap_or(&[0, 0, 0, 0]);
    let p: Vec<usize> = p.iter().map(|&v| usize::try_from(v).context("negative padding")).collect::<Result<_>>()?;
    p.try_into().map_err(|_| anyhow::anyhow!("{}: pads must have four values", n.output))
}

fn conv(n: &Node, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let [t, l, b, r] = pads4(n)?;
    let stride = n.ints("strides").and_then(|s| s.first().copied()).unwrap_or(1) as usize;
    let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
    Ok(x.conv2d(w, 0, stride, 1, n.int("group", 1) as usize)?)
}

fn pool(n: &Node, x: &Tensor, kind: PoolKind) -> Result<Tensor> {
    if n.int("count_include_pad", 0) != 0 {
        bail!("{}: average pooling counting the padding is not one enas writes", n.output);
    }
    let [t, l, b, r] = pads4(n)?;
    let k = n.ints("kernel_shape").and_then(|s| s.first().copied()).context("pool without kernel_shape")? as usize;
    let stride = n.ints("strides").and_then(|s| s.first().copied()).unwrap_or(1) as usize;
    let (_, _, h, w) = x.dims4()?;
    let out =
        |len: usize, before: usize, after: usize| (len + before + after).checked_sub(k).map(|v| v / stride + 1).context("pool window larger than its input");
    let win = Window { k, stride, dilation: 1, pad_top: t, pad_left: l, in_h: h, in_w: w, out_h: out(h, t, b)?, out_w: out(w, l, r)? };
    Ok(ops::pool2d(x, kind, win)?)
}

/// Every `step`-th index from `start` on the given axes (the export's Slice).
fn slice(m: &Model, n: &Node, x: &Tensor) -> Result<Tensor> {
    let args: Vec<&[i64]> = n.inputs[1..].iter().map(|i| ints(m, i)).collect::<Result<_>>()?;
    let [starts, ends, axes, steps] = args[..] else { bail!("{}: Slice needs starts, ends, axes and steps", n.output) };
    let mut y = x.clone();
    for (((&start, &end), &axis), &step) in starts.iter().zip(ends).zip(axes).zip(steps) {
        let axis = axis as usize;
        let len = y.dim(axis)? as i64;
        if step <= 0 || start < 0 {
            bail!("{}: only positive steps from non-negative starts", n.output);
        }
        let idx: Vec<u32> = (start..end.min(len)).step_by(step as usize).map(|i| i as u32).collect();
        y = y.index_select(&Tensor::new(idx.as_slice(), x.device())?, axis)?;
    }
    Ok(y)
}

fn batch_norm(n: &Node, inputs: &[Tensor]) -> Result<Tensor> {
    let [x, scale, bias, mean, var] = inputs else { bail!("{}: BatchNormalization needs five inputs", n.output) };
    let c = scale.dim(0)?;
    let shape: Vec<usize> = (0..x.rank()).map(|i| if i == 1 { c } else { 1 }).collect();
    let r = |t: &Tensor| t.reshape(shape.as_slice());
    let factor = (r(scale)? / (r(var)? + n.float("epsilon", 1e-5) as f64)?.sqrt()?)?;
    let shift = (r(bias)? - r(mean)?.mul(&factor)?)?;
    Ok(x.broadcast_mul(&factor)?.broadcast_add(&shift)?)
}

/// Runs `m` on `x`, (N, C, H, W).
pub fn run(m: &Model, x: &Tensor) -> Result<Tensor> {
    let device = x.device().clone();
    let mut values: HashMap<String, Tensor> = HashMap::new();
    values.insert(m.input.clone(), x.clone());
    let tensor = |values: &HashMap<String, Tensor>, name: &str, device: &Device| -> Result<Tensor> {
        if let Some(t) = values.get(name) {
            return Ok(t.clone());
        }
        match m.constants.get(name) {
            Some(Constant::Floats(dims, data)) => Ok(Tensor::from_vec(data.clone(), dims.as_slice(), device)?),
            _ => bail!("{name}: used before it is computed"),
        }
    };
    for n in &m.nodes {
        let input = |i: usize| -> Result<Tensor> { tensor(&values, n.inputs.get(i).with_context(|| format!("{}: missing input {i}", n.output))?, &device) };
        let y = match n.op.as_str() {
            "Mul" => input(0)?.broadcast_mul(&input(1)?)?,
            "Add" => input(0)?.broadcast_add(&input(1)?)?,
            "Relu" => input(0)?.relu()?,
            "Identity" => input(0)?,
            "Conv" => conv(n, &input(0)?, &input(1)?)?,
            "BatchNormalization" => batch_norm(n, &(0..5).map(input).collect::<Result<Vec<_>>>()?)?,
            "MaxPool" => pool(n, &input(0)?, PoolKind::Max)?,
            "AveragePool" => pool(n, &input(0)?, PoolKind::Avg)?,
            "Slice" => slice(m, n, &input(0)?)?,
            "Pad" => {
                let p = ints(m, &n.inputs[1])?;
                let p: Vec<usize> = p.iter().map(|&v| usize::try_from(v).context("negative padding")).collect::<Result<_>>()?;
                let rank = p.len() / 2;
                let mut y = input(0)?;
                for axis in 0..rank {
                    y = y.pad_with_zeros(axis, p[axis], p[rank + axis])?;
                }
                y
            }
            "Concat" => {
                let xs = (0..n.inputs.len()).map(input).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&xs, n.int("axis", 1) as usize)?
            }
            "GlobalAveragePool" => input(0)?.mean_keepdim(3)?.mean_keepdim(2)?,
            "Flatten" => input(0)?.flatten_from(1)?,
            "Gemm" => {
                let w = input(1)?;
                let w = if n.int("transB", 0) == 1 { w.t()? } else { w };
                let y = input(0)?.matmul(&w)?;
                if n.inputs.len() > 2 {
                    y.broadcast_add(&input(2)?)?
                } else {
                    y
                }
            }
            other => bail!("op {other} is not one enas writes"),
        };
        values.insert(n.output.clone(), y);
    }
    values.remove(&m.output).context("the graph never computes its output")
}
