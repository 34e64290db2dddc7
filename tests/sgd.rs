//! The in-place SGD step (ops::sgd) against the same update composed from
//! candle tensor ops, bit for bit.
mod common;

use candle_core::Tensor;
use common::rand_tensor;
use enas::ops;

/// The SGD step written with tensors (what `train::Sgd` did before the in-place ops).
fn sgd_by_tensors(w: &Tensor, g: &Tensor, v: Option<&Tensor>, s: &ops::SgdStep) -> (Tensor, Option<Tensor>) {
    let g = if s.weight_decay > 0.0 && !s.decoupled { (g + (w * s.weight_decay).unwrap()).unwrap() } else { g.clone() };
    let (update, v) = if s.momentum > 0.0 {
        let v = match v {
            Some(v) => ((v * s.momentum).unwrap() + &g).unwrap(),
            None => g.clone(),
        };
        let u = if s.nesterov { (&g + (&v * s.momentum).unwrap()).unwrap() } else { v.clone() };
        (u, Some(v))
    } else {
        (g, None)
    };
    let mut next = (w - (update * s.lr).unwrap()).unwrap();
    if s.weight_decay > 0.0 && s.decoupled {
        next = (next - (w * (s.lr * s.weight_decay)).unwrap()).unwrap();
    }
    (next, v)
}

#[test]
fn in_place_sgd_is_bitwise_the_tensor_composition() {
    let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (momentum, nesterov) in [(0.9, true), (0.9, false), (0.0, false)] {
        for (weight_decay, decoupled) in [(0.0, false), (1e-3, false), (0.05, true)] {
            let s = ops::SgdStep { lr: 0.07, momentum, nesterov, weight_decay, decoupled };
            let what = format!("{s:?}");
            let (mut w_ref, mut v_ref) = (rand_tensor(&[5, 3, 7], 11), None);
            let w = w_ref.copy().unwrap();
            let mut v: Option<Tensor> = None;
            for step in 0..3 {
                let g = rand_tensor(&[5, 3, 7], 20 + step);
                (w_ref, v_ref) = sgd_by_tensors(&w_ref, &g, v_ref.as_ref(), &s);
                if momentum > 0.0 {
                    match &v {
                        Some(v) => ops::sgd_velocity(v, &g, &w, s).unwrap(),
                        None => v = Some(sgd_by_tensors(&w, &g, None, &ops::SgdStep { lr: 0.0, ..s }).1.unwrap()),
                    }
                }
                ops::sgd_weight(&w, &g, v.as_ref().unwrap_or(&g), s).unwrap();
                assert_eq!(bits(&w), bits(&w_ref), "{what}: weights after step {step}");
                if let (Some(v), Some(v_ref)) = (&v, &v_ref) {
                    assert_eq!(bits(v), bits(v_ref), "{what}: velocity after step {step}");
                }
            }
        }
    }
}
