//! The CUDA kernels of kernels/ compiled as plain C++ (tests/kernels/emulate.h:
//! one thread per block, blocks in turn) and checked against the CPU ops,
//! forward and backward, so their index arithmetic is tested without a GPU.
//! On a GPU the `cuda` feature's tests run the same kernels for real.
use candle_core::{Device, Tensor, Var};
use enas::ops::{self, PoolKind, Window};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn harness() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("enas-kernel-harness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = root.join("tests/kernels/emulate.h");
        let mut objects = Vec::new();
        let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("kernels")).unwrap().map(|e| e.unwrap().path()).collect();
        sources.retain(|p| p.extension().is_some_and(|e| e == "cu"));
        sources.sort();
        sources.push(root.join("tests/kernels/harness.cpp"));
        for src in &sources {
            let obj = dir.join(format!("{}.o", src.file_name().unwrap().to_string_lossy()));
            let out = Command::new("c++")
                .args(["-O2", "-std=c++17", "-Wall", "-Werror", "-include"])
                .arg(&header)
                .args(["-x", "c++", "-c"])
                .arg(src)
                .arg("-o")
                .arg(&obj)
                .output()
                .expect("a C++ compiler (scripts/setup.sh installs g++)");
            assert!(out.status.success(), "{}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
            objects.push(obj);
        }
        let bin = dir.join("harness");
        let out = Command::new("c++").args(&objects).arg("-o").arg(&bin).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bin
    })
}

fn rand_vec(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

fn write(dir: &Path, name: &str, v: &[f32]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    p
}

fn read(p: &Path) -> Vec<f32> {
    std::fs::read(p).unwrap().chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn assert_close(what: &str, got: &[f32], want: &Tensor) {
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "{what}[{i}]: kernel {g}, CPU op {w}");
    }
}

fn run(args: &[String]) {
    let out = Command::new(harness()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn depthwise_kernels_match_the_cpu_op() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for &(k, stride, dilation) in &[(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2)] {
        for &(n, c, h, w) in &[(2, 3, 7, 9), (1, 4, 8, 8)] {
            for relu in [false, true] {
                let win = Window::same(h, w, k, stride, dilation);
                let (xv, wv) = (rand_vec(n * c * h * w, &mut rng), rand_vec(c * k * k, &mut rng));
                let gyv = rand_vec(n * c * win.out_h * win.out_w, &mut rng);
                let x = Var::from_vec(xv.clone(), (n, c, h, w), &Device::Cpu).unwrap();
                let wt = Var::from_vec(wv.clone(), (c, 1, k, k), &Device::Cpu).unwrap();
                let gy = Tensor::from_vec(gyv.clone(), (n, c, win.out_h, win.out_w), &Device::Cpu).unwrap();
                let y = if relu { ops::relu_depthwise_conv2d(&x, &wt, stride, dilation) } else { ops::depthwise_conv2d(&x, &wt, stride, dilation) }.unwrap();
                let grads = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
                let geo = [n, c, h, w, k, stride, dilation, win.pad_top, win.pad_left, win.out_h, win.out_w, relu as usize];
                let mut args: Vec<String> = std::iter::once("depthwise".to_string()).chain(geo.iter().map(|v| v.to_string())).collect();
                for (name, v) in [("x", &xv), ("w", &wv), ("gy", &gyv)] {
                    args.push(write(d, name, v).to_string_lossy().into());
                }
                for name in ["y", "gx", "gw"] {
                    args.push(d.join(name).to_string_lossy().into());
                }
                run(&args);
                let case = format!("k {k} stride {stride} dilation {dilation} {n}x{c}x{h}x{w} relu {relu}");
                assert_close(&format!("{case}: forward"), &read(&d.join("y")), &y);
                assert_close(&format!("{case}: grad input"), &read(&d.join("gx")), grads.get(&x).unwrap());
                assert_close(&format!("{case}: grad weight"), &read(&d.join("gw")), grads.get(&wt).unwrap());
            }
        }
    }
}

#[test]
fn pooling_kernels_match_the_cpu_op() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (n, c) = (2, 3);
    for &(h, w) in &[(7, 9), (8, 8), (28, 28)] {
        let windows =
            [Window::same(h, w, 3, 1, 1), Window::same(h, w, 3, 2, 1), Window::valid(h, w, 5, 3), Window::valid(h, w, 3, 2), Window::valid(h, w, 2, 2)];
        for win in windows {
            for kind in [PoolKind::Max, PoolKind::Avg] {
                let xv = rand_vec(n * c * h * w, &mut rng);
                let gyv = rand_vec(n * c * win.out_h * win.out_w, &mut rng);
                let x = Var::from_vec(xv.clone(), (n, c, h, w), &Device::Cpu).unwrap();
                let gy = Tensor::from_vec(gyv.clone(), (n, c, win.out_h, win.out_w), &Device::Cpu).unwrap();
                let y = ops::pool2d(&x, kind, win).unwrap();
                let grads = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
                let geo = [n, c, h, w, win.k, win.stride, win.pad_top, win.pad_left, win.out_h, win.out_w, (kind == PoolKind::Max) as usize];
                let mut args: Vec<String> = std::iter::once("pool".to_string()).chain(geo.iter().map(|v| v.to_string())).collect();
                args.push(write(d, "x", &xv).to_string_lossy().into());
                args.push(write(d, "gy", &gyv).to_string_lossy().into());
                args.push(d.join("y").to_string_lossy().into());
                args.push(d.join("gx").to_string_lossy().into());
                run(&args);
                let case = format!("{kind:?} {win:?}");
                assert_close(&format!("{case}: forward"), &read(&d.join("y")), &y);
                assert_close(&format!("{case}: backward"), &read(&d.join("gx")), grads.get(&x).unwrap());
            }
        }
    }
}

