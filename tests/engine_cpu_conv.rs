//! The CPU backend's conv3d and conv_transpose3d (`engine::cpu`) against the naive reference
//! (`engine::reference`, f64 accumulation) on odd, asymmetric shapes, for every instruction
//! set this CPU has (AVX-512F, AVX2+FMA and the portable path on a Zen 4 — each forced with
//! `with_isa`), with a NaN check and guard regions around the output buffer.
//!
//! Error bound, per output element: `|got − ref| ≤ (K + 2) · u · Σ|terms|`, where `u = 2⁻²⁴`
//! (f32 unit roundoff), `K` the number of products summed into that output plus one for the
//! bias (`I·kD·kH·kW + 1`), and `Σ|terms|` the same op evaluated by the reference on `|x|`,
//! `|w|`, `|bias|`. That is the textbook worst case for a length-K f32 summation (the kernels
//! accumulate in f32 in a different order from the f64 reference), plus half an ulp for the
//! reference's own rounding. Dropping or repeating any one term breaks it for these sizes
//! (`checker_rejects_a_missing_term`).
//!
//! Guard regions: `forward_into` writes into the middle of a buffer filled with a sentinel
//! NaN payload; the guards on both sides must keep their bits, and no sentinel may be left in
//! the output (every element written).

use nephrod::engine::cpu::{ConvKernel, Isa, PackedConv3d, PackedConvTranspose3d};
use nephrod::engine::Tensor;
use nephrod::engine::{reference, Backend, Conv3d, ConvTranspose3d, CpuBackend, EngineError};

const U: f64 = 1.0 / (1u64 << 24) as f64;
const GUARD: usize = 67;
const SENTINEL: u32 = 0x7fc0_dead;

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

fn abs_tensor(t: &Tensor) -> Tensor {
    Tensor::new(t.shape(), t.data().iter().map(|v| v.abs()).collect()).unwrap()
}

fn bias(n: usize, seed: u64) -> Option<Vec<f32>> {
    Some(lcg_tensor([1, 1, 1, 1, n], seed).into_data())
}

/// Instruction sets to test here: every one the CPU has. On x86-64 with AVX-512 that must
/// include all three x86 paths (the machine this was written for), so a silently skipped path
/// fails the test instead of passing.
fn isas() -> Vec<Isa> {
    let v = Isa::available();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(v, vec![Isa::Avx512, Isa::Avx2Fma, Isa::Scalar]);
    }
    assert!(v.contains(&Isa::Scalar));
    v
}

/// Worst offending element of `got` against `want` under the bound, as (index, error, bound),
/// or None when every element is within it.
fn check(got: &[f32], want: &[f32], abs_terms: &[f32], k: usize) -> Option<(usize, f64, f64)> {
    assert_eq!(got.len(), want.len());
    let mut worst: Option<(usize, f64, f64)> = None;
    for i in 0..got.len() {
        let e = (got[i] as f64 - want[i] as f64).abs();
        let bound = (k + 2) as f64 * U * abs_terms[i] as f64 * (1.0 + 4.0 * U) + f64::MIN_POSITIVE;
        if (e.is_nan() || e > bound) && worst.is_none_or(|w| e / bound > w.1 / w.2) {
            worst = Some((i, e, bound));
        }
    }
    worst
}

/// Runs `f` on a guarded buffer of `len` values; returns the written values.
fn guarded(len: usize, f: impl FnOnce(&mut [f32]) -> Result<(), EngineError>) -> Vec<f32> {
    let sentinel = f32::from_bits(SENTINEL);
    let mut buf = vec![sentinel; len + 2 * GUARD];
    f(&mut buf[GUARD..GUARD + len]).unwrap();
    for (i, v) in buf[..GUARD].iter().chain(&buf[GUARD + len..]).enumerate() {
        assert_eq!(v.to_bits(), SENTINEL, "guard value {i} overwritten");
    }
    let out = buf[GUARD..GUARD + len].to_vec();
    assert!(
        out.iter().all(|v| v.to_bits() != SENTINEL),
        "an output element was never written"
    );
    assert!(out.iter().all(|v| v.is_finite()), "non-finite output");
    out
}

