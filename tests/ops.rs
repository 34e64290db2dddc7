//! Custom ops against candle compositions (forward, to 1e-5) and against
//! central finite differences (backward).
mod common;

use candle_core::{Device, Tensor, Var};
use common::rand_tensor;
use enas::ops::{self, reference, PoolKind, Window};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Batch statistics as (mean, var) vectors.
fn host(s: &ops::BatchStats) -> (Vec<f32>, Vec<f32>) {
    (s.mean.to_vec1().unwrap(), s.var.to_vec1().unwrap())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Depthwise conv composed from candle: explicit (TF 'same') padding, then grouped conv2d.
fn depthwise_reference(x: &Tensor, w: &Tensor, stride: usize, dilation: usize) -> Tensor {
    let (_, c, h, wd) = x.dims4().unwrap();
    let k = w.dim(2).unwrap();
    let win = Window::same(h, wd, k, stride, dilation);
    let span = (k - 1) * dilation + 1;
    let pad_h = ((win.out_h - 1) * stride + span).saturating_sub(h);
    let pad_w = ((win.out_w - 1) * stride + span).saturating_sub(wd);
    let xp = x.pad_with_zeros(2, win.pad_top, pad_h - win.pad_top).unwrap().pad_with_zeros(3, win.pad_left, pad_w - win.pad_left).unwrap();
    xp.conv2d(w, 0, stride, dilation, c).unwrap()
}

#[test]
fn depthwise_forward_matches_grouped_conv() {
    for &(k, stride, dilation) in &[(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2), (3, 2, 2)] {
        for &(h, w) in &[(8, 8), (7, 9), (16, 16)] {
            let x = rand_tensor(&[2, 3, h, w], 1);
            let wt = rand_tensor(&[3, 1, k, k], 2);
            let ours = ops::depthwise_conv2d(&x, &wt, stride, dilation).unwrap();
            let theirs = depthwise_reference(&x, &wt, stride, dilation);
            let d = max_abs_diff(&ours, &theirs);
            assert!(d < 1e-5, "k{k} s{stride} d{dilation} {h}x{w}: max diff {d}");
        }
    }
}

#[test]
fn pools_match_padded_composition() {
    let x = rand_tensor(&[2, 4, 9, 7], 3);
    let d = max_abs_diff(&ops::max_pool2d(&x, 3, 1).unwrap(), &reference::max_pool3x3(&x).unwrap());
    assert!(d < 1e-5, "max pool diff {d}");
    let d = max_abs_diff(&ops::avg_pool2d(&x, 3, 1).unwrap(), &reference::avg_pool3x3(&x).unwrap());
    assert!(d < 1e-5, "avg pool diff {d}");
    // Corner: the 3x3 window holds 4 in-image pixels, so padding is excluded from the mean.
    let ones = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let avg = ops::avg_pool2d(&ones, 3, 1).unwrap();
    assert!(max_abs_diff(&avg, &ones) < 1e-6);
}

#[test]
fn strided_pools_keep_tensorflow_same_shapes() {
    let x = rand_tensor(&[1, 2, 8, 7], 4);
    let y = ops::max_pool2d(&x, 3, 2).unwrap();
    assert_eq!(y.dims(), &[1, 2, 4, 4]);
    // TF 'same', stride 2 on 8 rows pads one row after the image: output row 0 covers rows 0..3.
    let top_left = x.narrow(2, 0, 2).unwrap().narrow(3, 0, 2).unwrap().flatten_all().unwrap().max(0).unwrap();
    let got = y.narrow(2, 0, 1).unwrap().narrow(3, 0, 1).unwrap().flatten_all().unwrap().get(0).unwrap();
    assert_eq!(top_left.to_scalar::<f32>().unwrap(), got.to_scalar::<f32>().unwrap());
}

/// Checks d(sum(f(x) * r))/dx against central differences at a few entries.
fn check_grad(f: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, seed: u64, what: &str) {
    let x = Var::from_tensor(x0).unwrap();
    let out = f(x.as_tensor());
    let r = rand_tensor(out.dims(), seed);
    let loss = (out * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(x.as_tensor()).expect("gradient").flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let base = x0.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let eval = |v: &[f32]| -> f64 {
        let t = Tensor::from_slice(v, x0.dims(), &Device::Cpu).unwrap();
        (f(&t) * &r).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 7);
    let eps = 1e-2f32;
    for _ in 0..12 {
        let i = rng.gen_range(0..base.len());
        let mut p = base.clone();
        p[i] += eps;
        let mut m = base.clone();
        m[i] -= eps;
        let numeric = (eval(&p) - eval(&m)) / (2.0 * eps as f64);
        let analytic = g[i] as f64;
        assert!((numeric - analytic).abs() <= 2e-2 * (1.0 + numeric.abs()), "{what}: d/dx[{i}] analytic {analytic} vs numeric {numeric}");
    }
}

#[test]
fn depthwise_gradients_match_finite_differences() {
    // 12 x 13 at stride 1 runs the taps in groups of four blocks and a remainder.
    for &(k, stride, dilation, h, wd) in
        &[(3, 1, 1, 7, 8), (5, 1, 1, 7, 8), (3, 2, 1, 7, 8), (5, 2, 1, 7, 8), (3, 1, 2, 7, 8), (3, 1, 1, 12, 13), (5, 1, 1, 12, 13)]
    {
        let x = rand_tensor(&[2, 3, h, wd], 10);
        let w = rand_tensor(&[3, 1, k, k], 11);
        let what = format!("depthwise k{k} s{stride} d{dilation} {h}x{wd}");
        check_grad(&|x| ops::depthwise_conv2d(x, &w, stride, dilation).unwrap(), &x, 12, &format!("{what} input"));
        check_grad(&|w| ops::depthwise_conv2d(&x, w, stride, dilation).unwrap(), &w, 13, &format!("{what} weight"));
    }
}

#[test]
fn pool_gradients_match_finite_differences() {
    let x = rand_tensor(&[2, 3, 7, 6], 20);
    for stride in [1, 2] {
        check_grad(&|x| ops::max_pool2d(x, 3, stride).unwrap(), &x, 21, &format!("max pool s{stride}"));
        check_grad(&|x| ops::avg_pool2d(x, 3, stride).unwrap(), &x, 22, &format!("avg pool s{stride}"));
    }
    let win = Window::valid(7, 6, 5, 3);
    check_grad(&|x| ops::pool2d(x, PoolKind::Avg, win).unwrap(), &x, 23, "avg pool 5x5/3 valid");
}

/// Pooling by the definition, one pixel at a time: the output and the input's
/// gradient for upstream gradient `g` (max: to the window's first maximum in scan order).
fn pool_by_definition(x: &[f32], g: &[f32], (h, w): (usize, usize), win: Window, kind: PoolKind) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut gx) = (vec![0f32; win.out_h * win.out_w], vec![0f32; h * w]);
    for oy in 0..win.out_h {
        for ox in 0..win.out_w {
            let mut inside = Vec::new();
            for ky in 0..win.k {
                for kx in 0..win.k {
                    let iy = (oy * win.stride + ky * win.dilation) as isize - win.pad_top as isize;
                    let ix = (ox * win.stride + kx * win.dilation) as isize - win.pad_left as isize;
                    if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                        inside.push(iy as usize * w + ix as usize);
                    }
                }
            }
            let o = oy * win.out_w + ox;
            match kind {
                PoolKind::Max => {
                    let first = inside.iter().copied().fold(inside[0], |b, i| if x[i] > x[b] { i } else { b });
                    y[o] = x[first];
                    gx[first] += g[o];
                }
                PoolKind::Avg => {
                    y[o] = inside.iter().map(|&i| x[i]).sum::<f32>() / inside.len() as f32;
                    inside.iter().for_each(|&i| gx[i] += g[o] / inside.len() as f32);
                }
            }
        }
    }
    (y, gx)
}

