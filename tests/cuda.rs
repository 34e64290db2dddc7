//! With the `cuda` feature, on a GPU: every op with a kernel of ours (depthwise
//! convolution, pooling, batch norm) and the CUDA fallback (convolution)
//! against the CPU op, forward and backward, to 1e-4 relative, on odd sizes and
//! non-contiguous inputs; the in-place SGD step bit for bit, and the step over
//! all variables with the clip to 1e-4. Built only with `--features cuda`; run with
//! `cargo test --release --features cuda --test cuda` where a GPU is present.
#![cfg(feature = "cuda")]
use candle_core::{Device, Tensor, Var};
use enas::ops::{self, PoolKind, Window};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gpu() -> Device {
    Device::new_cuda(0).expect("these tests need a CUDA GPU (cargo test --features cuda on a machine with one)")
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn close(what: &str, gpu: &Tensor, cpu: &Tensor) {
    let g = gpu.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let c = cpu.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(g.len(), c.len(), "{what}");
    let scale = c.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in g.iter().zip(&c).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "{what}[{i}]: GPU {a}, CPU {b}");
    }
}

/// `f` on the CPU and on the GPU from the same values; outputs and the gradients of every input compared.
fn compare(what: &str, inputs: &[(Vec<f32>, Vec<usize>)], transpose_first: bool, f: impl Fn(&[Tensor]) -> Tensor) {
    let dev = gpu();
    let mut results = Vec::new();
    for d in [Device::Cpu, dev] {
        let vars: Vec<Var> = inputs.iter().map(|(v, s)| Var::from_vec(v.clone(), s.as_slice(), &d).unwrap()).collect();
        let mut ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        if transpose_first {
            // A non-contiguous view of the same values.
            ts[0] = ts[0].transpose(2, 3).unwrap().contiguous().unwrap().transpose(2, 3).unwrap();
        }
        let y = f(&ts);
        let probe = Tensor::from_vec(rand_vec(y.elem_count(), 99), y.shape(), &d).unwrap();
        let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gs: Vec<Tensor> = vars.iter().map(|v| grads.get(v).unwrap().clone()).collect();
        results.push((y, gs));
    }
    let (cpu, gpu) = (&results[0], &results[1]);
    close(&format!("{what}: forward"), &gpu.0, &cpu.0);
    for (i, (g, c)) in gpu.1.iter().zip(&cpu.1).enumerate() {
        close(&format!("{what}: gradient of input {i}"), g, c);
    }
}

#[test]
fn depthwise_matches_the_cpu() {
    for &(k, stride, dilation) in &[(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2)] {
        for &(n, c, h, w) in &[(2, 3, 7, 9), (4, 20, 32, 32)] {
            for relu in [false, true] {
                let inputs = [(rand_vec(n * c * h * w, 1), vec![n, c, h, w]), (rand_vec(c * k * k, 2), vec![c, 1, k, k])];
                compare(&format!("depthwise k{k} s{stride} d{dilation} {n}x{c}x{h}x{w} relu {relu}"), &inputs, h == 7, |t| {
                    if relu { ops::relu_depthwise_conv2d(&t[0], &t[1], stride, dilation) } else { ops::depthwise_conv2d(&t[0], &t[1], stride, dilation) }
                        .unwrap()
                });
            }
        }
    }
}

#[test]
fn pooling_matches_the_cpu() {
    for &(n, c, h, w) in &[(2, 3, 7, 9), (4, 20, 32, 32), (2, 4, 28, 28)] {
        for (k, stride, same) in [(3, 1, true), (3, 2, true), (5, 3, false), (3, 2, false), (2, 2, false)] {
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let win = if same { Window::same(h, w, k, stride, 1) } else { Window::valid(h, w, k, stride) };
                let inputs = [(rand_vec(n * c * h * w, 3), vec![n, c, h, w])];
                compare(&format!("{kind:?} {win:?}"), &inputs, h == 7, |t| ops::pool2d(&t[0], kind, win).unwrap());
            }
        }
    }
}

