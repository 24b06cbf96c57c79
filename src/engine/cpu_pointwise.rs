//! CPU kernels for the non-convolution ops: instance norm + activation, channel softmax,
//! sigmoid, argmax, add/scale, sliding-window accumulation and affine resampling (with its
//! gradient). Multi-threaded with rayon over independent rows or channels; results match
//! [`super::reference`] within the bounds stated in `tests/engine_cpu_ops.rs` (the reduction
//! order differs; statistics are accumulated in f64).

use rayon::prelude::*;

use super::ops::Activation;
use super::reference::Interp;
use super::tensor::{Element, Tensor};
use super::{shape_err, EngineError};

/// Instance norm per (n, c) with affine and activation (see [`super::reference`]).
pub fn instance_norm_act(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
) -> Result<Tensor, EngineError> {
    instance_norm_act_in_place(x.clone(), gamma, beta, eps, act)
}

/// [`instance_norm_act`] overwriting `x` (no second activation-sized buffer).
pub fn instance_norm_act_in_place(
    mut x: Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
) -> Result<Tensor, EngineError> {
    let s = x.shape();
    if gamma.len() != s[1] || beta.len() != s[1] {
        return Err(shape_err(
            "instance_norm",
            "gamma/beta length differs from channels",
            &[s],
        ));
    }
    let len = x.spatial_len();
    if len == 0 {
        return Ok(x);
    }
    x.data_mut()
        .par_chunks_mut(len)
        .enumerate()
        .for_each(|(nc, ch)| {
            let c = nc % s[1];
            // Two passes in f64: mean, then centred sum of squares (no cancellation).
            let mean = sum_f64(ch, |v| v) / len as f64;
            let var = sum_f64(ch, |v| (v - mean) * (v - mean)) / len as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            let a = (inv * gamma[c] as f64) as f32;
            let b = (beta[c] as f64 - mean * inv * gamma[c] as f64) as f32;
            // `v * a + b` (two roundings): vectorises on every target, where `mul_add`
            // without hardware FMA at compile time becomes a libm call per element.
            match act {
                Activation::LeakyRelu(slope) => {
                    for v in ch.iter_mut() {
                        let t = *v * a + b;
                        *v = if t >= 0.0 { t } else { slope * t };
                    }
                }
                _ => {
                    for v in ch.iter_mut() {
                        *v = act.apply(*v * a + b);
                    }
                }
            }
        });
    Ok(x)
}

/// Σ f(x) in f64 over eight interleaved partial sums (independent chains, so the loop
/// pipelines and vectorises; the order is fixed, so results are deterministic).
fn sum_f64(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(*v as f64);
        }
    }
    let mut total =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for v in rest {
        total += f(*v as f64);
    }
    total
}

/// `[a, b]` along channels (N, D, H, W must match), one contiguous copy per (n, channel).
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(shape_err(
            "concat_channels",
            "N, D, H, W must match",
            &[sa, sb],
        ));
    }
    let len = a.spatial_len();
    let (ca, cb) = (sa[1] * len, sb[1] * len);
    let mut data = Vec::with_capacity(a.data().len() + b.data().len());
    for n in 0..sa[0] {
        data.extend_from_slice(&a.data()[n * ca..(n + 1) * ca]);
        data.extend_from_slice(&b.data()[n * cb..(n + 1) * cb]);
    }
    Tensor::new([sa[0], sa[1] + sb[1], sa[2], sa[3], sa[4]], data)
}

/// The box `start .. start + size` (D, H, W) of every (n, channel), copied row by row.
pub fn crop_spatial<T: Element>(
    x: &Tensor<T>,
    start: [usize; 3],
    size: [usize; 3],
) -> Result<Tensor<T>, EngineError> {
    let s = x.shape();
    if (0..3).any(|a| start[a] + size[a] > s[a + 2]) {
        return Err(shape_err("crop_spatial", "box outside the tensor", &[s]));
    }
    let mut data = Vec::with_capacity(s[0] * s[1] * size.iter().product::<usize>());
    let src = x.data();
    for nc in 0..s[0] * s[1] {
        for d in start[0]..start[0] + size[0] {
            for h in start[1]..start[1] + size[1] {
                let row = ((nc * s[2] + d) * s[3] + h) * s[4] + start[2];
                data.extend_from_slice(&src[row..row + size[2]]);
            }
        }
    }
    Tensor::new([s[0], s[1], size[0], size[1], size[2]], data)
}