#[test]
fn stride1_pools_match_the_definition_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    for &(h, w) in &[(1, 1), (2, 3), (7, 9), (16, 16)] {
        for &(k, dilation) in &[(3, 1), (5, 1), (3, 2), (2, 1)] {
            let win = Window::same(h, w, k, 1, dilation);
            for kind in [PoolKind::Max, PoolKind::Avg] {
                // Few distinct values: many windows hold their maximum twice.
                let xv: Vec<f32> = (0..2 * h * w).map(|_| rng.gen_range(0..3) as f32).collect();
                let gv: Vec<f32> = (0..2 * h * w).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let x = Var::from_vec(xv.clone(), (1, 2, h, w), &Device::Cpu).unwrap();
                let g = Tensor::from_vec(gv.clone(), (1, 2, h, w), &Device::Cpu).unwrap();
                let y = ops::pool2d(&x, kind, win).unwrap();
                let gx = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap().get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for p in 0..2 {
                    let plane = p * h * w..(p + 1) * h * w;
                    let (want_y, want_gx) = pool_by_definition(&xv[plane.clone()], &gv[plane.clone()], (h, w), win, kind);
                    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
                    assert!(close(&y[plane.clone()], &want_y), "{kind:?} k{k} d{dilation} {h}x{w}: forward");
                    assert!(close(&gx[plane.clone()], &want_gx), "{kind:?} k{k} d{dilation} {h}x{w}: backward");
                }
            }
        }
    }
}

