//! Classifier input crops (src/classify/crop.rs) against analytic cases:
//! * a CT that is a linear function of LPS position is reproduced exactly by the bilinear crop
//!   at the sample positions the module doc defines;
//! * the same world content on grids with flipped, permuted and feet-first axes gives the same
//!   crop (radiological orientation whatever the scan orientation);
//! * the chosen slice is the one with the largest lesion area; a phase without its own lesion
//!   mask falls back to the reference lesion; grids other than the reference's are refused.

use nephrod::classify::crop::{
    check_views, crop_phase, tumour_lesions, CropError, MaskSource, PhaseView,
};
use nephrod::classify::settings::CropSettings;
use nephrod::dicom::phase::Phase;
use nephrod::volume::{Geometry, Volume};

/// World box covered by voxel centres: x ∈ [-40, 40], y ∈ [-30, 30], z ∈ [0, 20] (mm).
const LO: [f64; 3] = [-40.0, -30.0, 0.0];
const HI: [f64; 3] = [40.0, 30.0, 20.0];
const SPACING: [f64; 3] = [0.8, 1.0, 2.0];

/// A grid over the world box whose axis `c` runs along world axis `perm[c]` with sign
/// `sign[c]`.
fn grid(perm: [usize; 3], sign: [f64; 3]) -> (Geometry, [usize; 3]) {
    let mut direction = [[0.0; 3]; 3];
    let mut origin = [0.0; 3];
    let mut spacing = [0.0; 3];
    let mut dims = [0usize; 3];
    for c in 0..3 {
        let r = perm[c];
        direction[r][c] = sign[c];
        spacing[c] = SPACING[r];
        dims[c] = ((HI[r] - LO[r]) / SPACING[r]).round() as usize + 1;
        origin[r] = if sign[c] > 0.0 { LO[r] } else { HI[r] };
    }
    (Geometry::new(origin, spacing, direction).unwrap(), dims)
}

fn fill<T: Clone>(g: &Geometry, dims: [usize; 3], f: impl Fn([f64; 3]) -> T) -> Volume<T> {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(f(g.index_to_world([i as f64, j as f64, k as f64])));
            }
        }
    }
    Volume::new(dims, g.clone(), data).unwrap()
}

/// An ellipsoidal tumour centred on voxel centres (largest axial section at z = 10).
fn lesion_label(p: [f64; 3]) -> u8 {
    let q = [(p[0] - 6.0) / 9.0, (p[1] + 4.0) / 6.0, (p[2] - 10.0) / 7.0];
    u8::from(q.iter().map(|v| v * v).sum::<f64>() <= 1.0) * 2
}

fn nonlinear_ct(p: [f64; 3]) -> f32 {
    (0.05 * p[0] * p[0] + 3.0 * p[1] + 10.0 * (p[0] * 0.2).sin() * p[2]) as f32
}

#[test]
fn linear_ct_is_reproduced_exactly() {
    let (g, dims) = grid([0, 1, 2], [1.0; 3]);
    let ct = fill(&g, dims, |p| (3.0 * p[0] - 2.0 * p[1] + 0.5 * p[2]) as f32);
    let labels = fill(&g, dims, lesion_label);
    let lesions = tumour_lesions(&labels);
    assert_eq!(lesions.len(), 1);
    let settings = CropSettings::default();
    let view = PhaseView {
        phase: Phase::Portal,
        ct: &ct,
        labels: &labels,
    };
    let crop = crop_phase(&view, &lesions[0], &settings).unwrap();
    assert_eq!(crop.slice_axis, 2);
    // z = 10 mm is index 5.
    assert_eq!(crop.slice_index, 5);
    assert_eq!(crop.mask_source, MaskSource::Phase);
    let [nr, nc] = settings.size;
    let mut compared = 0;
    for r in 0..nr {
        for c in 0..nc {
            let i = crop.columns.source(c, nc);
            let j = crop.rows.source(r, nr);
            let inside =
                i >= 0.0 && j >= 0.0 && i <= (dims[0] - 1) as f64 && j <= (dims[1] - 1) as f64;
            if !inside {
                continue;
            }
            let p = g.index_to_world([i, j, 5.0]);
            let want = 3.0 * p[0] - 2.0 * p[1] + 0.5 * p[2];
            let got = crop.hu[r * nc + c] as f64;
            assert!((got - want).abs() < 1e-3, "({r},{c}): {got} vs {want}");
            compared += 1;
        }
    }
    assert_eq!(compared, nr * nc, "the crop lies inside the volume");
    // The rectangle: x ∈ [-3, 15] → voxel-centre indices 46.25..68.75 → 47..68 on the 0.8 mm
    // grid, ± (½ + 5/0.8) voxels.
    let i_of = |x: f64| (x - LO[0]) / SPACING[0];
    assert!((crop.columns.lo - (i_of(-3.0).ceil() - 0.5 - 5.0 / 0.8)).abs() < 1e-9);
    assert!((crop.columns.hi - (i_of(15.0).floor() + 0.5 + 5.0 / 0.8)).abs() < 1e-9);
    // Image columns run to patient left (+x), rows to posterior (+y).
    let first = g.index_to_world([crop.columns.source(0, nc), crop.rows.source(0, nr), 5.0]);
    let last = g.index_to_world([
        crop.columns.source(nc - 1, nc),
        crop.rows.source(nr - 1, nr),
        5.0,
    ]);
    assert!(first[0] < last[0] && first[1] < last[1]);
}

