//! A macro layer's op outside candle's graph, for a block that does its own
//! backward (`macro_trunk`): `MacroOp::forward_taped` and `OpTape::backward`.
//!
//! And a macro layer's convolution branch in CPU training as one op of candle's
//! graph: the input 1x1 convolution and BN (ReLU fused into what follows),
//! then the k x k convolution, BN and ReLU. Between them the 1x1's output was
//! a tensor of candle's graph, whose backward gave it a zeroed gradient and an
//! add; here both parts run outside the graph (ops::ConvBnTape) and the op's
//! backward chains them. The same float operations as the two ops, forward
//! and backward (tests/supernet.rs).
use super::layers::BatchNorm;
use super::macro_net::{MacroOp, Op};
use crate::ops::{self, BatchStats, ConvBnTape, PoolKind, SepTape, Window};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex, PoisonError};

struct ConvBranch {
    /// The 1x1's backward and output, run before the op was built.
    inp: ConvBnTape,
    h: Tensor,
    /// The k x k's weight and (gamma; beta), outside the graph.
    conv: (Tensor, Tensor),
    /// Filled by the forward: the k x k's backward and batch statistics.
    tape: Mutex<Option<ConvBnTape>>,
    stats: Arc<Mutex<Option<BatchStats>>>,
}

/// ReLU(BN(conv_w * ReLU(BN(inp_w * x)))), the two batch norms' running statistics updated.
pub(super) fn conv_branch_train(x: &Tensor, inp_w: &Tensor, inp_bn: &BatchNorm, conv_w: &Tensor, conv_bn: &BatchNorm) -> Result<Tensor> {
    let (inp_affine, conv_affine) = (inp_bn.affine()?, conv_bn.affine()?);
    let ((h, shape), inp_stats, inp) = ops::conv_bn_taped(x, inp_w, &inp_affine, false, false, BatchNorm::EPS)?;
    let h = ops::storage_tensor(h, shape)?;
    inp_bn.update_running_of(&h, &inp_stats)?;
    let packed = Tensor::cat(&[inp_w.flatten_all()?, inp_affine, conv_w.flatten_all()?, conv_affine.clone()], 0)?;
    let stats = Arc::new(Mutex::new(None));
    let op = ConvBranch { inp, h, conv: (conv_w.detach(), conv_affine.detach()), tape: Mutex::new(None), stats: stats.clone() };
    let y = x.apply_op2(&packed, op)?;
    let Some(conv_stats) = stats.lock().unwrap_or_else(PoisonError::into_inner).take() else { candle_core::bail!("macro conv branch: no batch statistics") };
    conv_bn.update_running_of(&y, &conv_stats)?;
    Ok(y)
}

impl CustomOp2 for ConvBranch {
    fn name(&self) -> &'static str {
        "macro-conv-branch"
    }

    /// The 1x1 ran before the op was built: this runs the k x k on its output.
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, stats, tape) = ops::conv_bn_taped(&self.h, &self.conv.0, &self.conv.1, true, true, BatchNorm::EPS)?;
        *self.tape.lock().unwrap_or_else(PoisonError::into_inner) = Some(tape);
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
        Ok(y)
    }

    fn bwd(&self, _x: &Tensor, _packed: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (g_h, g_conv_w, g_conv_affine) = match &*self.tape.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tape) => tape.backward(res, grad)?,
            None => candle_core::bail!("{}: backward before forward", self.name()),
        };
        let (g_x, g_inp_w, g_inp_affine) = self.inp.backward(&self.h, &g_h)?;
        let g_packed = Tensor::cat(&[g_inp_w.flatten_all()?, g_inp_affine, g_conv_w.flatten_all()?, g_conv_affine], 0)?;
        Ok((Some(g_x), Some(g_packed)))
    }
}

/// What a macro op ran outside the graph: the input 1x1 convolution and BN,
/// its output `h`, and the branch after it.
pub(super) struct OpTape {
    inp: ConvBnTape,
    h: Tensor,
    branch: BranchTape,
}

enum BranchTape {
    Conv(ConvBnTape),
    Sep(SepTape),
    Pool(PoolKind, Window),
}

impl MacroOp {
    /// `forward(x, true)` on the CPU outside candle's graph (the batch norms'
    /// running statistics updated): the output, the parameters it used
    /// (flattened, in the order of `OpTape::backward`'s gradient), and the tape.
    pub(super) fn forward_taped(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>, OpTape)> {
        let inp_affine = self.inp_bn.affine()?;
        let relu = matches!(self.op, Op::Pool(_));
        let ((h, shape), stats, inp) = ops::conv_bn_taped(x, self.inp.weight(), &inp_affine, false, relu, BatchNorm::EPS)?;
        let h = ops::storage_tensor(h, shape)?;
        self.inp_bn.update_running_of(&h, &stats)?;
        let mut params = vec![self.inp.weight().flatten_all()?, inp_affine];
        let (y, branch) = match &self.op {
            Op::Conv(conv, bn) => {
                let affine = bn.affine()?;
                let ((y, shape), stats, tape) = ops::conv_bn_taped(&h, conv.weight(), &affine, true, true, BatchNorm::EPS)?;
                let y = ops::storage_tensor(y, shape)?;
                bn.update_running_of(&y, &stats)?;
                params.extend([conv.weight().flatten_all()?, affine]);
                (y, BranchTape::Conv(tape))
            }
            Op::Sep(dw, point, bn) => {
                let half = [bn.sep_half(dw, point.weight())];
                let (y, stats, tape) = ops::sep_conv_bn_taped(&h, &half, 1, true, BatchNorm::EPS)?;
                bn.update_running_of(&y, &stats[0])?;
                params.extend(ops::sep_params(&half)?);
                (y, BranchTape::Sep(tape))
            }
            Op::Pool(kind) => {
                let (_, _, hh, ww) = h.dims4()?;
                let win = Window::same(hh, ww, 3, 1, 1);
                (ops::pool2d(&h, *kind, win)?, BranchTape::Pool(*kind, win))
            }
        };
        Ok((y, params, OpTape { inp, h, branch }))
    }
}

impl OpTape {
    /// The gradients of the op's input and of its parameters (concatenated),
    /// given its output `y` and the output's gradient.
    pub(super) fn backward(&self, y: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut g_params = Vec::with_capacity(4);
        let g_h = match &self.branch {
            BranchTape::Conv(tape) => {
                let (g_h, g_w, g_affine) = tape.backward(y, grad)?;
                g_params.extend([g_w.flatten_all()?, g_affine]);
                g_h
            }
            BranchTape::Sep(tape) => {
                let (g_h, g_p) = tape.backward(grad)?;
                g_params.push(g_p);
                g_h
            }
            BranchTape::Pool(kind, win) => ops::pool2d_grad(&self.h, *kind, *win, grad)?,
        };
        let (g_x, g_w, g_affine) = self.inp.backward(&self.h, &g_h)?;
        g_params.splice(0..0, [g_w.flatten_all()?, g_affine]);
        Ok((g_x, Tensor::cat(&g_params, 0)?))
    }
}