#[test]
fn batch_norm_matches_formula_and_finite_differences() {
    let x = rand_tensor(&[4, 3, 5, 5], 30);
    let gamma = rand_tensor(&[3], 31);
    let beta = rand_tensor(&[3], 32);
    let (y, stats) = ops::batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let var = x.broadcast_sub(&mean).unwrap().sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let expect = x
        .broadcast_sub(&mean)
        .unwrap()
        .broadcast_div(&(var.clone() + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&gamma.reshape((1, 3, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape((1, 3, 1, 1)).unwrap())
        .unwrap();
    assert!(max_abs_diff(&y, &expect) < 1e-5);
    let var_v = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (a, b) in host(&stats).1.iter().zip(&var_v) {
        assert!((a - b).abs() < 1e-5);
    }
    check_grad(&|x| ops::batch_norm_train(x, &gamma, &beta, 1e-5).unwrap().0, &x, 33, "batch norm input");
    check_grad(&|g| ops::batch_norm_train(&x, g, &beta, 1e-5).unwrap().0, &gamma, 34, "batch norm gamma");
    check_grad(&|b| ops::batch_norm_train(&x, &gamma, b, 1e-5).unwrap().0, &beta, 35, "batch norm beta");
}

#[test]
fn batch_norm_relu_is_relu_of_batch_norm_forward_and_backward() {
    let x = rand_tensor(&[4, 3, 5, 5], 40);
    let (gamma, beta) = (rand_tensor(&[3], 41), rand_tensor(&[3], 42));
    let r = rand_tensor(&[4, 3, 5, 5], 43);
    let grads = |fused: bool| {
        let (xv, gv, bv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&gamma).unwrap(), Var::from_tensor(&beta).unwrap());
        let y = if fused {
            ops::batch_norm_relu_train(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-5).unwrap().0
        } else {
            ops::batch_norm_train(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-5).unwrap().0.relu().unwrap()
        };
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let get = |v: &Var| g.get(v.as_tensor()).unwrap().clone();
        (y, get(&xv), get(&gv), get(&bv))
    };
    let (ours, theirs) = (grads(true), grads(false));
    // About half the outputs are clipped, so the mask is exercised.
    let zeros = ours.0.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().filter(|v| **v == 0.0).count();
    assert!(zeros > 50 && zeros < 250, "{zeros} of 300 outputs clipped");
    for (what, a, b) in
        [("output", &ours.0, &theirs.0), ("input grad", &ours.1, &theirs.1), ("gamma grad", &ours.2, &theirs.2), ("beta grad", &ours.3, &theirs.3)]
    {
        let d = max_abs_diff(a, b);
        assert!(d < 1e-5, "fused BN-ReLU {what}: max diff {d}");
    }
}

#[test]
fn subsample_matches_composition_forward_and_backward() {
    for &(h, w) in &[(8, 8), (7, 9), (1, 2)] {
        for offset in [0, 1] {
            let x = rand_tensor(&[2, 3, h, w], 50);
            let ours = ops::subsample2(&x, offset).unwrap();
            let theirs = reference::subsample2(&x, offset).unwrap();
            assert_eq!(ours.dims(), &[2, 3, h.div_ceil(2), w.div_ceil(2)]);
            assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "{h}x{w} offset {offset}");
            let r = rand_tensor(ours.dims(), 51);
            let grad = |f: &dyn Fn(&Tensor) -> Tensor| {
                let v = Var::from_tensor(&x).unwrap();
                let g = (f(v.as_tensor()) * &r).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(v.as_tensor()).unwrap().clone()
            };
            let d = max_abs_diff(&grad(&|x| ops::subsample2(x, offset).unwrap()), &grad(&|x| reference::subsample2(x, offset).unwrap()));
            assert_eq!(d, 0.0, "{h}x{w} offset {offset}: gradient");
        }
    }
}

/// Forward and both gradients of `ours` against candle's composition `theirs`
/// (candle's conv2d and its backward, slow but trusted), to 1e-4 relative.
fn compare_with_candle(ours: &dyn Fn(&Tensor, &Tensor) -> Tensor, theirs: &dyn Fn(&Tensor, &Tensor) -> Tensor, x0: &Tensor, w0: &Tensor, what: &str) {
    let r = rand_tensor(theirs(x0, w0).dims(), 99);
    let run = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
        let (x, w) = (Var::from_tensor(x0).unwrap(), Var::from_tensor(w0).unwrap());
        let y = f(x.as_tensor(), w.as_tensor());
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (y, g.get(x.as_tensor()).unwrap().clone(), g.get(w.as_tensor()).unwrap().clone())
    };
    let (a, b) = (run(ours), run(theirs));
    for (name, p, q) in [("output", &a.0, &b.0), ("grad input", &a.1, &b.1), ("grad weight", &a.2, &b.2)] {
        let scale = q.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
        let d = max_abs_diff(p, q);
        assert!(d <= 1e-4 * scale, "{what} {name}: max diff {d} (scale {scale})");
    }
}

