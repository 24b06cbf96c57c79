//! nnU-Net's preprocessing (`DefaultPreprocessor.run_case_npy`, shared/docs/nnunet-inference.md
//! §3.2–3.5) and the inverse geometry steps of its export (§5).
//!
//! Order: reader array (f32) → transpose by `transpose_forward` → crop to the non-zero bounding
//! box (OR over channels; hole filling never changes the box, so it is not computed) →
//! normalise each image channel → resample to the plan's spacing (order 3, separate z by the
//! rule). Arrays are C order; "reader order" is the reader array's axis order, "transposed" is
//! nnU-Net's (X, Y, Z) = the engine's (D, H, W). Spacings are mm.
//!
//! `CTNormalization` is bit-exact (f32: clip to f32(p0.5), f32(p99.5); subtract f32(mean);
//! divide by f32(max(std, 1e-8))). `ZScoreNormalization` computes mean and std in f64 (numpy
//! sums f32 pairwise in f32), so it matches nnU-Net to about 1e-6 relative, not bit for bit.

use crate::engine::{f16_from_f64, Tensor, TensorF16};
use crate::segment::plan::{InferencePlan, Normalization};
use crate::segment::resample::{
    compute_new_shape, resample_channel, resample_segmentation, separate_axis, ResampleError,
};

/// Why preprocessing or export failed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("{channels} image channel(s) given, the model needs {needed}")]
    Channels { channels: usize, needed: usize },
    #[error("channel of {got} values does not match shape {shape:?}")]
    Length { got: usize, shape: [usize; 3] },
    #[error("transpose {0:?} is not a permutation of 0, 1, 2")]
    Transpose([usize; 3]),
    #[error("spacing {what} {spacing:?} mm: must be finite and > 0")]
    Spacing {
        what: &'static str,
        spacing: [f64; 3],
    },
    #[error("resampled shape {0:?} is implausible (more than {MAX_AXIS} voxels along an axis)")]
    TooLarge([usize; 3]),
    #[error("this model is a cascade stage: it needs the previous stage's segmentation")]
    MissingPreviousStage,
    #[error("a previous stage's segmentation was given, but this model is not a cascade stage")]
    UnexpectedPreviousStage,
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// Largest network-resolution size per axis accepted (a guard against corrupt spacings).
pub const MAX_AXIS: usize = 8192;

/// What export needs to put results back (nnU-Net's properties dict).
#[derive(Debug, Clone, PartialEq)]
pub struct CropProperties {
    /// Original spacing, reader order.
    pub spacing_mm: [f64; 3],
    /// Transposed shape before cropping.
    pub shape_before_cropping: [usize; 3],
    /// Half-open box per transposed axis.
    pub bbox: [[usize; 2]; 3],
    pub shape_after_cropping: [usize; 3],
    /// Network-resolution shape (after resampling).
    pub shape_after_resampling: [usize; 3],
}

/// The network input (1, C, D, H, W) and the properties.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    pub data: Tensor,
    pub properties: CropProperties,
}

fn check_perm(p: [usize; 3]) -> Result<(), PreprocessError> {
    let mut seen = [false; 3];
    for &a in &p {
        if a > 2 || seen[a] {
            return Err(PreprocessError::Transpose(p));
        }
        seen[a] = true;
    }
    Ok(())
}

/// `x.transpose(perm)`: new axis `i` is old axis `perm[i]`.
pub fn transpose3<T: Copy>(x: &[T], shape: [usize; 3], perm: [usize; 3]) -> (Vec<T>, [usize; 3]) {
    let ns = perm.map(|p| shape[p]);
    let stride = [shape[1] * shape[2], shape[2], 1];
    let st = perm.map(|p| stride[p]);
    let mut out = Vec::with_capacity(x.len());
    for a in 0..ns[0] {
        for b in 0..ns[1] {
            for c in 0..ns[2] {
                out.push(x[a * st[0] + b * st[1] + c * st[2]]);
            }
        }
    }
    (out, ns)
}