/// Softmax over channels at every (n, voxel).
pub fn softmax_channels(x: &Tensor) -> Tensor {
    let s = x.shape();
    let len = x.spatial_len();
    let mut out = x.clone();
    let per_batch = s[1] * len;
    if per_batch == 0 {
        return out;
    }
    out.data_mut().par_chunks_mut(per_batch).for_each(|batch| {
        let mut maxv = vec![f32::NEG_INFINITY; len];
        for c in 0..s[1] {
            for (m, v) in maxv.iter_mut().zip(&batch[c * len..(c + 1) * len]) {
                *m = m.max(*v);
            }
        }
        let mut sum = vec![0f32; len];
        for c in 0..s[1] {
            for ((v, m), z) in batch[c * len..(c + 1) * len]
                .iter_mut()
                .zip(&maxv)
                .zip(sum.iter_mut())
            {
                *v = (*v - m).exp();
                *z += *v;
            }
        }
        for c in 0..s[1] {
            for (v, z) in batch[c * len..(c + 1) * len].iter_mut().zip(&sum) {
                *v /= z;
            }
        }
    });
    out
}

/// Logistic sigmoid of every element.
pub fn sigmoid(x: &Tensor) -> Tensor {
    let mut out = x.clone();
    out.data_mut()
        .par_iter_mut()
        .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
    out
}

/// Index of the largest channel at every (n, voxel), the first on ties.
pub fn argmax_channels(x: &Tensor) -> Vec<u32> {
    let s = x.shape();
    let len = x.spatial_len();
    let mut out = vec![0u32; s[0] * len];
    if len == 0 {
        return out;
    }
    out.par_chunks_mut(len).enumerate().for_each(|(n, o)| {
        let mut best = x.channel(n, 0).to_vec();
        for c in 1..s[1] {
            for ((b, idx), v) in best.iter_mut().zip(o.iter_mut()).zip(x.channel(n, c)) {
                if *v > *b {
                    *b = *v;
                    *idx = c as u32;
                }
            }
        }
    });
    out
}

/// `a + b` element-wise.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    if a.shape() != b.shape() {
        return Err(shape_err("add", "shapes differ", &[a.shape(), b.shape()]));
    }
    let mut out = a.clone();
    out.data_mut()
        .par_iter_mut()
        .zip(b.data().par_iter())
        .for_each(|(x, y)| *x += y);
    Ok(out)
}

/// `s · a` element-wise.
pub fn scale(a: &Tensor, s: f32) -> Tensor {
    let mut out = a.clone();
    out.data_mut().par_iter_mut().for_each(|v| *v *= s);
    out
}