#[test]
fn conv_same_matches_candle_forward_and_backward() {
    for &(k, relu) in &[(1, false), (1, true), (3, false), (3, true), (5, false), (5, true)] {
        // The last three give the 5x5 (Winograd) several tiles an image, several images a task,
        // a short last task, and channel counts past one group of lanes; the last two take the
        // weight gradient as dot products (at least 128 pixels): every tile of rows, a partial block.
        for &(n, c, cout, h, w) in
            &[(2, 3, 4, 8, 8), (3, 5, 2, 7, 9), (1, 4, 6, 2, 3), (4, 2, 3, 1, 1), (17, 6, 5, 11, 10), (3, 11, 9, 13, 12), (2, 13, 7, 17, 17)]
        {
            let x = rand_tensor(&[n, c, h, w], 40);
            let wt = rand_tensor(&[cout, c, k, k], 41);
            let what = format!("conv k{k} relu {relu} ({n}, {c}, {h}, {w}) -> {cout}");
            let act = move |x: &Tensor| if relu { x.relu().unwrap() } else { x.clone() };
            compare_with_candle(&|x, w| ops::conv2d_same(x, w, relu).unwrap(), &|x, w| act(x).conv2d(w, k / 2, 1, 1, 1).unwrap(), &x, &wt, &what);
            if k == 1 {
                // The 1x1 also takes its weight as (C_out, C).
                let w2 = wt.reshape((cout, c)).unwrap();
                compare_with_candle(
                    &|x, w| ops::conv2d_same(x, w, relu).unwrap(),
                    &|x, w| act(x).conv2d(&w.reshape((cout, c, 1, 1)).unwrap(), 0, 1, 1, 1).unwrap(),
                    &x,
                    &w2,
                    &format!("{what} 2-D weight"),
                );
            }
        }
    }
    // A non-contiguous input (a transposed view) gives the same result as its copy.
    let x = rand_tensor(&[2, 3, 6, 5], 42).transpose(2, 3).unwrap();
    let wt = rand_tensor(&[4, 3, 3, 3], 43);
    let d = max_abs_diff(&ops::conv2d_same(&x, &wt, true).unwrap(), &ops::conv2d_same(&x.contiguous().unwrap(), &wt, true).unwrap());
    assert!(d == 0.0, "{d}");
    assert!(ops::conv2d_same(&rand_tensor(&[1, 3, 4, 4], 1), &rand_tensor(&[2, 3, 2, 2], 2), false).is_err());
}