#[test]
fn sgd_kernels_match_the_cpu_op_bit_for_bit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 37;
    for (momentum, nesterov) in [(0.9, true), (0.9, false), (0.0, false)] {
        for (weight_decay, decoupled) in [(0.0, false), (1e-3, false), (0.05, true)] {
            let s = ops::SgdStep { lr: 0.07, momentum, nesterov, weight_decay, decoupled };
            let (wv, gv, vv) = (rand_vec(n, &mut rng), rand_vec(n, &mut rng), rand_vec(n, &mut rng));
            let tensor = |v: &[f32]| Tensor::from_vec(v.to_vec(), n, &Device::Cpu).unwrap();
            let (w, g, v) = (tensor(&wv), tensor(&gv), tensor(&vv));
            if momentum > 0.0 {
                ops::sgd_velocity(&v, &g, &w, s).unwrap();
            }
            ops::sgd_weight(&w, &g, &v, s).unwrap();
            // The scalars as the kernels get them: f32, lr * wd rounded once.
            let scalars = [s.lr as f32, s.momentum as f32, s.weight_decay as f32, (s.lr * s.weight_decay) as f32].map(|f| format!("{f:e}"));
            let flags = [decoupled, momentum > 0.0, nesterov].map(|b| (b as i32).to_string());
            let mut args: Vec<String> = vec!["sgd".into(), n.to_string()];
            args.extend(scalars);
            args.extend(flags);
            for (name, vals) in [("w", &wv), ("g", &gv), ("v", &vv)] {
                args.push(write(d, name, vals).to_string_lossy().into());
            }
            args.push(d.join("w2").to_string_lossy().into());
            args.push(d.join("v2").to_string_lossy().into());
            run(&args);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&read(&d.join("w2"))), bits(&w.to_vec1::<f32>().unwrap()), "{s:?}: weights");
            assert_eq!(bits(&read(&d.join("v2"))), bits(&v.to_vec1::<f32>().unwrap()), "{s:?}: velocity");
        }
    }
}

#[test]
fn batch_norm_kernels_match_the_cpu_op() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let eps = 1e-5;
    for &(n, c, h, w) in &[(2, 3, 7, 9), (3, 5, 4, 4), (4, 2, 1, 1), (1, 4, 8, 8)] {
        for relu in [false, true] {
            let xv: Vec<f32> = rand_vec(n * c * h * w, &mut rng).iter().map(|v| 3.0 * v + 0.5).collect();
            let gammav: Vec<f32> = rand_vec(c, &mut rng).iter().map(|v| 1.0 + 0.5 * v).collect();
            let (betav, gyv) = (rand_vec(c, &mut rng), rand_vec(n * c * h * w, &mut rng));
            let x = Var::from_vec(xv.clone(), (n, c, h, w), &Device::Cpu).unwrap();
            let gamma = Var::from_vec(gammav.clone(), c, &Device::Cpu).unwrap();
            let beta = Var::from_vec(betav.clone(), c, &Device::Cpu).unwrap();
            let gy = Tensor::from_vec(gyv.clone(), (n, c, h, w), &Device::Cpu).unwrap();
            let (y, stats) = if relu { ops::batch_norm_relu_train(&x, &gamma, &beta, eps) } else { ops::batch_norm_train(&x, &gamma, &beta, eps) }.unwrap();
            let grads = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
            let mut args: Vec<String> = vec!["bn".into(), n.to_string(), c.to_string(), (h * w).to_string(), format!("{eps:e}"), (relu as i32).to_string()];
            for (name, v) in [("x", &xv), ("gamma", &gammav), ("beta", &betav), ("gy", &gyv)] {
                args.push(write(d, name, v).to_string_lossy().into());
            }
            for name in ["y", "stats", "sums", "gx"] {
                args.push(d.join(name).to_string_lossy().into());
            }
            run(&args);
            let case = format!("{n}x{c}x{h}x{w} relu {relu}");
            let row = |t: &Tensor| t.unsqueeze(0).unwrap();
            let want_stats = Tensor::cat(&[row(&stats.mean), row(&stats.var)], 0).unwrap();
            let want_sums = Tensor::cat(&[row(grads.get(&beta).unwrap()), row(grads.get(&gamma).unwrap())], 0).unwrap();
            assert_close(&format!("{case}: forward"), &read(&d.join("y")), &y);
            assert_close(&format!("{case}: statistics"), &read(&d.join("stats")), &want_stats);
            assert_close(&format!("{case}: gradient sums (beta, gamma)"), &read(&d.join("sums")), &want_sums);
            assert_close(&format!("{case}: grad input"), &read(&d.join("gx")), grads.get(&x).unwrap());
        }
    }
}

