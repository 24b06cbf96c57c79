//! Naive reference implementations of every engine op: direct loops, f64 accumulation, no
//! tricks. They define the semantics the backends must reproduce and serve as the oracle in
//! tests; they are never used for production work.
//!
//! # Resampling convention (grid-sample semantics)
//! [`resample_affine`] takes `theta`, a 3×4 matrix mapping an **output voxel index**
//! `q = (w, h, d, 1)` to a continuous **input voxel index** `p = θ·q = (pw, ph, pd)`, where an
//! integer index is the centre of that voxel. This equals PyTorch `grid_sample` with
//! `align_corners=True` (normalised coordinate `2·p/(size−1) − 1`) and `padding_mode="zeros"`:
//! * trilinear: the 8 neighbours of `p` weighted by `(1−f)` / `f` per axis; a neighbour outside
//!   `[0, size−1]` contributes 0 (so values fade to 0 within one voxel outside the volume);
//! * nearest: the voxel at `p` rounded half-to-even per axis (PyTorch's `nearbyint`); outside
//!   → 0.
//!
//! One exception: on an input axis of size 1, `grid_sample` cannot normalise (size − 1 = 0) and
//! always samples index 0; here `p` stays a plain index on every axis, so off-centre points fade
//! (trilinear) or vanish (nearest) as on any other axis. nephrod never resamples single-slice
//! volumes with this op.

use super::ops::{Activation, Conv3d, ConvTranspose3d};
use super::tensor::{Element, Tensor};
use super::{shape_err, EngineError};

/// Interpolation of [`resample_affine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    Nearest,
    Trilinear,
}

