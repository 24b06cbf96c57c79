//! The CPU backend's non-convolution ops against the naive reference (`engine::reference`) on
//! odd, asymmetric shapes, each with its own error bound, a NaN check, and guard regions for
//! the one op that writes into caller buffers (accumulate_patch).
//!
//! Bounds: instance norm 2e-5 absolute on unit-scale outputs (f32 fused multiply-add after f64
//! statistics); softmax 2e-6 (f32 exp vs f64); sigmoid 1e-6; argmax exact (inputs have no
//! ties); add/scale exact; accumulate 1e-6 relative; resample 1e-5 absolute on O(1) data
//! (f32 output of the same f64 arithmetic); gradient 1e-9 relative (same arithmetic, different
//! summation order).

use nephrod::engine::reference::{self, Interp};
use nephrod::engine::{Activation, Backend, CpuBackend, Tensor};

fn lcg_tensor(shape: [usize; 5], seed: u64) -> Tensor {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Tensor::from_fn(shape, |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn no_nan(t: &Tensor) {
    assert!(t.data().iter().all(|v| v.is_finite()), "non-finite output");
}

const SHAPES: [[usize; 5]; 3] = [[1, 3, 5, 7, 6], [2, 5, 3, 1, 11], [1, 1, 9, 4, 2]];

#[test]
fn instance_norm_matches_reference() {
    let cpu = CpuBackend;
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = lcg_tensor(*shape, i as u64);
        let gamma: Vec<f32> = (0..shape[1]).map(|c| 0.5 + c as f32 * 0.3).collect();
        let beta: Vec<f32> = (0..shape[1]).map(|c| c as f32 * 0.1 - 0.2).collect();
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.01),
        ] {
            let want = reference::instance_norm_act(&x, &gamma, &beta, 1e-5, act).unwrap();
            let got = cpu.instance_norm_act(&x, &gamma, &beta, 1e-5, act).unwrap();
            no_nan(&got);
            let e = max_abs_diff(got.data(), want.data());
            assert!(e < 2e-5, "{shape:?} {act:?}: {e}");
        }
    }
    let x = lcg_tensor([1, 2, 2, 2, 2], 9);
    assert!(cpu
        .instance_norm_act(&x, &[1.0], &[0.0, 0.0], 1e-5, Activation::Relu)
        .is_err());
}

#[test]
fn channel_ops_match_reference() {
    let cpu = CpuBackend;
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = lcg_tensor(*shape, 100 + i as u64);
        let e = max_abs_diff(
            cpu.softmax_channels(&x).unwrap().data(),
            reference::softmax_channels(&x).data(),
        );
        assert!(e < 2e-6, "softmax {shape:?}: {e}");
        let e = max_abs_diff(
            cpu.sigmoid(&x).unwrap().data(),
            reference::sigmoid(&x).data(),
        );
        assert!(e < 1e-6, "sigmoid {shape:?}: {e}");
        assert_eq!(
            cpu.argmax_channels(&x).unwrap(),
            reference::argmax_channels(&x)
        );
        let y = lcg_tensor(*shape, 200 + i as u64);
        assert_eq!(cpu.add(&x, &y).unwrap(), reference::add(&x, &y).unwrap());
        assert_eq!(cpu.scale(&x, -1.75).unwrap(), reference::scale(&x, -1.75));
    }
    // Softmax sums to one and survives large logits.
    let big = Tensor::from_fn([1, 3, 2, 2, 2], |[_, c, ..]| 1000.0 * c as f32);
    let s = cpu.softmax_channels(&big).unwrap();
    no_nan(&s);
    assert!((s.at([0, 2, 1, 1, 1]) - 1.0).abs() < 1e-6);
}

#[test]
fn accumulate_patch_matches_reference_and_stays_inside() {
    let cpu = CpuBackend;
    let shape = [1, 3, 9, 8, 11];
    let patch = lcg_tensor([1, 3, 4, 5, 3], 7);
    let gaussian: Vec<f32> = (0..4 * 5 * 3).map(|i| 0.1 + i as f32 * 0.01).collect();
    let mut acc_ref = lcg_tensor(shape, 8);
    let mut acc = acc_ref.clone();
    let mut w_ref = vec![0.5f32; 9 * 8 * 11];
    let mut w = w_ref.clone();
    let offset = [3, 2, 7];
    reference::accumulate_patch(&mut acc_ref, &mut w_ref, &patch, &gaussian, offset).unwrap();
    cpu.accumulate_patch(&mut acc, &mut w, &patch, &gaussian, offset)
        .unwrap();
    let e = max_abs_diff(acc.data(), acc_ref.data());
    assert!(e < 1e-6, "{e}");
    assert_eq!(w, w_ref);
    // Guard: everything outside the patch box is untouched (compare with the original).
    let orig = lcg_tensor(shape, 8);
    for c in 0..3 {
        for d in 0..9 {
            for h in 0..8 {
                for x in 0..11 {
                    let inside = (3..7).contains(&d) && (2..7).contains(&h) && (7..10).contains(&x);
                    if !inside {
                        assert_eq!(acc.at([0, c, d, h, x]), orig.at([0, c, d, h, x]));
                    }
                }
            }
        }
    }
    // A patch hanging over the edge is refused, and nothing is written.
    let before = acc.clone();
    assert!(cpu
        .accumulate_patch(&mut acc, &mut w, &patch, &gaussian, [6, 2, 7])
        .is_err());
    assert_eq!(acc, before);
}

fn thetas() -> Vec<[[f64; 4]; 3]> {
    let (s, c) = 0.3f64.sin_cos();
    vec![
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ],
        [[c, -s, 0.0, 1.3], [s, c, 0.0, -0.7], [0.0, 0.0, 1.1, 0.45]],
        [
            [0.8, 0.1, 0.05, -1.5],
            [-0.02, 1.3, 0.1, 0.25],
            [0.07, -0.1, 0.6, 2.2],
        ],
    ]
}

#[test]
fn resample_matches_reference() {
    let cpu = CpuBackend;
    let x = lcg_tensor([2, 2, 6, 7, 5], 31);
    for theta in thetas() {
        for interp in [Interp::Nearest, Interp::Trilinear] {
            let out = [5, 9, 4];
            let want = reference::resample_affine(&x, &theta, out, interp);
            let got = cpu.resample_affine(&x, &theta, out, interp).unwrap();
            no_nan(&got);
            let e = max_abs_diff(got.data(), want.data());
            assert!(e < 1e-5, "{interp:?}: {e}");
        }
        let up = lcg_tensor([2, 2, 5, 9, 4], 32);
        let gw = reference::resample_affine_grad(&x, &theta, &up).unwrap();
        let gg = cpu.resample_affine_grad(&x, &theta, &up).unwrap();
        for r in 0..3 {
            for c in 0..4 {
                let scale = gw[r][c].abs().max(1.0);
                assert!((gw[r][c] - gg[r][c]).abs() / scale < 1e-9, "{r},{c}");
            }
        }
    }
}