#[test]
fn sgd_over_all_variables_with_the_clip_matches_the_cpu() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let lens = [37usize, 5, 120, 1];
    let total: usize = lens.iter().sum();
    for max_norm in [0.5, 1e6, 0.0] {
        for (momentum, nesterov, weight_decay, decoupled) in [(0.9, true, 1e-3, false), (0.9, false, 0.05, true), (0.0, false, 0.0, false)] {
            let s = ops::SgdStep { lr: 0.07, momentum, nesterov, weight_decay, decoupled };
            let (wv, gv, vv) = (rand_vec(total, &mut rng), rand_vec(total, &mut rng), rand_vec(total, &mut rng));
            // The CPU: train::clip_grad_norm, then ops::sgd's two steps per variable.
            let pieces = |v: &[f32]| {
                let mut at = 0;
                lens.iter()
                    .map(|&n| {
                        at += n;
                        Tensor::from_vec(v[at - n..at].to_vec(), n, &Device::Cpu).unwrap()
                    })
                    .collect::<Vec<_>>()
            };
            let (ws, vs) = (pieces(&wv), pieces(&vv));
            let mut grads: Vec<Option<Tensor>> = pieces(&gv).into_iter().map(Some).collect();
            enas::train::clip_grad_norm(&mut grads, max_norm).unwrap();
            for ((w, g), v) in ws.iter().zip(&grads).zip(&vs) {
                let g = g.as_ref().unwrap();
                if momentum > 0.0 {
                    ops::sgd_velocity(v, g, w, s).unwrap();
                }
                ops::sgd_weight(w, g, v, s).unwrap();
            }
            let mut args: Vec<String> = vec!["sgdall".into(), lens.len().to_string()];
            args.extend(lens.iter().map(|n| n.to_string()));
            args.extend([s.lr as f32, s.momentum as f32, s.weight_decay as f32, (s.lr * s.weight_decay) as f32].map(|f| format!("{f:e}")));
            args.extend([decoupled, momentum > 0.0, nesterov].map(|b| (b as i32).to_string()));
            args.push(format!("{max_norm:e}"));
            for (name, vals) in [("w", &wv), ("g", &gv), ("v", &vv)] {
                args.push(write(d, name, vals).to_string_lossy().into());
            }
            for name in ["w2", "v2", "coef"] {
                args.push(d.join(name).to_string_lossy().into());
            }
            run(&args);
            let case = format!("max norm {max_norm}, {s:?}");
            let cat = |ts: &[Tensor]| Tensor::cat(ts, 0).unwrap();
            let clipped = max_norm > 0.0 && max_norm < 1e6;
            let coef = read(&d.join("coef"))[0];
            assert_eq!(coef < 1.0, clipped, "{case}: coefficient {coef}");
            if clipped {
                // The norm's sums run in another order (double on the device): the factor may differ in its last bits.
                assert_close(&format!("{case}: weights"), &read(&d.join("w2")), &cat(&ws));
                if momentum > 0.0 {
                    assert_close(&format!("{case}: velocity"), &read(&d.join("v2")), &cat(&vs));
                }
            } else {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&read(&d.join("w2"))), bits(&cat(&ws).to_vec1::<f32>().unwrap()), "{case}: weights");
                if momentum > 0.0 {
                    assert_eq!(bits(&read(&d.join("v2"))), bits(&cat(&vs).to_vec1::<f32>().unwrap()), "{case}: velocity");
                }
            }
        }
    }
}
