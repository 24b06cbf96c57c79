//! Grad-CAM overlays: a crop shown in its window (grey) with the heat map blended over it.
//!
//! Colour map: a piecewise-linear "jet" (blue → cyan → yellow → red) of the heat value in
//! [0, 1]; blend weight `0.5 · heat`, so cold regions show the plain CT. Output is an 8-bit
//! RGB PNG, `rows × columns` of the crop, row 0 anterior, column 0 patient right.

use super::settings::CropSettings;

/// Jet colour of `t` ∈ [0, 1].
pub fn jet(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let ramp = |c: f32| (1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)]
}

/// RGB pixels (row-major) of `hu` (a crop) with `heat` (same size, values in [0, 1]) blended
/// over it. `None` if the sizes differ.
pub fn overlay_rgb(hu: &[f32], heat: &[f32], settings: &CropSettings) -> Option<Vec<u8>> {
    if hu.len() != heat.len() {
        return None;
    }
    let mut rgb = Vec::with_capacity(hu.len() * 3);
    for (v, h) in hu.iter().zip(heat) {
        let g = settings.window01(*v);
        let h = if h.is_finite() {
            h.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let a = 0.5 * h;
        for c in jet(h) {
            rgb.push(((g * (1.0 - a) + c * a) * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    Some(rgb)
}

/// [`overlay_rgb`] encoded as PNG.
pub fn overlay_png(hu: &[f32], heat: &[f32], settings: &CropSettings) -> Option<Vec<u8>> {
    let [rows, cols] = settings.size;
    if hu.len() != rows * cols {
        return None;
    }
    let rgb = overlay_rgb(hu, heat, settings)?;
    Some(crate::report::png::encode_rgb(
        cols as u32,
        rows as u32,
        &rgb,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_ends_and_blend() {
        assert_eq!(jet(0.0), [0.0, 0.0, 0.5]);
        assert_eq!(jet(1.0), [0.5, 0.0, 0.0]);
        assert_eq!(jet(0.5), [0.5, 1.0, 0.5]);
        let s = CropSettings::default();
        // No heat: plain grey of the windowed HU.
        let rgb = overlay_rgb(&[240.0, -160.0], &[0.0, 0.0], &s).unwrap();
        assert_eq!(rgb, vec![255, 255, 255, 0, 0, 0]);
        assert!(overlay_rgb(&[0.0], &[0.0, 1.0], &s).is_none());
    }
}
