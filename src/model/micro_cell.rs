//! A searched cell in training, on the CPU, as one op of candle's graph: its
//! nodes and its final ReLU, 1x1 convolution and batch norm over the unused
//! states. candle's backward gives every tensor of its graph a zeroed
//! gradient and adds each contribution into it, two passes over memory per
//! edge, and a cell has some thirty edges. Here the branches run outside the
//! graph (their backward kept: ops::SepTape, ops::pool2d_grad,
//! ops::ConvBnTape) and the op's backward walks the cell in reverse itself: a
//! node's gradient goes to both its branches as it is, and a state's
//! gradients are summed only where it feeds more than one branch.
use super::layers::BatchNorm;
use super::micro_supernet::SharedConvs;
use crate::ops::{self, BatchStats, ConvBnTape, PoolKind, SepTape, Window};
use crate::space::Cell;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, PoisonError};

/// What one branch ran, for its backward.
enum Branch {
    Sep(SepTape),
    Pool(PoolKind, Window),
    Identity,
}

struct CellOp {
    /// Outside the graph: the cell's two inputs, then each node's output.
    states: Vec<Tensor>,
    /// Per node, its branches x and y: the state each reads and what it ran.
    branches: Vec<[(usize, Branch); 2]>,
    /// The states the final convolution reads, concatenated in this order.
    unused: Vec<usize>,
    /// The final convolution's weight (C, k C) and its batch norm's gamma and beta, outside the graph.
    final_w: Tensor,
    final_affine: Tensor,
    /// Filled by the forward: the final convolution's backward, and its batch statistics.
    final_conv: Mutex<Option<ConvBnTape>>,
    final_stats: Arc<Mutex<Option<BatchStats>>>,
}

/// The output of `cell` (the batch norm of the final 1x1 convolution `final_w`
/// (C, k C) of ReLU of the concatenated `unused` states) run on the calibrated
/// inputs `s0` and `s1` with the shared weights `convs`.
pub(super) fn cell_train(
    s0: &Tensor,
    s1: &Tensor,
    convs: &[[Vec<SharedConvs>; 2]],
    cell: &Cell,
    unused: &[usize],
    final_w: &Tensor,
    final_bn: &BatchNorm,
) -> Result<Tensor> {
    let mut states = vec![s0.detach().contiguous()?, s1.detach().contiguous()?];
    let (mut branches, mut params) = (Vec::with_capacity(convs.len()), Vec::new());
    for (node, n) in convs.iter().zip(&cell.nodes) {
        let mut run = |b: usize, id: usize, op: usize| -> Result<(Tensor, (usize, Branch))> {
            let x = &states[id];
            let (_, _, h, w) = x.dims4()?;
            let pool = |kind| -> Result<(Tensor, Branch)> {
                let win = Window::same(h, w, 3, 1, 1);
                Ok((ops::pool2d(x, kind, win)?, Branch::Pool(kind, win)))
            };
            let (y, branch) = match op {
                0 | 1 => {
                    let sep = if op == 0 { &node[b][id].sep3 } else { &node[b][id].sep5 };
                    params.extend(sep.packed_params()?);
                    let (y, tape) = sep.forward_taped(x)?;
                    (y, Branch::Sep(tape))
                }
                2 => pool(PoolKind::Avg)?,
                3 => pool(PoolKind::Max)?,
                _ => (x.clone(), Branch::Identity),
            };
            Ok((y, (id, branch)))
        };
        let (x, bx) = run(0, n.x_id, n.x_op)?;
        let (y, by) = run(1, n.y_id, n.y_op)?;
        states.push(ops::sum_of(&x, &y)?);
        branches.push([bx, by]);
    }
    let affine = final_bn.affine()?;
    params.extend([final_w.flatten_all()?, affine.clone()]);
    let final_stats = Arc::new(Mutex::new(None));
    let op = CellOp {
        states,
        branches,
        unused: unused.to_vec(),
        final_w: final_w.detach(),
        final_affine: affine.detach(),
        final_conv: Mutex::new(None),
        final_stats: final_stats.clone(),
    };
    let y = s0.apply_op3(s1, &Tensor::cat(&params, 0)?, op)?;
    let stats = final_stats.lock().unwrap_or_else(PoisonError::into_inner).take();
    final_bn.update_running_of(&y, &stats.ok_or_else(|| candle_core::Error::Msg("micro cell: no batch statistics".into()))?)?;
    Ok(y)
}

