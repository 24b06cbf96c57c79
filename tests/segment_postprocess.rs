//! Seed 004's post-processing (src/segment/postprocess.rs) against an independent scipy
//! implementation written from the paper's text, and 26-connected components against
//! skimage.measure.label(connectivity=3) (tools/oracle/postprocess_golden.py): random masks,
//! label maps with touching lesions, one-voxel lesions, diagonal-only contacts, kidney
//! fragments inside tumour. Exact equality.

use std::path::PathBuf;

use nephrod::engine::weights::WeightFile;
use nephrod::segment::postprocess::{components_26, postprocess_kits};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/postprocess")
}

#[test]
fn components_and_rules_match_the_references() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert_eq!(doc["generator"], "tools/oracle/postprocess_golden.py");
    let f = WeightFile::open(&dir().join("cases.safetensors")).unwrap();
    let get = |n: &str| -> Vec<u32> {
        f.tensor_f32(n)
            .unwrap()
            .1
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let (mut comps, mut rules, mut changed) = (0, 0, 0);
    for case in doc["cases"].as_array().unwrap() {
        let i = case["index"].as_u64().unwrap();
        let s: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let dims = [s[0], s[1], s[2]];
        match case["kind"].as_str().unwrap() {
            "components" => {
                let mask: Vec<bool> = get(&format!("mask{i}")).iter().map(|v| *v != 0).collect();
                let (ids, sizes) = components_26(&mask, dims);
                assert_eq!(ids, get(&format!("ids{i}")), "components {i}");
                assert_eq!(sizes.len() as u64, case["count"].as_u64().unwrap());
                comps += 1;
            }
            _ => {
                let mut seg: Vec<u8> = get(&format!("seg{i}")).iter().map(|v| *v as u8).collect();
                let want: Vec<u8> = get(&format!("post{i}")).iter().map(|v| *v as u8).collect();
                let before = seg.clone();
                let report = postprocess_kits(&mut seg, dims);
                assert_eq!(seg, want, "kits rules {i}");
                let n = before.iter().zip(&seg).filter(|(a, b)| a != b).count();
                assert_eq!(
                    n,
                    report.mass_voxels_removed + report.kidney_voxels_relabelled
                );
                changed += n;
                rules += 1;
            }
        }
    }
    assert_eq!((comps, rules), (4, 6));
    assert!(changed > 20, "the cases must exercise the rules");
}

#[test]
fn analytic_cases() {
    // Two voxels touching only at a corner are one 26-connected component.
    let dims = [2, 2, 2];
    let mut mask = vec![false; 8];
    mask[0] = true;
    mask[7] = true;
    let (ids, sizes) = components_26(&mask, dims);
    assert_eq!(sizes, vec![2]);
    assert_eq!(ids[7], 1);
    // A tumour far from any kidney disappears; one touching a kidney stays.
    let dims = [1, 1, 7];
    let mut seg = vec![1, 2, 0, 0, 0, 3, 0];
    let r = postprocess_kits(&mut seg, dims);
    assert_eq!(seg, vec![1, 2, 0, 0, 0, 0, 0]);
    assert_eq!((r.masses_removed, r.mass_voxels_removed), (1, 1));
    // Kidney components 5, 4, 3 and 1 voxels: the 1-voxel fragment (< third largest, 3) takes
    // its surroundings' majority.
    let dims = [1, 1, 20];
    let mut seg = vec![1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 2, 1, 2, 2, 0];
    let r = postprocess_kits(&mut seg, dims);
    assert_eq!(seg[16], 2);
    assert_eq!(r.kidney_fragments_relabelled, 1);
}
