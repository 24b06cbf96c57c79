//! The reference ops (`engine::reference`), the oracle every backend is tested against, checked
//! against PyTorch and against analytic identities that need no PyTorch.
//!
//! Goldens: `tests/data/engine/*.json`, written by `tools/oracle/engine_golden.py` (torch 2.15.0,
//! float64, inputs that are exact f32 values). The reference takes f32 tensors, accumulates in
//! f64 and rounds once to f32, so most bounds are one f32 rounding of the float64 result:
//! `U = 2⁻²⁴` (half an ulp) relative, plus an absolute slack for two different f64 summation
//! orders. Per op:
//! * conv3d, conv_transpose3d: `U·|e| + 1e-11` (≤ 135 f64 products of size ≤ 1 per output).
//! * instance norm: identity and ReLU `U·|e| + 1e-12`; LeakyReLU(0.01) `1.45e-7·|e| + 1e-12`
//!   (the reference applies the slope in f32 after rounding: two roundings plus
//!   |0.01f32 − 0.01| / 0.01 = 2.2e-8).
//! * softmax: `U·(1 + |x_c − m| + max_c' |x_c' − m|)·|e| + 1e-40` per element (`x − m` is taken in
//!   f32, so the exponent carries an error of `U·|x − m|`; the sum carries the largest of them).
//! * sigmoid: `(U + 1e-14)·|e|`.  argmax: exact.
//! * resample, trilinear: `U·|e| + 1e-12`; nearest: exact (the output is an input value or 0).
//! * resample gradient (f64 in, f64 out): `1e-9 · max_entry |e|`.
//!
//! Analytic checks: conv_transpose3d is the adjoint of conv3d; identity and delta kernels return
//! the input exactly; resampling with identity θ, integer translations and axis flips is exact;
//! the θ gradient matches central finite differences of the reference forward.
//! Run with `--nocapture` to see the largest error observed per case.

use std::path::PathBuf;

use half::f16;
use nephrod::engine::reference::{self, Interp};
use nephrod::engine::{cpu_pointwise, Activation, Conv3d, ConvTranspose3d, Tensor, TensorF16};
use serde_json::Value;

/// Unit roundoff of f32 (half an ulp, relative).
const U: f64 = 1.0 / 16_777_216.0;

// ----------------------------------------------------------------------------- loading

fn golden_cases(file: &str, expected_count: usize) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/engine")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate with engine_golden.py)", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["generator"], "tools/oracle/engine_golden.py");
    let cases = doc["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), expected_count, "{file}: case count");
    cases
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// f32 values given as f64 in the golden; they must be exact f32 values.
fn f32s(v: &Value) -> Vec<f32> {
    f64s(v)
        .into_iter()
        .map(|x| {
            assert_eq!(x as f32 as f64, x, "golden input {x} is not an f32 value");
            x as f32
        })
        .collect()
}

fn shape5(v: &Value) -> [usize; 5] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    s.try_into().unwrap()
}

fn usize3(v: &Value) -> [usize; 3] {
    let s: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    s.try_into().unwrap()
}

fn tensor(v: &Value) -> Tensor {
    Tensor::new(shape5(&v["shape"]), f32s(&v["data"])).unwrap()
}

fn theta(v: &Value) -> [[f64; 4]; 3] {
    let rows: Vec<[f64; 4]> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| f64s(r).try_into().unwrap())
        .collect();
    rows.try_into().unwrap()
}

// -------------------------------------------------------------------------- comparison

