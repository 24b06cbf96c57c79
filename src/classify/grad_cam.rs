//! Grad-CAM (Selvaraju et al., 2017) maps from a layer's activations and gradients, and the
//! bilinear upsampling that turns them into an image-sized heatmap.
//!
//! # Conventions
//! * `cam = ReLU(Σ_k α_k A_k)` with `α_k` = spatial mean of ∂logit_class/∂A_k, at feature
//!   resolution, not normalised (sums accumulated in f64, stored as f32).
//! * [`resize_bilinear`] is PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
//!   (no antialias): output pixel `d` samples source coordinate `s = (d + 0.5)·in/out − 0.5`,
//!   clamped below at 0; `i0 = ⌊s⌋`, `i1 = min(i0 + 1, in − 1)`, weights `1 − (s − i0)` and
//!   `s − i0`; separable in y then x, computed in f32 in PyTorch's order.
//! * `heatmap` = the resized cam min-max normalised to [0, 1], all zeros when max == min.

/// A Grad-CAM explanation of one image for one class.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCam {
    /// The image's logits (all classes).
    pub logits: Vec<f32>,
    /// The explained class.
    pub class: usize,
    /// `[h, w]` of layer4's output (7×7 for 224×224 inputs).
    pub feature_hw: [usize; 2],
    /// ReLU(Σ_k α_k A_k) at feature resolution, α_k = spatial mean of ∂logit_class/∂A_k; not
    /// normalised. Row-major h×w.
    pub cam: Vec<f32>,
    /// `cam` resized to H×W bilinearly (PyTorch F.interpolate mode="bilinear",
    /// align_corners=False) then min-max normalised to [0,1] (all zeros when max == min).
    pub heatmap: Vec<f32>,
}

/// Builds the [`GradCam`] from activations `a` and gradients `g` (both C×h×w row-major, `chw`)
/// for an image of `image_hw`.
pub(crate) fn cam_from_gradients(
    logits: Vec<f32>,
    class: usize,
    a: &[f32],
    g: &[f32],
    chw: [usize; 3],
    image_hw: [usize; 2],
) -> GradCam {
    let [c, fh, fw] = chw;
    let plane = fh * fw;
    let mut acc = vec![0f64; plane];
    for k in 0..c {
        let gk = &g[k * plane..(k + 1) * plane];
        let alpha = gk.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
        let ak = &a[k * plane..(k + 1) * plane];
        for (s, &v) in acc.iter_mut().zip(ak) {
            *s += alpha * f64::from(v);
        }
    }
    let cam: Vec<f32> = acc.iter().map(|&v| v.max(0.0) as f32).collect();
    let up = resize_bilinear(&cam, fh, fw, image_hw[0], image_hw[1]);
    GradCam {
        logits,
        class,
        feature_hw: [fh, fw],
        heatmap: min_max_normalise(&up),
        cam,
    }
}

/// Source index pair and weights for output index `dst` (align_corners = False).
fn source_index(dst: usize, in_len: usize, out_len: usize) -> (usize, usize, f32, f32) {
    let scale = in_len as f32 / out_len as f32;
    let s = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
    // `s` ≥ 0, so truncation is the floor; clamp guards rounding at the far edge.
    let i0 = (s as usize).min(in_len - 1);
    let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
    let l1 = s - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// Bilinear resize of a row-major `ih×iw` plane to `oh×ow` (see the module conventions).
/// Returns an empty vector if any size is zero or `src` is not `ih·iw` long.
pub fn resize_bilinear(src: &[f32], ih: usize, iw: usize, oh: usize, ow: usize) -> Vec<f32> {
    if ih == 0 || iw == 0 || oh == 0 || ow == 0 || src.len() != ih * iw {
        return Vec::new();
    }
    let cols: Vec<_> = (0..ow).map(|x| source_index(x, iw, ow)).collect();
    let mut out = Vec::with_capacity(oh * ow);
    for y in 0..oh {
        let (y0, y1, wy0, wy1) = source_index(y, ih, oh);
        let r0 = &src[y0 * iw..(y0 + 1) * iw];
        let r1 = &src[y1 * iw..(y1 + 1) * iw];
        for &(x0, x1, wx0, wx1) in &cols {
            out.push(wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]));
        }
    }
    out
}

/// `(v − min)/(max − min)`, all zeros when max == min (or the plane is empty).
pub fn min_max_normalise(v: &[f32]) -> Vec<f32> {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if v.is_empty() || hi <= lo {
        return vec![0.0; v.len()];
    }
    let range = hi - lo;
    v.iter().map(|&x| (x - lo) / range).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&src, 3, 4, 3, 4), src);
        let c = resize_bilinear(&[2.5; 6], 2, 3, 9, 7);
        assert!(c.iter().all(|&v| v == 2.5));
    }

    #[test]
    fn resize_doubling_matches_pytorch() {
        // F.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4), mode="bilinear",
        // align_corners=False) == [0, 0.25, 0.75, 1].
        assert_eq!(
            resize_bilinear(&[0.0, 1.0], 1, 2, 1, 4),
            vec![0.0, 0.25, 0.75, 1.0]
        );
    }

    #[test]
    fn min_max_flat_is_zero() {
        assert_eq!(min_max_normalise(&[3.0; 4]), vec![0.0; 4]);
        assert_eq!(min_max_normalise(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    }

    #[test]
    fn cam_is_relu_of_weighted_sum() {
        // 2 channels, 1×2 plane; gradients constant per channel → α = (1, −1).
        let a = [1.0, 4.0, 3.0, 1.0];
        let g = [1.0, 1.0, -1.0, -1.0];
        let gc = cam_from_gradients(vec![0.0], 0, &a, &g, [2, 1, 2], [1, 2]);
        assert_eq!(gc.cam, vec![0.0, 3.0]);
        assert_eq!(gc.heatmap, vec![0.0, 1.0]);
    }
}