/// Sliding-window accumulation (see [`super::reference::accumulate_patch`]).
/// Generic over the storage of `acc`, `weight_sum` and `gaussian` with the reference's
/// rounding (one rounding to the storage type per update).
pub fn accumulate_patch<T: Element>(
    acc: &mut Tensor<T>,
    weight_sum: &mut [T],
    patch: &Tensor,
    gaussian: &[T],
    offset: [usize; 3],
) -> Result<(), EngineError> {
    let (sa, sp) = (acc.shape(), patch.shape());
    let inside = (0..3).all(|a| offset[a] + sp[2 + a] <= sa[2 + a]);
    if sa[0] != 1 || sp[0] != 1 || sa[1] != sp[1] || !inside {
        return Err(shape_err(
            "accumulate_patch",
            "patch must lie inside acc with equal C, N = 1",
            &[sa, sp],
        ));
    }
    if gaussian.len() != sp[2] * sp[3] * sp[4] || weight_sum.len() != sa[2] * sa[3] * sa[4] {
        return Err(shape_err(
            "accumulate_patch",
            "gaussian or weight_sum length",
            &[sa, sp],
        ));
    }
    let (pd, ph, pw) = (sp[2], sp[3], sp[4]);
    let (ah, aw) = (sa[3], sa[4]);
    let row = |d: usize, h: usize| ((d + offset[0]) * ah + h + offset[1]) * aw + offset[2];
    for d in 0..pd {
        for h in 0..ph {
            let g = &gaussian[(d * ph + h) * pw..(d * ph + h + 1) * pw];
            let start = row(d, h);
            for (w, gv) in weight_sum[start..start + pw].iter_mut().zip(g) {
                *w = T::from_f32(w.to_f32() + gv.to_f32());
            }
        }
    }
    let alen = acc.spatial_len();
    let plen = patch.spatial_len();
    acc.data_mut()
        .par_chunks_mut(alen)
        .zip(patch.data().par_chunks(plen))
        .for_each(|(a, p)| {
            for d in 0..pd {
                for h in 0..ph {
                    let g = &gaussian[(d * ph + h) * pw..(d * ph + h + 1) * pw];
                    let src = &p[(d * ph + h) * pw..(d * ph + h + 1) * pw];
                    let start = row(d, h);
                    for ((o, v), gv) in a[start..start + pw].iter_mut().zip(src).zip(g) {
                        *o = T::from_f32(o.to_f32() + v * gv.to_f32());
                    }
                }
            }
        });
    Ok(())
}

/// `acc / weight_sum` (see [`super::reference::normalize_accumulated`]), threaded over channels.
pub fn normalize_accumulated<T: Element>(
    acc: &Tensor<T>,
    weight_sum: &[T],
) -> Result<Tensor<T>, EngineError> {
    normalize_accumulated_in_place(acc.clone(), weight_sum)
}

/// [`normalize_accumulated`] reusing the accumulator's memory (no second logits-sized buffer).
pub fn normalize_accumulated_in_place<T: Element>(
    mut acc: Tensor<T>,
    weight_sum: &[T],
) -> Result<Tensor<T>, EngineError> {
    let s = acc.shape();
    if s[0] != 1 || weight_sum.len() != acc.spatial_len() {
        return Err(shape_err(
            "normalize_accumulated",
            "N = 1 and weight_sum of D·H·W values",
            &[s],
        ));
    }
    let len = acc.spatial_len().max(1);
    acc.data_mut().par_chunks_mut(len).for_each(|ch| {
        for (o, w) in ch.iter_mut().zip(weight_sum) {
            *o = T::from_f32(o.to_f32() / w.to_f32());
        }
    });
    Ok(acc)
}

/// Trilinear corner weights and base index of continuous index `p` (W, H, D order).
#[inline]
fn cell(p: [f64; 3]) -> ([isize; 3], [f64; 3]) {
    let f = p.map(f64::floor);
    (
        f.map(|v| v as isize),
        [p[0] - f[0], p[1] - f[1], p[2] - f[2]],
    )
}

/// Affine resampling (see [`super::reference`] for the convention).
pub fn resample_affine(
    x: &Tensor,
    theta: &[[f64; 4]; 3],
    out_dhw: [usize; 3],
    interp: Interp,
) -> Tensor {
    let s = x.shape();
    let shape = [s[0], s[1], out_dhw[0], out_dhw[1], out_dhw[2]];
    let mut out = Tensor::zeros(shape);
    let (od, oh, ow) = (out_dhw[0], out_dhw[1], out_dhw[2]);
    let size = [s[4] as isize, s[3] as isize, s[2] as isize];
    let plane = oh * ow;
    if plane == 0 || od == 0 {
        return out;
    }
    let in_len = x.spatial_len();
    out.data_mut()
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(slab, o)| {
            let nc = slab / od;
            let d = slab % od;
            let src = &x.data()[nc * in_len..(nc + 1) * in_len];
            let get = |i: [isize; 3]| -> f64 {
                if (0..3).any(|a| i[a] < 0 || i[a] >= size[a]) {
                    0.0
                } else {
                    src[((i[2] * size[1] + i[1]) * size[0] + i[0]) as usize] as f64
                }
            };
            for h in 0..oh {
                for w in 0..ow {
                    let q = [w as f64, h as f64, d as f64];
                    let p = [0, 1, 2].map(|r| {
                        theta[r][0] * q[0] + theta[r][1] * q[1] + theta[r][2] * q[2] + theta[r][3]
                    });
                    let v = match interp {
                        Interp::Nearest => get(p.map(|v| v.round_ties_even() as isize)),
                        Interp::Trilinear => {
                            let (b, t) = cell(p);
                            let mut v = 0.0;
                            for corner in 0..8usize {
                                let o = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                                let wgt: f64 = (0..3)
                                    .map(|a| if o[a] == 1 { t[a] } else { 1.0 - t[a] })
                                    .product();
                                if wgt != 0.0 {
                                    v += wgt
                                        * get([
                                            b[0] + o[0] as isize,
                                            b[1] + o[1] as isize,
                                            b[2] + o[2] as isize,
                                        ]);
                                }
                            }
                            v
                        }
                    };
                    o[h * ow + w] = v as f32;
                }
            }
        });
    out
}