struct ConvCase {
    x: [usize; 5],
    oc: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
}

const fn cc(
    x: [usize; 5],
    oc: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> ConvCase {
    ConvCase {
        x,
        oc,
        k,
        stride,
        padding,
    }
}

const CONV_CASES: &[ConvCase] = &[
    // The example: 5×1×3 kernel, strides (2,1,2), paddings (2,0,1).
    cc([1, 3, 11, 7, 9], 4, [5, 1, 3], [2, 1, 2], [2, 0, 1]),
    // Channel counts off every SIMD width / row block.
    cc([2, 5, 6, 9, 13], 7, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    cc([1, 17, 5, 6, 7], 19, [3, 2, 5], [1, 2, 1], [0, 1, 2]),
    // One input channel, wide rows: many tiles per unit, partial last tile.
    cc([1, 1, 9, 10, 33], 5, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    // nnU-Net's stride-2 down-convolution.
    cc([1, 6, 9, 8, 11], 7, [3, 3, 3], [2, 2, 2], [1, 1, 1]),
    // 5³ kernel, stride 2, padding 2.
    cc([1, 3, 9, 9, 9], 5, [5, 5, 5], [2, 2, 2], [2, 2, 2]),
    // 1×1×1 (segmentation head) and 1×1×1 with stride 2 (unused W/H phases).
    cc([1, 9, 4, 5, 6], 3, [1, 1, 1], [1, 1, 1], [0, 0, 0]),
    cc([1, 4, 5, 7, 9], 6, [1, 1, 1], [2, 2, 2], [0, 0, 0]),
    // Padding beyond the kernel: output planes/rows/columns with no valid tap (bias only).
    cc([1, 2, 1, 3, 4], 3, [1, 3, 2], [1, 1, 2], [2, 3, 2]),
    // Several row blocks per plane (large slab rows), anisotropic 1×3×3.
    cc([1, 37, 4, 30, 50], 11, [1, 3, 3], [1, 1, 1], [0, 1, 1]),
    // Few spatial units, many channels: output channels split across units.
    cc([1, 5, 2, 3, 4], 19, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    // No padding, even kernel.
    cc([1, 3, 6, 7, 8], 2, [2, 4, 2], [1, 2, 2], [0, 0, 0]),
];

fn conv_for(c: &ConvCase, seed: u64) -> (Tensor, Conv3d) {
    let x = lcg_tensor(c.x, seed);
    let conv = Conv3d {
        weight: lcg_tensor([c.oc, c.x[1], c.k[0], c.k[1], c.k[2]], seed + 1),
        bias: bias(c.oc, seed + 2),
        stride: c.stride,
        padding: c.padding,
    };
    (x, conv)
}

fn abs_conv(c: &Conv3d) -> Conv3d {
    Conv3d {
        weight: abs_tensor(&c.weight),
        bias: c.bias.as_ref().map(|b| b.iter().map(|v| v.abs()).collect()),
        stride: c.stride,
        padding: c.padding,
    }
}

fn check_conv(c: &ConvCase, seed: u64, isa: Isa, kernel: Option<ConvKernel>) {
    check_conv_blocked(c, seed, isa, kernel, None);
}

fn check_conv_blocked(
    c: &ConvCase,
    seed: u64,
    isa: Isa,
    kernel: Option<ConvKernel>,
    max_ic_block: Option<usize>,
) {
    let (x, conv) = conv_for(c, seed);
    let want = reference::conv3d(&x, &conv).unwrap();
    let terms = reference::conv3d(&abs_tensor(&x), &abs_conv(&conv)).unwrap();
    let packed = match kernel {
        Some(k) => PackedConv3d::with_kernel(&conv, isa, k).unwrap(),
        None => PackedConv3d::with_isa(&conv, isa).unwrap(),
    };
    let packed = match max_ic_block {
        Some(b) => packed.with_max_ic_block(b),
        None => packed,
    };
    assert_eq!(packed.isa(), isa);
    if let Some(k) = kernel {
        assert_eq!(packed.kernel(), k);
    }
    assert_eq!(packed.output_shape(c.x).unwrap(), want.shape());
    let got = guarded(want.data().len(), |out| packed.forward_into(&x, out));
    let k = c.x[1] * c.k.iter().product::<usize>() + 1;
    if let Some((i, e, b)) = check(&got, want.data(), terms.data(), k) {
        panic!(
            "conv3d {:?} k{:?} s{:?} p{:?} → {} on {isa:?} {:?}: element {i} ({:?}) off by {e:e}, bound {b:e}",
            c.x,
            c.k,
            c.stride,
            c.padding,
            c.oc,
            packed.kernel(),
            unflatten(want.shape(), i)
        );
    }
}

fn unflatten(s: [usize; 5], mut i: usize) -> [usize; 5] {
    let mut r = [0; 5];
    for a in (0..5).rev() {
        r[a] = i % s[a];
        i /= s[a];
    }
    r
}

#[test]
fn conv3d_matches_reference_on_every_isa_and_tiling() {
    for isa in isas() {
        for kernel in [ConvKernel::Spatial, ConvKernel::Channel] {
            for (i, c) in CONV_CASES.iter().enumerate() {
                check_conv(c, 10 * i as u64, isa, Some(kernel));
            }
        }
    }
}

#[test]
fn conv3d_every_row_length() {
    // Output rows of 1…26 positions (tiles of every width, several tiles per row, rows of
    // exactly one full tile) at strides 1 and 2, with 33 output channels (two 16-channel
    // transpose groups plus a partial block).
    for isa in isas() {
        for kernel in [ConvKernel::Spatial, ConvKernel::Channel] {
            for w in 1..=26 {
                for s in [1, 2] {
                    let c = cc([1, 3, 2, 3, w * s], 33, [1, 3, 3], [1, s, s], [0, 1, 1]);
                    check_conv(&c, w as u64, isa, Some(kernel));
                }
            }
        }
    }
}

#[test]
fn conv3d_with_the_reduction_split_into_blocks() {
    // Partial sums carried between blocks of input channels (large layers do this to keep
    // weights in L1): blocks of 1, 2 and 3 channels, uneven last block.
    for isa in isas() {
        for kernel in [ConvKernel::Spatial, ConvKernel::Channel] {
            for (i, c) in CONV_CASES.iter().enumerate() {
                for b in [1, 2, 3] {
                    check_conv_blocked(c, 300 + i as u64, isa, Some(kernel), Some(b));
                }
            }
        }
    }
}

#[test]
fn conv3d_is_independent_of_thread_count() {
    // Work-unit splitting depends on the pool size: 1 and 3 threads give other splits.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (i, c) in CONV_CASES.iter().enumerate().step_by(2) {
                check_conv(c, 77 + i as u64, Isa::detect(), None);
            }
        });
    }
}

