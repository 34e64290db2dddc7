//! Every kernel set this CPU runs against the baseline set: the same bits for
//! every op whose loops keep their float operations whatever the vector width
//! (all but one), within rounding for the one whose sums run across vector
//! lanes (the 1x1 convolution's weight gradient), and the same bits run to
//! run within a set. The sets are switched in this process, so its tests run
//! one at a time (`SERIAL`).
use candle_core::{Device, Tensor, Var};
use enas::ops::simd::{self, KernelSet};
use enas::ops::{self, SepHalf, SgdStep};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn rand_var(shape: &[usize], seed: u64) -> Var {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    Var::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// One output of the battery: its name, its values, and whether it sums across lanes.
struct Output {
    name: String,
    values: Tensor,
    lane_sums: bool,
}

/// `f`'s output and the gradients of a fixed random projection of it with
/// respect to `inputs`, named `name.*`.
fn fwd_bwd(name: &str, inputs: &[&Var], out: Tensor, lane_sums: &[bool], all: &mut Vec<Output>) {
    let proj = rand_var(out.dims(), 99).as_tensor().clone();
    let grads = (&out * &proj).unwrap().sum_all().unwrap().backward().unwrap();
    all.push(Output { name: format!("{name}.out"), values: out, lane_sums: false });
    for (i, v) in inputs.iter().enumerate() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient of input {i}")).clone();
        all.push(Output { name: format!("{name}.grad{i}"), values: g, lane_sums: lane_sums[i] });
    }
}

/// Forward and backward of every op with hand-written CPU loops, at sizes that
/// reach every tile and tail of the kernels (14x14 planes: 196 pixels, not a
/// multiple of any vector width; 20 and 13 channels: partial row tiles).
fn battery() -> Vec<Output> {
    let mut all = Vec::new();
    let x = rand_var(&[4, 20, 14, 14], 1);
    let big = rand_var(&[2, 13, 16, 16], 2);
    for (k, stride) in [(3, 1), (5, 1), (3, 2)] {
        let w = rand_var(&[20, 1, k, k], 3);
        let out = ops::relu_depthwise_conv2d(&x, &w, stride, 1).unwrap();
        fwd_bwd(&format!("relu_depthwise{k}s{stride}"), &[&x, &w], out, &[false, false], &mut all);
    }
    for (kind, stride) in [(ops::PoolKind::Max, 1), (ops::PoolKind::Avg, 1), (ops::PoolKind::Max, 2)] {
        let win = ops::Window::same(14, 14, 3, stride, 1);
        let out = ops::pool2d(&x, kind, win).unwrap();
        fwd_bwd(&format!("{kind:?}pool3s{stride}"), &[&x], out, &[false], &mut all);
    }
    // The 1x1's weight gradient runs our lane sums from 128 pixels (with a
    // tail at 196); below, it is gemm's, the same in every set.
    let w1 = rand_var(&[20, 13], 4);
    fwd_bwd("conv1x1_relu_256px", &[&big, &w1], ops::conv2d_same(&big, &w1, true).unwrap(), &[false, true], &mut all);
    let w1 = rand_var(&[13, 20], 5);
    fwd_bwd("conv1x1_196px", &[&x, &w1], ops::conv2d_same(&x, &w1, false).unwrap(), &[false, true], &mut all);
    let small = rand_var(&[4, 20, 7, 7], 17);
    fwd_bwd("conv1x1_49px", &[&small, &w1], ops::conv2d_same(&small, &w1, true).unwrap(), &[false, false], &mut all);
    for k in [3, 5] {
        let w = rand_var(&[8, 20, k, k], 6);
        fwd_bwd(&format!("conv{k}x{k}_relu"), &[&x, &w], ops::conv2d_same(&x, &w, true).unwrap(), &[false, false], &mut all);
    }
    let (gamma, beta) = (rand_var(&[20], 7), rand_var(&[20], 8));
    let (out, _) = ops::batch_norm_relu_train(&x, &gamma, &beta, 1e-5).unwrap();
    fwd_bwd("batch_norm_relu", &[&x, &gamma, &beta], out, &[false, false, false], &mut all);
    let (dw, pw, g2, b2) = (rand_var(&[13, 1, 3, 3], 9), rand_var(&[13, 13], 10), rand_var(&[13], 11), rand_var(&[13], 12));
    let half = SepHalf { dw: dw.as_tensor(), pw: pw.as_tensor(), gamma: g2.as_tensor(), beta: b2.as_tensor() };
    let (out, _) = ops::sep_conv_bn_train(&big, &[half], 1, false, 1e-5).unwrap();
    fwd_bwd("sep_conv_bn", &[&big, &dw, &pw, &g2, &b2], out, &[false, false, true, false, false], &mut all);
    let (v, g, w) = (rand_var(&[1000], 13), rand_var(&[1000], 14), rand_var(&[1000], 15));
    let step = SgdStep { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 3e-4, decoupled: false };
    ops::sgd_velocity(v.as_tensor(), g.as_tensor(), w.as_tensor(), step).unwrap();
    ops::sgd_weight(w.as_tensor(), g.as_tensor(), v.as_tensor(), step).unwrap();
    all.push(Output { name: "sgd.velocity".into(), values: v.as_tensor().copy().unwrap(), lane_sums: false });
    all.push(Output { name: "sgd.weight".into(), values: w.as_tensor().copy().unwrap(), lane_sums: false });
    let y = rand_var(&[4, 20, 14, 14], 16);
    let sum = ops::sum_of(x.as_tensor(), y.as_tensor()).unwrap();
    ops::add_into(&sum, x.as_tensor()).unwrap();
    all.push(Output { name: "sum_of+add_into".into(), values: sum, lane_sums: false });
    all
}

