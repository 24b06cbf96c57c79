//! nnU-Net's resampling (`default_resampling.py::resample_data_or_seg_to_shape`,
//! shared/docs/nnunet-inference.md §3.5), reproducing scipy 1.17.1 / skimage 0.26 bit for bit
//! in f64.
//!
//! * Arrays are channel-first, C order, axes in nnU-Net's transposed order (= engine D, H, W).
//! * [`compute_new_shape`]: `round_half_even(old_spacing / new_spacing · old_shape)` in f64.
//! * [`separate_axis`]: the separate-z rule (anisotropy > 3 of the current spacing, else of the
//!   new spacing; the axis with the largest spacing; none when 2 or 3 axes share it).
//! * Spline resize (skimage `resize(order, mode='edge', anti_aliasing=False)` = scipy `zoom(...,
//!   mode='nearest', grid_mode=True)` then clip to the input's [min, max]):
//!   - order 3: edge-pad 12, cubic B-spline prefilter along each axis (pole √3 − 2, gain,
//!     scipy's 'reflect' causal/anti-causal initialisation), then per output voxel the sum over
//!     4ʳ taps, last axis fastest, of `((coef · w₀) · w₁) · w₂` with scipy's weight formulas at
//!     `cc = (k + 0.5) · (in / out) − 0.5 + 12` and tap indices clamped to the padded array;
//!   - order 1: no padding or prefilter, `cc = (k + 0.5) · (in / out) − 0.5`, 2ʳ taps, clamped;
//!   - an output shape equal to the input's returns the input unchanged.
//! * Separate z: 2-D resize of every slice along the axis, then nearest neighbour along it
//!   (`map_coordinates(order=0, mode='nearest')`: `floor(clamp(cc, 0, n − 1) + 0.5)`).
//! * Results are f64; callers store them as f32 (data) or f16 (exported logits), one rounding.
//! * Segmentations (cascade inputs, [`resample_segmentation`]): batchgenerators 0.25.5's
//!   `resize_segmentation` — per label an order-1 resize of its 0/1 mask, then the per-voxel
//!   argmax with exact ties settled by the nearest-neighbour label (not the older "≥ 0.5, later
//!   label wins" that shared/docs/nnunet-inference.md §3.5 describes; the pinned version
//!   differs on 4–10 % of voxels of the golden cases); separate z: 2-D per slice, then nearest
//!   neighbour along the axis.

use rayon::prelude::*;

use crate::segment::plan::ResamplingSettings;

/// Why resampling could not be done.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResampleError {
    #[error("spline order {0} is not supported (nnU-Net's plans use 1 and 3)")]
    Order(u8),
    #[error("order along the separate axis {0} is not supported (nnU-Net uses 0)")]
    OrderZ(u8),
    #[error("data of {got} values does not match shape {shape:?}")]
    Length { got: usize, shape: Vec<usize> },
    #[error("empty or invalid shape {0:?}")]
    Shape(Vec<usize>),
}

/// nnU-Net's `compute_new_shape`.
pub fn compute_new_shape(
    old_shape: [usize; 3],
    old_spacing: [f64; 3],
    new_spacing: [f64; 3],
) -> [usize; 3] {
    [0, 1, 2]
        .map(|a| (old_spacing[a] / new_spacing[a] * old_shape[a] as f64).round_ties_even() as usize)
}

fn anisotropic(sp: [f64; 3]) -> bool {
    let max = sp.iter().copied().fold(f64::MIN, f64::max);
    let min = sp.iter().copied().fold(f64::MAX, f64::min);
    max / min > 3.0
}

fn lowres_axes(sp: [f64; 3]) -> Vec<usize> {
    let max = sp.iter().copied().fold(f64::MIN, f64::max);
    (0..3).filter(|&a| max / sp[a] == 1.0).collect()
}

/// The axis resampled separately, if any (`force_separate_z` from the plan, else the rule).
pub fn separate_axis(current: [f64; 3], new: [f64; 3], force: Option<bool>) -> Option<usize> {
    let axes = match force {
        Some(true) => lowres_axes(current),
        Some(false) => return None,
        None if anisotropic(current) => lowres_axes(current),
        None if anisotropic(new) => lowres_axes(new),
        None => return None,
    };
    (axes.len() == 1).then(|| axes[0])
}

const PAD: usize = 12;

