//! Launches of our kernels (kernels/*.cu, compiled to PTX by build.rs) on
//! candle's CUDA stream, for the custom ops' `cuda_fwd`.
use crate::ops::kernels::Window;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Layout, Result, Shape};

const DEPTHWISE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/depthwise.ptx"));
const POOL_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pool.ptx"));
const SGD_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/sgd.ptx"));
const BATCH_NORM_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/batch_norm.ptx"));

/// `Geometry` of kernels/geometry.cuh, shared by every kernel.
#[repr(C)]
#[derive(Clone, Copy)]
struct Geometry {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    k: i32,
    stride: i32,
    dilation: i32,
    pad_top: i32,
    pad_left: i32,
    out_h: i32,
    out_w: i32,
}

// SAFETY: plain old data with the kernels' layout.
unsafe impl DeviceRepr for Geometry {}

fn geometry(n: usize, c: usize, win: &Window) -> Geometry {
    let i = |v: usize| v as i32;
    Geometry {
        n: i(n),
        c: i(c),
        h: i(win.in_h),
        w: i(win.in_w),
        k: i(win.k),
        stride: i(win.stride),
        dilation: i(win.dilation),
        pad_top: i(win.pad_top),
        pad_left: i(win.pad_left),
        out_h: i(win.out_h),
        out_w: i(win.out_w),
    }
}

/// The contiguous f32 elements of a storage, or an error naming the op.
fn f32_view<'a>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, f32>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))?;
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}

/// Which of the depthwise kernels; each reads its own inputs.
pub enum DepthwiseKernel {
    /// (x, weight) -> y.
    Forward,
    /// (grad_out, weight, x) -> grad_input.
    GradInput,
    /// (x, grad_out) -> grad_weight.
    GradWeight,
}

const THREADS: u32 = 256;

/// Runs one depthwise kernel on `inputs` (storages with their layouts, in the
/// order the kernel takes them); `n`, `c` describe the input x.
pub fn depthwise(kernel: DepthwiseKernel, inputs: &[(&CudaStorage, &Layout)], n: usize, c: usize, win: &Window, relu: bool) -> Result<(CudaStorage, Shape)> {
    let dev = inputs[0].0.device().clone();
    let views = inputs.iter().map(|(s, l)| f32_view(s, l, "depthwise-conv2d")).collect::<Result<Vec<_>>>()?;
    let g = geometry(n, c, win);
    let relu = relu as i32;
    let (name, count, shape, cfg) = match kernel {
        DepthwiseKernel::Forward => {
            let count = n * c * win.out_h * win.out_w;
            ("depthwise_fwd_f32", count, Shape::from((n, c, win.out_h, win.out_w)), LaunchConfig::for_num_elems(count as u32))
        }
        DepthwiseKernel::GradInput => {
            let count = n * c * win.in_h * win.in_w;
            ("depthwise_bwd_input_f32", count, Shape::from((n, c, win.in_h, win.in_w)), LaunchConfig::for_num_elems(count as u32))
        }
        DepthwiseKernel::GradWeight => {
            let count = c * win.k * win.k;
            let cfg = LaunchConfig { grid_dim: (count as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: THREADS * 4 };
            ("depthwise_bwd_weight_f32", count, Shape::from((c, 1, win.k, win.k)), cfg)
        }
    };
    let func = dev.get_or_load_custom_func(name, "enas_depthwise", DEPTHWISE_PTX)?;
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(count)? };
    let mut b = func.builder();
    for v in &views {
        b.arg(v);
    }
    b.arg(&out);
    b.arg(&g);
    b.arg(&relu);
    // SAFETY: the arguments match the kernel's signature in kernels/depthwise.cu.
    unsafe { b.launch(cfg) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev), shape))
}

/// Pooling forward (`x` -> y) or, with `grad` (`x`, grad_out), its backward -> grad_input.
pub fn pool(x: (&CudaStorage, &Layout), grad: Option<(&CudaStorage, &Layout)>, n: usize, c: usize, win: &Window, is_max: bool) -> Result<(CudaStorage, Shape)> {
    let dev = x.0.device().clone();
    let xv = f32_view(x.0, x.1, "pool2d")?;
    let g = geometry(n, c, win);
    let is_max = is_max as i32;
    let (name, count, shape) = match grad {
        None => ("pool_fwd_f32", n * c * win.out_h * win.out_w, Shape::from((n, c, win.out_h, win.out_w))),
        Some(_) => ("pool_bwd_f32", n * c * win.in_h * win.in_w, Shape::from((n, c, win.in_h, win.in_w))),
    };
    let func = dev.get_or_load_custom_func(name, "enas_pool", POOL_PTX)?;
    // SAFETY: every element is written by the kernel.
    let out = unsafe { dev.alloc::<f32>(count)? };
    let gv = grad.map(|(s, l)| f32_view(s, l, "pool2d")).transpose()?;
    let mut b = func.builder();
    b.arg(&xv);
    if let Some(gv) = &gv {
        b.arg(gv);
    }
    b.arg(&out);
    b.arg(&g);
    b.arg(&is_max);
    // SAFETY: the arguments match the kernel's signature in kernels/pool.cu.
    unsafe { b.launch(LaunchConfig::for_num_elems(count as u32)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev), shape))
}