/// Asserts `|got − exp| ≤ bound(i, exp)` for every element and that `got` is finite. Returns the
/// largest absolute error and the largest error relative to |exp| (for the report).
fn compare(
    what: &str,
    got_shape: [usize; 5],
    got: &[f32],
    exp_v: &Value,
    bound: impl Fn(usize, f64) -> f64,
) -> (f64, f64) {
    assert_eq!(got_shape, shape5(&exp_v["shape"]), "{what}: output shape");
    let exp = f64s(&exp_v["data"]);
    assert_eq!(got.len(), exp.len(), "{what}: output length");
    let (mut max_abs, mut max_rel) = (0f64, 0f64);
    for (i, (&g, &e)) in got.iter().zip(&exp).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite output {g} at {i}");
        let err = (g as f64 - e).abs();
        let b = bound(i, e);
        assert!(
            err <= b,
            "{what}: element {i}: reference {g} vs torch {e}, |err| {err:.3e} > bound {b:.3e}"
        );
        max_abs = max_abs.max(err);
        if e != 0.0 {
            max_rel = max_rel.max(err / e.abs());
        }
    }
    println!("{what}: max |err| {max_abs:.3e}, max |err|/|e| {max_rel:.3e}");
    (max_abs, max_rel)
}

// -------------------------------------------------------------------------- conv goldens

#[test]
fn conv3d_matches_torch() {
    for case in golden_cases("conv3d.json", 7) {
        let name = format!("conv3d {}", case["name"].as_str().unwrap());
        let x = tensor(&case["x"]);
        let conv = Conv3d {
            weight: tensor(&case["weight"]),
            bias: (!case["bias"].is_null()).then(|| f32s(&case["bias"])),
            stride: usize3(&case["stride"]),
            padding: usize3(&case["padding"]),
        };
        let y = reference::conv3d(&x, &conv).unwrap();
        compare(&name, y.shape(), y.data(), &case["expected"], |_, e| {
            U * e.abs() + 1e-11
        });
    }
}

#[test]
fn conv_transpose3d_matches_torch() {
    for case in golden_cases("conv_transpose3d.json", 6) {
        let name = format!("conv_transpose3d {}", case["name"].as_str().unwrap());
        let x = tensor(&case["x"]);
        let conv = ConvTranspose3d {
            weight: tensor(&case["weight"]),
            bias: (!case["bias"].is_null()).then(|| f32s(&case["bias"])),
            stride: usize3(&case["stride"]),
            padding: usize3(&case["padding"]),
        };
        let y = reference::conv_transpose3d(&x, &conv).unwrap();
        compare(&name, y.shape(), y.data(), &case["expected"], |_, e| {
            U * e.abs() + 1e-11
        });
    }
}

// -------------------------------------------------------------------- pointwise goldens

#[test]
fn instance_norm_act_matches_torch() {
    for case in golden_cases("instance_norm.json", 6) {
        let name = format!("instance_norm {}", case["name"].as_str().unwrap());
        let x = tensor(&case["x"]);
        let eps = case["eps"].as_f64().unwrap();
        assert_eq!(eps as f32 as f64, eps, "eps is an f32 value");
        let (act, rtol) = match case["activation"].as_str().unwrap() {
            "identity" => (Activation::Identity, U),
            "relu" => (Activation::Relu, U),
            "leaky_relu_0.01" => (Activation::LeakyRelu(0.01), 1.45e-7),
            other => panic!("unknown activation {other}"),
        };
        let y = reference::instance_norm_act(
            &x,
            &f32s(&case["gamma"]),
            &f32s(&case["beta"]),
            eps as f32,
            act,
        )
        .unwrap();
        compare(&name, y.shape(), y.data(), &case["expected"], |_, e| {
            rtol * e.abs() + 1e-12
        });
    }
}