fn pole() -> f64 {
    3f64.sqrt() - 2.0
}

/// scipy's cubic B-spline prefilter of one line (mode 'reflect' initialisation).
fn prefilter_line(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = pole();
    let gain = 1.0 * ((1.0 - z) * (1.0 - 1.0 / z));
    for v in c.iter_mut() {
        *v *= gain;
    }
    // causal initialisation (_init_causal_reflect)
    let z_n = z.powf(n as f64);
    let c0 = c[0];
    let mut acc = c[0] + z_n * c[n - 1];
    let mut z_i = z;
    for i in 1..n {
        acc += z_i * (c[i] + z_n * c[n - 1 - i]);
        z_i *= z;
    }
    acc *= z / (1.0 - z_n * z_n);
    c[0] = acc + c0;
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // anti-causal (_init_anticausal_reflect)
    c[n - 1] *= z / (z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Per output index along one axis: first tap index (may be negative before clamping) and the
/// tap weights.
fn axis_taps(n_in: usize, n_out: usize, order: u8, pad: usize) -> Vec<Taps> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|k| {
            let cc = ((k as f64 + 0.5) * scale - 0.5) + pad as f64;
            let f = cc.floor();
            let t = cc - f;
            if order == 3 {
                let y = t;
                let z = 1.0 - y;
                let w0 = z * z * z / 6.0;
                let w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
                let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
                let w3 = ((1.0 - w0) - w1) - w2;
                (f as isize - 1, [w0, w1, w2, w3])
            } else {
                let w0 = 1.0 - t;
                (f as isize, [w0, 1.0 - w0, 0.0, 0.0])
            }
        })
        .collect()
}

/// First tap index and tap weights of one output index along one axis.
type Taps = (isize, [f64; 4]);

fn clamp_index(i: isize, n: usize) -> usize {
    i.clamp(0, n as isize - 1) as usize
}