/// Gradient of `Σ upstream · resample_affine(x, θ, trilinear)` with respect to θ (see
/// [`super::reference::resample_affine_grad`]); per-slab partial sums reduced in slab order.
pub fn resample_affine_grad(
    x: &Tensor,
    theta: &[[f64; 4]; 3],
    upstream: &Tensor,
) -> Result<[[f64; 4]; 3], EngineError> {
    let s = x.shape();
    let u = upstream.shape();
    if u[0] != s[0] || u[1] != s[1] {
        return Err(shape_err(
            "resample_affine_grad",
            "upstream N, C must match x",
            &[s, u],
        ));
    }
    let size = [s[4] as isize, s[3] as isize, s[2] as isize];
    let (od, oh, ow) = (u[2], u[3], u[4]);
    let plane = oh * ow;
    if plane == 0 || od == 0 {
        return Ok([[0.0; 4]; 3]);
    }
    let in_len = x.spatial_len();
    let partials: Vec<[[f64; 4]; 3]> = upstream
        .data()
        .par_chunks(plane)
        .enumerate()
        .map(|(slab, g_slab)| {
            let nc = slab / od;
            let d = slab % od;
            let src = &x.data()[nc * in_len..(nc + 1) * in_len];
            let get = |i: [isize; 3]| -> Option<f64> {
                if (0..3).any(|a| i[a] < 0 || i[a] >= size[a]) {
                    None
                } else {
                    Some(src[((i[2] * size[1] + i[1]) * size[0] + i[0]) as usize] as f64)
                }
            };
            let mut grad = [[0.0f64; 4]; 3];
            for h in 0..oh {
                for w in 0..ow {
                    let g = g_slab[h * ow + w] as f64;
                    if g == 0.0 {
                        continue;
                    }
                    let q = [w as f64, h as f64, d as f64, 1.0];
                    let p = [0, 1, 2].map(|r| (0..4).map(|c| theta[r][c] * q[c]).sum::<f64>());
                    let (b, t) = cell(p);
                    let mut dv = [0.0f64; 3];
                    for corner in 0..8usize {
                        let o = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                        let Some(val) = get([
                            b[0] + o[0] as isize,
                            b[1] + o[1] as isize,
                            b[2] + o[2] as isize,
                        ]) else {
                            continue;
                        };
                        for a in 0..3 {
                            let mut wgt = if o[a] == 1 { 1.0 } else { -1.0 };
                            for bb in 0..3 {
                                if bb != a {
                                    wgt *= if o[bb] == 1 { t[bb] } else { 1.0 - t[bb] };
                                }
                            }
                            dv[a] += wgt * val;
                        }
                    }
                    for r in 0..3 {
                        for c in 0..4 {
                            grad[r][c] += g * dv[r] * q[c];
                        }
                    }
                }
            }
            grad
        })
        .collect();
    let mut total = [[0.0f64; 4]; 3];
    for p in partials {
        for r in 0..3 {
            for c in 0..4 {
                total[r][c] += p[r][c];
            }
        }
    }
    Ok(total)
}