/// The 1x1 convolution's own kernel does gemm's float operations (K fused
/// multiply-adds in order): its output and input gradient equal candle's
/// matmul (gemm) to the bit, over tiles of 20, 16, 8, 4, 2 and 1 output rows
/// and a partial block of pixels, and at 32x32 and 16x32, where the image's
/// rows are copied apart first.
#[test]
fn pointwise_conv_is_bitwise_candles_matmul() {
    for &(c, cout, h, w) in &[(20, 20, 8, 8), (40, 31, 5, 7), (80, 80, 4, 4), (12, 39, 6, 6), (9, 24, 3, 5), (13, 20, 32, 32), (20, 9, 16, 32)] {
        for relu in [false, true] {
            let x = Var::from_tensor(&rand_tensor(&[3, c, h, w], 44)).unwrap();
            let wt = rand_tensor(&[cout, c], 45);
            let r = rand_tensor(&[3, cout, h, w], 46);
            let act = if relu { x.relu().unwrap() } else { x.as_tensor().clone() };
            let theirs = wt.broadcast_matmul(&act.reshape((3, c, h * w)).unwrap()).unwrap().reshape((3, cout, h, w)).unwrap();
            let ours = ops::conv2d_same(&x, &wt, relu).unwrap();
            let what = format!("1x1 {c} -> {cout} at {h}x{w}, relu {relu}");
            assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "{what}: output");
            let grad = |y: &Tensor| (y * &r).unwrap().sum_all().unwrap().backward().unwrap().get(&x).unwrap().clone();
            assert_eq!(max_abs_diff(&grad(&ours), &grad(&theirs)), 0.0, "{what}: input gradient");
        }
    }
}

/// Batch norm and the convolution run candle's compositions (ops::reference)
/// on CUDA: they must agree with our CPU loops, forward and backward.
#[test]
fn device_fallbacks_match_the_cpu_ops() {
    let x = Var::from_tensor(&rand_tensor(&[3, 4, 7, 6], 21)).unwrap();
    let gamma = Var::from_tensor(&(rand_tensor(&[4], 22) + 1.5).unwrap()).unwrap();
    let beta = Var::from_tensor(&rand_tensor(&[4], 23)).unwrap();
    let probe = rand_tensor(&[3, 4, 7, 6], 24);
    let (ours, s1) = ops::batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
    let (theirs, s2) = reference::batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
    assert!(max_abs_diff(&ours, &theirs) < 1e-4);
    let ((m1, v1), (m2, v2)) = (host(&s1), host(&s2));
    for (a, b) in m1.iter().zip(&m2).chain(v1.iter().zip(&v2)) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&x, &gamma, &beta] {
        assert!(max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-3, "batch norm gradient");
    }
    for (w_shape, relu) in [(vec![5, 4], false), (vec![5, 4, 3, 3], true), (vec![2, 4, 5, 5], false)] {
        let w = Var::from_tensor(&rand_tensor(&w_shape, 25)).unwrap();
        let ours = ops::conv2d_same(&x, &w, relu).unwrap();
        let theirs = reference::conv2d_same(&x, &w, relu).unwrap();
        assert!(max_abs_diff(&ours, &theirs) < 1e-4, "conv {w_shape:?}");
        let p = rand_tensor(ours.dims(), 26);
        let g1 = (&ours * &p).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &p).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            assert!(max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-3, "conv {w_shape:?} gradient");
        }
    }
}

