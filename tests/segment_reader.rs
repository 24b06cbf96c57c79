//! nephrod's view of a volume as nnU-Net's reader classes give it (src/segment/reader.rs)
//! against nnU-Net 2.8.1's own `read_images` / `write_seg` (tools/oracle/nnunet_reader_golden.py,
//! tests/data/segment/reader/): SimpleITKIO, NibabelIO and NibabelIOWithReorient on axial,
//! RAS-stored, sagittal, flipped coronal and oblique grids. Voxel values are their file index,
//! so the arrays must be equal element for element; spacings agree to f32 precision (the NIfTI
//! header stores f32).

use std::path::PathBuf;

use nephrod::segment::plan::ReaderAxes;
use nephrod::segment::reader::{to_reader_array, AxisMap};
use nephrod::volume::nifti;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/reader")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn reader_arrays_match_nnunet_readers_and_write_seg_inverts_them() {
    let text = std::fs::read_to_string(dir().join("cases.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["generator"], "tools/oracle/nnunet_reader_golden.py");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let mut reoriented_differs = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let img = nifti::read(&dir().join(format!("{name}.nii.gz"))).unwrap();
        let vol = img.volume;
        for (class, reader) in [
            ("SimpleITKIO", ReaderAxes::SimpleItk),
            ("NibabelIO", ReaderAxes::Nibabel),
            ("NibabelIOWithReorient", ReaderAxes::NibabelWithReorient),
        ] {
            let exp = &case["readers"][class];
            let arr = to_reader_array(&vol, reader);
            assert_eq!(
                arr.shape.to_vec(),
                usizes(&exp["shape"]),
                "{name} {class} shape"
            );
            let got: Vec<usize> = arr.data.iter().map(|v| *v as usize).collect();
            assert_eq!(got, usizes(&exp["voxel"]), "{name} {class} voxels");
            for (a, s) in exp["spacing"].as_array().unwrap().iter().enumerate() {
                let s = s.as_f64().unwrap();
                assert!(
                    (arr.spacing_mm[a] - s).abs() <= 1e-6 * s,
                    "{name} {class} spacing {:?} vs {s}",
                    arr.spacing_mm
                );
            }
            if reader == ReaderAxes::NibabelWithReorient {
                if got != (0..got.len()).collect::<Vec<_>>() {
                    reoriented_differs += 1;
                }
                // write_seg puts reader-array element e on file voxel f; nephrod's inverse
                // map must do the same.
                let element_index: Vec<u32> = (0..arr.data.len() as u32).collect();
                let back = AxisMap::to_volume_order(&arr.map, &element_index).unwrap();
                let exp_back = usizes(&exp["write_seg_element_at_file_voxel"]);
                let back: Vec<usize> = back.iter().map(|v| *v as usize).collect();
                assert_eq!(back, exp_back, "{name} write_seg inverse");
            }
        }
    }
    assert!(reoriented_differs >= 3, "cases must exercise reorientation");
}

#[test]
fn the_inverse_map_rejects_a_wrong_length() {
    let map = AxisMap {
        axis: [2, 1, 0],
        flip: [false; 3],
        volume_dims: [2, 3, 4],
    };
    assert!(map.to_volume_order(&[0u8; 23]).is_none());
    assert_eq!(map.to_volume_order(&[7u8; 24]).unwrap(), vec![7u8; 24]);
}