/// The non-zero bounding box over all channels (half-open per axis; the whole extent when
/// every voxel is zero).
pub fn nonzero_bbox(channels: &[Vec<f32>], shape: [usize; 3]) -> [[usize; 2]; 3] {
    let mut lo = shape;
    let mut hi = [0usize; 3];
    for ch in channels {
        for a in 0..shape[0] {
            for b in 0..shape[1] {
                let row = &ch[(a * shape[1] + b) * shape[2]..(a * shape[1] + b + 1) * shape[2]];
                let Some(first) = row.iter().position(|v| *v != 0.0) else {
                    continue;
                };
                let last = row.iter().rposition(|v| *v != 0.0).unwrap_or(first);
                lo = [lo[0].min(a), lo[1].min(b), lo[2].min(first)];
                hi = [hi[0].max(a + 1), hi[1].max(b + 1), hi[2].max(last + 1)];
            }
        }
    }
    if hi[0] == 0 {
        return [[0, shape[0]], [0, shape[1]], [0, shape[2]]];
    }
    [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]]
}

/// nnU-Net's `create_nonzero_mask`: `x != 0` OR-ed over channels, then scipy's
/// `binary_fill_holes` (6-connectivity: a zero voxel stays outside only if a 6-connected path
/// of zero voxels links it to the array border).
pub fn filled_nonzero_mask(channels: &[Vec<f32>], shape: [usize; 3]) -> Vec<bool> {
    let n: usize = shape.iter().product();
    let mut inside = vec![false; n];
    for ch in channels {
        for (m, v) in inside.iter_mut().zip(ch) {
            *m |= *v != 0.0;
        }
    }
    // Flood the zero voxels reachable from the border; the rest is inside.
    let mut outside = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let [a, b, c] = shape;
    let idx = |i: usize, j: usize, k: usize| (i * b + j) * c + k;
    for i in 0..a {
        for j in 0..b {
            for k in 0..c {
                let border = i == 0 || j == 0 || k == 0 || i + 1 == a || j + 1 == b || k + 1 == c;
                let p = idx(i, j, k);
                if border && !inside[p] && !outside[p] {
                    outside[p] = true;
                    stack.push(p);
                }
            }
        }
    }
    while let Some(p) = stack.pop() {
        let (i, j, k) = (p / (b * c), (p / c) % b, p % c);
        let mut next = [usize::MAX; 6];
        if i > 0 {
            next[0] = idx(i - 1, j, k);
        }
        if i + 1 < a {
            next[1] = idx(i + 1, j, k);
        }
        if j > 0 {
            next[2] = idx(i, j - 1, k);
        }
        if j + 1 < b {
            next[3] = idx(i, j + 1, k);
        }
        if k > 0 {
            next[4] = idx(i, j, k - 1);
        }
        if k + 1 < c {
            next[5] = idx(i, j, k + 1);
        }
        for q in next {
            if q != usize::MAX && !inside[q] && !outside[q] {
                outside[q] = true;
                stack.push(q);
            }
        }
    }
    outside.into_iter().map(|o| !o).collect()
}

fn crop3<T: Copy>(x: &[T], shape: [usize; 3], bbox: [[usize; 2]; 3]) -> Vec<T> {
    let mut out = Vec::new();
    for a in bbox[0][0]..bbox[0][1] {
        for b in bbox[1][0]..bbox[1][1] {
            let start = (a * shape[1] + b) * shape[2];
            out.extend_from_slice(&x[start + bbox[2][0]..start + bbox[2][1]]);
        }
    }
    out
}