fn battery_with(set: KernelSet) -> Vec<Output> {
    simd::set_active(set).unwrap();
    let out = battery();
    assert_eq!(simd::active(), set);
    out
}

#[test]
fn every_kernel_set_matches_the_baseline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sets = KernelSet::available_sets();
    assert_eq!(sets[0], KernelSet::Baseline);
    assert!(sets.contains(&KernelSet::detected()));
    let reference = battery_with(KernelSet::Baseline);
    for set in sets {
        let first = battery_with(set);
        let again = battery_with(set);
        for ((a, b), r) in first.iter().zip(&again).zip(&reference) {
            assert_eq!(bits(&a.values), bits(&b.values), "{set}: {} differs run to run", a.name);
            if a.lane_sums {
                let max_abs = |t: &Tensor| t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                let (scale, d) = (max_abs(&r.values).max(1.0), max_abs(&(&a.values - &r.values).unwrap()));
                assert!(d <= 1e-5 * scale, "{set}: {} is {d} from the baseline's", a.name);
            } else {
                assert_eq!(bits(&a.values), bits(&r.values), "{set}: {} is not the baseline's, bit for bit", a.name);
            }
        }
    }
    simd::set_active(KernelSet::detected()).unwrap();
}

#[test]
fn kernel_sets_by_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for set in KernelSet::available_sets() {
        assert_eq!(KernelSet::parse(set.name()), Some(set));
    }
    assert_eq!(KernelSet::parse("native"), Some(KernelSet::detected()));
    assert_eq!(KernelSet::parse(" AVX2 "), Some(KernelSet::Avx2));
    assert_eq!(KernelSet::parse("sse9"), None);
    // A set this CPU cannot run is refused, naming what it can run.
    for set in [KernelSet::Avx2, KernelSet::Avx512, KernelSet::Neon] {
        if !set.available() {
            let e = simd::set_active(set).unwrap_err();
            assert!(e.contains(set.name()) && e.contains("baseline"), "{e}");
        }
    }
    assert!(!(KernelSet::Neon.available() && KernelSet::Avx2.available()));
}
