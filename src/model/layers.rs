//! Building blocks of the child networks, NCHW throughout.
use super::onnx::{proto::Attr, Graph, Value};
use super::Ctx;
use crate::ops;
use candle_core::{Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};
use rand::Rng;

/// Created constant; `seeded_init` fills it afterwards.
pub fn param(vb: &VarBuilder, shape: &[usize], name: &str) -> Result<Tensor> {
    vb.get_with_hints(shape, name, Init::Const(0.0))
}

/// 1x1 convolution as a batched matrix product: weight (C_out, C_in).
pub struct Conv1x1 {
    w: Tensor,
}

impl Conv1x1 {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Conv1x1 { w: param(&vb, &[c_out, c_in], "w")? })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d_same(x, &self.w, false)
    }
    pub fn weight(&self) -> &Tensor {
        &self.w
    }
    pub fn onnx(&self, g: &mut Graph, x: &Value, relu_in: bool) -> Result<Value> {
        g.conv(x, &self.w, 1, 1, 1, relu_in)
    }
}

/// Full k x k convolution, 'same' padding, stride 1.
pub struct Conv {
    w: Tensor,
}

impl Conv {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize, k: usize) -> Result<Self> {
        Ok(Conv { w: param(&vb, &[c_out, c_in, k, k], "w")? })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d_same(x, &self.w, false)
    }
    pub fn weight(&self) -> &Tensor {
        &self.w
    }
    pub fn onnx(&self, g: &mut Graph, x: &Value, relu_in: bool) -> Result<Value> {
        g.conv(x, &self.w, self.w.dim(2)?, 1, 1, relu_in)
    }
}

/// Batch normalisation over (N, H, W); running statistics live in the VarMap
/// (no gradient) and are used in evaluation.
pub struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

thread_local! {
    /// Whether training updates batch norm's running statistics (`without_running_stats`).
    static TRACK_RUNNING: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with batch norm's running statistics left as they are: for a
/// network that always normalises with the batch (the micro supernet, whose
/// rewards and derive never read them), where updating them is ~6 small ops
/// per batch norm per step for nothing (on a GPU, launches: issue 20).
pub fn without_running_stats<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRACK_RUNNING.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRACK_RUNNING.with(|t| t.replace(false)));
    f()
}

/// Momentum of the running statistics: the authors' decay of 0.9.
const BN_MOMENTUM: f64 = 0.1;
const BN_EPS: f64 = 1e-5;

impl BatchNorm {
    /// The epsilon every training and evaluation path adds to the variance.
    pub(super) const EPS: f64 = BN_EPS;

