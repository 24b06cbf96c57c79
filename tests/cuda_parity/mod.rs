//! One parity suite for every device that runs kernels/*.cu: the host emulation
//! (tests/engine_cuda_emulation.rs) and a real GPU (tests/engine_cuda_gpu.rs, `--ignored`).
//! Each function takes the backend under test and compares it with `engine::reference` on
//! odd, asymmetric shapes (channel counts that are not multiples of the kernels' tiles, more
//! than one block, more than one input-channel chunk), with its own error bound, a NaN check
//! on every output, and the shape errors of the reference. Guard regions around device
//! buffers are the device's business (the emulation checks them after every launch).
//!
//! Bounds, per op:
//! * conv3d / conv_transpose3d: |got − want| ≤ γ(n+1)·A + 2⁻²⁴·|want|, where A is the same
//!   convolution of |x|, |w|, |bias| and n the taps summed — the rounding bound of an f32 sum
//!   of n products (fused multiply-add), so a wrong tap or stride cannot hide under it;
//! * instance norm: 5e-5 absolute (f32 Welford statistics vs the reference's f64);
//! * softmax 2e-6, sigmoid 1e-6 absolute (f32 exp, ≤ 2 ulp on the GPU);
//! * argmax, add, scale, concat, nearest resampling: exact;
//! * accumulate_patch: 1e-6 relative (fused multiply-add vs separate);
//! * trilinear resampling: 1e-5 absolute on O(1) data (f32 weights vs f64);
//! * resampling gradient: 1e-8 relative to the largest entry (f64, other summation order).

#![allow(dead_code)]

use half::f16;
use nephrod::engine::cuda::device::Device;
use nephrod::engine::cuda::ops as cuda_ops;
use nephrod::engine::cuda::DeviceBackend;
use nephrod::engine::reference::{self, Interp};
use nephrod::engine::{Activation, Backend, Conv3d, ConvTranspose3d, EngineError, Tensor};