/// Which half of the in-place SGD step (kernels/sgd.cu).
pub enum SgdKernel {
    /// dst = velocity; (gradient, weight) read.
    Velocity,
    /// dst = weight; (gradient, velocity) read.
    Weight,
}

/// One in-place SGD kernel over a variable's elements.
pub fn sgd(
    kernel: SgdKernel,
    dst: (&mut CudaStorage, &Layout),
    a: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    step: &crate::ops::kernels::sgd::SgdStep,
) -> Result<()> {
    let (d_start, d_end) = dst.1.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("sgd: the updated tensor must be contiguous".into()))?;
    let n = (d_end - d_start) as i64;
    let dev = dst.0.device().clone();
    let (av, bv) = (f32_view(a.0, a.1, "sgd")?, f32_view(b.0, b.1, "sgd")?);
    let mut dv = dst.0.as_cuda_slice_mut::<f32>()?.slice_mut(d_start..d_end);
    let (lr, mu, wd, lr_wd) = (step.lr as f32, step.momentum as f32, step.weight_decay as f32, (step.lr * step.weight_decay) as f32);
    let (decoupled, momentum, nesterov) = (step.decoupled as i32, (step.momentum > 0.0) as i32, step.nesterov as i32);
    let name = match kernel {
        SgdKernel::Velocity => "sgd_velocity_f32",
        SgdKernel::Weight => "sgd_weight_f32",
    };
    let func = dev.get_or_load_custom_func(name, "enas_sgd", SGD_PTX)?;
    let mut b = func.builder();
    b.arg(&mut dv);
    b.arg(&av);
    b.arg(&bv);
    b.arg(&n);
    match kernel {
        SgdKernel::Velocity => {
            b.arg(&mu);
            b.arg(&wd);
            b.arg(&decoupled);
        }
        SgdKernel::Weight => {
            b.arg(&lr);
            b.arg(&mu);
            b.arg(&wd);
            b.arg(&lr_wd);
            b.arg(&decoupled);
            b.arg(&momentum);
            b.arg(&nesterov);
        }
    }
    // SAFETY: the arguments match the kernels' signatures in kernels/sgd.cu;
    // the kernels touch elements 0..n of each view only.
    unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
    Ok(())
}

/// Sets up a CUDA device for training on its one stream (issue 20, item 1):
/// cudarc's event tracking off (it records two events per buffer so that
/// other streams can wait on it; candle runs everything on one stream), and
/// the default memory pool's release threshold at its maximum, so freed
/// memory stays in the pool across the step's syncs instead of going back
/// to the OS and being mapped again next step. Call before any tensor is
/// created on the device: tracking is decided per buffer at its creation.
pub fn prepare(device: &candle_core::CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    // SAFETY: candle issues every op on this device's one stream, so no
    // buffer is ever used from a stream that would need its events.
    unsafe { device.disable_event_tracking() };
    let stream = device.cuda_stream();
    let mut threshold = u64::MAX;
    // SAFETY: the pool is the device's own default pool, and the attribute
    // takes a pointer to a u64 that outlives the call.
    unsafe {
        let pool = result::device::get_default_mem_pool(stream.context().cu_device()).w()?;
        let value = (&mut threshold as *mut u64).cast::<std::ffi::c_void>();
        result::mem_pool::set_attribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, value).w()?;
    }
    Ok(())
}

/// NCHW as batch norm's kernels see it: batch, channels, pixels per plane.
#[derive(Clone, Copy)]
pub struct Planes {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl Planes {
    pub fn of(l: &Layout) -> Result<Planes> {
        let (n, c, h, w) = l.shape().dims4()?;
        Ok(Planes { n, c, hw: h * w })
    }

    fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// One block of THREADS per channel, with a double per thread of shared memory.
    fn per_channel(&self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.c as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: THREADS * 8 }
    }
}