#[test]
fn conv3d_without_bias_and_through_the_backend() {
    let (x, mut conv) = conv_for(&CONV_CASES[2], 5);
    conv.bias = None;
    let want = reference::conv3d(&x, &conv).unwrap();
    let terms = reference::conv3d(&abs_tensor(&x), &abs_conv(&conv)).unwrap();
    let got = CpuBackend.conv3d(&x, &conv).unwrap();
    assert_eq!(got.shape(), want.shape());
    assert!(check(got.data(), want.data(), terms.data(), 17 * 30 + 1).is_none());
}

struct TransposeCase {
    x: [usize; 5],
    oc: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    fast: bool,
}

const fn tc(
    x: [usize; 5],
    oc: usize,
    k: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    fast: bool,
) -> TransposeCase {
    TransposeCase {
        x,
        oc,
        k,
        stride,
        padding,
        fast,
    }
}

const TRANSPOSE_CASES: &[TransposeCase] = &[
    // nnU-Net's up-convolutions: 2×2×2 stride 2 and anisotropic 1×2×2 stride 1×2×2.
    tc([1, 5, 3, 4, 5], 7, [2, 2, 2], [2, 2, 2], [0, 0, 0], true),
    tc([2, 17, 3, 5, 2], 19, [1, 2, 2], [1, 2, 2], [0, 0, 0], true),
    // Kernel = stride, other shapes: odd W tap count (3), 6 taps per channel.
    tc([1, 4, 3, 2, 5], 3, [2, 2, 3], [2, 2, 3], [0, 0, 0], true),
    tc([1, 6, 2, 3, 7], 5, [3, 1, 2], [3, 1, 2], [0, 0, 0], true),
    // Many input positions: several slab chunks and units.
    tc([1, 40, 5, 12, 20], 9, [2, 2, 2], [2, 2, 2], [0, 0, 0], true),
    // Few positions, many channels: output channels split across units.
    tc([1, 3, 1, 2, 3], 21, [2, 2, 2], [2, 2, 2], [0, 0, 0], true),
    // General configurations (overlapping taps, padding).
    tc([1, 4, 3, 5, 4], 6, [3, 3, 3], [2, 2, 2], [1, 1, 1], false),
    tc([1, 3, 4, 3, 5], 2, [2, 3, 1], [1, 2, 2], [0, 1, 0], false),
    tc([1, 2, 2, 2, 2], 3, [2, 2, 2], [2, 2, 2], [1, 0, 0], false),
];