#[test]
fn softmax_sigmoid_argmax_match_torch() {
    for case in golden_cases("pointwise.json", 5) {
        let name = case["name"].as_str().unwrap();
        let x = tensor(&case["x"]);
        let s = x.shape();
        match case["op"].as_str().unwrap() {
            "softmax" => {
                let y = reference::softmax_channels(&x);
                // Per-voxel max and spread of the logits, for the bound (see the file doc).
                let spatial = x.spatial_len();
                let voxel = |i: usize| (i / (s[1] * spatial), i % spatial);
                let logits = |n: usize, v: usize| -> Vec<f64> {
                    (0..s[1])
                        .map(|c| x.channel(n, c)[v] as f64)
                        .collect::<Vec<_>>()
                };
                compare(name, y.shape(), y.data(), &case["expected"], |i, e| {
                    let (n, v) = voxel(i);
                    let l = logits(n, v);
                    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let spread = l.iter().map(|v| m - v).fold(0.0, f64::max);
                    let c = (i / spatial) % s[1];
                    U * (1.0 + (m - l[c]) + spread) * e.abs() + 1e-40
                });
            }
            "sigmoid" => {
                let y = reference::sigmoid(&x);
                compare(name, y.shape(), y.data(), &case["expected"], |_, e| {
                    (U + 1e-14) * e.abs()
                });
            }
            "argmax" => {
                let got = reference::argmax_channels(&x);
                let exp: Vec<u32> = f64s(&case["expected"]).iter().map(|v| *v as u32).collect();
                assert_eq!(got.len(), s[0] * s[2] * s[3] * s[4]);
                let wrong = got.iter().zip(&exp).filter(|(g, e)| g != e).count();
                assert_eq!(wrong, 0, "{name}: {wrong} voxels differ from torch.argmax");
                println!("{name}: {} voxels, all equal", got.len());
            }
            other => panic!("unknown op {other}"),
        }
    }
}

// ---------------------------------------------------------------------- resample goldens

#[test]
fn resample_affine_matches_torch_grid_sample() {
    for case in golden_cases("resample.json", 10) {
        let name = format!("resample {}", case["name"].as_str().unwrap());
        let x = tensor(&case["x"]);
        let interp = match case["interp"].as_str().unwrap() {
            "trilinear" => Interp::Trilinear,
            "nearest" => Interp::Nearest,
            other => panic!("unknown interp {other}"),
        };
        let y = reference::resample_affine(
            &x,
            &theta(&case["theta"]),
            usize3(&case["out_dhw"]),
            interp,
        );
        let (abs, _) = compare(
            &name,
            y.shape(),
            y.data(),
            &case["expected"],
            |_, e| match interp {
                Interp::Trilinear => U * e.abs() + 1e-12,
                Interp::Nearest => 0.0,
            },
        );
        if interp == Interp::Nearest {
            assert_eq!(abs, 0.0);
        }
    }
}

#[test]
fn resample_affine_grad_matches_torch_autograd() {
    for case in golden_cases("resample_grad.json", 4) {
        let name = case["name"].as_str().unwrap();
        let x = tensor(&case["x"]);
        let upstream = tensor(&case["upstream"]);
        let got = reference::resample_affine_grad(&x, &theta(&case["theta"]), &upstream).unwrap();
        let exp = theta(&case["expected"]);
        let scale = exp.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
        let mut max_rel = 0f64;
        for r in 0..3 {
            for c in 0..4 {
                let err = (got[r][c] - exp[r][c]).abs();
                assert!(
                    err <= 1e-9 * scale,
                    "resample_grad {name}: θ[{r}][{c}] reference {} vs torch {}, |err| {err:.3e}",
                    got[r][c],
                    exp[r][c]
                );
                max_rel = max_rel.max(err / scale);
            }
        }
        println!(
            "resample_grad {name}: max |err| / max|grad| {max_rel:.3e} (max|grad| {scale:.2})"
        );
    }
}

// -------------------------------------------------------------------- analytic: conv

/// Deterministic values in [-1, 1) (a 64-bit LCG, top 24 bits: exact f32 values).
/// f16 values given as f64 in the golden; they must be exact f16 values.
fn f16s(v: &Value) -> Vec<f16> {
    f64s(v)
        .into_iter()
        .map(|x| {
            let h = f16::from_f64(x);
            assert_eq!(h.to_f64(), x, "golden value {x} is not an f16 value");
            h
        })
        .collect()
}

