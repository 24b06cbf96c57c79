//! NIfTI reading against nibabel 5.3.2: golden files and the affines/values nibabel reads
//! from them (tests/data/nifti/, made by tools/oracle/nifti_golden.py). Covers sform, qform-only
//! with a flip (qfac = −1) and scl_slope/scl_inter, and the no-transform fallback.

// Matrix code reads best with index loops.
#![allow(clippy::needless_range_loop)]

use std::path::Path;

use nephrod::volume::nifti;
use serde_json::Value;

#[test]
fn nephrod_reads_what_nibabel_reads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nifti");
    let golden: Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    for name in [
        "oblique_sform.nii.gz",
        "flipped_qform.nii",
        "plain_pixdim.nii",
    ] {
        let g = &golden[name];
        let img = nifti::read(&dir.join(name)).unwrap();
        let vol = &img.volume;
        let dims: Vec<usize> = g["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(vol.dims().to_vec(), dims, "{name}");
        let ras = nifti::ras_affine(vol.geometry());
        for r in 0..4 {
            for c in 0..4 {
                let want = g["affine_ras"][r][c].as_f64().unwrap();
                assert!(
                    (ras[r][c] - want).abs() < 1e-5,
                    "{name} affine[{r}][{c}] {} vs nibabel {want}",
                    ras[r][c]
                );
            }
        }
        let want: Vec<f64> = g["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got: Vec<f64> = vol.data().iter().map(|v| *v as f64).collect();
        assert_eq!(got, want, "{name} values");
    }
}

#[test]
fn written_files_read_back_with_the_same_affine_as_the_golden() {
    // Write what nibabel read, read it again: the RAS affine must survive (sform + qform).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nifti");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["oblique_sform.nii.gz", "flipped_qform.nii"] {
        let vol = nifti::read(&dir.join(name)).unwrap().volume;
        let out = tmp.path().join(name);
        nifti::write(&out, &vol).unwrap();
        let a = nifti::ras_affine(vol.geometry());
        let b = nifti::ras_affine(nifti::read(&out).unwrap().volume.geometry());
        for r in 0..4 {
            for c in 0..4 {
                assert!((a[r][c] - b[r][c]).abs() < 1e-4, "{name}");
            }
        }
    }
}