fn check_transpose(c: &TransposeCase, seed: u64, isa: Isa, kernel: Option<ConvKernel>) {
    let x = lcg_tensor(c.x, seed);
    let conv = ConvTranspose3d {
        weight: lcg_tensor([c.x[1], c.oc, c.k[0], c.k[1], c.k[2]], seed + 1),
        bias: bias(c.oc, seed + 2),
        stride: c.stride,
        padding: c.padding,
    };
    let abs = ConvTranspose3d {
        weight: abs_tensor(&conv.weight),
        bias: conv
            .bias
            .as_ref()
            .map(|b| b.iter().map(|v| v.abs()).collect()),
        stride: c.stride,
        padding: c.padding,
    };
    let want = reference::conv_transpose3d(&x, &conv).unwrap();
    let terms = reference::conv_transpose3d(&abs_tensor(&x), &abs).unwrap();
    let packed = PackedConvTranspose3d::with_kernel(&conv, isa, kernel).unwrap();
    assert_eq!(packed.is_fast_path(), c.fast, "{:?} k{:?}", c.x, c.k);
    if c.fast && kernel.is_some() {
        assert_eq!(packed.kernel(), kernel);
    }
    assert_eq!(packed.output_shape(c.x).unwrap(), want.shape());
    let got = guarded(want.data().len(), |out| packed.forward_into(&x, out));
    let k = c.x[1] * c.k.iter().product::<usize>() + 1;
    if let Some((i, e, b)) = check(&got, want.data(), terms.data(), k) {
        panic!(
            "conv_transpose3d {:?} k{:?} s{:?} p{:?} → {} on {isa:?} {kernel:?}: element {i} ({:?}) off by {e:e}, bound {b:e}",
            c.x,
            c.k,
            c.stride,
            c.padding,
            c.oc,
            unflatten(want.shape(), i)
        );
    }
}

#[test]
fn conv_transpose3d_matches_reference_on_every_isa() {
    for isa in isas() {
        for kernel in [None, Some(ConvKernel::Spatial), Some(ConvKernel::Channel)] {
            for (i, c) in TRANSPOSE_CASES.iter().enumerate() {
                check_transpose(c, 500 + 10 * i as u64, isa, kernel);
            }
        }
    }
}

#[test]
fn conv_transpose3d_is_independent_of_thread_count() {
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            for (i, c) in TRANSPOSE_CASES.iter().enumerate() {
                check_transpose(c, 900 + i as u64, Isa::detect(), None);
            }
        });
    }
}