/// `slot + g`, or `g` for the first contribution. Gradients are added in
/// place: each slot holds a tensor of the backward's own, or a node's gradient
/// passed on by an identity branch, which nothing reads once its node is done.
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    match slot {
        None => *slot = Some(g),
        // An identity branch and another of the same node on one state: the node's gradient twice.
        Some(a) if a.id() == g.id() => *slot = Some(ops::sum_of(a, &g)?),
        Some(a) => ops::add_into(a, &g)?,
    }
    Ok(())
}

impl CustomOp3 for CellOp {
    fn name(&self) -> &'static str {
        "micro-cell"
    }

    /// The nodes ran before the op was built: this concatenates the unused
    /// states and runs the final convolution and batch norm.
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = self.states[0].dims4()?;
        let (plane, k) = (c * h * w, self.unused.len());
        let unused: Vec<&Tensor> = self.unused.iter().map(|&u| &self.states[u]).collect();
        let concat = ops::with_f32(&unused, self.name(), |parts| {
            // SAFETY: every image's k planes are copied in.
            let (concat, ()) = unsafe {
                ops::filled(n * k * plane, |concat| {
                    concat.par_chunks_mut(k * plane).enumerate().for_each(|(b, o)| {
                        for (dst, src) in o.chunks_exact_mut(plane).zip(parts) {
                            dst.copy_from_slice(&src[b * plane..(b + 1) * plane]);
                        }
                    })
                })
            };
            Ok(concat)
        })?;
        let concat = Tensor::from_vec(concat, (n, k * c, h, w), &candle_core::Device::Cpu)?;
        let (y, stats, tape) = ops::conv_bn_taped(&concat, &self.final_w, &self.final_affine, true, false, BatchNorm::EPS)?;
        *self.final_conv.lock().unwrap_or_else(PoisonError::into_inner) = Some(tape);
        *self.final_stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
        Ok(y)
    }

    fn bwd(&self, s0: &Tensor, s1: &Tensor, _packed: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g_concat, g_w, g_affine) = match &*self.final_conv.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(tape) => tape.backward(res, grad)?,
            None => candle_core::bail!("{}: backward before forward", self.name()),
        };
        let mut g: Vec<Option<Tensor>> = vec![None; self.states.len()];
        for (&u, g_u) in self.unused.iter().zip(ops::channel_blocks(&g_concat, self.unused.len())?) {
            accumulate(&mut g[u], g_u)?;
        }
        // The separable branches' parameter gradients, last branch first.
        let mut g_params = Vec::new();
        for (node, pair) in self.branches.iter().enumerate().rev() {
            // Every node feeds a later one or the output; zeros keep the parameters' order regardless.
            let g_node = match g[node + 2].take() {
                Some(g) => g,
                None => self.states[node + 2].zeros_like()?,
            };
            for (id, branch) in pair.iter().rev() {
                let g_in = match branch {
                    Branch::Sep(tape) => {
                        let (g_in, g_p) = tape.backward(&g_node)?;
                        g_params.push(g_p);
                        g_in
                    }
                    Branch::Pool(kind, win) => ops::pool2d_grad(&self.states[*id], *kind, *win, &g_node)?,
                    Branch::Identity => g_node.clone(),
                };
                accumulate(&mut g[*id], g_in)?;
            }
        }
        g_params.reverse();
        g_params.extend([g_w.flatten_all()?, g_affine]);
        let g_packed = Tensor::cat(&g_params, 0)?;
        let or_zeros = |g: Option<Tensor>, s: &Tensor| g.map_or_else(|| s.zeros_like(), Ok);
        let [g0, g1] = [g[0].take(), g[1].take()];
        Ok((Some(or_zeros(g0, s0)?), Some(or_zeros(g1, s1)?), Some(g_packed)))
    }
}