    pub fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        let gamma = param(&vb, &[c], "gamma")?;
        let beta = param(&vb, &[c], "beta")?;
        let running_mean = param(&vb, &[c], "running_mean")?;
        let running_var = param(&vb, &[c], "running_var")?;
        Ok(BatchNorm { gamma, beta, running_mean, running_var })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, train, false)
    }

    /// ReLU(BN(x)), fused in training.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, train, true)
    }

    /// This BN (then ReLU when `relu_out`) of the convolution of `x`, or of
    /// ReLU(x) when `relu_in`, with `w`: one op in training (ops::conv_bn_train).
    pub fn after_conv(&self, x: &Tensor, w: &Tensor, relu_in: bool, relu_out: bool, train: bool) -> Result<Tensor> {
        if !train {
            return self.run(&ops::conv2d_same(x, w, relu_in)?, false, relu_out);
        }
        let (y, stats) = ops::conv_bn_train(x, w, &self.gamma, &self.beta, relu_in, relu_out, BN_EPS)?;
        self.update_running_of(&y, &stats)?;
        Ok(y)
    }

    /// This BN (then ReLU when `relu_out`) of the pointwise convolution `pw` of
    /// the depthwise convolution `dw` of ReLU(x): one op in training (ops::sep_conv_bn_train).
    pub fn after_sep_conv(&self, x: &Tensor, dw: &Tensor, pw: &Tensor, relu_out: bool, train: bool) -> Result<Tensor> {
        if !train {
            return self.after_conv(&ops::relu_depthwise_conv2d(x, dw, 1, 1)?, pw, false, relu_out, false);
        }
        let (y, stats) = ops::sep_conv_bn_train(x, &[self.sep_half(dw, pw)], 1, relu_out, BN_EPS)?;
        self.update_running_of(&y, &stats[0])?;
        Ok(y)
    }

    /// A separable convolution's half with this BN after its pointwise convolution `pw`.
    pub(super) fn sep_half<'a>(&'a self, dw: &'a Tensor, pw: &'a Tensor) -> ops::SepHalf<'a> {
        ops::SepHalf { dw, pw, gamma: &self.gamma, beta: &self.beta }
    }

    /// gamma and beta, concatenated as the fused ops take them.
    pub(super) fn affine(&self) -> Result<Tensor> {
        Tensor::cat(&[&self.gamma, &self.beta], 0)
    }

    /// Running statistics updated with the batch statistics of a training output `y`.
    pub(super) fn update_running_of(&self, y: &Tensor, stats: &ops::BatchStats) -> Result<()> {
        let (n, _, h, w) = y.dims4()?;
        self.update_running(stats, (n * h * w) as f64)
    }

    /// This BN of `a + b`: one op in training (ops::add_bn_train).
    pub fn of_sum(&self, a: &Tensor, b: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return self.run(&(a + b)?, false, false);
        }
        let (y, stats) = ops::add_bn_train(a, b, &self.gamma, &self.beta, BN_EPS)?;
        self.update_running_of(&y, &stats)?;
        Ok(y)
    }

    fn run(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if train {
            let bn = if relu { ops::batch_norm_relu_train } else { ops::batch_norm_train };
            let (y, stats) = bn(x, &self.gamma, &self.beta, BN_EPS)?;
            self.update_running(&stats, (n * h * w) as f64)?;
            return Ok(y);
        }
        let var = self.running_var.reshape((1, c, 1, 1))?;
        let scale = (self.gamma.reshape((1, c, 1, 1))? / (var + BN_EPS)?.sqrt()?)?;
        let mean = self.running_mean.reshape((1, c, 1, 1))?;
        let shift = (self.beta.reshape((1, c, 1, 1))? - mean.broadcast_mul(&scale)?)?;
        let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// Evaluation's batch norm (the running statistics), then ReLU when `relu_out`.
    pub fn onnx(&self, g: &mut Graph, x: &Value, relu_out: bool) -> Result<Value> {
        let c = self.gamma.dim(0)?;
        let [gamma, beta, mean, var] = [("gamma", &self.gamma), ("beta", &self.beta), ("mean", &self.running_mean), ("var", &self.running_var)]
            .map(|(hint, t)| g.weight(hint, t, &[c]))
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .try_into()
            .expect("four");
        let y = Value { name: g.op("BatchNormalization", &[&x.name, &gamma, &beta, &mean, &var], &[("epsilon", Attr::Float(BN_EPS as f32))]), hw: x.hw };
        Ok(if relu_out { g.relu(&y) } else { y })
    }

    fn update_running(&self, stats: &ops::BatchStats, count: f64) -> Result<()> {
        if !TRACK_RUNNING.with(|t| t.get()) {
            return Ok(());
        }
        let dev = self.gamma.device();
        let mean = stats.mean.to_device(dev)?;
        let unbiased = (stats.var.to_device(dev)? * (count / (count - 1.0).max(1.0)))?;
        let rm = ((&self.running_mean * (1.0 - BN_MOMENTUM))? + (mean * BN_MOMENTUM)?)?;
        let rv = ((&self.running_var * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?;
        // Built from a VarMap these tensors are its variables, and `set` updates them in place.
        Var::from_tensor(&self.running_mean)?.set(&rm)?;
        Var::from_tensor(&self.running_var)?.set(&rv)
    }
}

/// ReLU -> 1x1 conv -> BN, the authors' projection.
pub struct ReluConvBn {
    conv: Conv1x1,
    bn: BatchNorm,
}

impl ReluConvBn {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(ReluConvBn { conv: Conv1x1::new(vb.pp("conv"), c_in, c_out)?, bn: BatchNorm::new(vb.pp("bn"), c_out)? })
    }
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.after_conv(x, self.conv.weight(), true, false, train)
    }
    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let y = self.conv.onnx(g, x, true)?;
        self.bn.onnx(g, &y, false)
    }
}

