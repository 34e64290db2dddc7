//! The ground floor of the ops: reading and writing the f32 data behind
//! candle's CPU storages, output buffers, and turning an op's buffer back
//! into a tensor.
use candle_core::{CpuStorage, Layout, Result};

/// The contiguous f32 data behind a storage, or an error naming the op.
pub(crate) fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{op}: only f32 is supported, got another dtype") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// The contiguous f32 data behind a storage an in-place op writes, or an error naming the op.
pub(crate) fn f32_data_mut<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{op}: only f32 is supported, got another dtype") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{op}: the updated tensor must be contiguous"),
    }
}

/// A zeroed buffer for an op's output, zeroed by the worker threads: as
/// `vec![0.0; n]` it is one serial memset on the calling thread, while the
/// workers wait for the op (a few percent of a search step).
pub(crate) fn zeros(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut().par_chunks_mut(1 << 15).for_each(|c| {
        c.iter_mut().for_each(|x| {
            x.write(0.0);
        })
    });
    // SAFETY: every one of the n elements was written just above.
    unsafe { v.set_len(n) };
    v
}

/// An op's output of `n` floats, written by `fill` into memory that was not
/// zeroed first (zeroing is one more pass over memory: 13% of a micro search
/// step), and what `fill` returns. The floats are handed to `fill` as spare
/// capacity, and the vector takes them as its elements only after `fill` returns.
///
/// # Safety
/// `fill` writes every element of its slice and reads none before writing it.
pub(crate) unsafe fn filled<R>(n: usize, fill: impl FnOnce(&mut [f32]) -> R) -> (Vec<f32>, R) {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let spare: &mut [std::mem::MaybeUninit<f32>] = &mut v.spare_capacity_mut()[..n];
    // SAFETY: MaybeUninit<f32> has the layout of f32, and by this function's
    // contract nothing is read from the slice before it is written.
    let out = unsafe { &mut *(spare as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
    let r = fill(out);
    // SAFETY: `fill` has written all n elements (this function's contract).
    unsafe { v.set_len(n) };
    (v, r)
}

/// `f` on the contiguous f32 data of the CPU tensors `ts`, or an error naming `op`.
pub(crate) fn with_f32<R>(ts: &[&candle_core::Tensor], op: &str, f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut data = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        let candle_core::Storage::Cpu(s) = &**storage else { candle_core::bail!("{op}: CPU only") };
        data.push(f32_data(s, layout, op)?);
    }
    f(&data)
}

/// `x` (N, k C, H, W) as k contiguous tensors (N, C, H, W), channel block by
/// block, copied over the worker threads (a narrowed tensor's copy runs on
/// the calling thread alone).
pub fn channel_blocks(x: &candle_core::Tensor, k: usize) -> Result<Vec<candle_core::Tensor>> {
    use rayon::prelude::*;
    let (n, kc, h, w) = x.dims4()?;
    if k == 0 || kc % k != 0 || !x.device().is_cpu() {
        candle_core::bail!("channel_blocks: {kc} channels on {:?} do not split into {k} blocks on the CPU", x.device())
    }
    let block = kc / k * h * w;
    with_f32(&[&x.contiguous()?], "channel_blocks", |data| {
        (0..k)
            .map(|j| {
                // SAFETY: every image's block is copied in.
                let (out, ()) = unsafe {
                    filled(n * block, |out| {
                        out.par_chunks_mut(block).enumerate().for_each(|(b, o)| o.copy_from_slice(&data[0][(b * k + j) * block..][..block]))
                    })
                };
                candle_core::Tensor::from_vec(out, (n, kc / k, h, w), &candle_core::Device::Cpu)
            })
            .collect()
    })
}

/// Splits the output of a backward op that returns both gradients flattened,
/// the input's then the weight's, into the two.
pub(crate) fn split_grads(both: &candle_core::Tensor, x: &candle_core::Tensor, w: &candle_core::Tensor) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let nx = x.elem_count();
    Ok((both.narrow(0, 0, nx)?.reshape(x.shape())?, both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?))
}

/// A contiguous f32 storage an op produced, as a tensor (no copy).
pub(crate) fn tensor(s: CpuStorage, shape: candle_core::Shape) -> Result<candle_core::Tensor> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("an f32 op gave another dtype") };
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}