/// nnU-Net's normalisation of one channel, in place.
pub fn normalize(x: &mut [f32], scheme: &Normalization) {
    match scheme {
        Normalization::Ct {
            mean,
            std,
            percentile_00_5,
            percentile_99_5,
        } => {
            let (lo, hi) = (*percentile_00_5 as f32, *percentile_99_5 as f32);
            let m = *mean as f32;
            let s = std.max(1e-8) as f32;
            for v in x.iter_mut() {
                // np.clip: max(min(x, hi), lo)
                let c = if *v < lo {
                    lo
                } else if *v > hi {
                    hi
                } else {
                    *v
                };
                *v = (c - m) / s;
            }
        }
        Normalization::ZScore { use_mask } => {
            let sel = |v: &f32| !*use_mask || *v != 0.0;
            let n = x.iter().filter(|v| sel(v)).count().max(1) as f64;
            let mean = x.iter().filter(|v| sel(v)).map(|v| *v as f64).sum::<f64>() / n;
            let var = x
                .iter()
                .filter(|v| sel(v))
                .map(|v| (*v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let std = var.sqrt().max(1e-8);
            for v in x.iter_mut() {
                if sel(v) {
                    *v = ((*v as f64 - mean) / std) as f32;
                }
            }
        }
    }
}

/// Preprocesses the image channels of one case (reader order, `shape`, `spacing_mm`).
pub fn preprocess(
    channels: Vec<Vec<f32>>,
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    plan: &InferencePlan,
) -> Result<Preprocessed, PreprocessError> {
    preprocess_case(channels, None, shape, spacing_mm, plan)
}

/// Preprocesses one case; for a cascade stage (§6) `previous` is the previous stage's label
/// map on the same grid (reader order): transposed and cropped like the image, resampled with
/// the plan's `resample_seg` (nnU-Net's `resize_segmentation`, separate z by the rule) and
/// appended as one 0/1 channel per foreground label. As in nnU-Net, background outside the
/// hole-filled non-zero mask of the image is label −1 while resampling (it competes in the
/// argmax of [`resample_segmentation`]) and gets no channel.
pub fn preprocess_case(
    channels: Vec<Vec<f32>>,
    previous: Option<&[u16]>,
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    plan: &InferencePlan,
) -> Result<Preprocessed, PreprocessError> {
    match (plan.previous_stage.is_some(), previous.is_some()) {
        (true, false) => return Err(PreprocessError::MissingPreviousStage),
        (false, true) => return Err(PreprocessError::UnexpectedPreviousStage),
        _ => {}
    }
    let needed = plan.preprocessing.normalization.len();
    if channels.len() != needed {
        return Err(PreprocessError::Channels {
            channels: channels.len(),
            needed,
        });
    }
    let perm = plan.transpose_forward;
    check_perm(perm)?;
    let n: usize = shape.iter().product();
    let mut transposed = Vec::with_capacity(channels.len());
    let mut tshape = shape;
    for ch in &channels {
        if ch.len() != n {
            return Err(PreprocessError::Length {
                got: ch.len(),
                shape,
            });
        }
        let (t, s) = transpose3(ch, shape, perm);
        tshape = s;
        transposed.push(t);
    }
    drop(channels);
    let tspacing = perm.map(|p| spacing_mm[p]);
    let bbox = nonzero_bbox(&transposed, tshape);
    let cshape = bbox.map(|[a, b]| b - a);
    let target = plan.preprocessing.spacing_mm;
    for (what, sp) in [("of the image", tspacing), ("of the model", target)] {
        if sp.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(PreprocessError::Spacing { what, spacing: sp });
        }
    }
    let new_shape = compute_new_shape(cshape, tspacing, target);
    if new_shape.iter().any(|&n| n > MAX_AXIS) {
        return Err(PreprocessError::TooLarge(new_shape));
    }
    let settings = plan.preprocessing.resample_data;
    let sep = separate_axis(tspacing, target, settings.force_separate_z);
    let mut data = Vec::with_capacity(transposed.len() * new_shape.iter().product::<usize>());
    // A cascade stage needs the image's non-zero mask after normalisation has consumed it.
    let transposed_images: Vec<Vec<f32>> = if previous.is_some() {
        transposed.clone()
    } else {
        Vec::new()
    };
    for (ch, scheme) in transposed
        .into_iter()
        .zip(&plan.preprocessing.normalization)
    {
        let mut c = crop3(&ch, tshape, bbox);
        drop(ch);
        normalize(&mut c, scheme);
        if cshape == new_shape {
            data.extend_from_slice(&c);
        } else {
            let x: Vec<f64> = c.iter().map(|v| *v as f64).collect();
            let y = resample_channel(&x, cshape, new_shape, sep, &settings)?;
            data.extend(y.into_iter().map(|v| v as f32));
        }
    }
    let mut c = plan.preprocessing.normalization.len();
    if let Some(prev) = previous {
        if prev.len() != n {
            return Err(PreprocessError::Length {
                got: prev.len(),
                shape,
            });
        }
        let (t, _) = transpose3(prev, shape, perm);
        // nnU-Net's crop_to_nonzero: background outside the hole-filled non-zero mask of the
        // image becomes −1, a label of its own in the resampling argmax. Label values beyond
        // i16 cannot be foreground labels of any nnU-Net model; they become −1 as well.
        let inside = filled_nonzero_mask(&transposed_images, tshape);
        let t: Vec<i16> = t
            .iter()
            .zip(&inside)
            .map(|(&l, &m)| match i16::try_from(l) {
                Ok(0) if !m => -1,
                Ok(v) => v,
                Err(_) => -1,
            })
            .collect();
        drop(inside);
        drop(transposed_images);
        let cropped = crop3(&t, tshape, bbox);
        let rs = plan.preprocessing.resample_seg;
        let sep_seg = separate_axis(tspacing, target, rs.force_separate_z);
        let seg = resample_segmentation(&cropped, cshape, new_shape, sep_seg, &rs)?;
        for label in plan.outputs.foreground_labels() {
            let l = label as i16;
            data.extend(seg.iter().map(|&v| if v == l { 1.0f32 } else { 0.0 }));
            c += 1;
        }
    }
    let data =
        Tensor::new([1, c, new_shape[0], new_shape[1], new_shape[2]], data).map_err(|_| {
            PreprocessError::Length {
                got: 0,
                shape: new_shape,
            }
        })?;
    Ok(Preprocessed {
        data,
        properties: CropProperties {
            spacing_mm,
            shape_before_cropping: tshape,
            bbox,
            shape_after_cropping: cshape,
            shape_after_resampling: new_shape,
        },
    })
}

/// Export step 1 (§5): network-resolution f16 logits (1, C, …) resampled to the cropped shape
/// (plan's `resample_probabilities`, separate z decided with current = the plan's spacing and
/// new = the original spacing), f16.
pub fn logits_to_cropped_shape(
    logits: TensorF16,
    properties: &CropProperties,
    plan: &InferencePlan,
) -> Result<TensorF16, PreprocessError> {
    let s = logits.shape();
    let from = [s[2], s[3], s[4]];
    let to = properties.shape_after_cropping;
    if from == to {
        return Ok(logits);
    }
    let current = plan.preprocessing.spacing_mm;
    let new = plan.transpose_forward.map(|p| properties.spacing_mm[p]);
    let settings = plan.preprocessing.resample_probabilities;
    let sep = separate_axis(current, new, settings.force_separate_z);
    let mut out = Vec::with_capacity(s[1] * to.iter().product::<usize>());
    for c in 0..s[1] {
        let x: Vec<f64> = logits.channel(0, c).iter().map(|v| v.to_f64()).collect();
        let y = resample_channel(&x, from, to, sep, &settings)?;
        out.extend(y.into_iter().map(f16_from_f64));
    }
    TensorF16::new([1, s[1], to[0], to[1], to[2]], out)
        .map_err(|_| PreprocessError::Length { got: 0, shape: to })
}

/// Export step 2 (§5): a cropped label map back into the transposed full shape (zeros
/// outside the box), then transposed back (`transpose_backward`) to reader order.
pub fn uncrop_and_untranspose(
    labels: &[u16],
    properties: &CropProperties,
    plan: &InferencePlan,
) -> Result<(Vec<u16>, [usize; 3]), PreprocessError> {
    uncrop_and_untranspose_with(labels, 0, properties, plan)
}

/// [`uncrop_and_untranspose`] for any voxel type, with `fill` outside the crop box (nnU-Net
/// un-crops a probability map with background 1 and the other classes 0).
pub fn uncrop_and_untranspose_with<T: Copy>(
    labels: &[T],
    fill: T,
    properties: &CropProperties,
    plan: &InferencePlan,
) -> Result<(Vec<T>, [usize; 3]), PreprocessError> {
    let cs = properties.shape_after_cropping;
    if labels.len() != cs.iter().product::<usize>() {
        return Err(PreprocessError::Length {
            got: labels.len(),
            shape: cs,
        });
    }
    check_perm(plan.transpose_backward)?;
    let full_shape = properties.shape_before_cropping;
    let b = properties.bbox;
    let mut full = vec![fill; full_shape.iter().product()];
    let mut k = 0;
    for a in b[0][0]..b[0][1] {
        for bb in b[1][0]..b[1][1] {
            let start = (a * full_shape[1] + bb) * full_shape[2];
            full[start + b[2][0]..start + b[2][1]].copy_from_slice(&labels[k..k + cs[2]]);
            k += cs[2];
        }
    }
    Ok(transpose3(&full, full_shape, plan.transpose_backward))
}
