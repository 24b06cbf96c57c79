//! Synthetic CT data with known answers.
//!
//! For now one deliberately simple generator, [`simple_abdomen`]: an elliptic body (fat rim,
//! soft tissue), a vertebral body, the aorta anterior-left of it and two kidneys, with
//! per-phase attenuation of blood and renal cortex. It feeds `nephrod example` and the ingest
//! tests; the full multi-phase renal phantom with lesions and ground truth grows here later.
//! Coordinates are LPS mm with the body centred on the origin in x/y.

use crate::dicom::phase::Phase;
use crate::volume::{Geometry, Volume, VolumeError};

/// (blood, renal cortex, renal medulla) HU per phase; unenhanced soft tissue is 40 HU.
fn enhancement(phase: Phase) -> (f32, f32, f32) {
    match phase {
        Phase::NonContrast | Phase::Unknown => (40.0, 30.0, 30.0),
        Phase::Arterial => (320.0, 180.0, 80.0),
        Phase::Portal => (170.0, 160.0, 150.0),
        Phase::Delayed => (110.0, 120.0, 130.0),
    }
}

/// A small axial abdomen in `phase`: `dims` voxels at `spacing_mm`, origin chosen so the body
/// is centred; a deterministic ±`noise_hu` texture.
pub fn simple_abdomen(
    phase: Phase,
    dims: [usize; 3],
    spacing_mm: [f64; 3],
    noise_hu: f32,
) -> Result<Volume<f32>, VolumeError> {
    let [ni, nj, nk] = dims;
    let origin = [
        -(ni as f64 - 1.0) * spacing_mm[0] / 2.0,
        -(nj as f64 - 1.0) * spacing_mm[1] / 2.0,
        -(nk as f64 - 1.0) * spacing_mm[2] / 2.0,
    ];
    let geometry = Geometry {
        origin_mm: origin,
        spacing_mm,
        direction: crate::volume::geometry::IDENTITY3,
    };
    let (blood, cortex, medulla) = enhancement(phase);
    let mut data = Vec::with_capacity(ni * nj * nk);
    let mut state: u32 = 0x1234_5678;
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let p = geometry.index_to_world([i as f64, j as f64, k as f64]);
                let (x, y, z) = (p[0], p[1], p[2]);
                let e = |cx: f64, cy: f64, rx: f64, ry: f64| {
                    ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2)
                };
                let mut v = -1000.0f32;
                if e(0.0, 0.0, 150.0, 110.0) <= 1.0 {
                    v = -100.0; // subcutaneous fat
                }
                if e(0.0, 0.0, 135.0, 95.0) <= 1.0 {
                    v = 40.0; // soft tissue
                }
                // Vertebral body (posterior = +y) with a cortical rim.
                let vb = e(0.0, 45.0, 20.0, 17.0);
                if vb <= 1.0 {
                    v = if vb > 0.75 { 900.0 } else { 250.0 };
                }
                // Aorta anterior-left of the spine (patient left = +x, anterior = −y).
                if e(15.0, 10.0, 11.0, 11.0) <= 1.0 {
                    v = blood;
                }
                // IVC anterior-right.
                if e(-22.0, 12.0, 12.0, 9.0) <= 1.0 {
                    v = blood * 0.8 + 8.0;
                }
                // Kidneys: ellipsoids lateral to the spine.
                for side in [-1.0, 1.0] {
                    let q = ((x - side * 65.0) / 28.0).powi(2)
                        + ((y - 40.0) / 22.0).powi(2)
                        + (z / 50.0).powi(2);
                    if q <= 1.0 {
                        v = if q > 0.55 { cortex } else { medulla };
                    }
                }
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let u = (state as f32 / u32::MAX as f32) * 2.0 - 1.0;
                data.push(v + noise_hu * u);
            }
        }
    }
    Volume::new(dims, geometry, data)
}