#[test]
fn batch_norm_and_convolution_match_the_cpu() {
    let (n, c, h, w) = (3, 8, 9, 7);
    let x = (rand_vec(n * c * h * w, 4), vec![n, c, h, w]);
    let gamma = (rand_vec(c, 5).iter().map(|v| v + 1.5).collect(), vec![c]);
    let beta = (rand_vec(c, 6), vec![c]);
    compare("batch norm", &[x.clone(), gamma.clone(), beta.clone()], true, |t| ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5).unwrap().0);
    compare("batch norm + ReLU", &[x.clone(), gamma.clone(), beta.clone()], false, |t| ops::batch_norm_relu_train(&t[0], &t[1], &t[2], 1e-5).unwrap().0);
    // Many threads per channel's block: the kernels' reductions in earnest.
    let (bn, bc, bhw) = (16, 20, 32 * 32);
    let big = [
        (rand_vec(bn * bc * bhw, 8).iter().map(|v| 2.0 * v + 0.3).collect(), vec![bn, bc, 32, 32]),
        (rand_vec(bc, 9).iter().map(|v| v + 1.5).collect(), vec![bc]),
        (rand_vec(bc, 10), vec![bc]),
    ];
    for relu in [false, true] {
        compare(&format!("batch norm 16x20x32x32 relu {relu}"), &big, false, |t| {
            if relu { ops::batch_norm_relu_train(&t[0], &t[1], &t[2], 1e-5) } else { ops::batch_norm_train(&t[0], &t[1], &t[2], 1e-5) }.unwrap().0
        });
    }
    // The batch statistics stay on the GPU (read back only here).
    let stats = [Device::Cpu, gpu()].map(|d| {
        let t = |(v, s): &(Vec<f32>, Vec<usize>)| Tensor::from_vec(v.clone(), s.as_slice(), &d).unwrap();
        let s = ops::batch_norm_train(&t(&x), &t(&gamma), &t(&beta), 1e-5).unwrap().1;
        assert!(s.mean.device().same_device(&d) && s.var.device().same_device(&d), "statistics left the device");
        Tensor::cat(&[s.mean, s.var], 0).unwrap()
    });
    close("batch norm: statistics", &stats[1], &stats[0]);
    for (shape, relu) in [(vec![6, c], true), (vec![6, c, 3, 3], false), (vec![4, c, 5, 5], true)] {
        let wts = (rand_vec(shape.iter().product(), 7), shape.clone());
        compare(&format!("conv {shape:?} relu {relu}"), &[x.clone(), wts], false, |t| ops::conv2d_same(&t[0], &t[1], relu).unwrap());
    }
}

#[test]
fn sgd_step_matches_the_cpu_bit_for_bit() {
    let dev = gpu();
    let n = 1000;
    for (momentum, nesterov) in [(0.9, true), (0.9, false), (0.0, false)] {
        for (weight_decay, decoupled) in [(0.0, false), (1e-3, false), (0.05, true)] {
            let s = ops::SgdStep { lr: 0.07, momentum, nesterov, weight_decay, decoupled };
            let mut out = Vec::new();
            for d in [Device::Cpu, dev.clone()] {
                let t = |seed| Tensor::from_vec(rand_vec(n, seed), n, &d).unwrap();
                let (w, g, v) = (t(1), t(2), t(3));
                if momentum > 0.0 {
                    ops::sgd_velocity(&v, &g, &w, s).unwrap();
                }
                ops::sgd_weight(&w, &g, &v, s).unwrap();
                let bits = |x: &Tensor| x.to_device(&Device::Cpu).unwrap().to_vec1::<f32>().unwrap().iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                out.push((bits(&w), bits(&v)));
            }
            assert!(out[0] == out[1], "{s:?}: GPU step differs from the CPU step");
        }
    }
}

#[test]
fn clip_and_step_over_all_variables_matches_the_cpu() {
    use enas::train::{Sgd, SgdConfig};
    let dev = gpu();
    let lens = [1000usize, 37, 5, 20 * 20 * 9];
    for max_norm in [0.5, 0.0] {
        let mut out = Vec::new();
        for d in [Device::Cpu, dev.clone()] {
            let vars: Vec<(String, Var)> =
                lens.iter().enumerate().map(|(i, &n)| (format!("v{i}"), Var::from_vec(rand_vec(n, i as u64), n, &d).unwrap())).collect();
            let cfg = SgdConfig { lr: 0.07, momentum: 0.9, nesterov: true, weight_decay: 1e-3, decoupled: false };
            let mut sgd = Sgd::new(vars.clone(), cfg);
            // Two steps: the first starts the velocities, the second reads them.
            for step in 0..2u64 {
                let mut grads: Vec<Option<Tensor>> =
                    lens.iter().enumerate().map(|(i, &n)| Some(Tensor::from_vec(rand_vec(n, 100 + 10 * step + i as u64), n, &d).unwrap())).collect();
                sgd.clip_and_step(&mut grads, max_norm).unwrap();
            }
            out.push(vars.iter().map(|(_, v)| v.as_tensor().clone()).collect::<Vec<_>>());
        }
        for (i, (c, g)) in out[0].iter().zip(&out[1]).enumerate() {
            close(&format!("max norm {max_norm}: variable {i}"), g, c);
        }
    }
}
