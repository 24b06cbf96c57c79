//! Property tests of the geometry conventions: voxel↔world round trips, NIfTI write→read round
//! trips (.nii and .nii.gz, proper and improper rotations), and axis permutations/flips that
//! describe the same world-space volume.

// Matrix code reads best with index loops.
#![allow(clippy::needless_range_loop)]

use nephrod::volume::{nifti, resample, Geometry, Interpolation, Volume};
use proptest::prelude::*;

/// Rotation Rz(c)·Ry(b)·Rx(a) from Euler angles, optionally with the k axis flipped. (Built
/// independently of the quaternion code in `nifti.rs`, which these tests check.)
fn rotation(angles: [f64; 3], flip: bool) -> [[f64; 3]; 3] {
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] = (0..3).map(|t| p[r][t] * q[t][c]).sum();
            }
        }
        m
    };
    let [(sa, ca), (sb, cb), (sc, cc)] = angles.map(f64::sin_cos);
    let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    let mut r = mul(rz, mul(ry, rx));
    if flip {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    r
}

fn geometry() -> impl Strategy<Value = Geometry> {
    let pi = std::f64::consts::PI;
    (
        prop::array::uniform3(-pi..pi),
        any::<bool>(),
        prop::array::uniform3(0.3f64..5.0),
        prop::array::uniform3(-300.0f64..300.0),
    )
        .prop_map(|(angles, flip, spacing, origin)| {
            Geometry::new(origin, spacing, rotation(angles, flip)).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn voxel_world_round_trip(g in geometry(), ijk in prop::array::uniform3(-50.0f64..500.0)) {
        let w = g.index_to_world(ijk);
        let back = g.world_to_index(w);
        for a in 0..3 {
            prop_assert!((back[a] - ijk[a]).abs() < 1e-9, "{ijk:?} -> {w:?} -> {back:?}");
        }
        // The affine says the same as index_to_world.
        let m = g.affine_lps();
        for r in 0..3 {
            let v = m[r][0] * ijk[0] + m[r][1] * ijk[1] + m[r][2] * ijk[2] + m[r][3];
            prop_assert!((v - w[r]).abs() < 1e-9);
        }
    }

    #[test]
    fn nifti_round_trip(g in geometry(), gz in any::<bool>(), seed in 0u32..1000) {
        let dims = [5, 4, 3];
        let data: Vec<f32> = (0..60).map(|v| (v as f32 * 37.5 + seed as f32).sin() * 1000.0).collect();
        let vol = Volume::new(dims, g.clone(), data).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if gz { "v.nii.gz" } else { "v.nii" });
        nifti::write(&path, &vol).unwrap();
        let back = nifti::read(&path).unwrap().volume;
        prop_assert_eq!(back.dims(), dims);
        prop_assert_eq!(back.data(), vol.data());
        let (a, b) = (vol.geometry(), back.geometry());
        for r in 0..3 {
            // The header stores float32.
            prop_assert!((a.origin_mm[r] - b.origin_mm[r]).abs() < 1e-3 * (1.0 + a.origin_mm[r].abs()));
            prop_assert!((a.spacing_mm[r] - b.spacing_mm[r]).abs() < 1e-5 * a.spacing_mm[r].max(1.0));
            for c in 0..3 {
                prop_assert!((a.direction[r][c] - b.direction[r][c]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn permuted_and_flipped_axes_are_the_same_world_volume(
        g in geometry(),
        perm in Just([0usize, 1, 2]).prop_shuffle(),
        flips in prop::array::uniform3(any::<bool>()),
    ) {
        let dims = [4usize, 3, 5];
        let vol = Volume::new(dims, g.clone(), (0..60u8).collect()).unwrap();
        // New axis a = old axis perm[a], possibly reversed.
        let nd = [dims[perm[0]], dims[perm[1]], dims[perm[2]]];
        let mut dir = [[0.0; 3]; 3];
        let mut spacing = [0.0; 3];
        let mut corner = [0.0f64; 3];
        for a in 0..3 {
            let old = perm[a];
            let s = if flips[a] { -1.0 } else { 1.0 };
            for r in 0..3 {
                dir[r][a] = g.direction[r][old] * s;
            }
            spacing[a] = g.spacing_mm[old];
            if flips[a] {
                corner[old] = (dims[old] - 1) as f64;
            }
        }
        let ng = Geometry::new(g.index_to_world(corner), spacing, dir).unwrap();
        let mut data = vec![0u8; 60];
        for k in 0..nd[2] {
            for j in 0..nd[1] {
                for i in 0..nd[0] {
                    let new = [i, j, k];
                    let mut old = [0usize; 3];
                    for a in 0..3 {
                        old[perm[a]] = if flips[a] { nd[a] - 1 - new[a] } else { new[a] };
                    }
                    data[i + nd[0] * (j + nd[1] * k)] = *vol.get(old[0], old[1], old[2]).unwrap();
                }
            }
        }
        let permuted = Volume::new(nd, ng, data).unwrap();
        // Back onto the original grid through world space: identical.
        let back = resample(&permuted, &g, dims, Interpolation::Nearest, 255).unwrap();
        prop_assert_eq!(back.data(), vol.data());
    }
}

#[test]
fn nifti_labels_must_be_integers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.nii.gz");
    let vol = Volume::new([2, 1, 1], Geometry::identity(), vec![1.0f32, 2.5]).unwrap();
    nifti::write(&p, &vol).unwrap();
    assert!(matches!(
        nifti::read_labels(&p),
        Err(nifti::NiftiError::NotALabel { index: 1, .. })
    ));
    let ok = Volume::new([2, 1, 1], Geometry::identity(), vec![0u8, 3]).unwrap();
    nifti::write(&p, &ok).unwrap();
    assert_eq!(nifti::read_labels(&p).unwrap().data(), &[0, 3]);
}

#[test]
fn truncated_nifti_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.nii");
    let vol = Volume::new([4, 4, 4], Geometry::identity(), vec![1.0f32; 64]).unwrap();
    nifti::write(&p, &vol).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(
        nifti::read(&p),
        Err(nifti::NiftiError::Truncated { .. })
    ));
    std::fs::write(&p, &bytes[..100]).unwrap();
    assert!(matches!(
        nifti::read(&p),
        Err(nifti::NiftiError::NotNifti { .. })
    ));
}
