//! The macro supernet's layers in CPU training as one op of candle's graph,
//! from the stem's output to the last layer's (skips summed). candle's
//! backward gives every input of every op a zeroed gradient and adds the
//! op's contribution into it, on the calling thread alone (cli's thread
//! settings): a seventh of a macro step. Here the layers run outside the
//! graph (`MacroOp::forward_taped`, ops::sum_bn_taped, ops::reduce_bn_taped)
//! and the op's backward walks them in reverse itself: a tensor's first
//! gradient is taken as it is, later ones added in place over both threads.
use super::layers::{BatchNorm, FactorizedReduce};
use super::macro_net::MacroOp;
use super::macro_op::OpTape;
use crate::ops::{self, ReduceBnTape, SumBnTape};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// One step of the layers: it reads `inputs` (tensors of the trunk) and makes `out`.
struct Step {
    inputs: Vec<usize>,
    out: usize,
    kind: StepKind,
    /// The parameters it used (in the graph, flattened), packed by `finish`.
    params: Vec<Tensor>,
    /// Whether the output feeds the last layer's (set by `finish`; only these get gradients).
    live: bool,
}

enum StepKind {
    /// A layer's op on its input.
    Op(OpTape),
    /// The batch norm of the op's output (the first input) plus the skips.
    Sum(SumBnTape),
    /// A factorized reduction at a pooling layer.
    Reduce(ReduceBnTape),
}

/// In `Trunk::states`: an output that was not reduced at a pooling layer, as no later layer reads it.
const UNREAD: usize = usize::MAX;

/// The layers' forward as it runs, then `finish` makes it one op.
pub(super) struct Trunk {
    /// Outside the graph: the stem's output, then every tensor a step made.
    tensors: Vec<Tensor>,
    /// The tensor of each layer's output so far (the stem's first), reduced at the pooling layers.
    states: Vec<usize>,
    steps: Vec<Step>,
}

impl Trunk {
    pub(super) fn new(stem: &Tensor) -> Result<Trunk> {
        Ok(Trunk { tensors: vec![stem.detach().contiguous()?], states: vec![0], steps: Vec::new() })
    }

    fn push(&mut self, y: Tensor, inputs: Vec<usize>, kind: StepKind, params: Vec<Tensor>) -> usize {
        self.tensors.push(y);
        let out = self.tensors.len() - 1;
        self.steps.push(Step { inputs, out, kind, params, live: false });
        out
    }

    /// One layer: `op` on the last output, then, unless it is the first
    /// layer (`bn` none), `bn` of its sum with the earlier outputs `skips` picks.
    pub(super) fn layer(&mut self, op: &MacroOp, bn: Option<&BatchNorm>, skips: &[bool]) -> Result<()> {
        let input = *self.states.last().expect("the stem is always there");
        if input == UNREAD || skips.iter().zip(&self.states).any(|(s, &t)| *s && t == UNREAD) {
            candle_core::bail!("macro layers: a layer reads an output that was not reduced");
        }
        let (y, params, tape) = op.forward_taped(&self.tensors[input])?;
        let mut out = self.push(y, vec![input], StepKind::Op(tape), params);
        if let Some(bn) = bn {
            let mut inputs = vec![out];
            inputs.extend(skips.iter().zip(&self.states).filter(|(s, _)| **s).map(|(_, &t)| t));
            let skip_tensors: Vec<&Tensor> = inputs[1..].iter().map(|&t| &self.tensors[t]).collect();
            let affine = bn.affine()?;
            let (y, stats, tape) = ops::sum_bn_taped(&self.tensors[out], &skip_tensors, &affine, BatchNorm::EPS)?;
            bn.update_running_of(&y, &stats)?;
            out = self.push(y, inputs, StepKind::Sum(tape), vec![affine]);
        }
        self.states.push(out);
        Ok(())
    }

    /// Every output so far that a later layer reads (`read_later(j)`) reduced,
    /// output j by `reductions[j]`; the others are not computed and can no
    /// longer be read. Such a reduction changes nothing but its own running
    /// statistics, which the supernet never uses (every batch norm of the
    /// search normalises with the batch).
    pub(super) fn reduce(&mut self, reductions: &[FactorizedReduce], read_later: impl Fn(usize) -> bool) -> Result<()> {
        for (j, r) in reductions.iter().enumerate().take(self.states.len()) {
            if !read_later(j) {
                self.states[j] = UNREAD;
                continue;
            }
            let input = self.states[j];
            let (y, params, tape) = r.forward_taped(&self.tensors[input])?;
            self.states[j] = self.push(y, vec![input], StepKind::Reduce(tape), params);
        }
        Ok(())
    }