#[test]
fn fused_relu_depthwise_matches_relu_then_depthwise_forward_and_backward() {
    for &(k, stride, h, w) in &[(3, 1, 12, 13), (5, 1, 9, 8), (3, 2, 9, 8), (5, 1, 3, 2)] {
        let x0 = rand_tensor(&[3, 4, h, w], 60);
        let w0 = rand_tensor(&[4, 1, k, k], 61);
        let r = rand_tensor(ops::depthwise_conv2d(&x0, &w0, stride, 1).unwrap().dims(), 62);
        let run = |fused: bool| {
            let (x, wt) = (Var::from_tensor(&x0).unwrap(), Var::from_tensor(&w0).unwrap());
            let y = if fused {
                ops::relu_depthwise_conv2d(x.as_tensor(), wt.as_tensor(), stride, 1).unwrap()
            } else {
                ops::depthwise_conv2d(&x.as_tensor().relu().unwrap(), wt.as_tensor(), stride, 1).unwrap()
            };
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(x.as_tensor()).unwrap().clone(), g.get(wt.as_tensor()).unwrap().clone())
        };
        let (ours, theirs) = (run(true), run(false));
        for (what, a, b) in [("output", &ours.0, &theirs.0), ("input grad", &ours.1, &theirs.1), ("weight grad", &ours.2, &theirs.2)] {
            let d = max_abs_diff(a, b);
            assert!(d < 1e-4, "k{k} s{stride} {h}x{w} {what}: max diff {d}");
        }
    }
}

#[test]
fn fused_conv_bn_matches_conv_then_bn_forward_and_backward() {
    for (k, relu_in, relu_out) in [(1, false, false), (1, true, true), (3, true, false), (5, false, true), (5, true, true)] {
        let (n, c, cout, h, w) = (3, 5, 6, 9, 7);
        let x0 = rand_tensor(&[n, c, h, w], 70);
        let w0 = if k == 1 { rand_tensor(&[cout, c], 71) } else { rand_tensor(&[cout, c, k, k], 71) };
        let g0 = (rand_tensor(&[cout], 72) + 1.5).unwrap();
        let b0 = rand_tensor(&[cout], 73);
        let probe = rand_tensor(&[n, cout, h, w], 74);
        let run = |fused: bool| {
            let vars: Vec<Var> = [&x0, &w0, &g0, &b0].iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let [x, wt, g, b] = [0, 1, 2, 3].map(|i| vars[i].as_tensor().clone());
            let (y, stats) = if fused {
                ops::conv_bn_train(&x, &wt, &g, &b, relu_in, relu_out, 1e-5).unwrap()
            } else {
                let conv = ops::conv2d_same(&x, &wt, relu_in).unwrap();
                let bn = if relu_out { ops::batch_norm_relu_train } else { ops::batch_norm_train };
                bn(&conv, &g, &b, 1e-5).unwrap()
            };
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gs: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).unwrap().clone()).collect();
            (y, stats, gs)
        };
        let ((y1, s1, g1), (y2, s2, g2)) = (run(true), run(false));
        let what = format!("k{k} relu in {relu_in} out {relu_out}");
        assert_eq!(max_abs_diff(&y1, &y2), 0.0, "{what}: output");
        assert_eq!(host(&s1), host(&s2), "{what}: batch statistics");
        for (name, a, b) in [("x", &g1[0], &g2[0]), ("w", &g1[1], &g2[1]), ("gamma", &g1[2], &g2[2]), ("beta", &g1[3], &g2[3])] {
            assert_eq!(max_abs_diff(a, b), 0.0, "{what}: gradient of {name}");
        }
    }
    let x = rand_tensor(&[2, 3, 4, 4], 75);
    let err = ops::conv_bn_train(&x, &rand_tensor(&[4, 3, 3, 3], 76), &rand_tensor(&[5], 77), &rand_tensor(&[5], 78), false, false, 1e-5);
    assert!(err.unwrap_err().to_string().contains("gamma"));
}

