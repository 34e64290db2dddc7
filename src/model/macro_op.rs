//! A macro layer's convolution branch in CPU training as one op of candle's
//! graph: the input 1x1 convolution and BN (ReLU fused into what follows),
//! then the k x k convolution, BN and ReLU. Between them the 1x1's output was
//! a tensor of candle's graph, whose backward gave it a zeroed gradient and an
//! add; here both parts run outside the graph (ops::ConvBnTape) and the op's
//! backward chains them. The same float operations as the two ops, forward
//! and backward (tests/supernet.rs).
use super::layers::BatchNorm;
use crate::ops::{self, BatchStats, ConvBnTape};
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
    let Some(conv_stats) = stats.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        candle_core::bail!("macro conv branch: no batch statistics")
    };
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
