//! Per-lesion instances (src/segment/instances.rs) on analytic layouts built in LPS space:
//! two kidneys at x = ±60 mm, a tumour on the upper pole of the patient-left kidney, a cyst in
//! the lower part of the right one, and a tumour touching no kidney; sampled on an anisotropic
//! grid and again on a grid whose i axis runs towards patient right (side must follow LPS, not
//! the index order). Volumes within 8 % of 4/3·π·abc, centres within 0.6 mm, axial diameters
//! within 1.5 voxels of the analytic 2·max(a, b).

use std::f64::consts::PI;

use nephrod::segment::instances::{lesion_instances, LesionKind, Pole, Side};
use nephrod::volume::{Geometry, Volume};

struct Blob {
    c: [f64; 3],
    r: [f64; 3],
    label: u8,
}

fn inside(b: &Blob, p: [f64; 3]) -> bool {
    (0..3)
        .map(|a| ((p[a] - b.c[a]) / b.r[a]).powi(2))
        .sum::<f64>()
        <= 1.0
}

fn layout() -> Vec<Blob> {
    vec![
        Blob {
            c: [60.0, 0.0, 0.0],
            r: [25.0, 22.0, 50.0],
            label: 1,
        },
        Blob {
            c: [-60.0, 0.0, 0.0],
            r: [25.0, 22.0, 50.0],
            label: 1,
        },
        Blob {
            c: [62.0, 0.0, 38.0],
            r: [12.0, 10.0, 9.0],
            label: 2,
        },
        Blob {
            c: [-58.0, 2.0, -30.0],
            r: [8.0, 8.0, 8.0],
            label: 3,
        },
        Blob {
            c: [-20.0, 40.0, 0.0],
            r: [7.0, 5.0, 6.0],
            label: 2,
        },
    ]
}

fn sample(g: Geometry, dims: [usize; 3]) -> Volume<u8> {
    let blobs = layout();
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = g.index_to_world([i as f64, j as f64, k as f64]);
                let mut l = 0;
                for b in &blobs {
                    if inside(b, p) {
                        l = b.label; // later blobs overwrite (lesions over kidney)
                    }
                }
                data.push(l);
            }
        }
    }
    Volume::new(dims, g, data).unwrap()
}

#[test]
fn lesions_have_the_analytic_properties_on_both_grids() {
    let spacing = [0.9, 0.9, 2.0];
    let dims = [200, 110, 70];
    let half = |d: usize, s: f64| (d as f64 - 1.0) * s / 2.0;
    let straight = Geometry {
        origin_mm: [
            -half(dims[0], spacing[0]),
            -half(dims[1], spacing[1]),
            -half(dims[2], spacing[2]),
        ],
        spacing_mm: spacing,
        direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let flipped = Geometry {
        origin_mm: [
            half(dims[0], spacing[0]),
            -half(dims[1], spacing[1]),
            -half(dims[2], spacing[2]),
        ],
        spacing_mm: spacing,
        direction: [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    for g in [straight, flipped] {
        let vol = sample(g, dims);
        let lesions = lesion_instances(&vol);
        assert_eq!(lesions.len(), 3, "{lesions:#?}");
        let blobs = layout();
        for (blob, side, pole, touches) in [
            (&blobs[2], Side::Left, Pole::Upper, true),
            (&blobs[3], Side::Right, Pole::Lower, true),
            (&blobs[4], Side::Right, Pole::Unknown, false),
        ] {
            let l = lesions
                .iter()
                .find(|l| (0..3).all(|a| (l.centre_lps_mm[a] - blob.c[a]).abs() < 3.0))
                .unwrap_or_else(|| panic!("no lesion near {:?}: {lesions:#?}", blob.c));
            // The tumour on the kidney is cut by nothing; centres agree closely.
            for a in 0..3 {
                assert!((l.centre_lps_mm[a] - blob.c[a]).abs() < 0.6, "{l:?}");
            }
            let want_ml = 4.0 / 3.0 * PI * blob.r.iter().product::<f64>() / 1000.0;
            assert!(
                (l.volume_ml - want_ml).abs() <= 0.08 * want_ml,
                "{l:?} vs {want_ml}"
            );
            let want_d = 2.0 * blob.r[0].max(blob.r[1]);
            assert!(
                (l.max_axial_diameter_mm - want_d).abs() <= 1.5 * 0.9,
                "{l:?} vs {want_d}"
            );
            assert_eq!(
                l.kind,
                if blob.label == 2 {
                    LesionKind::Tumour
                } else {
                    LesionKind::Cyst
                }
            );
            assert_eq!(
                (l.side, l.pole, l.touches_kidney),
                (side, pole, touches),
                "{l:?}"
            );
        }
    }
}

#[test]
fn a_single_voxel_lesion_measures_one_voxel() {
    let g = Geometry {
        origin_mm: [0.0; 3],
        spacing_mm: [0.7, 0.7, 3.0],
        direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let mut data = vec![0u8; 5 * 5 * 3];
    data[(5 + 2) * 5 + 2] = 3;
    let vol = Volume::new([5, 5, 3], g, data).unwrap();
    let l = lesion_instances(&vol);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].voxels, 1);
    assert!((l[0].max_axial_diameter_mm - 0.7).abs() < 1e-12);
    assert!((l[0].volume_ml - 0.7 * 0.7 * 3.0 / 1000.0).abs() < 1e-15);
    assert_eq!(l[0].kind, LesionKind::Cyst);
    assert_eq!(l[0].pole, Pole::Unknown);
}