#[test]
fn fused_sep_conv_bn_matches_relu_depthwise_pointwise_bn() {
    // One half (the macro branch, ReLU after its BN) and two (the micro separable convolution);
    // the last at 12 x 12 takes the pointwise weight gradient as dot products (at least 128 pixels).
    for (halves, k, stride, relu_out, (h, w)) in [
        (1, 3, 1, true, (9, 8)),
        (1, 5, 2, false, (9, 8)),
        (2, 3, 1, false, (9, 8)),
        (2, 5, 2, false, (9, 8)),
        (2, 3, 2, true, (9, 8)),
        (2, 5, 1, true, (12, 12)),
    ] {
        let (n, c, cout) = (3, 4, 6);
        let mut tensors = vec![rand_tensor(&[n, c, h, w], 80)];
        for i in 0..halves {
            let c_in = if i == 0 { c } else { cout };
            let seed = 81 + 4 * i as u64;
            tensors.extend([
                rand_tensor(&[c_in, 1, k, k], seed),
                rand_tensor(&[cout, c_in], seed + 1),
                (rand_tensor(&[cout], seed + 2) + 1.5).unwrap(),
                rand_tensor(&[cout], seed + 3),
            ]);
        }
        let probe = rand_tensor(&[n, cout, h.div_ceil(stride), w.div_ceil(stride)], 95);
        let run = |fused: bool| {
            let vars: Vec<Var> = tensors.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let t: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let (y, stats) = if fused {
                let parts: Vec<ops::SepHalf> =
                    (0..halves).map(|i| ops::SepHalf { dw: &t[1 + 4 * i], pw: &t[2 + 4 * i], gamma: &t[3 + 4 * i], beta: &t[4 + 4 * i] }).collect();
                ops::sep_conv_bn_train(&t[0], &parts, stride, relu_out, 1e-5).unwrap()
            } else {
                let (mut y, mut all) = (t[0].clone(), Vec::new());
                for i in 0..halves {
                    let d = ops::relu_depthwise_conv2d(&y, &t[1 + 4 * i], if i == 0 { stride } else { 1 }, 1).unwrap();
                    let conv = ops::conv2d_same(&d, &t[2 + 4 * i], false).unwrap();
                    let bn = if relu_out && i + 1 == halves { ops::batch_norm_relu_train } else { ops::batch_norm_train };
                    let (out, stats) = bn(&conv, &t[3 + 4 * i], &t[4 + 4 * i], 1e-5).unwrap();
                    y = out;
                    all.push(stats);
                }
                (y, all)
            };
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gs: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).unwrap().clone()).collect();
            (y, stats, gs)
        };
        let ((y1, s1, g1), (y2, s2, g2)) = (run(true), run(false));
        let what = format!("{halves} halves, k{k} stride {stride} relu out {relu_out}");
        assert_eq!(max_abs_diff(&y1, &y2), 0.0, "{what}: output");
        for (a, b) in s1.iter().zip(&s2) {
            assert_eq!(host(a), host(b), "{what}: batch statistics");
        }
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            assert_eq!(max_abs_diff(a, b), 0.0, "{what}: gradient of tensor {i}");
        }
    }
    let x = rand_tensor(&[2, 3, 4, 4], 86);
    let (dw, pw, g, b) = (rand_tensor(&[3, 1, 3, 3], 87), rand_tensor(&[5, 4], 88), rand_tensor(&[5], 89), rand_tensor(&[5], 90));
    let err = ops::sep_conv_bn_train(&x, &[ops::SepHalf { dw: &dw, pw: &pw, gamma: &g, beta: &b }], 1, false, 1e-5);
    assert!(err.unwrap_err().to_string().contains("pointwise"));
}

