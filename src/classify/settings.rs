//! The classifier's input preparation settings, stored in the classifier bundle's manifest so
//! training (`nephrod export-crops`) and inference use the same numbers.
//!
//! Units: HU for the window, mm for the margins, pixels for the output size. The normalised
//! value of a pixel with HU value `v` in channel `c` is
//! `(clamp((v − (level − width/2)) / width, 0, 1) − mean[c]) / std[c]`.

use serde::{Deserialize, Serialize};

use super::crop::CropError;

/// Class order of the 5-way head (seed 001). Index = output unit.
pub const CLASSES: [&str; 5] = ["ccRCC", "pRCC", "chRCC", "oncocytoma", "AML"];
/// Indices of the benign classes (oncocytoma, angiomyolipoma) in [`CLASSES`].
pub const BENIGN_CLASSES: [usize; 2] = [3, 4];

/// Intensity window in HU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub level_hu: f32,
    pub width_hu: f32,
}

/// How a lesion's classifier input is made (see the module doc of [`super::crop`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropSettings {
    /// Output size `[rows, columns]` (seed 001: 224 × 224).
    pub size: [usize; 2],
    /// Added on every side of the lesion's bounding rectangle, mm.
    pub margin_mm: f64,
    /// A phase's own lesion mask is searched within the reference lesion's bounding box grown
    /// by this much (mm) — the registration's residual error.
    pub search_margin_mm: f64,
    /// HU given to samples outside the volume (air).
    pub outside_hu: f32,
    pub window: Window,
    /// Per-channel mean and standard deviation after windowing to [0, 1] (default: ImageNet's,
    /// as the network is ImageNet-initialised).
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for CropSettings {
    fn default() -> Self {
        CropSettings {
            size: [224, 224],
            margin_mm: 5.0,
            search_margin_mm: 10.0,
            outside_hu: -1024.0,
            window: Window {
                level_hu: 40.0,
                width_hu: 400.0,
            },
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl CropSettings {
    /// Refuses settings that cannot produce a finite input.
    pub fn validate(&self) -> Result<(), CropError> {
        let bad = |what: &str| Err(CropError::Settings(what.to_string()));
        if self.size[0] == 0 || self.size[1] == 0 || self.size[0] > 4096 || self.size[1] > 4096 {
            return bad("size must be 1..=4096 pixels per side");
        }
        if !(self.margin_mm.is_finite() && self.margin_mm >= 0.0) {
            return bad("margin_mm must be finite and ≥ 0");
        }
        if !(self.search_margin_mm.is_finite() && self.search_margin_mm >= 0.0) {
            return bad("search_margin_mm must be finite and ≥ 0");
        }
        if !(self.window.width_hu.is_finite()
            && self.window.width_hu > 0.0
            && self.window.level_hu.is_finite()
            && self.outside_hu.is_finite())
        {
            return bad("window width must be > 0 and all HU values finite");
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return bad("std must be > 0 and mean finite");
        }
        Ok(())
    }

    /// Windowed value in [0, 1].
    pub fn window01(&self, hu: f32) -> f32 {
        let lo = self.window.level_hu - self.window.width_hu / 2.0;
        ((hu - lo) / self.window.width_hu).clamp(0.0, 1.0)
    }

    /// Network input value of `hu` in channel `c`.
    pub fn normalise(&self, hu: f32, c: usize) -> f32 {
        (self.window01(hu) - self.mean[c]) / self.std[c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_normalise() {
        let s = CropSettings::default();
        assert_eq!(s.window01(-160.0), 0.0);
        assert_eq!(s.window01(240.0), 1.0);
        assert!((s.window01(40.0) - 0.5).abs() < 1e-7);
        assert!((s.normalise(240.0, 0) - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!(s.validate().is_ok());
        let mut b = s.clone();
        b.std[1] = 0.0;
        assert!(b.validate().is_err());
    }
}
