//! nnU-Net's own post-processing (src/models/nnunet_postprocessing.rs parses
//! postprocessing.json, src/segment/nnunet_postprocess.rs applies it) against nnunetv2 2.8.1's
//! `remove_all_but_largest_component_from_segmentation` run with the same rules
//! (tools/oracle/nnunet_postprocessing_golden.py): label and region rule lists, ties in
//! component size, diagonal contacts, an empty map. Exact equality; and malformed files are
//! refused with a typed error.

use std::path::PathBuf;

use nephrod::engine::weights::WeightFile;
use nephrod::models::nnunet_postprocessing::{parse_postprocessing, read_postprocessing_json};
use nephrod::segment::nnunet_postprocess::apply_keep_largest;
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/segment/nnunet_postprocessing")
}

#[test]
fn rules_match_nnunet() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    assert_eq!(
        doc["generator"],
        "tools/oracle/nnunet_postprocessing_golden.py"
    );
    let f = WeightFile::open(&dir().join("cases.safetensors")).unwrap();
    let get = |n: &str| -> Vec<u8> {
        f.tensor_f32(n)
            .unwrap()
            .1
            .into_iter()
            .map(|v| v as u8)
            .collect()
    };
    let (mut n, mut changed) = (0, 0);
    for case in doc["cases"].as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        let rules =
            read_postprocessing_json(&dir().join(case["rules"].as_str().unwrap()), &[1, 2, 3])
                .unwrap();
        let s: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let mut labels = get(&format!("{key}_input"));
        let want = get(&format!("{key}_output"));
        let report = apply_keep_largest(&mut labels, [s[0], s[1], s[2]], &rules);
        assert_eq!(labels, want, "{key}");
        let removed: usize = report.iter().sum();
        assert_eq!(
            removed as u64,
            case["changed_voxels"].as_u64().unwrap(),
            "{key}"
        );
        changed += removed;
        n += 1;
    }
    assert!(n >= 18, "{n} cases");
    assert!(
        changed > 50,
        "the cases must exercise the rules ({changed} voxels changed)"
    );
}

#[test]
fn region_rules_are_label_unions() {
    let rules = read_postprocessing_json(&dir().join("regions.json"), &[1, 2, 3]).unwrap();
    let sets: Vec<Vec<u16>> = rules.into_iter().map(|r| r.labels).collect();
    assert_eq!(
        sets,
        vec![vec![1, 2, 3], vec![1, 2, 3], vec![2, 3], vec![2]]
    );
}

#[test]
fn malformed_files_are_refused() {
    let ok = |v: Value| parse_postprocessing(&v, &[1, 2, 3]);
    let f = "remove_all_but_largest_component_from_segmentation";
    assert!(
        ok(json!({"postprocessing_fns": [], "postprocessing_kwargs": []}))
            .unwrap()
            .is_empty()
    );
    for (bad, why) in [
        (json!({"postprocessing_fns": [f]}), "kwargs missing"),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": []}),
            "length mismatch",
        ),
        (
            json!({"postprocessing_fns": ["my_fill_holes"], "postprocessing_kwargs": [{"labels_or_regions": 1}]}),
            "unknown function",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": 0}]}),
            "background",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": 7}]}),
            "label not in the model",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": []}]}),
            "empty",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": -1}]}),
            "negative",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": [[[1]]]}]}),
            "nested too deep",
        ),
        (
            json!({"postprocessing_fns": [f], "postprocessing_kwargs": [{"labels_or_regions": 1, "background_label": 3}]}),
            "other background",
        ),
    ] {
        assert!(ok(bad).is_err(), "{why} accepted");
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

#[test]
fn import_finds_the_crossval_postprocessing_json() {
    use nephrod::models::nnunet::{prepare_import, ImportOptions, PostprocessingSource};
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet/plain"),
        &model,
    );
    // Without the file: no rules.
    let prep = prepare_import(&model, &ImportOptions::new("3d_fullres")).unwrap();
    assert!(prep.plan.postprocessing.is_empty());
    assert!(prep.postprocessing_json.is_none());
    // Where nnUNetv2_find_best_configuration writes it for folds 0 and 1.
    let cv = model.join("crossval_results_folds_0_1");
    std::fs::create_dir_all(&cv).unwrap();
    std::fs::copy(dir().join("labels.json"), cv.join("postprocessing.json")).unwrap();
    let prep = prepare_import(&model, &ImportOptions::new("3d_fullres")).unwrap();
    let sets: Vec<Vec<u16>> = prep
        .plan
        .postprocessing
        .iter()
        .map(|r| r.labels.clone())
        .collect();
    assert_eq!(sets, vec![vec![1, 2, 3], vec![2], vec![3]]);
    assert_eq!(prep.postprocessing_json.as_ref().unwrap().sha256.len(), 64);
    // Only fold 0 asked for: that cross-validation folder does not apply.
    let mut one = ImportOptions::new("3d_fullres");
    one.folds = Some(vec!["0".into()]);
    assert!(prepare_import(&model, &one)
        .unwrap()
        .plan
        .postprocessing
        .is_empty());
    // Switched off, or an explicit file that is broken.
    let mut off = ImportOptions::new("3d_fullres");
    off.postprocessing = PostprocessingSource::Off;
    assert!(prepare_import(&model, &off)
        .unwrap()
        .plan
        .postprocessing
        .is_empty());
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\"postprocessing_fns\": [\"x\"], \"postprocessing_kwargs\": [{}]}",
    )
    .unwrap();
    let mut explicit = ImportOptions::new("3d_fullres");
    explicit.postprocessing = PostprocessingSource::File(bad);
    let err = prepare_import(&model, &explicit).unwrap_err().to_string();
    assert!(err.contains("nephrod only knows"), "{err}");
}