#[test]
fn fused_factorized_reduction_matches_its_composition() {
    for (relu, (h, w)) in [(false, (8, 8)), (true, (9, 7))] {
        let (n, c, half) = (3, 5, 4);
        let tensors = [
            rand_tensor(&[n, c, h, w], 90),
            rand_tensor(&[half, c], 91),
            rand_tensor(&[half, c], 92),
            (rand_tensor(&[2 * half], 93) + 1.5).unwrap(),
            rand_tensor(&[2 * half], 94),
        ];
        let probe = rand_tensor(&[n, 2 * half, h.div_ceil(2), w.div_ceil(2)], 95);
        let run = |fused: bool| {
            let vars: Vec<Var> = tensors.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let [x, w1, w2, g, b] = [0, 1, 2, 3, 4].map(|i| vars[i].as_tensor().clone());
            let (y, stats) = if fused {
                ops::reduce_bn_train(&x, &w1, &w2, &g, &b, relu, 1e-5).unwrap()
            } else {
                let p1 = ops::conv2d_same(&ops::subsample2(&x, 0).unwrap(), &w1, relu).unwrap();
                let p2 = ops::conv2d_same(&ops::subsample2(&x, 1).unwrap(), &w2, relu).unwrap();
                ops::batch_norm_train(&Tensor::cat(&[p1, p2], 1).unwrap(), &g, &b, 1e-5).unwrap()
            };
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gs: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).unwrap().clone()).collect();
            (y, stats, gs)
        };
        let ((y1, s1, g1), (y2, s2, g2)) = (run(true), run(false));
        assert_eq!(max_abs_diff(&y1, &y2), 0.0, "relu {relu}: output");
        assert_eq!(host(&s1), host(&s2), "relu {relu}: batch statistics");
        for (i, name) in ["x", "w1", "w2", "gamma", "beta"].iter().enumerate() {
            assert_eq!(max_abs_diff(&g1[i], &g2[i]), 0.0, "relu {relu}: gradient of {name}");
        }
    }
}

#[test]
fn fused_add_bn_matches_add_then_bn() {
    let tensors = [rand_tensor(&[3, 4, 7, 6], 100), rand_tensor(&[3, 4, 7, 6], 101), (rand_tensor(&[4], 102) + 1.5).unwrap(), rand_tensor(&[4], 103)];
    let probe = rand_tensor(&[3, 4, 7, 6], 104);
    let run = |fused: bool| {
        let vars: Vec<Var> = tensors.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let [a, b, g, bt] = [0, 1, 2, 3].map(|i| vars[i].as_tensor().clone());
        let (y, stats) =
            if fused { ops::add_bn_train(&a, &b, &g, &bt, 1e-5).unwrap() } else { ops::batch_norm_train(&(&a + &b).unwrap(), &g, &bt, 1e-5).unwrap() };
        let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gs: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).unwrap().clone()).collect();
        (y, stats, gs)
    };
    let ((y1, s1, g1), (y2, s2, g2)) = (run(true), run(false));
    assert_eq!(max_abs_diff(&y1, &y2), 0.0, "output");
    assert_eq!(host(&s1), host(&s2), "batch statistics");
    for (i, name) in ["a", "b", "gamma", "beta"].iter().enumerate() {
        assert_eq!(max_abs_diff(&g1[i], &g2[i]), 0.0, "gradient of {name}");
    }
    assert!(ops::add_bn_train(&tensors[0], &rand_tensor(&[3, 4, 7, 5], 105), &tensors[2], &tensors[3], 1e-5).is_err());
}