/// nnU-Net's fp16 aggregation as torch runs it (engine_golden.py, accumulate_f16.json): the
/// reference and the CPU kernel give the same f16 bits for the accumulators, the weight sum and
/// the normalised logits.
#[test]
fn fp16_sliding_window_aggregation_matches_torch_bit_for_bit() {
    for case in golden_cases("accumulate_f16.json", 2) {
        let name = case["name"].as_str().unwrap();
        let ch = case["channels"].as_u64().unwrap() as usize;
        let vol = usize3(&case["volume"]);
        let patch = usize3(&case["patch"]);
        let gaussian = f16s(&case["gaussian"]);
        let shape = [1, ch, vol[0], vol[1], vol[2]];
        let patches: Vec<Tensor> = case["patches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Tensor::new([1, ch, patch[0], patch[1], patch[2]], f32s(p)).unwrap())
            .collect();
        let offsets: Vec<[usize; 3]> = case["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize3)
            .collect();
        let exp_acc = f16s(&case["acc"]);
        let exp_w = f16s(&case["weight_sum"]);
        let exp_out = f16s(&case["normalized"]);
        let bits = |v: &[f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<u16>>();
        for kernel in ["reference", "cpu"] {
            let mut acc = TensorF16::zeros(shape);
            let mut w = vec![f16::ZERO; vol.iter().product()];
            for (p, off) in patches.iter().zip(&offsets) {
                match kernel {
                    "reference" => {
                        reference::accumulate_patch(&mut acc, &mut w, p, &gaussian, *off)
                    }
                    _ => cpu_pointwise::accumulate_patch(&mut acc, &mut w, p, &gaussian, *off),
                }
                .unwrap();
            }
            assert_eq!(
                bits(acc.data()),
                bits(&exp_acc),
                "{name} {kernel}: accumulator"
            );
            assert_eq!(bits(&w), bits(&exp_w), "{name} {kernel}: weight sum");
            let out = match kernel {
                "reference" => reference::normalize_accumulated(&acc, &w),
                _ => cpu_pointwise::normalize_accumulated(&acc, &w),
            }
            .unwrap();
            assert_eq!(bits(out.data()), bits(&exp_out), "{name} {kernel}: acc / w");
        }
        // The f16 result must differ from an f32 accumulation somewhere, or the case would
        // not show the rounding it is there to pin down.
        let mut acc32 = Tensor::zeros(shape);
        let mut w32 = vec![0f32; vol.iter().product()];
        let g32: Vec<f32> = gaussian.iter().map(|g| g.to_f32()).collect();
        for (p, off) in patches.iter().zip(&offsets) {
            reference::accumulate_patch(&mut acc32, &mut w32, p, &g32, *off).unwrap();
        }
        let f32_then_round = acc32.to_f16();
        assert_ne!(
            bits(f32_then_round.data()),
            bits(&exp_acc),
            "{name}: case too easy"
        );
    }
}

fn lcg_tensor(shape: [usize; 5], seed: u64) -> Tensor {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Tensor::from_fn(shape, |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

fn dot(a: &Tensor, b: &Tensor) -> (f64, f64) {
    assert_eq!(a.shape(), b.shape());
    a.data()
        .iter()
        .zip(b.data())
        .fold((0.0, 0.0), |(s, m), (x, y)| {
            let p = *x as f64 * *y as f64;
            (s + p, m + p.abs())
        })
}

/// <conv(x), y> = <x, convT(y)> with the conv weight (O, I, k…) read as a transposed-conv
/// weight (I' = O, O' = I, k…) — the same memory and shape. Sizes are chosen so that
/// (in + 2·pad − k) is divisible by the stride (then convT's output has x's shape).
#[test]
fn conv_transpose3d_is_the_adjoint_of_conv3d() {
    // (x shape, out channels, kernel, stride, padding)
    type Config = ([usize; 5], usize, [usize; 3], [usize; 3], [usize; 3]);
    let configs: [Config; 5] = [
        ([1, 3, 5, 7, 6], 4, [3, 1, 3], [1, 2, 1], [1, 0, 2]),
        ([2, 2, 6, 4, 8], 3, [2, 2, 2], [2, 2, 2], [0, 0, 0]),
        ([1, 2, 7, 5, 7], 3, [5, 3, 1], [2, 1, 2], [2, 1, 0]),
        ([1, 3, 5, 7, 4], 2, [3, 3, 3], [2, 2, 1], [1, 1, 1]),
        ([1, 1, 3, 6, 5], 2, [3, 4, 5], [1, 2, 1], [2, 1, 2]),
    ];
    for (i, (xs, o, k, stride, padding)) in configs.into_iter().enumerate() {
        let seed = 100 + 3 * i as u64;
        let x = lcg_tensor(xs, seed);
        let weight = lcg_tensor([o, xs[1], k[0], k[1], k[2]], seed + 1);
        let conv = Conv3d {
            weight: weight.clone(),
            bias: None,
            stride,
            padding,
        };
        let cx = reference::conv3d(&x, &conv).unwrap();
        let y = lcg_tensor(cx.shape(), seed + 2);
        let convt = ConvTranspose3d {
            weight,
            bias: None,
            stride,
            padding,
        };
        let ty = reference::conv_transpose3d(&y, &convt).unwrap();
        assert_eq!(ty.shape(), xs, "config {i}: convT output shape");
        let (lhs, lmag) = dot(&cx, &y);
        let (rhs, rmag) = dot(&x, &ty);
        // Each side is a sum of f32-rounded outputs times exact inputs.
        let bound = 1.01 * U * (lmag + rmag) + 1e-12;
        let err = (lhs - rhs).abs();
        println!("adjoint config {i}: <conv x, y> {lhs:.6} vs <x, convT y> {rhs:.6}, |diff| {err:.2e} (bound {bound:.2e})");
        assert!(
            err <= bound,
            "config {i}: <conv x, y> = {lhs} but <x, convT y> = {rhs}"
        );
        assert!(lmag > 1.0, "config {i}: degenerate inner product");
    }
}

/// A kernel that is the identity across channels: 1 at `centre`, zero elsewhere.
fn delta_kernel(c: usize, k: [usize; 3], centre: [usize; 3]) -> Tensor {
    Tensor::from_fn([c, c, k[0], k[1], k[2]], |[o, i, d, h, w]| {
        if o == i && [d, h, w] == centre {
            1.0
        } else {
            0.0
        }
    })
}

#[test]
fn identity_and_delta_kernels_return_the_input_exactly() {
    let x = lcg_tensor([2, 3, 5, 7, 6], 7);
    // (kernel, centre, padding): 1×1×1, and asymmetric deltas whose padding re-centres them.
    for (k, centre, padding) in [
        ([1, 1, 1], [0, 0, 0], [0, 0, 0]),
        ([3, 5, 3], [1, 2, 1], [1, 2, 1]),
        ([5, 1, 3], [2, 0, 1], [2, 0, 1]),
    ] {
        let weight = delta_kernel(3, k, centre);
        let conv = Conv3d {
            weight: weight.clone(),
            bias: None,
            stride: [1, 1, 1],
            padding,
        };
        assert_eq!(reference::conv3d(&x, &conv).unwrap(), x, "conv3d {k:?}");
        let convt = ConvTranspose3d {
            weight,
            bias: None,
            stride: [1, 1, 1],
            padding,
        };
        assert_eq!(
            reference::conv_transpose3d(&x, &convt).unwrap(),
            x,
            "conv_transpose3d {k:?}"
        );
    }
    // A bias is added to every voxel of its channel.
    let conv = Conv3d {
        weight: delta_kernel(3, [1, 1, 1], [0, 0, 0]),
        bias: Some(vec![0.5, -2.0, 0.0]),
        stride: [1, 1, 1],
        padding: [0, 0, 0],
    };
    let y = reference::conv3d(&x, &conv).unwrap();
    for (g, e) in y
        .data()
        .iter()
        .zip(x.data())
        .enumerate()
        .map(|(i, (g, v))| {
            let c = (i / x.spatial_len()) % 3;
            (*g, *v + [0.5, -2.0, 0.0][c])
        })
    {
        assert_eq!(g, e);
    }
}

// ---------------------------------------------------------------- analytic: resampling

const IDENTITY: [[f64; 4]; 3] = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
];

#[test]
fn resample_with_identity_theta_is_exact() {
    for (i, shape) in [[1, 3, 5, 7, 6], [2, 1, 4, 1, 9], [1, 2, 1, 3, 2]]
        .into_iter()
        .enumerate()
    {
        let x = lcg_tensor(shape, 40 + i as u64);
        for interp in [Interp::Trilinear, Interp::Nearest] {
            let y =
                reference::resample_affine(&x, &IDENTITY, [shape[2], shape[3], shape[4]], interp);
            assert_eq!(y, x, "{shape:?} {interp:?}");
        }
    }
}

/// Integer translations and axis flips (every sample point an integer index) pick voxels
/// exactly, with 0 outside; the output size differs from the input's.
#[test]
fn resample_integer_translation_and_flip_are_exact() {
    let xs = [2, 2, 5, 7, 6];
    let x = lcg_tensor(xs, 77);
    let out = [4, 8, 7];
    // (theta, map from output (d, h, w) to input (d, h, w) as signed indices)
    type Map = fn(isize, isize, isize) -> [isize; 3];
    let cases: [([[f64; 4]; 3], Map); 3] = [
        (
            [
                [1.0, 0.0, 0.0, 2.0],
                [0.0, 1.0, 0.0, -3.0],
                [0.0, 0.0, 1.0, 1.0],
            ],
            |d, h, w| [d + 1, h - 3, w + 2],
        ),
        (
            [
                [1.0, 0.0, 0.0, -4.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, -1.0],
            ],
            |d, h, w| [d - 1, h, w - 4],
        ),
        // Flip W and D about the input's extent (w' = 5 − w, d' = 4 − d), shift H by 1.
        (
            [
                [-1.0, 0.0, 0.0, 5.0],
                [0.0, 1.0, 0.0, 1.0],
                [0.0, 0.0, -1.0, 4.0],
            ],
            |d, h, w| [4 - d, h + 1, 5 - w],
        ),
    ];
    for (k, (theta, map)) in cases.iter().enumerate() {
        let expected = Tensor::from_fn([xs[0], xs[1], out[0], out[1], out[2]], |[n, c, d, h, w]| {
            let [id, ih, iw] = map(d as isize, h as isize, w as isize);
            let inside = (0..xs[2] as isize).contains(&id)
                && (0..xs[3] as isize).contains(&ih)
                && (0..xs[4] as isize).contains(&iw);
            if inside {
                x.at([n, c, id as usize, ih as usize, iw as usize])
            } else {
                0.0
            }
        });
        let zeros = expected.data().iter().filter(|v| **v == 0.0).count();
        // Voxels picked from inside and zeros from outside both occur.
        let inside = expected.data().len() - zeros;
        assert!(
            zeros > 0 && inside * 4 >= expected.data().len(),
            "case {k}: coverage {inside} inside, {zeros} zero"
        );
        for interp in [Interp::Trilinear, Interp::Nearest] {
            let y = reference::resample_affine(&x, theta, out, interp);
            assert_eq!(y, expected, "case {k} {interp:?}");
        }
    }
}

/// `L(θ) = Σ upstream · resample(x, θ)` in f64, and `Σ |upstream · resample|` for the bound.
fn loss(x: &Tensor, theta: &[[f64; 4]; 3], upstream: &Tensor) -> (f64, f64) {
    let u = upstream.shape();
    let y = reference::resample_affine(x, theta, [u[2], u[3], u[4]], Interp::Trilinear);
    dot(&y, upstream)
}

/// Central finite differences of the reference forward match the analytic θ gradient. Within a
/// voxel cell the trilinear value is linear in each single coordinate p_r, and θ[r][c] moves only
/// p_r (by step·q_c), so the difference quotient is exact for every sample point that stays in
/// its cell over ±step; the others get upstream 0 (for that entry only). What remains is the f32
/// rounding of the forward's outputs, bounded by U·Σ|u·y| / step.
#[test]
fn resample_grad_matches_finite_differences() {
    // (x shape, out (D, H, W), theta) — rotation/scale/shear with translation; points outside.
    type Config = ([usize; 5], [usize; 3], [[f64; 4]; 3]);
    let configs: [Config; 2] = [
        (
            [1, 2, 5, 7, 6],
            [4, 6, 5],
            [
                [0.93, -0.31, 0.12, 0.71],
                [0.28, 1.05, -0.17, -0.43],
                [-0.09, 0.21, 0.88, 0.57],
            ],
        ),
        (
            [2, 1, 6, 5, 7],
            [5, 3, 4],
            [
                [1.21, 0.17, -0.33, -0.62],
                [-0.26, 0.79, 0.41, 1.37],
                [0.38, -0.14, 1.12, -1.21],
            ],
        ),
    ];
    let step = 1e-2;
    for (i, (xs, out, theta)) in configs.into_iter().enumerate() {
        let x = lcg_tensor(xs, 900 + i as u64);
        let upstream = lcg_tensor([xs[0], xs[1], out[0], out[1], out[2]], 950 + i as u64);
        let spatial = out[0] * out[1] * out[2];
        let mut max_err = 0f64;
        let mut max_grad = 0f64;
        for r in 0..3 {
            for c in 0..4 {
                // Keep only sample points whose p_r stays in one cell over θ[r][c] ± step.
                let mut kept = 0;
                let mut masked = upstream.clone();
                for v in 0..spatial {
                    let (d, h, w) = (v / (out[1] * out[2]), (v / out[2]) % out[1], v % out[2]);
                    let q = [w as f64, h as f64, d as f64, 1.0];
                    let p: f64 = (0..4).map(|k| theta[r][k] * q[k]).sum();
                    let stays = (p - step * q[c]).floor() == (p + step * q[c]).floor();
                    kept += stays as usize;
                    if !stays {
                        for n in 0..xs[0] {
                            for ch in 0..xs[1] {
                                masked.channel_mut(n, ch)[v] = 0.0;
                            }
                        }
                    }
                }
                assert!(
                    kept * 10 >= spatial * 6,
                    "config {i} θ[{r}][{c}]: {kept}/{spatial} kept"
                );
                let analytic = reference::resample_affine_grad(&x, &theta, &masked).unwrap()[r][c];
                let (mut plus, mut minus) = (theta, theta);
                plus[r][c] += step;
                minus[r][c] -= step;
                let (lp, mp) = loss(&x, &plus, &masked);
                let (lm, mm) = loss(&x, &minus, &masked);
                let fd = (lp - lm) / (2.0 * step);
                let bound = 1.01 * U * (mp + mm) / (2.0 * step) + 1e-9 * analytic.abs();
                let err = (fd - analytic).abs();
                assert!(
                    err <= bound,
                    "config {i} θ[{r}][{c}]: finite difference {fd} vs analytic {analytic}, |err| {err:.3e} > {bound:.3e}"
                );
                max_err = max_err.max(err);
                max_grad = max_grad.max(analytic.abs());
            }
        }
        assert!(max_grad > 1.0, "config {i}: degenerate gradient");
        println!("resample_grad finite differences config {i}: max |err| {max_err:.3e} (max|grad| {max_grad:.2})");
    }
}
