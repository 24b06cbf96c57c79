//! The phantom's label maps agree with its truth, checked against independent references:
//! lesion volumes against the analytic ellipsoid volume (π-formula, not the renderer), kidney
//! volumes against a 0.5 mm integration in the reference frame (not the acquisition grid),
//! laterality against the LPS x sign, and the written NIfTI label maps against the in-memory
//! ones and the truth file's voxel counts.

#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use nephrod::dicom::phase::Phase;
use nephrod::phantom::acquisition::{AcquisitionOptions, StudySize};
use nephrod::phantom::anatomy::{LesionClass, Side};
use nephrod::phantom::output::{write_case, DicomOptions, OutputFormat};
use nephrod::phantom::{generate_case, CaseOptions, GeneratedCase};
use nephrod::volume::nifti;

fn opts(variants: bool) -> CaseOptions {
    CaseOptions {
        acquisition: AcquisitionOptions {
            size: StudySize::Small,
            orientation_variants: variants,
            all_phases: false,
        },
        ..CaseOptions::default()
    }
}

/// Ten cases; the last two have a single kidney (forced), so "no kidney on the other side"
/// is checked too.
fn cases() -> Vec<GeneratedCase> {
    (0..10)
        .map(|i| {
            let mut o = opts(i % 2 == 1);
            if i >= 8 {
                o.anatomy.single_kidney_probability = 1.0;
            }
            generate_case(20261123, i, &o).unwrap()
        })
        .collect()
}

fn voxel_mm3(case: &GeneratedCase, phase_no: usize) -> f64 {
    case.phases[phase_no]
        .labels
        .geometry()
        .spacing_mm
        .iter()
        .product()
}

fn det(case: &GeneratedCase, phase_no: usize) -> f64 {
    case.acquisition.phases[phase_no]
        .from_reference
        .determinant()
        .abs()
}