#[test]
fn crops_do_not_depend_on_scan_orientation() {
    let settings = CropSettings::default();
    let crop_of = |perm: [usize; 3], sign: [f64; 3]| {
        let (g, dims) = grid(perm, sign);
        let ct = fill(&g, dims, nonlinear_ct);
        let labels = fill(&g, dims, lesion_label);
        let lesions = tumour_lesions(&labels);
        assert_eq!(lesions.len(), 1);
        let view = PhaseView {
            phase: Phase::Arterial,
            ct: &ct,
            labels: &labels,
        };
        crop_phase(&view, &lesions[0], &settings).unwrap()
    };
    let base = crop_of([0, 1, 2], [1.0, 1.0, 1.0]);
    let variants = [
        ([0, 1, 2], [-1.0, 1.0, 1.0]),   // x flipped
        ([0, 1, 2], [1.0, -1.0, 1.0]),   // prone-like: y flipped
        ([0, 1, 2], [-1.0, -1.0, -1.0]), // feet-first, rotated
        ([1, 0, 2], [1.0, 1.0, 1.0]),    // i along y, j along x
        ([1, 0, 2], [-1.0, 1.0, -1.0]),  // both
    ];
    for (perm, sign) in variants {
        let v = crop_of(perm, sign);
        assert!((v.lesion_area_mm2 - base.lesion_area_mm2).abs() < 1e-9);
        let worst =
            v.hu.iter()
                .zip(&base.hu)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "perm {perm:?} sign {sign:?}: crops differ by {worst}"
        );
    }
}

#[test]
fn largest_slice_fallback_and_grid_checks() {
    let (g, dims) = grid([0, 1, 2], [1.0; 3]);
    let ct = fill(&g, dims, nonlinear_ct);
    // A cone: area grows with z up to z = 14, then stops.
    let cone = fill(&g, dims, |p| {
        let r = if p[2] <= 14.0 { p[2] * 0.8 } else { 0.0 };
        u8::from(p[2] >= 2.0 && (p[0] * p[0] + p[1] * p[1]).sqrt() <= r) * 2
    });
    let lesions = tumour_lesions(&cone);
    assert_eq!(lesions.len(), 1);
    let settings = CropSettings::default();
    let view = PhaseView {
        phase: Phase::Delayed,
        ct: &ct,
        labels: &cone,
    };
    assert_eq!(
        crop_phase(&view, &lesions[0], &settings)
            .unwrap()
            .slice_index,
        7
    );

    // A phase whose own segmentation misses the lesion uses the reference lesion.
    let empty = fill(&g, dims, |_| 0u8);
    let view = PhaseView {
        phase: Phase::NonContrast,
        ct: &ct,
        labels: &empty,
    };
    let c = crop_phase(&view, &lesions[0], &settings).unwrap();
    assert_eq!(c.mask_source, MaskSource::Reference);
    assert_eq!(c.slice_index, 7);

    // Cyst-dominated components are not tumour lesions; ids count them (raster order).
    let two = fill(&g, dims, |p| {
        if (p[0] + 30.0).abs() < 3.0 && p[1].abs() < 3.0 && p[2] < 5.0 {
            3
        } else {
            lesion_label(p)
        }
    });
    let l = tumour_lesions(&two);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, 2);

    // Grids other than the reference's are refused, as are repeated phases.
    let (g2, dims2) = grid([0, 1, 2], [-1.0, 1.0, 1.0]);
    let ct2 = fill(&g2, dims2, nonlinear_ct);
    let lab2 = fill(&g2, dims2, lesion_label);
    let views = [
        PhaseView {
            phase: Phase::Portal,
            ct: &ct,
            labels: &cone,
        },
        PhaseView {
            phase: Phase::Arterial,
            ct: &ct2,
            labels: &lab2,
        },
    ];
    assert!(matches!(
        check_views(&views, &cone),
        Err(CropError::NotOnReferenceGrid { .. })
    ));
    let views = [views[0], views[0]];
    assert!(matches!(
        check_views(&views, &cone),
        Err(CropError::DuplicatePhase(_))
    ));
}