/// Separable convolution applied twice: (ReLU, depthwise k x k, pointwise 1x1, BN) x 2,
/// the first depthwise carrying the stride (the authors' `_fixed_conv`).
pub struct SepConv {
    depthwise: [Tensor; 2],
    pointwise: [Conv1x1; 2],
    bn: [BatchNorm; 2],
    stride: usize,
}

impl SepConv {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize, k: usize, stride: usize) -> Result<Self> {
        let s0 = vb.pp("sep_0");
        let s1 = vb.pp("sep_1");
        Ok(SepConv {
            depthwise: [param(&s0, &[c_in, 1, k, k], "w_depth")?, param(&s1, &[c_out, 1, k, k], "w_depth")?],
            pointwise: [Conv1x1::new(s0.pp("point"), c_in, c_out)?, Conv1x1::new(s1.pp("point"), c_out, c_out)?],
            bn: [BatchNorm::new(s0.pp("bn"), c_out)?, BatchNorm::new(s1.pp("bn"), c_out)?],
            stride,
        })
    }
    fn halves(&self) -> Vec<ops::SepHalf<'_>> {
        (0..2).map(|i| ops::SepHalf { dw: &self.depthwise[i], pw: self.pointwise[i].weight(), gamma: &self.bn[i].gamma, beta: &self.bn[i].beta }).collect()
    }

    /// Running statistics updated with both halves' batch statistics.
    fn update_running(&self, y: &Tensor, stats: &[ops::BatchStats]) -> Result<()> {
        // Both halves' outputs have the size of y (only the first depthwise convolution may stride).
        for (bn, s) in self.bn.iter().zip(stats) {
            bn.update_running_of(y, s)?;
        }
        Ok(())
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            // Both halves as one op.
            let (y, stats) = ops::sep_conv_bn_train(x, &self.halves(), self.stride, false, BN_EPS)?;
            self.update_running(&y, &stats)?;
            return Ok(y);
        }
        let mut x = x.clone();
        for i in 0..2 {
            let stride = if i == 0 { self.stride } else { 1 };
            x = self.bn[i].after_conv(&ops::relu_depthwise_conv2d(&x, &self.depthwise[i], stride, 1)?, self.pointwise[i].weight(), false, false, false)?;
        }
        Ok(x)
    }

    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        let mut x = x.clone();
        for i in 0..2 {
            let (c, k) = (self.depthwise[i].dim(0)?, self.depthwise[i].dim(2)?);
            let dw = g.conv(&x, &self.depthwise[i], k, if i == 0 { self.stride } else { 1 }, c, true)?;
            let pw = self.pointwise[i].onnx(g, &dw, false)?;
            x = self.bn[i].onnx(g, &pw, false)?;
        }
        Ok(x)
    }

    /// Training on the CPU outside candle's graph (ops::sep_conv_bn_taped): the output and its backward.
    pub fn forward_taped(&self, x: &Tensor) -> Result<(Tensor, ops::SepTape)> {
        let (y, stats, tape) = ops::sep_conv_bn_taped(x, &self.halves(), self.stride, false, BN_EPS)?;
        self.update_running(&y, &stats)?;
        Ok((y, tape))
    }

    /// The weights, flattened, in the order of the gradient `SepTape::backward` returns.
    pub fn packed_params(&self) -> Result<Vec<Tensor>> {
        ops::sep_params(&self.halves())
    }
}

/// Halves the resolution without losing pixels to the stride: two 1x1 convs on
/// the even and the odd grid, concatenated, then BN (the authors' `_factorized_reduction`).
pub struct FactorizedReduce {
    path1: Conv1x1,
    path2: Conv1x1,
    bn: BatchNorm,
}