/// Batch norm forward (kernels/batch_norm.cu): x, gamma, beta -> y (ReLU'd
/// with `relu`) and the batch statistics, (2, C): means, then variances.
pub fn batch_norm_forward(
    x: (&CudaStorage, &Layout),
    gamma: (&CudaStorage, &Layout),
    beta: (&CudaStorage, &Layout),
    eps: f32,
    relu: bool,
) -> Result<(CudaStorage, CudaStorage)> {
    let op = "batch-norm-train";
    let dev = x.0.device().clone();
    let p = Planes::of(x.1)?;
    let (xv, gv, bv) = (f32_view(x.0, x.1, op)?, f32_view(gamma.0, gamma.1, op)?, f32_view(beta.0, beta.1, op)?);
    let (n, c, hw, relu) = (p.n as i32, p.c as i32, p.hw as i32, relu as i32);
    // SAFETY: every element of both is written by the kernels below.
    let (stats, y) = unsafe { (dev.alloc::<f32>(2 * p.c)?, dev.alloc::<f32>(p.len())?) };
    let func = dev.get_or_load_custom_func("bn_stats_f32", "enas_batch_norm", BATCH_NORM_PTX)?;
    let mut b = func.builder();
    b.arg(&xv).arg(&stats).arg(&n).arg(&c).arg(&hw);
    // SAFETY: the arguments match bn_stats_f32 in kernels/batch_norm.cu.
    unsafe { b.launch(p.per_channel()) }.w()?;
    let func = dev.get_or_load_custom_func("bn_apply_f32", "enas_batch_norm", BATCH_NORM_PTX)?;
    let mut b = func.builder();
    b.arg(&xv).arg(&stats).arg(&gv).arg(&bv).arg(&y).arg(&n).arg(&c).arg(&hw).arg(&eps).arg(&relu);
    // SAFETY: the arguments match bn_apply_f32 in kernels/batch_norm.cu.
    unsafe { b.launch(LaunchConfig::for_num_elems(p.len() as u32)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(y, dev.clone()), CudaStorage::wrap_cuda_slice(stats, dev)))
}

/// The storages batch norm's backward reads: the forward's input, output
/// and statistics, and the output's gradient.
pub struct BatchNormSaved<'a> {
    pub x: (&'a CudaStorage, &'a Layout),
    pub y: (&'a CudaStorage, &'a Layout),
    pub stats: (&'a CudaStorage, &'a Layout),
    pub grad: (&'a CudaStorage, &'a Layout),
}

/// Batch norm's gradient sums, (2, C): sum(dy) (beta's gradient), then
/// sum(dy x_hat) (gamma's), dy masked where y <= 0 with `relu`.
pub fn batch_norm_grad_sums(saved: &BatchNormSaved, eps: f32, relu: bool) -> Result<CudaStorage> {
    let op = "batch-norm-grad-sums";
    let dev = saved.x.0.device().clone();
    let p = Planes::of(saved.x.1)?;
    let [xv, gv, yv, sv] = [saved.x, saved.grad, saved.y, saved.stats].map(|(s, l)| f32_view(s, l, op));
    let (xv, gv, yv, sv) = (xv?, gv?, yv?, sv?);
    let (n, c, hw, relu) = (p.n as i32, p.c as i32, p.hw as i32, relu as i32);
    // SAFETY: every element is written by the kernel.
    let sums = unsafe { dev.alloc::<f32>(2 * p.c)? };
    let func = dev.get_or_load_custom_func("bn_grad_sums_f32", "enas_batch_norm", BATCH_NORM_PTX)?;
    let mut b = func.builder();
    b.arg(&xv).arg(&gv).arg(&yv).arg(&sv).arg(&sums).arg(&n).arg(&c).arg(&hw).arg(&eps).arg(&relu);
    // SAFETY: the arguments match bn_grad_sums_f32 in kernels/batch_norm.cu.
    unsafe { b.launch(p.per_channel()) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(sums, dev))
}

/// Batch norm's input gradient from the saved storages, gamma and the gradient sums.
pub fn batch_norm_grad_input(
    saved: &BatchNormSaved,
    gamma: (&CudaStorage, &Layout),
    sums: (&CudaStorage, &Layout),
    eps: f32,
    relu: bool,
) -> Result<CudaStorage> {
    let op = "batch-norm-grad-input";
    let dev = saved.x.0.device().clone();
    let p = Planes::of(saved.x.1)?;
    let [xv, gv, yv, sv, gammav, sumsv] = [saved.x, saved.grad, saved.y, saved.stats, gamma, sums].map(|(s, l)| f32_view(s, l, op));
    let (xv, gv, yv, sv, gammav, sumsv) = (xv?, gv?, yv?, sv?, gammav?, sumsv?);
    let (n, c, hw, relu) = (p.n as i32, p.c as i32, p.hw as i32, relu as i32);
    // SAFETY: every element is written by the kernel.
    let dx = unsafe { dev.alloc::<f32>(p.len())? };
    let func = dev.get_or_load_custom_func("bn_grad_input_f32", "enas_batch_norm", BATCH_NORM_PTX)?;
    let mut b = func.builder();
    b.arg(&xv).arg(&gv).arg(&yv).arg(&sv).arg(&gammav).arg(&sumsv).arg(&dx).arg(&n).arg(&c).arg(&hw).arg(&eps).arg(&relu);
    // SAFETY: the arguments match bn_grad_input_f32 in kernels/batch_norm.cu.
    unsafe { b.launch(LaunchConfig::for_num_elems(p.len() as u32)) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(dx, dev))
}