pub fn lcg_tensor(shape: [usize; 5], seed: u64) -> Tensor {
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

fn abs_tensor(t: &Tensor) -> Tensor {
    Tensor::new(t.shape(), t.data().iter().map(|v| v.abs()).collect()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "output lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn finite(what: &str, t: &Tensor) {
    if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
        panic!("{what}: non-finite output {} at {i}", t.data()[i]);
    }
}

fn report(op: &str, case: &str, err: f64, bound: f64) {
    println!("{op:<22} {case:<44} max err {err:.3e} (bound {bound:.1e})");
    assert!(
        err <= bound,
        "{op} {case}: error {err:e} above bound {bound:e}"
    );
}

/// Checks `got` against `want` with the per-element rounding bound of an f32 sum of `taps`
/// products whose absolute values sum to `abs_sum`.
fn check_sum_bound(
    op: &str,
    case: &str,
    got: &Tensor,
    want: &Tensor,
    abs_sum: &Tensor,
    taps: usize,
) {
    finite(op, got);
    assert_eq!(got.shape(), want.shape(), "{op} {case}: shape");
    let u = 2f64.powi(-24);
    let n = (taps + 1) as f64;
    let gamma = n * u / (1.0 - n * u);
    let mut worst_ratio = 0.0f64;
    let mut worst_err = 0.0f64;
    for ((g, w), a) in got.data().iter().zip(want.data()).zip(abs_sum.data()) {
        let err = (*g as f64 - *w as f64).abs();
        let bound = gamma * *a as f64 * 1.001 + u * (*w as f64).abs() + 1e-30;
        worst_ratio = worst_ratio.max(err / bound);
        worst_err = worst_err.max(err);
    }
    println!(
        "{op:<22} {case:<44} max err {worst_err:.3e} (≤ {worst_ratio:.2} of its rounding bound)"
    );
    assert!(
        worst_ratio <= 1.0,
        "{op} {case}: error {worst_err:e} exceeds the rounding bound ({worst_ratio:.2}×)"
    );
}

struct ConvCase {
    x: [usize; 5],
    w: [usize; 5],
    stride: [usize; 3],
    padding: [usize; 3],
    bias: bool,
}

pub fn conv3d(b: &dyn Backend) {
    let cases = [
        // 3³ stride 1 pad 1, Co not a multiple of 4, 630 voxels (3 blocks).
        ConvCase {
            x: [1, 3, 9, 10, 7],
            w: [5, 3, 3, 3, 3],
            stride: [1, 1, 1],
            padding: [1, 1, 1],
            bias: true,
        },
        // Anisotropic 5×1×3 kernel, mixed strides, batch 2, no bias.
        ConvCase {
            x: [2, 2, 11, 6, 9],
            w: [6, 2, 5, 1, 3],
            stride: [2, 1, 2],
            padding: [2, 0, 1],
            bias: false,
        },
        // Ci = 9 > one 8-channel chunk, stride 2 in H only, uneven padding use.
        ConvCase {
            x: [1, 9, 5, 7, 6],
            w: [3, 9, 2, 4, 1],
            stride: [1, 2, 1],
            padding: [0, 1, 0],
            bias: true,
        },
        // 1×1×1 projection, 7 output channels.
        ConvCase {
            x: [1, 4, 3, 5, 17],
            w: [7, 4, 1, 1, 1],
            stride: [1, 1, 1],
            padding: [0, 0, 0],
            bias: true,
        },
        // Stride-2 2×2×2 downsampling with odd sizes.
        ConvCase {
            x: [1, 5, 7, 9, 5],
            w: [4, 5, 2, 2, 2],
            stride: [2, 2, 2],
            padding: [0, 0, 0],
            bias: true,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let x = lcg_tensor(c.x, 10 + i as u64);
        let weight = lcg_tensor(c.w, 20 + i as u64);
        let bias = c.bias.then(|| {
            (0..c.w[0])
                .map(|o| 0.25 * o as f32 - 0.5)
                .collect::<Vec<f32>>()
        });
        let conv = Conv3d {
            weight: weight.clone(),
            bias: bias.clone(),
            stride: c.stride,
            padding: c.padding,
        };
        let abs_conv = Conv3d {
            weight: abs_tensor(&weight),
            bias: bias.map(|b| b.iter().map(|v| v.abs()).collect()),
            stride: c.stride,
            padding: c.padding,
        };
        let want = reference::conv3d(&x, &conv).unwrap();
        let a = reference::conv3d(&abs_tensor(&x), &abs_conv).unwrap();
        let got = b.conv3d(&x, &conv).unwrap();
        let taps = c.w[1] * c.w[2] * c.w[3] * c.w[4];
        check_sum_bound(
            "conv3d",
            &format!("x{:?} w{:?} s{:?} p{:?}", c.x, c.w, c.stride, c.padding),
            &got,
            &want,
            &a,
            taps,
        );
    }
    // Shape errors are the reference's.
    let x = lcg_tensor([1, 2, 4, 4, 4], 1);
    let bad = Conv3d {
        weight: lcg_tensor([3, 5, 3, 3, 3], 2),
        bias: None,
        stride: [1; 3],
        padding: [1; 3],
    };
    assert!(matches!(b.conv3d(&x, &bad), Err(EngineError::Shape { .. })));
}

pub fn conv_transpose3d(b: &dyn Backend) {
    let cases = [
        // kernel = stride = 2 (nnU-Net's upsampling), Co = 3.
        ConvCase {
            x: [1, 4, 4, 5, 3],
            w: [4, 3, 2, 2, 2],
            stride: [2, 2, 2],
            padding: [0, 0, 0],
            bias: true,
        },
        // General: 3×3×3, mixed strides, padding, batch 2, Ci = 10 (two chunks).
        ConvCase {
            x: [2, 10, 5, 4, 6],
            w: [10, 5, 3, 3, 3],
            stride: [2, 1, 2],
            padding: [1, 1, 0],
            bias: false,
        },
        // Anisotropic 1×3×2 kernel.
        ConvCase {
            x: [1, 3, 6, 3, 7],
            w: [3, 6, 1, 3, 2],
            stride: [1, 2, 2],
            padding: [0, 1, 0],
            bias: true,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let x = lcg_tensor(c.x, 40 + i as u64);
        let weight = lcg_tensor(c.w, 50 + i as u64);
        let bias = c.bias.then(|| {
            (0..c.w[1])
                .map(|o| 0.3 - 0.2 * o as f32)
                .collect::<Vec<f32>>()
        });
        let conv = ConvTranspose3d {
            weight: weight.clone(),
            bias: bias.clone(),
            stride: c.stride,
            padding: c.padding,
        };
        let abs_conv = ConvTranspose3d {
            weight: abs_tensor(&weight),
            bias: bias.map(|b| b.iter().map(|v| v.abs()).collect()),
            stride: c.stride,
            padding: c.padding,
        };
        let want = reference::conv_transpose3d(&x, &conv).unwrap();
        let a = reference::conv_transpose3d(&abs_tensor(&x), &abs_conv).unwrap();
        let got = b.conv_transpose3d(&x, &conv).unwrap();
        let taps = c.w[0] * c.w[2] * c.w[3] * c.w[4];
        check_sum_bound(
            "conv_transpose3d",
            &format!("x{:?} w{:?} s{:?} p{:?}", c.x, c.w, c.stride, c.padding),
            &got,
            &want,
            &a,
            taps,
        );
    }
}

const SHAPES: [[usize; 5]; 4] = [
    [1, 3, 20, 22, 18],
    [2, 5, 3, 1, 11],
    [1, 1, 9, 4, 2],
    [1, 2, 1, 1, 1],
];

pub fn instance_norm(b: &dyn Backend) {
    for (i, shape) in SHAPES.iter().enumerate() {
        // Offset data (mean ≈ 30) so that a naive Σx² − (Σx)² variance would fail.
        let x0 = lcg_tensor(*shape, i as u64);
        let x = Tensor::new(*shape, x0.data().iter().map(|v| v + 30.0).collect()).unwrap();
        let gamma: Vec<f32> = (0..shape[1]).map(|c| 0.5 + c as f32 * 0.3).collect();
        let beta: Vec<f32> = (0..shape[1]).map(|c| c as f32 * 0.1 - 0.2).collect();
        for act in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.01),
        ] {
            let want = reference::instance_norm_act(&x, &gamma, &beta, 1e-5, act).unwrap();
            let got = b.instance_norm_act(&x, &gamma, &beta, 1e-5, act).unwrap();
            finite("instance_norm", &got);
            let e = max_abs_diff(got.data(), want.data()) as f64;
            report("instance_norm", &format!("{shape:?} {act:?}"), e, 5e-5);
        }
    }
    let x = lcg_tensor([1, 2, 2, 2, 2], 9);
    assert!(matches!(
        b.instance_norm_act(&x, &[1.0], &[0.0, 0.0], 1e-5, Activation::Relu),
        Err(EngineError::Shape { .. })
    ));
}

pub fn channel_ops(b: &dyn Backend) {
    let mut shapes = SHAPES.to_vec();
    shapes.push([2, 4, 13, 11, 9]);
    for (i, shape) in shapes.iter().enumerate() {
        let x = lcg_tensor(*shape, 100 + i as u64);
        let case = format!("{shape:?}");
        let got = b.softmax_channels(&x).unwrap();
        finite("softmax", &got);
        report(
            "softmax_channels",
            &case,
            max_abs_diff(got.data(), reference::softmax_channels(&x).data()) as f64,
            2e-6,
        );
        let got = b.sigmoid(&x).unwrap();
        finite("sigmoid", &got);
        report(
            "sigmoid",
            &case,
            max_abs_diff(got.data(), reference::sigmoid(&x).data()) as f64,
            1e-6,
        );
        assert_eq!(
            b.argmax_channels(&x).unwrap(),
            reference::argmax_channels(&x),
            "argmax {case}"
        );
        let y = lcg_tensor(*shape, 200 + i as u64);
        assert_eq!(
            b.add(&x, &y).unwrap(),
            reference::add(&x, &y).unwrap(),
            "add {case}"
        );
        assert_eq!(
            b.scale(&x, -1.75).unwrap(),
            reference::scale(&x, -1.75),
            "scale {case}"
        );
    }
    // Ties go to the first channel.
    let tie = Tensor::from_fn([1, 4, 2, 3, 2], |[_, c, d, ..]| {
        if c == 1 + d || c == 3 {
            1.0
        } else {
            0.0
        }
    });
    assert_eq!(
        b.argmax_channels(&tie).unwrap(),
        reference::argmax_channels(&tie)
    );
    // Softmax survives large logits.
    let big = Tensor::from_fn([1, 3, 2, 2, 2], |[_, c, ..]| 1000.0 * c as f32);
    let s = b.softmax_channels(&big).unwrap();
    finite("softmax", &s);
    assert!((s.at([0, 2, 1, 1, 1]) - 1.0).abs() < 1e-6);
    // A long vector: the grid-stride loops go round more than once (1024 blocks × 256).
    let long = lcg_tensor([1, 1, 70, 61, 67], 7);
    let long2 = lcg_tensor([1, 1, 70, 61, 67], 8);
    assert_eq!(
        b.add(&long, &long2).unwrap(),
        reference::add(&long, &long2).unwrap(),
        "add long"
    );
    assert!(matches!(
        b.add(&x_of([1, 2, 3, 4, 5]), &x_of([1, 2, 3, 4, 6])),
        Err(EngineError::Shape { .. })
    ));
}

fn x_of(shape: [usize; 5]) -> Tensor {
    lcg_tensor(shape, 3)
}

pub fn concat(b: &dyn Backend) {
    let a = lcg_tensor([2, 3, 4, 5, 3], 1);
    let c = lcg_tensor([2, 1, 4, 5, 3], 2);
    assert_eq!(
        b.concat_channels(&a, &c).unwrap(),
        reference::concat_channels(&a, &c).unwrap()
    );
    assert_eq!(
        b.concat_channels(&c, &a).unwrap(),
        reference::concat_channels(&c, &a).unwrap()
    );
    let empty = Tensor::zeros([2, 0, 4, 5, 3]);
    assert_eq!(b.concat_channels(&a, &empty).unwrap(), a);
    assert!(matches!(
        b.concat_channels(&a, &lcg_tensor([2, 1, 4, 5, 2], 3)),
        Err(EngineError::Shape { .. })
    ));
}

pub fn accumulate_patch(b: &dyn Backend) {
    let shape = [1, 3, 12, 13, 11];
    let patch = lcg_tensor([1, 3, 5, 6, 4], 7);
    let gaussian: Vec<f32> = (0..5 * 6 * 4).map(|i| 0.1 + i as f32 * 0.01).collect();
    let mut acc_ref = lcg_tensor(shape, 8);
    let mut acc = acc_ref.clone();
    let mut w_ref = vec![0.5f32; 12 * 13 * 11];
    let mut w = w_ref.clone();
    // Two overlapping patches, as a sliding window places them.
    for offset in [[4, 7, 2], [6, 5, 7]] {
        reference::accumulate_patch(&mut acc_ref, &mut w_ref, &patch, &gaussian, offset).unwrap();
        b.accumulate_patch(&mut acc, &mut w, &patch, &gaussian, offset)
            .unwrap();
    }
    finite("accumulate_patch", &acc);
    let rel = acc
        .data()
        .iter()
        .zip(acc_ref.data())
        .map(|(g, r)| ((g - r).abs() / r.abs().max(1.0)) as f64)
        .fold(0.0, f64::max);
    report(
        "accumulate_patch",
        "acc [1,3,12,13,11] patch [1,3,5,6,4] ×2",
        rel,
        1e-6,
    );
    assert_eq!(w, w_ref, "weight sums");
    let before = acc.clone();
    assert!(matches!(
        b.accumulate_patch(&mut acc, &mut w, &patch, &gaussian, [8, 2, 7]),
        Err(EngineError::Shape { .. })
    ));
    assert_eq!(acc, before, "a refused patch writes nothing");
}

pub fn thetas() -> Vec<(&'static str, [[f64; 4]; 3])> {
    let (s, c) = 0.3f64.sin_cos();
    vec![
        (
            "identity",
            [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
        ),
        // Half-voxel shifts: every nearest lookup is a tie (rounds half to even).
        (
            "half shifts",
            [
                [1.0, 0.0, 0.0, 0.5],
                [0.0, 1.0, 0.0, -1.5],
                [0.0, 0.0, 1.0, 2.5],
            ],
        ),
        (
            "rotation",
            [[c, -s, 0.0, 1.3], [s, c, 0.0, -0.7], [0.0, 0.0, 1.1, 0.45]],
        ),
        (
            "general",
            [
                [0.8, 0.1, 0.05, -1.5],
                [-0.02, 1.3, 0.1, 0.25],
                [0.07, -0.1, 0.6, 2.2],
            ],
        ),
    ]
}

pub fn resample(b: &dyn Backend) {
    let x = lcg_tensor([2, 2, 10, 11, 9], 31);
    let out = [7, 12, 8];
    for (name, theta) in thetas() {
        for interp in [Interp::Nearest, Interp::Trilinear] {
            let want = reference::resample_affine(&x, &theta, out, interp);
            let got = b.resample_affine(&x, &theta, out, interp).unwrap();
            finite("resample", &got);
            let e = max_abs_diff(got.data(), want.data()) as f64;
            let bound = if interp == Interp::Nearest { 0.0 } else { 1e-5 };
            report("resample_affine", &format!("{name} {interp:?}"), e, bound);
        }
        let up = lcg_tensor([2, 2, 7, 12, 8], 32);
        let gw = reference::resample_affine_grad(&x, &theta, &up).unwrap();
        let gg = b.resample_affine_grad(&x, &theta, &up).unwrap();
        let scale = gw.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
        let e = (0..12)
            .map(|k| (gw[k / 4][k % 4] - gg[k / 4][k % 4]).abs() / scale)
            .fold(0.0, f64::max);
        assert!(
            gg.iter().flatten().all(|v| v.is_finite()),
            "gradient not finite"
        );
        report("resample_affine_grad", name, e, 1e-8);
    }
    assert!(matches!(
        b.resample_affine_grad(&x, &thetas()[0].1, &lcg_tensor([2, 3, 7, 12, 8], 1)),
        Err(EngineError::Shape { .. })
    ));
}

/// Weights stored as f16 (`conv3d_f16w`, `conv_transpose3d_f16w`): the output equals, bit for
/// bit, the f32 kernel's on the same weights widened to f32 (staging widens exactly; the
/// arithmetic is the same), and the reference within the conv bound. The weights include f16
/// subnormals, the largest finite f16 and −0 so that the bit conversion is exercised.
pub fn conv_f16_weights<D: Device>(b: &DeviceBackend<D>) {
    let specials = [0x0001u16, 0x03ff, 0x7bff, 0x8000, 0x8401, 0x3c00];
    let to_f16 = |w: &Tensor| {
        let mut h = w.to_f16();
        for (v, bits) in h.data_mut().iter_mut().zip(specials) {
            *v = f16::from_bits(bits);
        }
        h
    };
    let conv_cases = [
        ConvCase {
            x: [1, 9, 5, 7, 6],
            w: [5, 9, 3, 3, 3],
            stride: [1, 1, 1],
            padding: [1, 1, 1],
            bias: true,
        },
        ConvCase {
            x: [2, 2, 11, 6, 9],
            w: [6, 2, 5, 1, 3],
            stride: [2, 1, 2],
            padding: [2, 0, 1],
            bias: false,
        },
    ];
    for (i, c) in conv_cases.iter().enumerate() {
        let x = lcg_tensor(c.x, 40 + i as u64);
        let w16 = to_f16(&lcg_tensor(c.w, 50 + i as u64));
        let bias = c
            .bias
            .then(|| (0..c.w[0]).map(|o| 0.5 - 0.125 * o as f32).collect());
        let conv16 = Conv3d {
            weight: w16.clone(),
            bias: bias.clone(),
            stride: c.stride,
            padding: c.padding,
        };
        let conv32 = Conv3d {
            weight: w16.to_f32(),
            bias,
            stride: c.stride,
            padding: c.padding,
        };
        let got16 = cuda_ops::conv3d(b.device(), &x, &conv16).unwrap();
        let got32 = b.conv3d(&x, &conv32).unwrap();
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got16),
            bits(&got32),
            "conv3d_f16w vs conv3d_f32, case {i}"
        );
        let abs_conv = Conv3d {
            weight: abs_tensor(&conv32.weight),
            bias: conv32
                .bias
                .as_ref()
                .map(|b| b.iter().map(|v| v.abs()).collect()),
            stride: c.stride,
            padding: c.padding,
        };
        let want = reference::conv3d(&x, &conv32).unwrap();
        let a = reference::conv3d(&abs_tensor(&x), &abs_conv).unwrap();
        let taps = c.w[1] * c.w[2] * c.w[3] * c.w[4];
        check_sum_bound("conv3d_f16w", &format!("case {i}"), &got16, &want, &a, taps);
    }
    // Transposed: nnU-Net's 2×2×2 stride-2 up-convolution and a general case.
    for (i, (xs, ws, stride, padding)) in [
        ([1, 10, 4, 5, 3], [10, 3, 2, 2, 2], [2, 2, 2], [0, 0, 0]),
        ([2, 3, 5, 4, 6], [3, 5, 3, 3, 3], [2, 1, 2], [1, 1, 0]),
    ]
    .into_iter()
    .enumerate()
    {
        let x = lcg_tensor(xs, 60 + i as u64);
        let w16 = to_f16(&lcg_tensor(ws, 70 + i as u64));
        let bias = Some((0..ws[1]).map(|o| 0.25 * o as f32).collect::<Vec<f32>>());
        let t16 = ConvTranspose3d {
            weight: w16.clone(),
            bias: bias.clone(),
            stride,
            padding,
        };
        let t32 = ConvTranspose3d {
            weight: w16.to_f32(),
            bias,
            stride,
            padding,
        };
        let got16 = cuda_ops::conv_transpose3d(b.device(), &x, &t16).unwrap();
        let got32 = b.conv_transpose3d(&x, &t32).unwrap();
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got16),
            bits(&got32),
            "conv_transpose3d_f16w, case {i}"
        );
        let want = reference::conv_transpose3d(&x, &t32).unwrap();
        for (g, w) in got16.data().iter().zip(want.data()) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}