/// 3-D convolution (cross-correlation, like PyTorch) with zero padding.
pub fn conv3d(x: &Tensor, conv: &Conv3d) -> Result<Tensor, EngineError> {
    let xs = x.shape();
    let out_shape = conv.output_shape(xs)?;
    let w = &conv.weight;
    let ws = w.shape();
    let mut out = Tensor::zeros(out_shape);
    for n in 0..xs[0] {
        for o in 0..ws[0] {
            for od in 0..out_shape[2] {
                for oh in 0..out_shape[3] {
                    for ow in 0..out_shape[4] {
                        let mut acc = conv.bias.as_ref().map_or(0.0, |b| b[o] as f64);
                        for i in 0..ws[1] {
                            for kd in 0..ws[2] {
                                let id =
                                    (od * conv.stride[0] + kd) as isize - conv.padding[0] as isize;
                                if id < 0 || id >= xs[2] as isize {
                                    continue;
                                }
                                for kh in 0..ws[3] {
                                    let ih = (oh * conv.stride[1] + kh) as isize
                                        - conv.padding[1] as isize;
                                    if ih < 0 || ih >= xs[3] as isize {
                                        continue;
                                    }
                                    for kw in 0..ws[4] {
                                        let iw = (ow * conv.stride[2] + kw) as isize
                                            - conv.padding[2] as isize;
                                        if iw < 0 || iw >= xs[4] as isize {
                                            continue;
                                        }
                                        acc += x.at([n, i, id as usize, ih as usize, iw as usize])
                                            as f64
                                            * w.at([o, i, kd, kh, kw]) as f64;
                                    }
                                }
                            }
                        }
                        let off = out.offset([n, o, od, oh, ow]);
                        out.data_mut()[off] = acc as f32;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// 3-D transposed convolution (PyTorch `conv_transpose3d`): every input voxel scatters
/// `x · w[i, o]` to output position `in·stride − pad + k`.
pub fn conv_transpose3d(x: &Tensor, conv: &ConvTranspose3d) -> Result<Tensor, EngineError> {
    let xs = x.shape();
    let out_shape = conv.output_shape(xs)?;
    let w = &conv.weight;
    let ws = w.shape();
    let mut acc = vec![0f64; out_shape.iter().product()];
    let out_off = |i: [usize; 5]| {
        (((i[0] * out_shape[1] + i[1]) * out_shape[2] + i[2]) * out_shape[3] + i[3]) * out_shape[4]
            + i[4]
    };
    for n in 0..xs[0] {
        for i in 0..xs[1] {
            for d in 0..xs[2] {
                for h in 0..xs[3] {
                    for wi in 0..xs[4] {
                        let v = x.at([n, i, d, h, wi]) as f64;
                        for o in 0..ws[1] {
                            for kd in 0..ws[2] {
                                let od =
                                    (d * conv.stride[0] + kd) as isize - conv.padding[0] as isize;
                                if od < 0 || od >= out_shape[2] as isize {
                                    continue;
                                }
                                for kh in 0..ws[3] {
                                    let oh = (h * conv.stride[1] + kh) as isize
                                        - conv.padding[1] as isize;
                                    if oh < 0 || oh >= out_shape[3] as isize {
                                        continue;
                                    }
                                    for kw in 0..ws[4] {
                                        let ow = (wi * conv.stride[2] + kw) as isize
                                            - conv.padding[2] as isize;
                                        if ow < 0 || ow >= out_shape[4] as isize {
                                            continue;
                                        }
                                        acc[out_off([
                                            n,
                                            o,
                                            od as usize,
                                            oh as usize,
                                            ow as usize,
                                        ])] += v * w.at([i, o, kd, kh, kw]) as f64;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let mut out = Tensor::zeros(out_shape);
    let spatial = out_shape[2] * out_shape[3] * out_shape[4];
    for (idx, v) in acc.iter().enumerate() {
        let o = (idx / spatial) % out_shape[1];
        let b = conv.bias.as_ref().map_or(0.0, |b| b[o] as f64);
        out.data_mut()[idx] = (v + b) as f32;
    }
    Ok(out)
}

/// Instance normalisation per (n, c) over D·H·W with biased variance, affine `gamma`/`beta`
/// (length C), then `act`: `y = act((x − mean)/√(var + eps) · γ + β)`.
pub fn instance_norm_act(
    x: &Tensor,
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
    let mut out = x.clone();
    for n in 0..s[0] {
        for c in 0..s[1] {
            let ch = x.channel(n, c);
            let len = ch.len() as f64;
            let mean = ch.iter().map(|v| *v as f64).sum::<f64>() / len;
            let var = ch.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / len;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for (o, v) in out.channel_mut(n, c).iter_mut().zip(ch) {
                let y = (*v as f64 - mean) * inv * gamma[c] as f64 + beta[c] as f64;
                *o = act.apply(y as f32);
            }
        }
    }
    Ok(out)
}

/// Concatenation along channels (same N, D, H, W).
pub fn concat_channels(a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(shape_err(
            "concat_channels",
            "N, D, H, W must match",
            &[sa, sb],
        ));
    }
    let shape = [sa[0], sa[1] + sb[1], sa[2], sa[3], sa[4]];
    Ok(Tensor::from_fn(shape, |[n, c, d, h, w]| {
        if c < sa[1] {
            a.at([n, c, d, h, w])
        } else {
            b.at([n, c - sa[1], d, h, w])
        }
    }))
}

/// Softmax over channels at every (n, voxel), max-subtracted.
pub fn softmax_channels(x: &Tensor) -> Tensor {
    let s = x.shape();
    let mut out = x.clone();
    for n in 0..s[0] {
        for d in 0..s[2] {
            for h in 0..s[3] {
                for w in 0..s[4] {
                    let m = (0..s[1])
                        .map(|c| x.at([n, c, d, h, w]))
                        .fold(f32::NEG_INFINITY, f32::max);
                    let z: f64 = (0..s[1])
                        .map(|c| ((x.at([n, c, d, h, w]) - m) as f64).exp())
                        .sum();
                    for c in 0..s[1] {
                        let off = out.offset([n, c, d, h, w]);
                        out.data_mut()[off] =
                            (((x.at([n, c, d, h, w]) - m) as f64).exp() / z) as f32;
                    }
                }
            }
        }
    }
    out
}

/// Logistic sigmoid of every element.
pub fn sigmoid(x: &Tensor) -> Tensor {
    let mut out = x.clone();
    for v in out.data_mut() {
        *v = (1.0 / (1.0 + (-(*v as f64)).exp())) as f32;
    }
    out
}

/// Index of the largest channel at every (n, voxel), the first on ties; length N·D·H·W.
pub fn argmax_channels(x: &Tensor) -> Vec<u32> {
    let s = x.shape();
    let mut out = Vec::with_capacity(s[0] * s[2] * s[3] * s[4]);
    for n in 0..s[0] {
        for d in 0..s[2] {
            for h in 0..s[3] {
                for w in 0..s[4] {
                    let mut best = 0;
                    for c in 1..s[1] {
                        if x.at([n, c, d, h, w]) > x.at([n, best, d, h, w]) {
                            best = c;
                        }
                    }
                    out.push(best as u32);
                }
            }
        }
    }
    out
}

/// `a + b` element-wise (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor, EngineError> {
    if a.shape() != b.shape() {
        return Err(shape_err("add", "shapes differ", &[a.shape(), b.shape()]));
    }
    let data = a.data().iter().zip(b.data()).map(|(x, y)| x + y).collect();
    Tensor::new(a.shape(), data)
}

/// `s · a` element-wise.
pub fn scale(a: &Tensor, s: f32) -> Tensor {
    let mut out = a.clone();
    for v in out.data_mut() {
        *v *= s;
    }
    out
}

/// Sliding-window accumulation: adds `patch · gaussian` into `acc` at `offset` (D, H, W) and
/// `gaussian` into `weight_sum` (D·H·W of `acc`). `patch` is (1, C, pd, ph, pw) with the same C
/// as `acc` (1, C, D, H, W); `gaussian` has pd·ph·pw values; the patch must lie inside `acc`.
///
/// With f16 storage this is nnU-Net's aggregation (its §4.5): every update is computed in f32
/// and rounded once to the storage type, `acc = T(f32(acc) + patch · f32(g))`,
/// `weight_sum = T(f32(weight_sum) + f32(g))`.
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
    for d in 0..sp[2] {
        for h in 0..sp[3] {
            for w in 0..sp[4] {
                let g = gaussian[(d * sp[3] + h) * sp[4] + w].to_f32();
                let (ad, ah, aw) = (d + offset[0], h + offset[1], w + offset[2]);
                let ws = &mut weight_sum[(ad * sa[3] + ah) * sa[4] + aw];
                *ws = T::from_f32(ws.to_f32() + g);
                for c in 0..sp[1] {
                    let off = acc.offset([0, c, ad, ah, aw]);
                    let a = &mut acc.data_mut()[off];
                    *a = T::from_f32(a.to_f32() + patch.at([0, c, d, h, w]) * g);
                }
            }
        }
    }
    Ok(())
}

/// The sliding window's result: `acc / weight_sum` per voxel, computed in f32 and rounded once
/// to the storage type (nnU-Net: `torch.div(half, half)`). `weight_sum` has D·H·W values of
/// `acc` (N = 1).
pub fn normalize_accumulated<T: Element>(
    acc: &Tensor<T>,
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
    let mut out = acc.clone();
    for c in 0..s[1] {
        for (o, w) in out.channel_mut(0, c).iter_mut().zip(weight_sum) {
            *o = T::from_f32(o.to_f32() / w.to_f32());
        }
    }
    Ok(out)
}

/// Input index `θ·(w, h, d, 1)` as (pw, ph, pd).
fn map_index(theta: &[[f64; 4]; 3], w: usize, h: usize, d: usize) -> [f64; 3] {
    let q = [w as f64, h as f64, d as f64, 1.0];
    [0, 1, 2].map(|r| (0..4).map(|c| theta[r][c] * q[c]).sum())
}

/// Value of channel (n, c) at continuous index `p = (pw, ph, pd)` under `interp`, zero padding.
fn sample(x: &Tensor, n: usize, c: usize, p: [f64; 3], interp: Interp) -> f64 {
    let s = x.shape();
    let size = [s[4], s[3], s[2]]; // (W, H, D) matches p's order
    let get = |iw: isize, ih: isize, id: isize| -> f64 {
        if iw < 0
            || ih < 0
            || id < 0
            || iw >= size[0] as isize
            || ih >= size[1] as isize
            || id >= size[2] as isize
        {
            0.0
        } else {
            x.at([n, c, id as usize, ih as usize, iw as usize]) as f64
        }
    };
    match interp {
        Interp::Nearest => {
            let r = p.map(|v| v.round_ties_even() as isize);
            get(r[0], r[1], r[2])
        }
        Interp::Trilinear => {
            let f = p.map(f64::floor);
            let t = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
            let b = f.map(|v| v as isize);
            let mut v = 0.0;
            for corner in 0..8 {
                let o = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                let wgt: f64 = (0..3)
                    .map(|a| if o[a] == 1 { t[a] } else { 1.0 - t[a] })
                    .product();
                if wgt != 0.0 {
                    v += wgt
                        * get(
                            b[0] + o[0] as isize,
                            b[1] + o[1] as isize,
                            b[2] + o[2] as isize,
                        );
                }
            }
            v
        }
    }
}

/// Resamples `x` (N, C, D, H, W) onto an output grid of `out_dhw` through `theta` (see the
/// module doc for the convention).
pub fn resample_affine(
    x: &Tensor,
    theta: &[[f64; 4]; 3],
    out_dhw: [usize; 3],
    interp: Interp,
) -> Tensor {
    let s = x.shape();
    let shape = [s[0], s[1], out_dhw[0], out_dhw[1], out_dhw[2]];
    Tensor::from_fn(shape, |[n, c, d, h, w]| {
        sample(x, n, c, map_index(theta, w, h, d), interp) as f32
    })
}

/// Gradient of `L = Σ upstream · resample_affine(x, θ, trilinear)` with respect to the 12
/// entries of θ (row-major 3×4), for registration by gradient descent. `upstream` has the
/// output's shape. Inside each voxel cell the trilinear value is smooth in `p`; at cell borders
/// the one-sided derivative of the cell containing `p` (floor) is used, as PyTorch does.
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
    let size = [s[4], s[3], s[2]];
    let mut grad = [[0.0f64; 4]; 3];
    for n in 0..u[0] {
        for c in 0..u[1] {
            for d in 0..u[2] {
                for h in 0..u[3] {
                    for w in 0..u[4] {
                        let g = upstream.at([n, c, d, h, w]) as f64;
                        if g == 0.0 {
                            continue;
                        }
                        let p = map_index(theta, w, h, d);
                        let f = p.map(f64::floor);
                        let t = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
                        let b = f.map(|v| v as isize);
                        // ∂value/∂p per axis.
                        let mut dv = [0.0f64; 3];
                        for corner in 0..8 {
                            let o = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1];
                            let idx = [
                                b[0] + o[0] as isize,
                                b[1] + o[1] as isize,
                                b[2] + o[2] as isize,
                            ];
                            if (0..3).any(|a| idx[a] < 0 || idx[a] >= size[a] as isize) {
                                continue;
                            }
                            let val =
                                x.at([n, c, idx[2] as usize, idx[1] as usize, idx[0] as usize])
                                    as f64;
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
                        let q = [w as f64, h as f64, d as f64, 1.0];
                        for r in 0..3 {
                            for col in 0..4 {
                                grad[r][col] += g * dv[r] * q[col];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(grad)
}