impl FactorizedReduce {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        if !c_out.is_multiple_of(2) {
            candle_core::bail!("factorized reduction needs an even number of channels, got {c_out}")
        }
        Ok(FactorizedReduce {
            path1: Conv1x1::new(vb.pp("path1"), c_in, c_out / 2)?,
            path2: Conv1x1::new(vb.pp("path2"), c_in, c_out / 2)?,
            bn: BatchNorm::new(vb.pp("bn"), c_out)?,
        })
    }
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, false, train)
    }
    /// Of ReLU(x), fused into the two 1x1 convolutions.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, true, train)
    }
    /// `forward` (of ReLU(x) when `relu`) in evaluation.
    pub fn onnx(&self, g: &mut Graph, x: &Value, relu: bool) -> Result<Value> {
        let even = g.subsample2(x, 0);
        let p1 = self.path1.onnx(g, &even, relu)?;
        let odd = g.subsample2(x, 1);
        let p2 = self.path2.onnx(g, &odd, relu)?;
        let both = g.concat(&[p1, p2]);
        self.bn.onnx(g, &both, false)
    }
    /// `forward(x, true)` on the CPU outside candle's graph: the output, the
    /// parameters (flattened, in the order of the tape's gradients: both
    /// weights stacked, then gamma and beta) and the tape.
    pub(super) fn forward_taped(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>, ops::ReduceBnTape)> {
        let (w, affine) = (Tensor::cat(&[&self.path1.w, &self.path2.w], 0)?, self.bn.affine()?);
        let (y, stats, tape) = ops::reduce_bn_taped(x, &w, &affine, false, BN_EPS)?;
        self.bn.update_running_of(&y, &stats)?;
        Ok((y, vec![w.flatten_all()?, affine], tape))
    }
    fn run(&self, x: &Tensor, relu: bool, train: bool) -> Result<Tensor> {
        if train {
            let (y, stats) = ops::reduce_bn_train(x, &self.path1.w, &self.path2.w, &self.bn.gamma, &self.bn.beta, relu, BN_EPS)?;
            self.bn.update_running_of(&y, &stats)?;
            return Ok(y);
        }
        let p1 = ops::conv2d_same(&ops::subsample2(x, 0)?, &self.path1.w, relu)?;
        let p2 = ops::conv2d_same(&ops::subsample2(x, 1)?, &self.path2.w, relu)?;
        self.bn.forward(&Tensor::cat(&[p1, p2], 1)?, false)
    }
}

/// Fully connected layer without bias (the authors' classifier): weight (out, in).
pub struct Linear {
    w: Tensor,
}

impl Linear {
    pub fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Linear { w: param(&vb, &[c_out, c_in], "w")? })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.t()?)
    }
    pub fn onnx(&self, g: &mut Graph, x: &Value) -> Result<Value> {
        g.linear(x, &self.w)
    }
}

pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h * w))?.mean(D::Minus1)
}

/// Zeroes whole samples with probability `1 - keep` and rescales the rest
/// (drop-path, Larsson et al.; the authors' `drop_path`).
pub fn drop_path(x: &Tensor, keep: f32, ctx: &mut Ctx) -> Result<Tensor> {
    if !ctx.train || keep >= 1.0 {
        return Ok(x.clone());
    }
    let n = x.dim(0)?;
    let mask: Vec<f32> = (0..n).map(|_| if ctx.rng.gen::<f32>() < keep { 1.0 / keep } else { 0.0 }).collect();
    x.broadcast_mul(&Tensor::from_vec(mask, (n, 1, 1, 1), x.device())?)
}

/// Inverted dropout on features.
pub fn dropout(x: &Tensor, drop: f32, ctx: &mut Ctx) -> Result<Tensor> {
    if !ctx.train || drop <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - drop;
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if ctx.rng.gen::<f32>() < keep { 1.0 / keep } else { 0.0 }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}