#[test]
fn checker_rejects_a_missing_term() {
    // The bound is tight enough to see one dropped product of typical size in the largest
    // reduction tested (37 channels × 9 taps, 150× margin): remove the term of one output
    // element whose magnitude is closest to the mean.
    let c = &CONV_CASES[9];
    let (x, conv) = conv_for(c, 3);
    let want = reference::conv3d(&x, &conv).unwrap();
    let terms = reference::conv3d(&abs_tensor(&x), &abs_conv(&conv)).unwrap();
    let mut got = CpuBackend.conv3d(&x, &conv).unwrap().into_data();
    let k = c.x[1] * 9 + 1;
    assert!(check(&got, want.data(), terms.data(), k).is_none());
    // Output (0, 0, 0, 5, 5): its taps are x[i, 0, 4..7, 4..7] · w[0, i, 0, ..].
    let idx = (5 * 50) + 5;
    let mut products = Vec::new();
    for i in 0..c.x[1] {
        for kh in 0..3 {
            for kw in 0..3 {
                products.push(x.at([0, i, 0, 4 + kh, 4 + kw]) * conv.weight.at([0, i, 0, kh, kw]));
            }
        }
    }
    let mean = products.iter().map(|t| t.abs()).sum::<f32>() / products.len() as f32;
    let term = products
        .iter()
        .copied()
        .min_by(|a, b| (a.abs() - mean).abs().total_cmp(&(b.abs() - mean).abs()))
        .unwrap();
    got[idx] -= term;
    assert!(check(&got, want.data(), terms.data(), k).is_some());
}

#[test]
fn shape_errors_are_typed() {
    let (x, conv) = conv_for(&CONV_CASES[1], 1);
    let packed = PackedConv3d::new(&conv).unwrap();
    let wrong = lcg_tensor([1, 4, 6, 9, 13], 1);
    assert_eq!(packed.forward(&wrong).unwrap_err().kind(), "shape");
    let mut short = vec![0.0; 10];
    assert_eq!(
        packed.forward_into(&x, &mut short).unwrap_err().kind(),
        "shape"
    );
    let mut unpadded = conv.clone();
    unpadded.padding = [0, 0, 0];
    let tiny = lcg_tensor([1, 5, 2, 3, 3], 1);
    let packed_unpadded = PackedConv3d::new(&unpadded).unwrap();
    assert_eq!(packed_unpadded.forward(&tiny).unwrap_err().kind(), "shape");
    let mut bad = conv.clone();
    bad.stride = [3, 1, 1];
    assert_eq!(PackedConv3d::new(&bad).unwrap_err().kind(), "shape");
    bad = conv.clone();
    bad.bias = Some(vec![0.0; 2]);
    assert_eq!(PackedConv3d::new(&bad).unwrap_err().kind(), "shape");
    let t = ConvTranspose3d {
        weight: lcg_tensor([5, 3, 2, 2, 2], 2),
        bias: None,
        stride: [2, 2, 2],
        padding: [0, 0, 0],
    };
    let packed = PackedConvTranspose3d::new(&t).unwrap();
    assert_eq!(packed.forward(&wrong).unwrap_err().kind(), "shape");
    // An instruction set of another architecture is reported, not emulated.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        PackedConv3d::with_isa(&conv, Isa::Neon).unwrap_err().kind(),
        "unsupported"
    );
    #[cfg(target_arch = "aarch64")]
    assert_eq!(
        PackedConv3d::with_isa(&conv, Isa::Avx512)
            .unwrap_err()
            .kind(),
        "unsupported"
    );
}

#[test]
fn isa_names_round_trip() {
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::from_name("sse9"), None);
    assert!(Isa::detect().is_available());
}

/// The parity tests above cover the vector path of the CPU they run on: AVX-512 / AVX2 on
/// x86-64, NEON on aarch64 (the Jetson's cores; tools/test.sh runs this file for aarch64 under
/// qemu-user when the cross toolchain is there).
#[test]
fn the_vector_path_of_this_cpu_is_among_the_tested_ones() {
    let available = Isa::available();
    #[cfg(target_arch = "aarch64")]
    assert!(available.contains(&Isa::Neon), "{available:?}");
    #[cfg(target_arch = "x86_64")]
    assert!(
        available.contains(&Isa::Avx2Fma) || !std::arch::is_x86_feature_detected!("fma"),
        "{available:?}"
    );
    assert!(available.contains(&Isa::Scalar));
}