/// One variable of `sgd_all`'s table: `SgdEntry` of kernels/sgd.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct SgdEntry {
    w: u64,
    g: u64,
    v: u64,
    n: i64,
}

// SAFETY: plain old data with the kernel's layout.
unsafe impl DeviceRepr for SgdEntry {}

/// A tensor's first element's device address and its element count (its
/// layout must be contiguous).
fn address(t: &candle_core::Tensor, stream: &candle_core::cuda_backend::cudarc::driver::CudaStream) -> Result<(u64, i64)> {
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(s) = &*storage else { candle_core::bail!("sgd: a variable or gradient is not on the GPU") };
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("sgd: tensors must be contiguous".into()))?;
    let (ptr, _sync) = s.as_cuda_slice::<f32>()?.device_ptr(stream);
    Ok((ptr + (start * 4) as u64, (end - start) as i64))
}

/// Clips every gradient by the global norm (to `max_norm`; none when it is
/// 0) and takes one SGD step on every variable, on the device in three
/// launches (kernels/sgd.cu): the gradients' square sums, the clip factor,
/// then the update of each (weight, gradient, velocity) of `vars`. The
/// velocities are read and written only with momentum.
pub fn sgd_all(
    vars: &[(&candle_core::Tensor, &candle_core::Tensor, &candle_core::Tensor)],
    step: &crate::ops::kernels::sgd::SgdStep,
    max_norm: f64,
) -> Result<()> {
    let Some((first, _, _)) = vars.first() else { return Ok(()) };
    let candle_core::Device::Cuda(dev) = first.device() else { candle_core::bail!("sgd: the variables are not on the GPU") };
    let stream = dev.cuda_stream();
    let mut entries = Vec::with_capacity(vars.len());
    let mut longest = 1;
    for (w, g, v) in vars {
        let ((w, n), (g, gn), (v, vn)) = (address(w, &stream)?, address(g, &stream)?, address(v, &stream)?);
        if gn != n || (step.momentum > 0.0 && vn != n) {
            candle_core::bail!("sgd: a gradient or velocity of {gn} or {vn} elements for a variable of {n}");
        }
        entries.push(SgdEntry { w, g, v, n });
        longest = longest.max(n as usize);
    }
    let table = stream.clone_htod(&entries).w()?;
    let count = entries.len() as i32;
    // SAFETY: every element of both is written by the kernels below before it is read.
    let (partial, coef) = unsafe { (dev.alloc::<f64>(entries.len())?, dev.alloc::<f32>(1)?) };
    let per_block = LaunchConfig { grid_dim: (count as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: THREADS * 8 };
    let func = dev.get_or_load_custom_func("grad_sq_sums_f32", "enas_sgd", SGD_PTX)?;
    let mut b = func.builder();
    b.arg(&table).arg(&partial);
    // SAFETY: the arguments match grad_sq_sums_f32; each entry's addresses and length come from its tensor.
    unsafe { b.launch(per_block) }.w()?;
    let func = dev.get_or_load_custom_func("clip_coefficient_f32", "enas_sgd", SGD_PTX)?;
    let mut b = func.builder();
    b.arg(&partial).arg(&count).arg(&max_norm).arg(&coef);
    // SAFETY: the arguments match clip_coefficient_f32.
    unsafe { b.launch(LaunchConfig { grid_dim: (1, 1, 1), ..per_block }) }.w()?;
    let (lr, mu, wd, lr_wd) = (step.lr as f32, step.momentum as f32, step.weight_decay as f32, (step.lr * step.weight_decay) as f32);
    let (decoupled, momentum, nesterov) = (step.decoupled as i32, (step.momentum > 0.0) as i32, step.nesterov as i32);
    let func = dev.get_or_load_custom_func("sgd_all_f32", "enas_sgd", SGD_PTX)?;
    let mut b = func.builder();
    b.arg(&table).arg(&coef).arg(&lr).arg(&mu).arg(&wd).arg(&lr_wd).arg(&decoupled).arg(&momentum).arg(&nesterov);
    let chunks = longest.div_ceil(THREADS as usize * 8).min(1024) as u32;
    // SAFETY: the arguments match sgd_all_f32; it writes the weights and
    // velocities in place, which nothing else touches during the step (one
    // stream, and the step holds every tensor it updates).
    unsafe { b.launch(LaunchConfig { grid_dim: (chunks, count as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    Ok(())
}