/// Each lesion's voxel count × voxel volume is the ellipsoid volume (scaled by the phase
/// transform's determinant) within the point-sampling bound: every misclassified voxel centre
/// lies within half a voxel diagonal of the surface, so |error| ≤ area × half-diagonal (plus
/// one voxel for the ≤ 1 % area approximation).
#[test]
fn lesion_voxels_match_analytic_volumes() {
    let mut checked = 0;
    for case in cases() {
        for (p, r) in case.phases.iter().enumerate() {
            let s = r.labels.geometry().spacing_mm;
            let half_diag = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt() / 2.0;
            let mut counts = vec![0usize; case.anatomy.lesions.len()];
            for id in r.lesion_ids.data() {
                if *id > 0 {
                    counts[*id as usize - 1] += 1;
                }
            }
            for (n, lesion) in case.anatomy.lesions.iter().enumerate() {
                let truth = &case.truth.lesions[n];
                let expected = truth.volume_ml * 1000.0 * det(&case, p);
                assert!(
                    (expected - lesion.shape.volume_mm3() * det(&case, p)).abs() < 1e-6,
                    "truth volume is not the ellipsoid's"
                );
                let got = counts[n] as f64 * voxel_mm3(&case, p);
                let bound = lesion.shape.surface_area_mm2() * half_diag * det(&case, p)
                    + voxel_mm3(&case, p);
                assert!(
                    (got - expected).abs() <= bound,
                    "{} {:?} lesion {}: {got:.0} vs {expected:.0} mm³ (bound {bound:.0})",
                    case.case_id,
                    r.phase,
                    n + 1
                );
                // Large lesions: within 5 %.
                if expected > 200.0 * voxel_mm3(&case, p) {
                    assert!((got / expected - 1.0).abs() < 0.05, "{got} vs {expected}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} lesion-phases checked");
}

/// Kidney label voxels per side match the truth kidney volume (integrated on a 0.5 mm grid in
/// the reference frame): each within 4 %, and unbiased on average (< 1 %).
#[test]
fn kidney_voxels_match_truth_volumes() {
    let mut rel = Vec::new();
    let mut empty_sides_checked = 0;
    for case in cases() {
        for (p, r) in case.phases.iter().enumerate() {
            let g = r.labels.geometry();
            let [ni, nj, nk] = r.labels.dims();
            let mut per_side: BTreeMap<&str, usize> = BTreeMap::new();
            for k in 0..nk {
                for j in 0..nj {
                    for i in 0..ni {
                        if *r.labels.get(i, j, k).unwrap() == 1 {
                            let x = g.index_to_world([i as f64, j as f64, k as f64])[0];
                            *per_side
                                .entry(if x > 0.0 { "left" } else { "right" })
                                .or_default() += 1;
                        }
                    }
                }
            }
            for kidney in &case.truth.kidneys {
                let side = match kidney.side {
                    Side::Left => "left",
                    Side::Right => "right",
                };
                let got = per_side.get(side).copied().unwrap_or(0) as f64 * voxel_mm3(&case, p);
                let expected = kidney.volume_ml * 1000.0 * det(&case, p);
                let e = got / expected - 1.0;
                assert!(
                    e.abs() < 0.04,
                    "{} {:?} {side}: {got} vs {expected}",
                    case.case_id,
                    r.phase
                );
                rel.push(e);
            }
            // No kidney voxels on a side without a kidney.
            for side in ["left", "right"] {
                if !case
                    .truth
                    .kidneys
                    .iter()
                    .any(|k| (k.side == Side::Left) == (side == "left"))
                {
                    assert_eq!(per_side.get(side).copied().unwrap_or(0), 0);
                    empty_sides_checked += 1;
                }
            }
        }
    }
    let mean = rel.iter().sum::<f64>() / rel.len() as f64;
    assert!(mean.abs() < 0.01, "mean relative error {mean}");
    assert!(empty_sides_checked > 0, "no single-kidney case checked");
}

/// Left lesions have x > 0 in LPS; the centroid of a lesion's voxels, mapped back to the
/// reference frame, is the truth centre (within a voxel), on the truth side.
#[test]
fn laterality_and_centres_agree_with_lps() {
    let mut checked = 0;
    for case in cases() {
        for lt in &case.truth.lesions {
            let x = lt.centre_lps_mm[0];
            match lt.side {
                Side::Left => assert!(x > 0.0, "{} lesion {} left at x={x}", case.case_id, lt.id),
                Side::Right => assert!(x < 0.0, "{} lesion {} right at x={x}", case.case_id, lt.id),
            }
        }
        for (p, r) in case.phases.iter().enumerate() {
            let g = r.lesion_ids.geometry();
            let inv = case.acquisition.phases[p].from_reference.inverse().unwrap();
            let [ni, nj, nk] = r.lesion_ids.dims();
            let n = case.truth.lesions.len();
            let mut sum = vec![[0.0f64; 3]; n];
            let mut cnt = vec![0usize; n];
            for k in 0..nk {
                for j in 0..nj {
                    for i in 0..ni {
                        let id = *r.lesion_ids.get(i, j, k).unwrap() as usize;
                        if id > 0 {
                            let w = inv.apply(g.index_to_world([i as f64, j as f64, k as f64]));
                            for a in 0..3 {
                                sum[id - 1][a] += w[a];
                            }
                            cnt[id - 1] += 1;
                        }
                    }
                }
            }
            let s = g.spacing_mm;
            for (l, lt) in case.truth.lesions.iter().enumerate() {
                if cnt[l] < 30 {
                    continue;
                }
                let c = sum[l].map(|v| v / cnt[l] as f64);
                for a in 0..3 {
                    let tol = s.iter().cloned().fold(0.0, f64::max);
                    assert!(
                        (c[a] - lt.centre_lps_mm[a]).abs() < tol,
                        "{} lesion {} axis {a}: centroid {} vs truth {}",
                        case.case_id,
                        lt.id,
                        c[a],
                        lt.centre_lps_mm[a]
                    );
                }
                assert_eq!(c[0] > 0.0, lt.side == Side::Left);
                checked += 1;
            }
        }
    }
    assert!(checked > 5, "only {checked} lesion centroids checked");
}

/// The truth's derived facts follow from its own numbers: labels by class, diameters no larger
/// than the largest axis, mean HU present for every phase that sampled the lesion, and solid
/// lesions enhancing while cysts do not (phantom-level facts radiologists use).
#[test]
fn truth_fields_are_consistent() {
    let mut classes = BTreeMap::new();
    for case in cases() {
        assert_eq!(case.truth.phases.len(), case.phases.len());
        assert!((2..=4).contains(&case.phases.len()));
        let reference = case.truth.reference_phase;
        assert!(matches!(reference, Phase::Portal | Phase::Arterial));
        for pt in &case.truth.phases {
            if pt.phase == reference {
                assert_eq!(
                    pt.transform_from_reference,
                    [
                        [1.0, 0.0, 0.0, 0.0],
                        [0.0, 1.0, 0.0, 0.0],
                        [0.0, 0.0, 1.0, 0.0],
                        [0.0, 0.0, 0.0, 1.0]
                    ]
                );
            }
            // Cranio-caudal misalignment within ±15 mm (plus ≤ 2 % of ~100 mm scaling).
            assert!(pt.transform_from_reference[2][3].abs() <= 17.0);
        }
        for lt in &case.truth.lesions {
            *classes.entry(format!("{:?}", lt.class)).or_insert(0) += 1;
            assert_eq!(lt.label, if lt.class == LesionClass::Cyst { 3 } else { 2 });
            let max_axis = lt.semi_axes_mm.iter().cloned().fold(0.0, f64::max) * 2.0;
            let min_axis = lt
                .semi_axes_mm
                .iter()
                .cloned()
                .fold(f64::INFINITY, f64::min)
                * 2.0;
            assert!(lt.max_axial_diameter_mm <= max_axis + 1e-9);
            assert!(lt.max_axial_diameter_mm >= min_axis - 1e-9);
            assert!((2.5..=90.0).contains(&lt.max_axial_diameter_mm));
            if let (Some(nc), Some(pv)) = (
                lt.mean_hu.get(&Phase::NonContrast),
                lt.mean_hu.get(&Phase::Portal),
            ) {
                let enh = pv - nc;
                match lt.class {
                    LesionClass::Cyst => assert!(enh < 20.0, "cyst enhances {enh}"),
                    LesionClass::Aml => {}
                    _ => assert!(enh > 20.0, "{:?} enhances only {enh}", lt.class),
                }
            }
        }
    }
    assert!(classes.len() >= 3, "too few classes drawn: {classes:?}");
}

/// The written NIfTI label maps are the in-memory ones, and truth.json counts their voxels.
#[test]
fn written_label_maps_match_truth_counts() {
    let dir = tempfile::tempdir().unwrap();
    let case = generate_case(77, 0, &opts(true)).unwrap();
    let truth = write_case(
        &case,
        dir.path(),
        OutputFormat::Nifti,
        &DicomOptions::default(),
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("case_0000/truth.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (n, pt) in truth.phases.iter().enumerate() {
        let lp = dir
            .path()
            .join("case_0000")
            .join(pt.label_path.as_ref().unwrap());
        let labels = nifti::read_labels(&lp).unwrap();
        assert_eq!(labels.data(), case.phases[n].labels.data());
        let g = labels.geometry();
        let want = &case.phases[n].labels.geometry();
        for a in 0..3 {
            assert!((g.origin_mm[a] - want.origin_mm[a]).abs() < 1e-3);
            assert!((g.spacing_mm[a] - want.spacing_mm[a]).abs() < 1e-5);
        }
        let counts = &json["phases"][n]["label_voxels"];
        for (name, value) in [
            ("background", 0u8),
            ("kidney", 1),
            ("tumor", 2),
            ("cyst", 3),
        ] {
            let c = labels.data().iter().filter(|v| **v == value).count();
            assert_eq!(counts[name].as_u64(), Some(c as u64), "{name}");
        }
    }
}