    /// The last layer's output as one op on `stem` (the tensor `new` was
    /// given, in the graph) and the parameters of every step it depends on.
    pub(super) fn finish(mut self, stem: &Tensor) -> Result<Tensor> {
        let last = *self.states.last().expect("the stem is always there");
        // A step whose output nothing after it reads would get no gradient, as in the graph (with unread
        // outputs left unreduced there is none today): its parameters are not packed.
        let mut live = vec![false; self.tensors.len()];
        live[last] = true;
        let mut packed = Vec::new();
        for step in self.steps.iter_mut().rev() {
            if live[step.out] {
                step.inputs.iter().for_each(|&t| live[t] = true);
                step.live = true;
                packed.extend(std::mem::take(&mut step.params).into_iter().rev());
            }
        }
        packed.reverse();
        let op = TrunkOp { tensors: self.tensors, steps: self.steps, last };
        stem.apply_op2(&Tensor::cat(&packed, 0)?, op)
    }
}

struct TrunkOp {
    tensors: Vec<Tensor>,
    steps: Vec<Step>,
    last: usize,
}

/// A tensor's gradient so far: its own (added into in place), or one that another tensor's slot holds too.
enum Grad {
    Own(Tensor),
    Shared(Tensor),
}

impl Grad {
    fn tensor(&self) -> &Tensor {
        match self {
            Grad::Own(t) | Grad::Shared(t) => t,
        }
    }
}

fn accumulate(slot: &mut Option<Grad>, g: Grad) -> Result<()> {
    *slot = Some(match (slot.take(), g) {
        (None, g) => g,
        (Some(Grad::Own(a)), g) | (Some(g), Grad::Own(a)) => {
            ops::add_into(&a, g.tensor())?;
            Grad::Own(a)
        }
        (Some(Grad::Shared(a)), Grad::Shared(b)) => Grad::Own(ops::sum_of(&a, &b)?),
    });
    Ok(())
}

impl CustomOp2 for TrunkOp {
    fn name(&self) -> &'static str {
        "macro-layers"
    }

    /// The layers ran before the op was built: this returns the last output.
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let t = &self.tensors[self.last];
        let data = ops::with_f32(&[t], self.name(), |data| Ok(data[0].to_vec()))?;
        Ok((CpuStorage::F32(data), t.shape().clone()))
    }

    fn bwd(&self, stem: &Tensor, _packed: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g: Vec<Option<Grad>> = (0..self.tensors.len()).map(|_| None).collect();
        g[self.last] = Some(Grad::Shared(grad.contiguous()?));
        let mut g_params = Vec::new();
        for step in self.steps.iter().rev().filter(|s| s.live) {
            let y = &self.tensors[step.out];
            // Whatever a step's output feeds has run its backward by now.
            let g_out = match g[step.out].take() {
                Some(g) => g,
                None => Grad::Own(y.zeros_like()?),
            };
            let g_out = g_out.tensor();
            match &step.kind {
                StepKind::Op(tape) => {
                    let (g_in, g_p) = tape.backward(y, g_out)?;
                    accumulate(&mut g[step.inputs[0]], Grad::Own(g_in))?;
                    g_params.push(g_p);
                }
                StepKind::Sum(tape) => {
                    // The sum's gradient is that of the op's output and of every skip, shared.
                    let (g_sum, g_affine) = tape.backward(y, g_out)?;
                    for &t in &step.inputs {
                        accumulate(&mut g[t], Grad::Shared(g_sum.clone()))?;
                    }
                    g_params.push(g_affine);
                }
                StepKind::Reduce(tape) => {
                    let (g_in, g_w, g_affine) = tape.backward(y, g_out)?;
                    accumulate(&mut g[step.inputs[0]], Grad::Own(g_in))?;
                    g_params.push(Tensor::cat(&[g_w.flatten_all()?, g_affine], 0)?);
                }
            }
        }
        g_params.reverse();
        let g_stem = match g[0].take() {
            Some(Grad::Own(t) | Grad::Shared(t)) => t,
            None => stem.zeros_like()?,
        };
        Ok((Some(g_stem), Some(Tensor::cat(&g_params, 0)?)))
    }
}