/// Edge-pads a C-order array of `shape` by `pad` on every side.
fn edge_pad(x: &[f64], shape: &[usize], pad: usize) -> (Vec<f64>, Vec<usize>) {
    let ps: Vec<usize> = shape.iter().map(|s| s + 2 * pad).collect();
    let total: usize = ps.iter().product();
    let mut out = vec![0f64; total];
    let r = shape.len();
    let mut idx = vec![0usize; r];
    for o in out.iter_mut() {
        let mut off = 0usize;
        for a in 0..r {
            let src = clamp_index(idx[a] as isize - pad as isize, shape[a]);
            off = off * shape[a] + src;
        }
        *o = x[off];
        for a in (0..r).rev() {
            idx[a] += 1;
            if idx[a] < ps[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    (out, ps)
}

/// Applies the prefilter along every axis of a C-order array, in axis order.
fn prefilter(x: &mut [f64], shape: &[usize]) {
    let r = shape.len();
    for a in 0..r {
        let n = shape[a];
        let inner: usize = shape[a + 1..].iter().product();
        let outer: usize = shape[..a].iter().product();
        if n < 2 {
            continue;
        }
        // Gather each line, filter, scatter back (lines are independent).
        let lines: Vec<Vec<f64>> = (0..outer * inner)
            .into_par_iter()
            .map(|l| {
                let (o, i) = (l / inner, l % inner);
                let base = o * n * inner + i;
                let mut line: Vec<f64> = (0..n).map(|k| x[base + k * inner]).collect();
                prefilter_line(&mut line);
                line
            })
            .collect();
        for (l, line) in lines.into_iter().enumerate() {
            let (o, i) = (l / inner, l % inner);
            let base = o * n * inner + i;
            for (k, v) in line.into_iter().enumerate() {
                x[base + k * inner] = v;
            }
        }
    }
}

/// skimage `resize(x, out_shape, order, mode='edge', anti_aliasing=False)` for a 2-D or 3-D
/// f64 array (see the module doc).
pub fn spline_resize(
    x: &[f64],
    shape: &[usize],
    out_shape: &[usize],
    order: u8,
) -> Result<Vec<f64>, ResampleError> {
    if order != 1 && order != 3 {
        return Err(ResampleError::Order(order));
    }
    let r = shape.len();
    if !(2..=3).contains(&r) || out_shape.len() != r || shape.contains(&0) || out_shape.contains(&0)
    {
        return Err(ResampleError::Shape(shape.to_vec()));
    }
    if x.len() != shape.iter().product::<usize>() {
        return Err(ResampleError::Length {
            got: x.len(),
            shape: shape.to_vec(),
        });
    }
    if shape == out_shape {
        return Ok(x.to_vec());
    }
    let (coef, cshape, pad) = if order == 3 {
        let (mut p, ps) = edge_pad(x, shape, PAD);
        prefilter(&mut p, &ps);
        (p, ps, PAD)
    } else {
        (x.to_vec(), shape.to_vec(), 0)
    };
    let ntap = if order == 3 { 4 } else { 2 };
    let taps: Vec<Vec<Taps>> = (0..r)
        .map(|a| axis_taps(shape[a], out_shape[a], order, pad))
        .collect();
    let min = x.iter().copied().fold(f64::INFINITY, f64::min);
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Pad the rank to 3 with a leading unit axis for one evaluation loop.
    let (cs, os, tp): ([usize; 3], [usize; 3], [&[Taps]; 3]);
    let unit = vec![(0isize, [1.0, 0.0, 0.0, 0.0])];
    if r == 3 {
        cs = [cshape[0], cshape[1], cshape[2]];
        os = [out_shape[0], out_shape[1], out_shape[2]];
        tp = [&taps[0], &taps[1], &taps[2]];
    } else {
        cs = [1, cshape[0], cshape[1]];
        os = [1, out_shape[0], out_shape[1]];
        tp = [&unit, &taps[0], &taps[1]];
    }
    let n0 = if r == 3 { ntap } else { 1 };
    let plane = os[1] * os[2];
    let mut out = vec![0f64; os.iter().product()];
    out.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i0, dst)| {
            let (s0, w0) = tp[0][i0];
            for i1 in 0..os[1] {
                let (s1, w1) = tp[1][i1];
                for i2 in 0..os[2] {
                    let (s2, w2) = tp[2][i2];
                    let mut t = 0.0f64;
                    for a in 0..n0 {
                        let z = clamp_index(s0 + a as isize, cs[0]);
                        for b in 0..ntap {
                            let y = clamp_index(s1 + b as isize, cs[1]);
                            let row = (z * cs[1] + y) * cs[2];
                            for c in 0..ntap {
                                let xx = clamp_index(s2 + c as isize, cs[2]);
                                let v = coef[row + xx];
                                t += if r == 3 {
                                    ((v * w0[a]) * w1[b]) * w2[c]
                                } else {
                                    (v * w1[b]) * w2[c]
                                };
                            }
                        }
                    }
                    dst[i1 * os[2] + i2] = t.clamp(min, max);
                }
            }
        });
    Ok(out)
}

/// Nearest neighbour along `axis` (scipy `map_coordinates(order=0, mode='nearest')` with
/// `cc = (in / out) · (i + 0.5) − 0.5`), other axes unchanged.
fn nearest_along<T: Copy>(x: &[T], shape: [usize; 3], axis: usize, n_out: usize) -> Vec<T> {
    let n_in = shape[axis];
    let scale = n_in as f64 / n_out as f64;
    let src: Vec<usize> = (0..n_out)
        .map(|i| {
            let cc = scale * (i as f64 + 0.5) - 0.5;
            (cc.clamp(0.0, (n_in - 1) as f64) + 0.5).floor() as usize
        })
        .collect();
    let mut os = shape;
    os[axis] = n_out;
    let mut out = Vec::with_capacity(os.iter().product());
    for a in 0..os[0] {
        for b in 0..os[1] {
            for c in 0..os[2] {
                let mut i = [a, b, c];
                i[axis] = src[i[axis]];
                out.push(x[(i[0] * shape[1] + i[1]) * shape[2] + i[2]]);
            }
        }
    }
    out
}

/// One channel of nnU-Net's `resample_data_or_seg` for data (not segmentations): `x` in f64,
/// `shape` → `new_shape`, with the separate axis decided by [`separate_axis`].
pub fn resample_channel(
    x: &[f64],
    shape: [usize; 3],
    new_shape: [usize; 3],
    separate: Option<usize>,
    settings: &ResamplingSettings,
) -> Result<Vec<f64>, ResampleError> {
    if x.len() != shape.iter().product::<usize>() {
        return Err(ResampleError::Length {
            got: x.len(),
            shape: shape.to_vec(),
        });
    }
    if shape == new_shape {
        return Ok(x.to_vec());
    }
    let Some(axis) = separate else {
        return spline_resize(x, &shape, &new_shape, settings.order);
    };
    if settings.order_z != 0 {
        return Err(ResampleError::OrderZ(settings.order_z));
    }
    // In-plane 2-D resize of every slice along `axis`.
    let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let in2 = [shape[others[0]], shape[others[1]]];
    let out2 = [new_shape[others[0]], new_shape[others[1]]];
    let mut mid_shape = shape;
    mid_shape[others[0]] = out2[0];
    mid_shape[others[1]] = out2[1];
    let mut mid = vec![0f64; mid_shape.iter().product()];
    let slices: Vec<Vec<f64>> = (0..shape[axis])
        .into_par_iter()
        .map(|s| {
            let mut sl = Vec::with_capacity(in2[0] * in2[1]);
            for p in 0..in2[0] {
                for q in 0..in2[1] {
                    let mut i = [0usize; 3];
                    i[axis] = s;
                    i[others[0]] = p;
                    i[others[1]] = q;
                    sl.push(x[(i[0] * shape[1] + i[1]) * shape[2] + i[2]]);
                }
            }
            spline_resize(&sl, &in2, &out2, settings.order)
        })
        .collect::<Result<_, _>>()?;
    for (s, sl) in slices.iter().enumerate() {
        for p in 0..out2[0] {
            for q in 0..out2[1] {
                let mut i = [0usize; 3];
                i[axis] = s;
                i[others[0]] = p;
                i[others[1]] = q;
                mid[(i[0] * mid_shape[1] + i[1]) * mid_shape[2] + i[2]] = sl[p * out2[1] + q];
            }
        }
    }
    if mid_shape[axis] == new_shape[axis] {
        return Ok(mid);
    }
    Ok(nearest_along(&mid, mid_shape, axis, new_shape[axis]))
}

/// nnU-Net's `resize_segmentation(seg, new_shape, order=1)` (batchgenerators 0.25.5, the
/// version nnunetv2 2.8.1 pins) on a 2-D or 3-D label array: every present label's 0/1 mask is
/// resized (skimage, order 1, `mode='edge'`, clipped) and each output voxel takes the label
/// with the largest score (`_resample_seg_by_argmax`); exact ties go to the nearest-neighbour
/// label (order-0 resize of the label map) when it is among the tied labels with a positive
/// score, else to the smallest tied label.
pub fn resize_segmentation(
    seg: &[i16],
    shape: &[usize],
    out_shape: &[usize],
    order: u8,
) -> Result<Vec<i16>, ResampleError> {
    if order != 1 {
        return Err(ResampleError::Order(order));
    }
    if seg.len() != shape.iter().product::<usize>() {
        return Err(ResampleError::Length {
            got: seg.len(),
            shape: shape.to_vec(),
        });
    }
    let n_out: usize = out_shape.iter().product();
    let mut labels: Vec<i16> = seg.to_vec();
    labels.sort_unstable();
    labels.dedup();
    match labels.len() {
        0 => return Ok(vec![0; n_out]),
        1 => return Ok(vec![labels[0]; n_out]),
        _ => {}
    }
    let nearest = nearest_resize(seg, shape, out_shape);
    let nn_idx: Vec<usize> = nearest
        .iter()
        .map(|v| labels.binary_search(v).unwrap_or(usize::MAX))
        .collect();
    let mut win = vec![0usize; n_out];
    let mut best: Vec<f64> = Vec::new();
    let mut nn_top = vec![false; n_out];
    for (i, &c) in labels.iter().enumerate() {
        let mask: Vec<f64> = seg
            .iter()
            .map(|&v| if v == c { 1.0 } else { 0.0 })
            .collect();
        let score = spline_resize(&mask, shape, out_shape, order)?;
        if i == 0 {
            for (k, sc) in score.iter().enumerate() {
                nn_top[k] = nn_idx[k] == 0 && *sc > 0.0;
            }
            best = score;
            continue;
        }
        for (k, sc) in score.into_iter().enumerate() {
            let is_nn = nn_idx[k] == i;
            if sc == best[k] && sc > 0.0 && is_nn {
                nn_top[k] = true;
            }
            if sc > best[k] {
                nn_top[k] = is_nn;
                win[k] = i;
                best[k] = sc;
            }
        }
    }
    Ok((0..n_out)
        .map(|k| {
            if nn_top[k] {
                labels[nn_idx[k]]
            } else {
                labels[win[k]]
            }
        })
        .collect())
}

/// skimage `resize(order=0, mode='edge')` of a 2-D or 3-D array: per axis the source index
/// `floor(clamp((k + 0.5) · in / out − 0.5, 0, in − 1) + 0.5)`.
fn nearest_resize<T: Copy>(x: &[T], shape: &[usize], out_shape: &[usize]) -> Vec<T> {
    let idx: Vec<Vec<usize>> = shape
        .iter()
        .zip(out_shape)
        .map(|(&n_in, &n_out)| {
            let scale = n_in as f64 / n_out as f64;
            (0..n_out)
                .map(|k| {
                    let cc = (k as f64 + 0.5) * scale - 0.5;
                    (cc.clamp(0.0, (n_in - 1) as f64) + 0.5).floor() as usize
                })
                .collect()
        })
        .collect();
    let r = shape.len();
    let mut out = Vec::with_capacity(out_shape.iter().product());
    let mut pos = vec![0usize; r];
    loop {
        let mut off = 0;
        for a in 0..r {
            off = off * shape[a] + idx[a][pos[a]];
        }
        out.push(x[off]);
        let mut a = r;
        loop {
            if a == 0 {
                return out;
            }
            a -= 1;
            pos[a] += 1;
            if pos[a] < out_shape[a] {
                break;
            }
            pos[a] = 0;
        }
    }
}

/// nnU-Net's `resample_data_or_seg(is_seg=True)` for one channel of a label array: the whole
/// volume through [`resize_segmentation`], or with a separate axis every slice along it in 2-D
/// and then nearest neighbour along the axis (`order_z` 0); an unchanged shape returns the
/// input.
pub fn resample_segmentation(
    seg: &[i16],
    shape: [usize; 3],
    new_shape: [usize; 3],
    separate: Option<usize>,
    settings: &ResamplingSettings,
) -> Result<Vec<i16>, ResampleError> {
    if seg.len() != shape.iter().product::<usize>() {
        return Err(ResampleError::Length {
            got: seg.len(),
            shape: shape.to_vec(),
        });
    }
    if shape.contains(&0) || new_shape.contains(&0) {
        return Err(ResampleError::Shape(new_shape.to_vec()));
    }
    if shape == new_shape {
        return Ok(seg.to_vec());
    }
    let Some(axis) = separate else {
        return resize_segmentation(seg, &shape, &new_shape, settings.order);
    };
    if settings.order_z != 0 {
        return Err(ResampleError::OrderZ(settings.order_z));
    }
    let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let in2 = [shape[others[0]], shape[others[1]]];
    let out2 = [new_shape[others[0]], new_shape[others[1]]];
    let index = |s: [usize; 3], a: usize, p: usize, q: usize| {
        let mut i = [0usize; 3];
        i[axis] = a;
        i[others[0]] = p;
        i[others[1]] = q;
        (i[0] * s[1] + i[1]) * s[2] + i[2]
    };
    let mut mid_shape = shape;
    mid_shape[others[0]] = out2[0];
    mid_shape[others[1]] = out2[1];
    let slices: Vec<Vec<i16>> = (0..shape[axis])
        .into_par_iter()
        .map(|s| {
            let mut sl = Vec::with_capacity(in2[0] * in2[1]);
            for p in 0..in2[0] {
                for q in 0..in2[1] {
                    sl.push(seg[index(shape, s, p, q)]);
                }
            }
            if in2 == out2 {
                Ok(sl)
            } else {
                resize_segmentation(&sl, &in2, &out2, settings.order)
            }
        })
        .collect::<Result<_, _>>()?;
    let mut mid = vec![0i16; mid_shape.iter().product()];
    for (s, sl) in slices.iter().enumerate() {
        for p in 0..out2[0] {
            for q in 0..out2[1] {
                mid[index(mid_shape, s, p, q)] = sl[p * out2[1] + q];
            }
        }
    }
    if mid_shape[axis] == new_shape[axis] {
        return Ok(mid);
    }
    Ok(nearest_along(&mid, mid_shape, axis, new_shape[axis]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pole_is_sqrt3_minus_2() {
        assert!((pole() + 0.267_949_192_431_122_7).abs() < 1e-15);
    }
}
